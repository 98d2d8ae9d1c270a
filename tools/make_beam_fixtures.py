"""Beam search fixtures: transformers 4.46.3's `generate(num_beams=...)` on two tiny models
where `</s>` competes, so that finished hypotheses, length penalties and early stopping change
the result.

- t5-tiny: the gated (FLAN-T5-like) fixture model with an untied head; its `</s>` row was
  already raised by make_fixtures.py.
- t5-tiny-relu-eos: the tied-embedding original-T5 fixture model (t5-tiny-relu) with the `</s>`
  row of the shared embedding (= its head) moved along the mean scaled decoder hidden state, so
  that `</s>` competes there too. This script writes that model directory.

    python tools/make_beam_fixtures.py   # writes tests/fixtures/t5-tiny-relu-eos/ and
                                         # tests/fixtures/generate/beams.json

Each case decodes a batch of three prompts of different lengths and keeps all `num_beams`
returned sequences with their `sequences_scores`. A prompt whose returned scores have two
neighbours within 1e-3 is marked `near_tie` (the order could flip on rounding); the tests skip it.
"""
import json
import pathlib
import shutil

import torch
from transformers import AutoTokenizer, T5ForConditionalGeneration

FIX = pathlib.Path(__file__).resolve().parents[1] / "tests/fixtures"
MAX_NEW = 20
NEAR_TIE = 1e-3
EOS_SHIFT = 0.001  # times the mean norm of the scaled hidden state; chosen so about half of
                   # the hypotheses end with </s>


def prompts_of(name):
    ref = json.loads((FIX / "reference" / f"{name}.json").read_text())
    return [ref["cli_prompt"]] + ref["texts"]


def make_tied_eos_model():
    src, dst = FIX / "t5-tiny-relu", FIX / "t5-tiny-relu-eos"
    model = T5ForConditionalGeneration.from_pretrained(src).eval()
    tok = AutoTokenizer.from_pretrained(src)
    enc = tok(prompts_of("t5-tiny-relu"), return_tensors="pt", padding=True)
    with torch.no_grad():
        seqs = model.generate(**enc, max_new_tokens=MAX_NEW, num_beams=4)
        h = model(**enc, decoder_input_ids=seqs, output_hidden_states=True).decoder_hidden_states[-1]
        h = h * model.config.d_model ** -0.5  # what the tied head multiplies
        m = h.reshape(-1, h.shape[-1]).mean(0)
        model.shared.weight[1] += EOS_SHIFT * h.norm(dim=-1).mean() * m / m.norm()
    dst.mkdir(exist_ok=True)
    model.save_pretrained(dst, safe_serialization=True)
    shutil.copy(src / "tokenizer.json", dst / "tokenizer.json")
    config = json.loads((dst / "config.json").read_text())
    config.pop("_name_or_path", None)  # an absolute path of this machine
    (dst / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return dst


def sequences(out, batch, nb, eos):
    rows = []
    for p in range(batch):
        seqs = []
        for k in range(nb):
            ids = out.sequences[p * nb + k, 1:].tolist()
            if eos in ids:
                ids = ids[: ids.index(eos) + 1]
            else:
                ids = ids[:MAX_NEW]
                assert len(ids) == MAX_NEW, "open beams are finalized at max_new_tokens"
            seqs.append({"token_ids": ids, "score": out.sequences_scores[p * nb + k].item()})
        rows.append(seqs)
    return rows


def main():
    torch.manual_seed(0)
    tied_dir = make_tied_eos_model()
    models = {"t5-tiny": (FIX / "t5-tiny", prompts_of("t5-tiny")),
              "t5-tiny-relu-eos": (tied_dir, prompts_of("t5-tiny-relu"))}
    settings = [dict(num_beams=nb, length_penalty=lp, early_stopping=es)
                for nb in [2, 4] for lp in [1.0, 2.0, 0.0, -1.0] for es in [False, True, "never"]]
    settings += [dict(num_beams=4, length_penalty=1.0, early_stopping=False, repetition_penalty=1.3),
                 dict(num_beams=4, length_penalty=1.0, early_stopping=False, no_repeat_ngram_size=2),
                 dict(num_beams=3, length_penalty=0.5, early_stopping=True, min_new_tokens=5),
                 dict(num_beams=4, length_penalty=1.0, early_stopping="never", repetition_penalty=0.8,
                      no_repeat_ngram_size=3)]
    cases = []
    out_models = {}
    for name, (path, prompts) in models.items():
        model = T5ForConditionalGeneration.from_pretrained(path).eval()
        tok = AutoTokenizer.from_pretrained(path)
        enc = tok(prompts, return_tensors="pt", padding=True)
        out_models[name] = {"dir": path.name, "tied": model.config.tie_word_embeddings,
                            "prompts": prompts}
        for s in settings:
            full = {"repetition_penalty": 1.0, "no_repeat_ngram_size": 0, "min_new_tokens": 0, **s}
            with torch.no_grad():
                out = model.generate(**enc, max_new_tokens=MAX_NEW, do_sample=False,
                                     num_return_sequences=full["num_beams"],
                                     output_scores=True, return_dict_in_generate=True, **full)
            seqs = sequences(out, len(prompts), full["num_beams"], model.config.eos_token_id)
            near = [any(abs(a["score"] - b["score"]) < NEAR_TIE for a, b in zip(row, row[1:]))
                    for row in seqs]
            cases.append({"model": name, **full, "sequences": seqs, "near_tie": near})
    finished = sum(s["token_ids"][-1] == 1 for c in cases for row in c["sequences"] for s in row)
    total = sum(len(row) for c in cases for row in c["sequences"])
    path = FIX / "generate" / "beams.json"
    path.write_text(json.dumps({"transformers": "4.46.3", "max_new_tokens": MAX_NEW,
                                "near_tie": NEAR_TIE, "models": out_models, "cases": cases},
                               indent=1) + "\n")
    kept = sum(not t for c in cases for t in c["near_tie"])
    print(f"wrote {path}: {len(cases)} cases, {kept} prompt results outside near-ties, "
          f"{finished}/{total} sequences end with </s>")


if __name__ == "__main__":
    main()
