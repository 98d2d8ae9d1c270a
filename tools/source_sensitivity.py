"""Does a T5 summarizer read its source? Mean teacher-forced loss of the first N validation
summaries given their own dialogue, another row's dialogue, and an empty one (transformers, run by
hand). Equal losses mean the decoder ignores the encoder.

    python tools/source_sensitivity.py MODEL_DIR ../shared/data/dialogsum/validation.jsonl [N]
"""
import json
import statistics
import sys

import torch
from transformers import AutoTokenizer, T5ForConditionalGeneration

TEMPLATE = "Summarize the following conversation.\n\n{}\n\nSummary: "


def main(model_dir, data, n=40):
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = T5ForConditionalGeneration.from_pretrained(model_dir).eval()
    rows = [json.loads(l) for l in open(data, encoding="utf-8")][:n]

    def loss(src, tgt):
        x = tok(TEMPLATE.format(src), return_tensors="pt", truncation=True, max_length=512)
        y = tok(tgt, return_tensors="pt").input_ids
        with torch.no_grad():
            return model(**x, labels=y).loss.item()

    out = {
        "own": statistics.mean(loss(r["dialogue"], r["summary"]) for r in rows),
        "shuffled": statistics.mean(
            loss(rows[(i + 7) % len(rows)]["dialogue"], r["summary"]) for i, r in enumerate(rows)
        ),
        "empty": statistics.mean(loss("", r["summary"]) for r in rows),
    }
    print(json.dumps({"model": model_dir, "rows": len(rows), **out}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 40)
