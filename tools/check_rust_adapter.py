"""Reverse direction of the PEFT parity: peft loads an adapter that detox wrote.

tests/fixtures/lora/rust-written-qvwo/ was written by `detox finetune --mode lora` (r 4, alpha 8,
q,v,wo; 6 steps on 16 DialogSum examples). This script loads it with
`PeftModel.from_pretrained` on tests/fixtures/t5-tiny and records what peft computes with it on the
t5-tiny reference inputs: tests/fixtures/reference/rust-adapter.{safetensors,json}. The Rust test
`parity_lora::peft_loads_our_adapter_and_computes_our_logits` compares detox's logits with these.
Run by hand: python tools/check_rust_adapter.py
"""
import json
import os

import torch
from peft import PeftModel
from safetensors.torch import load_file, save_file
from transformers import T5ForConditionalGeneration

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIX = os.path.join(ROOT, "tests", "fixtures")


def main():
    base = T5ForConditionalGeneration.from_pretrained(os.path.join(FIX, "t5-tiny")).eval()
    model = PeftModel.from_pretrained(base, os.path.join(FIX, "lora", "rust-written-qvwo")).eval()
    adapted = sorted(n for n, m in model.named_modules() if hasattr(m, "lora_A") and "default" in m.lora_A)
    assert any(n.endswith("DenseReluDense.wo") for n in adapted)
    assert not any(n.endswith("SelfAttention.o") for n in adapted)
    ref = load_file(os.path.join(FIX, "reference", "t5-tiny.safetensors"))
    with torch.no_grad():
        logits = model(input_ids=ref["input_ids"], attention_mask=ref["attention_mask"],
                       decoder_input_ids=ref["decoder_input_ids"]).logits.float().contiguous()
        with model.disable_adapter():
            plain = model(input_ids=ref["input_ids"], attention_mask=ref["attention_mask"],
                          decoder_input_ids=ref["decoder_input_ids"]).logits.float()
    diff = (logits - plain).abs().max().item()
    assert diff > 1e-3, "the adapter must change the logits"
    out = os.path.join(FIX, "reference", "rust-adapter")
    save_file({"logits": logits}, out + ".safetensors")
    with open(out + ".json", "w") as f:
        json.dump({
            "adapter_dir": "tests/fixtures/lora/rust-written-qvwo",
            "loaded_by": "peft.PeftModel.from_pretrained",
            "adapted_modules": adapted,
            "max_abs_change_vs_base": diff,
            "inputs": "tests/fixtures/reference/t5-tiny.safetensors input_ids/attention_mask/decoder_input_ids",
        }, f, indent=1)
    print(f"peft loaded {len(adapted)} adapted modules; logits change vs base {diff:.4f}")


if __name__ == "__main__":
    main()
