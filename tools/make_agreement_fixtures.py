#!/usr/bin/env python3
"""Writes the parity fixtures for the `detox-agreement` crate (`detox annotations stats`).

Run from the repository root with the reference venv:

    .venv/bin/python tools/make_agreement_fixtures.py

Reference stack: krippendorff==0.8.1, numpy==1.26.4, scipy (Wilson interval cross-check) and
scikit-learn (Cohen's kappa cross-check) if installed (tools/requirements.txt).
The output is deterministic (fixed seeds, stable JSON formatting): running it twice gives
byte-identical files.

For each judgment set <name> it writes, under crates/detox-agreement/tests/fixtures/:

* <name>.jsonl          judgments in the format of `detox annotations export`, one per line
                        (with a few blank lines, which readers skip).
* <name>.expected.json  {"about": ..., "stats": S} where S has exactly the JSON shape of
                        `detox annotations stats --json`, every number computed here:
                        - alpha: krippendorff.alpha(reliability_data=annotators x units,
                          level_of_measurement=...), no value_domain (the package takes the
                          values present). preferred_nominal: unit = item, value = preferred
                          model or "tie" mapped to integers. readability / coherence: unit =
                          (item, model), value = the 1-7 rating. null where the package raises
                          (one value in the domain, no unit with two coders) or returns nan.
                        - cohen_kappa: per annotator pair (names in byte order, key "A|B") on
                          `preferred` over the items both judged: (po - pe) / (1 - pe) from the
                          numpy confusion matrix over the values seen in the pair, null when
                          pe == 1; checked against sklearn.metrics.cohen_kappa_score.
                        - win_rate: wins / (wins + losses) and the Wilson score interval at
                          z = 1.959963984540054 by the formula, checked against
                          scipy.stats.binomtest(...).proportion_ci(method="wilson").
                        - likert: numpy mean, numpy std(ddof=1) (null when n < 2), n.

Convention shared with the crate: when an annotator judged the same item twice, the later line
of the file wins (the `sparse_dups` set has such lines); `item` given as a JSON number is the
same item as its decimal string (the `many` set mixes both).

Sets: `basic` (4 annotators, 14 items, 3 models), `many` (6 annotators, 24 items, 4 models,
sparse), `subset` (ratings use only some of the 1-7 values), `constant` (everyone prefers the
same model and gives coherence 5: those alphas and every kappa are null), `sparse_dups`
(duplicates, items judged once, an annotator pair sharing no item, a rating value that occurs
only in a unit with one coder, a model judged once, in a tie).
"""

import itertools
from importlib import metadata
import json
import math
import os

import krippendorff
import numpy as np

try:
    from sklearn.metrics import cohen_kappa_score
except ImportError:  # the cross-check is optional
    cohen_kappa_score = None
try:
    from scipy.stats import binomtest
except ImportError:
    binomtest = None

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT_DIR = os.path.join(REPO, "crates", "detox-agreement", "tests", "fixtures")
Z = 1.959963984540054
AXES = ["readability", "coherence"]


# ---------------------------------------------------------------------------------------------
# Judgment sets
# ---------------------------------------------------------------------------------------------


def timestamp(i):
    minutes, seconds = divmod(37 * i, 60)
    hours, minutes = divmod(minutes, 60)
    return f"2026-05-{1 + hours // 24:02d}T{hours % 24:02d}:{minutes:02d}:{seconds:02d}Z"


def judgment(i, item, annotator, models, shown, preferred, confidence, ratings, note=""):
    return {
        "item": item,
        "annotator": annotator,
        "models": list(models),
        "shown": list(shown),
        "preferred": preferred,
        "confidence": int(confidence),
        "ratings": {m: {"readability": int(r[0]), "coherence": int(r[1])} for m, r in ratings.items()},
        "note": note,
        "time": timestamp(i),
    }


