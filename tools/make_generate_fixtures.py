"""Fixtures for detox-generate's logits processors, computed by transformers 4.46.3's own
classes (RepetitionPenaltyLogitsProcessor, NoRepeatNGramLogitsProcessor) on random logits.

    python tools/make_generate_fixtures.py   # writes tests/fixtures/generate/processors.json
"""
import json
import pathlib

import torch
from transformers import NoRepeatNGramLogitsProcessor, RepetitionPenaltyLogitsProcessor

torch.manual_seed(0)
OUT = pathlib.Path(__file__).resolve().parents[1] / "tests/fixtures/generate/processors.json"
VOCAB = 12
cases = []
for penalty, ngram, length in [(1.3, 0, 5), (0.7, 0, 4), (1.0, 2, 7), (2.0, 3, 9), (1.2, 2, 1), (1.5, 4, 3)]:
    ids = torch.randint(0, VOCAB, (2, length))
    # repeat a bigram so that n-gram bans are exercised
    if length >= 4:
        ids[:, -2:] = ids[:, :2]
    logits = torch.randn(2, VOCAB) * 3
    out = logits.clone()
    if penalty != 1.0:
        out = RepetitionPenaltyLogitsProcessor(penalty)(ids, out)
    if ngram > 0:
        out = NoRepeatNGramLogitsProcessor(ngram)(ids, out)
    cases.append({
        "repetition_penalty": penalty,
        "no_repeat_ngram_size": ngram,
        "input_ids": ids.tolist(),
        "logits": logits.tolist(),
        "expected": [[None if v == float("-inf") else v for v in row] for row in out.tolist()],
    })
OUT.parent.mkdir(parents=True, exist_ok=True)
OUT.write_text(json.dumps({"transformers": "4.46.3", "cases": cases}, indent=1) + "\n")
print(f"wrote {OUT} ({len(cases)} cases)")

# Greedy generations with the repetition controls on the fixture models, as `generate` gives
# them (the ids after the decoder start token, up to and including </s>).
from transformers import AutoTokenizer, T5ForConditionalGeneration  # noqa: E402

FIX = OUT.parents[1]
gens = []
for name in ["t5-tiny", "t5-tiny-relu"]:
    model = T5ForConditionalGeneration.from_pretrained(FIX / name).eval()
    tok = AutoTokenizer.from_pretrained(FIX / name)
    prompt = json.loads((FIX / "reference" / f"{name}.json").read_text())["cli_prompt"]
    enc = tok(prompt, return_tensors="pt")
    plain = None
    for penalty, ngram in [(1.0, 0), (1.3, 0), (0.8, 0), (1.0, 2), (1.0, 3), (1.5, 2)]:
        with torch.no_grad():
            out = model.generate(**enc, max_new_tokens=20, do_sample=False, num_beams=1,
                                 repetition_penalty=penalty, no_repeat_ngram_size=ngram)
        ids = out[0, 1:].tolist()
        if model.config.eos_token_id in ids:
            ids = ids[: ids.index(model.config.eos_token_id) + 1]
        if plain is None:
            plain = ids
        gens.append({"model": name, "prompt": prompt, "repetition_penalty": penalty,
                     "no_repeat_ngram_size": ngram, "token_ids": ids, "differs_from_greedy": ids != plain})
GEN = OUT.parent / "generations.json"
GEN.write_text(json.dumps({"transformers": "4.46.3", "max_new_tokens": 20, "cases": gens}, indent=1) + "\n")
print(f"wrote {GEN} ({len(gens)} cases, {sum(g['differs_from_greedy'] for g in gens)} differ from plain greedy)")
