"""trl 0.11.4 value head reference: AutoModelForSeq2SeqLMWithValueHead on tests/fixtures/t5-tiny.

Writes tests/fixtures/rl/value-head/v_head.safetensors (trl's names: v_head.summary.weight [1, d_model],
v_head.summary.bias [1]) and tests/fixtures/reference/value-head.{safetensors,json}: the values trl
computes (one per decoder position, eval mode) for t5-tiny's reference inputs, and its lm logits.
Run by hand: python tools/make_value_head_fixture.py
"""
import json
import os

import torch
from safetensors.torch import load_file, save_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIX = os.path.join(ROOT, "tests", "fixtures")

from trl import AutoModelForSeq2SeqLMWithValueHead


def main():
    torch.manual_seed(4242)
    model = AutoModelForSeq2SeqLMWithValueHead.from_pretrained(os.path.join(FIX, "t5-tiny"), summary_dropout_prob=0.1)
    model.eval()
    with torch.no_grad():
        model.v_head.summary.weight.normal_(0, 0.5)
        model.v_head.summary.bias.fill_(0.25)
    ref = load_file(os.path.join(FIX, "reference", "t5-tiny.safetensors"))
    with torch.no_grad():
        lm_logits, _, values = model(input_ids=ref["input_ids"], attention_mask=ref["attention_mask"],
                                     decoder_input_ids=ref["decoder_input_ids"])
    head = {k: v.contiguous() for k, v in model.state_dict().items() if k.startswith("v_head.")}
    assert sorted(head) == ["v_head.summary.bias", "v_head.summary.weight"], sorted(head)
    os.makedirs(os.path.join(FIX, "rl", "value-head"), exist_ok=True)
    save_file(head, os.path.join(FIX, "rl", "value-head", "v_head.safetensors"), metadata={"format": "pt"})
    out = os.path.join(FIX, "reference", "value-head")
    save_file({"values": values.float().contiguous(), "logits": lm_logits.float().contiguous()}, out + ".safetensors")
    with open(out + ".json", "w") as f:
        json.dump({"trl_class": "AutoModelForSeq2SeqLMWithValueHead", "summary_dropout_prob": 0.1,
                   "values_shape": list(values.shape), "base": "tests/fixtures/t5-tiny",
                   "note": "values = v_head(decoder last hidden state (after final_layer_norm)).squeeze(-1), eval mode"},
                  f, indent=1)
    print("values", tuple(values.shape), float(values.std()))


if __name__ == "__main__":
    main()