def simulate(seed, n_annotators, n_items, models, p_judge, tie_margin, item_as_number=False,
             read_values=None, coh_values=None):
    """Random judgments: latent model quality + item + annotator noise."""
    rng = np.random.default_rng(seed)
    annotators = [f"ann{k}" for k in range(n_annotators)]
    quality = {m: q for m, q in zip(models, np.linspace(0.8, -0.6, len(models)))}
    out = []
    for it in range(n_items):
        pair = list(rng.choice(len(models), size=2, replace=False))
        ms = [models[pair[0]], models[pair[1]]]
        item_noise = rng.normal(0, 0.6, size=2)
        for ai, a in enumerate(annotators):
            if rng.random() >= p_judge:
                continue
            shown = ms if rng.random() < 0.5 else ms[::-1]
            score = [quality[m] + item_noise[j] + rng.normal(0, 0.5) for j, m in enumerate(ms)]
            diff = score[0] - score[1]
            if abs(diff) < tie_margin:
                preferred = "tie"
            else:
                preferred = ms[0] if diff > 0 else ms[1]
            confidence = 1 + min(2, int(abs(diff) / 0.5))
            ratings = {}
            for j, m in enumerate(ms):
                r = [score[j] * 1.5 + 4.5 + rng.normal(0, 0.7), score[j] * 1.2 + 4.0 + rng.normal(0, 0.9)]
                r = [int(min(7, max(1, round(v)))) for v in r]
                if read_values is not None:
                    r[0] = read_values[min(len(read_values) - 1, (r[0] - 1) * len(read_values) // 7)]
                if coh_values is not None:
                    r[1] = coh_values[min(len(coh_values) - 1, (r[1] - 1) * len(coh_values) // 7)]
                ratings[m] = r
            if item_as_number and (it + ai) % 2 == 0:
                item = 100 + it  # a JSON number: the same item as the string "1xx"
            else:
                item = f"{100 + it}" if item_as_number else f"d{it:03d}"
            note = "" if rng.random() < 0.8 else "left one repeats itself"
            out.append(judgment(len(out), item, a, ms, shown, preferred, confidence, ratings, note))
    return out


def set_constant():
    """Everyone prefers M1 and gives coherence 5: preferred / coherence alphas and kappas null."""
    rng = np.random.default_rng(5)
    out = []
    for it in range(10):
        for a in ["ann0", "ann1", "ann2"]:
            if rng.random() < 0.2:
                continue
            ratings = {"M1": [int(rng.integers(3, 8)), 5], "M2": [int(rng.integers(1, 6)), 5]}
            shown = ["M1", "M2"] if it % 2 else ["M2", "M1"]
            out.append(judgment(len(out), f"d{it:03d}", a, ["M1", "M2"], shown, "M1", 3, ratings))
    return out


def set_sparse_dups():
    """Duplicates (the later line wins), items judged once, a pair of annotators sharing no item,
    a rating value (1 for readability) that occurs only in an item judged once, a model (C) in
    one judgment, a tie."""
    rng = np.random.default_rng(7)
    # ann0 and ann1 share items 0-7; ann2 judges 8-11 with ann1 only; ann0 and ann2 share none.
    plan = [(it, a) for it in range(8) for a in ["ann0", "ann1"]]
    plan += [(it, "ann1") for it in range(8, 12)] + [(it, "ann2") for it in range(8, 12)]
    plan += [(12, "ann0"), (13, "ann2")]  # judged once: not pairable
    out = []
    for it, a in plan:
        ms = ["A", "B"] if it % 3 else ["B", "A"]
        preferred = ["A", "B", "tie"][int(rng.integers(0, 3))]
        r = {"A": [int(rng.integers(2, 8)), int(rng.integers(2, 8))],
             "B": [int(rng.integers(2, 6)), int(rng.integers(1, 8))]}
        if it == 13:
            r["A"][0] = 1  # readability 1 only here
        out.append(judgment(len(out), f"x{it}", a, ms, ms, preferred, int(rng.integers(1, 4)), r))
    # Re-judgments: the same annotator and item again, with other values, later in the file.
    for it, a in [(2, "ann0"), (9, "ann2"), (12, "ann0")]:
        ms = ["A", "B"] if it % 3 else ["B", "A"]
        r = {"A": [7, 7], "B": [2, 2]}
        out.append(judgment(len(out), f"x{it}", a, ms, ms[::-1], "A", 3, r, "changed my mind"))
    # A model seen once, in a tie: its win rate and interval are null, its std too (n = 1).
    out.append(judgment(len(out), "x14", "ann1", ["A", "C"], ["C", "A"], "tie", 1,
                        {"A": [4, 4], "C": [3, 6]}))
    return out


SETS = {
    "basic": lambda: simulate(1, 4, 14, ["M1", "M2", "M3"], 0.8, 0.35),
    "many": lambda: simulate(2, 6, 24, ["base", "lora", "ppo", "full"], 0.3, 0.3, item_as_number=True),
    "subset": lambda: simulate(3, 3, 12, ["M1", "M2"], 0.9, 0.4, read_values=[2, 4, 5, 7], coh_values=[3, 6]),
    "constant": set_constant,
    "sparse_dups": set_sparse_dups,
}


# ---------------------------------------------------------------------------------------------
# Reference statistics
# ---------------------------------------------------------------------------------------------


def dedup(judgments):
    """One judgment per (annotator, item): the later line wins. Items normalized to strings."""
    kept = {}
    for j in judgments:
        j = dict(j, item=str(j["item"]))
        kept.pop((j["annotator"], j["item"]), None)  # re-insert: keep file order of the kept one
        kept[(j["annotator"], j["item"])] = j
    return list(kept.values())


def alpha_or_none(matrix, level):
    try:
        with np.errstate(divide="ignore", invalid="ignore"):
            a = float(krippendorff.alpha(reliability_data=matrix, level_of_measurement=level))
    except ValueError:  # one value in the domain, or no unit with two coders
        return None
    return a if math.isfinite(a) else None


def alphas(js):
    annotators = sorted({j["annotator"] for j in js})
    row = {a: i for i, a in enumerate(annotators)}
    out = {}
    # preferred, nominal: unit = item.
    items = sorted({j["item"] for j in js})
    col = {it: i for i, it in enumerate(items)}
    cats = sorted({j["preferred"] for j in js})
    code = {c: float(i) for i, c in enumerate(cats)}
    m = np.full((len(annotators), len(items)), np.nan)
    for j in js:
        m[row[j["annotator"]], col[j["item"]]] = code[j["preferred"]]
    out["preferred_nominal"] = alpha_or_none(m, "nominal")
    # ratings: unit = (item, model).
    units = sorted({(j["item"], mod) for j in js for mod in j["models"]})
    ucol = {u: i for i, u in enumerate(units)}
    for axis in AXES:
        m = np.full((len(annotators), len(units)), np.nan)
        for j in js:
            for mod in j["models"]:
                m[row[j["annotator"]], ucol[(j["item"], mod)]] = j["ratings"][mod][axis]
        out[f"{axis}_ordinal"] = alpha_or_none(m, "ordinal")
        out[f"{axis}_interval"] = alpha_or_none(m, "interval")
    return out


def wilson(wins, n):
    p = wins / n
    denom = 1 + Z * Z / n
    center = (p + Z * Z / (2 * n)) / denom
    half = Z * math.sqrt(p * (1 - p) / n + Z * Z / (4 * n * n)) / denom
    lo, hi = max(0.0, center - half), min(1.0, center + half)
    if binomtest is not None:
        ci = binomtest(wins, n).proportion_ci(confidence_level=0.95, method="wilson")
        assert abs(ci.low - lo) < 1e-12 and abs(ci.high - hi) < 1e-12, (wins, n, ci, lo, hi)
    return [lo, hi]


def win_rates(js):
    out = {}
    for mod in sorted({m for j in js for m in j["models"]}):
        w = sum(1 for j in js if mod in j["models"] and j["preferred"] == mod)
        t = sum(1 for j in js if mod in j["models"] and j["preferred"] == "tie")
        l = sum(1 for j in js if mod in j["models"]) - w - t
        n = w + l
        out[mod] = {"wins": w, "losses": l, "ties": t, "rate": w / n if n else None,
                    "ci95": wilson(w, n) if n else None}
    return out


def likert(js):
    out = {}
    for mod in sorted({m for j in js for m in j["models"]}):
        out[mod] = {}
        for axis in AXES:
            v = np.array([j["ratings"][mod][axis] for j in js if mod in j["models"]], dtype=np.float64)
            out[mod][axis] = {"mean": float(np.mean(v)),
                              "std": float(np.std(v, ddof=1)) if len(v) >= 2 else None,
                              "n": int(len(v))}
    return out


def kappas(js):
    by = {}
    for j in js:
        by.setdefault(j["annotator"], {})[j["item"]] = j["preferred"]
    names = sorted(by, key=lambda s: s.encode("utf-8"))
    out = {}
    for a, b in itertools.combinations(names, 2):
        shared = sorted(set(by[a]) & set(by[b]))
        if not shared:
            continue
        xa = [by[a][i] for i in shared]
        xb = [by[b][i] for i in shared]
        cats = sorted(set(xa) | set(xb))
        idx = {c: i for i, c in enumerate(cats)}
        cm = np.zeros((len(cats), len(cats)))
        for u, v in zip(xa, xb):
            cm[idx[u], idx[v]] += 1
        n = cm.sum()
        po = np.trace(cm) / n
        pe = float((cm.sum(axis=1) * cm.sum(axis=0)).sum() / (n * n))
        k = None if pe == 1 else float((po - pe) / (1 - pe))
        if cohen_kappa_score is not None and k is not None:
            ks = cohen_kappa_score(xa, xb)
            assert abs(ks - k) < 1e-12, (a, b, ks, k)
        out[f"{a}|{b}"] = {"kappa": k, "items": len(shared)}
    return out


def stats(judgments):
    js = dedup(judgments)
    return {
        "judgments": len(js),
        "items": len({j["item"] for j in js}),
        "annotators": len({j["annotator"] for j in js}),
        "win_rate": win_rates(js),
        "likert": likert(js),
        "alpha": alphas(js),
        "cohen_kappa": kappas(js),
    }


def main():
    os.makedirs(OUT_DIR, exist_ok=True)
    versions = " ".join(f"{p}=={metadata.version(p)}" for p in ["krippendorff", "numpy"])
    for name, make in SETS.items():
        js = make()
        path = os.path.join(OUT_DIR, f"{name}.jsonl")
        with open(path, "w", encoding="utf-8") as f:
            for i, j in enumerate(js):
                f.write(json.dumps(j, separators=(",", ":")) + "\n")
                if i % 17 == 5:
                    f.write("\n")  # blank lines are skipped by the reader
        expected = {"about": f"tools/make_agreement_fixtures.py; {versions}",
                    "stats": stats(js)}
        epath = os.path.join(OUT_DIR, f"{name}.expected.json")
        with open(epath, "w", encoding="utf-8") as f:
            json.dump(expected, f, indent=1)
            f.write("\n")
        print(f"wrote {os.path.relpath(path, REPO)} ({os.path.getsize(path)} bytes), "
              f"{os.path.relpath(epath, REPO)}: {expected['stats']['alpha']}")


if __name__ == "__main__":
    main()
