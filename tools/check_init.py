"""Checks that a `detox init` directory loads in transformers with every tensor present and that
its weights follow transformers' `_init_weights` statistics.

    python tools/check_init.py MODEL_DIR [MODEL_DIR ...]

Run by hand (pinned tools/requirements.txt); prints one line per directory and exits 1 on a
missing/unexpected tensor or a standard deviation off by more than 10% (plus sampling error).
"""
import json
import sys

import torch
from transformers import AutoConfig, AutoModelForSeq2SeqLM, AutoModelForSequenceClassification, AutoTokenizer


def expected_std(cfg, name):
    if cfg.model_type == "t5":
        f = cfg.initializer_factor
        last = name.rsplit(".", 2)[-2]
        return {
            "shared": f, "lm_head": f,
            "q": f * (cfg.d_model * cfg.d_kv) ** -0.5,
            "k": f * cfg.d_model ** -0.5, "v": f * cfg.d_model ** -0.5,
            "o": f * (cfg.num_heads * cfg.d_kv) ** -0.5,
            "relative_attention_bias": f * cfg.d_model ** -0.5,
            "wi": f * cfg.d_model ** -0.5, "wi_0": f * cfg.d_model ** -0.5, "wi_1": f * cfg.d_model ** -0.5,
            "wo": f * cfg.d_ff ** -0.5,
        }.get(last)
    if "LayerNorm" in name or name.endswith(".bias"):
        return None
    return cfg.initializer_range


def main(dirs):
    bad = 0
    for d in dirs:
        cfg = AutoConfig.from_pretrained(d)
        cls = AutoModelForSeq2SeqLM if cfg.model_type == "t5" else AutoModelForSequenceClassification
        model, info = cls.from_pretrained(d, output_loading_info=True)
        AutoTokenizer.from_pretrained(d)
        missing = [k for k in info["missing_keys"] if not k.endswith("embed_tokens.weight")]
        if missing or info["unexpected_keys"] or info["mismatched_keys"]:
            print(d, "loading info", info)
            bad += 1
        worst = 0.0
        for name, p in model.named_parameters():
            std = expected_std(cfg, name)
            if std is None:
                continue
            got = p.detach().float().std().item()
            err = abs(got / std - 1)
            worst = max(worst, err)
            # 10% plus four standard errors of a sample std of this many values.
            if err > 0.1 + 4 / (2 * p.numel()) ** 0.5:
                print(d, name, "std", got, "expected", std)
                bad += 1
        n = sum(p.numel() for p in model.parameters())
        print(json.dumps({"dir": d, "model_type": cfg.model_type, "parameters": n,
                          "worst_std_ratio_error": round(worst, 4)}))
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main(sys.argv[1:])
