"""How fast does a T5 trained from scratch learn to read its encoder? Trains a model directory
(e.g. one made by `detox init`) with torch on copying the first K tokens of DialogSum train
dialogues (source = target = those tokens) and prints, every 50 steps, the copy loss of 30
validation dialogues given their own prefix and given another row's (run by hand). The gap
between the two is what the decoder takes from the encoder; detox's own run of the same task
(`detox finetune --template "{dialogue}"` on dialogue->dialogue rows) can be compared with it.

    python tools/copy_learnability.py MODEL_DIR ../shared/data/dialogsum K [STEPS] [LR] [DROPOUT]

Measured 2026-12-02 on runs/dialogsum-t5-init (AdamW 1e-3, warmup 100, batch 16): K 16 gives a
gap of 0.7-0.9 nats by step 100; K 48 about 0.2 by step 300; copying 64 tokens out of whole dialogues
about 0.01 by step 250.
"""
import json
import random
import statistics
import sys

import torch
from transformers import AutoTokenizer, T5ForConditionalGeneration


def main(model_dir, data_dir, k, steps=300, lr=1e-3, dropout=0.1):
    torch.manual_seed(0)
    random.seed(0)
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = T5ForConditionalGeneration.from_pretrained(model_dir, dropout_rate=dropout)
    train = [json.loads(l)["dialogue"] for l in open(f"{data_dir}/train.jsonl", encoding="utf-8")]
    val = [json.loads(l)["dialogue"] for l in open(f"{data_dir}/validation.jsonl", encoding="utf-8")][:30]

    def prefix(text):
        return tok(text).input_ids[:-1][:k] + [tok.eos_token_id]

    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 100))

    def copy_loss(shift):
        model.eval()
        with torch.no_grad():
            out = statistics.mean(
                model(
                    input_ids=torch.tensor([prefix(val[(i + shift) % len(val)])]),
                    labels=torch.tensor([prefix(v)]),
                ).loss.item()
                for i, v in enumerate(val)
            )
        model.train()
        return out

    for step in range(1, steps + 1):
        batch = [prefix(t) for t in random.sample(train, 16)]
        n = max(map(len, batch))
        x = torch.tensor([b + [tok.pad_token_id] * (n - len(b)) for b in batch])
        y = torch.tensor([b + [-100] * (n - len(b)) for b in batch])
        loss = model(input_ids=x, attention_mask=(x != tok.pad_token_id).long(), labels=y).loss
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % 50 == 0:
            own, other = copy_loss(0), copy_loss(7)
            print(json.dumps({"step": step, "train_loss": loss.item(), "own": own, "other": other, "gap": other - own}), flush=True)


if __name__ == "__main__":
    a = sys.argv
    main(a[1], a[2], int(a[3]), *(f(v) for f, v in zip((int, float, float), a[4:])))
