#!/usr/bin/env python3
"""Writes the parity fixtures for the `detox-rouge` crate.

Run from the repository root with the reference venv:

    /work/venv/bin/python tools/make_rouge_fixtures.py [--shared ../shared]

Reference stack: rouge_score==0.1.2, nltk==3.9.1, numpy==1.26.4 (tools/requirements.txt).
The output is deterministic (fixed seeds, sorted inputs, stable JSON formatting).

Files written under tests/fixtures/rouge/:

* porter.json         (word, NLTK PorterStemmer().stem(word)) pairs. The words are drawn
                      from the vocabulary of <shared>/data/dialogsum/*.jsonl plus a list of
                      hand-picked tricky words; the draw makes sure every branch / rule of
                      NLTK's stemmer (NLTK_EXTENSIONS mode) is exercised several times.
* dialogsum_test.json For <shared>/data/dialogsum/test.jsonl (500 dialogues x 3 references):
                      every summary scored as prediction against each OTHER reference of its
                      dialogue (3000 pairs) with RougeScorer([...], use_stemmer=True). Only row
                      indices and the 12 numbers per pair are stored, never the texts.
* pairs.json          ~35 hand-written prediction/reference pairs (edge cases) with their
                      tokens and rouge_score's scores.
* percentile.json     numpy.percentile (linear) at the exact q values BootstrapAggregator uses,
                      for ~50 arrays (numbers as repr strings): checks the Rust percentile
                      helper bit for bit.
"""

import argparse
import collections
import json
import os
import random
import re
import sys

import numpy as np
from nltk.stem import porter
from rouge_score import rouge_scorer, tokenize

ROUGE_TYPES = ["rouge1", "rouge2", "rougeL", "rougeLsum"]
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT_DIR = os.path.join(REPO, "tests", "fixtures", "rouge")


def dump(name, obj):
    path = os.path.join(OUT_DIR, name)
    with open(path, "w", encoding="utf-8") as f:
        # json uses float.__repr__: shortest repr that round-trips, i.e. full precision.
        json.dump(obj, f, ensure_ascii=False, separators=(",", ":"), sort_keys=False)
        f.write("\n")
    print(f"wrote {os.path.relpath(path, REPO)} ({os.path.getsize(path)} bytes)")


def score_list(scores):
    """[r1 p, r1 r, r1 f, r2 p, ..., rougeLsum f] as floats."""
    out = []
    for t in ROUGE_TYPES:
        s = scores[t]
        out.extend([float(s.precision), float(s.recall), float(s.fmeasure)])
    return out


# ---------------------------------------------------------------------------------------
# (a) Porter stemmer
# ---------------------------------------------------------------------------------------


class TracingStemmer(porter.PorterStemmer):
    """NLTK's PorterStemmer that records which branch / rule each step took."""

    def __init__(self):
        super().__init__()
        self.events = None
        self._step = None

    def _ev(self, *e):
        if self.events is not None:
            self.events.add(e)

    def _apply_rule_list(self, word, rules):
        for idx, (suffix, replacement, condition) in enumerate(rules):
            if suffix == "*d" and self._ends_double_consonant(word):
                ok = condition is None or condition(word[:-2])
                self._ev(self._step, "rule", idx, suffix, ok)
                break
            if word.endswith(suffix):
                ok = condition is None or condition(word[: len(word) - len(suffix)])
                self._ev(self._step, "rule", idx, suffix, ok)
                break
        else:
            self._ev(self._step, "no rule")
        return super()._apply_rule_list(word, rules)

    def _wrap(self, name, fn, word):
        prev = self._step
        self._step = name
        try:
            return fn(word)
        finally:
            self._step = prev

    def _step1a(self, word):
        if word.endswith("ies") and len(word) == 4:
            self._ev("1a", "ies len 4")
        return self._wrap("1a", super()._step1a, word)

    def _step1b(self, word):
        if word.endswith("ied"):
            self._ev("1b", "ied", len(word) == 4)
        elif word.endswith("eed"):
            self._ev("1b", "eed", self._measure(word[:-3]) > 0)
        else:
            for suffix in ("ed", "ing"):
                if word.endswith(suffix):
                    self._ev("1b", suffix, self._contains_vowel(word[: -len(suffix)]))
        return self._wrap("1b", super()._step1b, word)

    def _step1c(self, word):
        return self._wrap("1c", super()._step1c, word)

    def _step2(self, word):
        if word.endswith("alli") and self._has_positive_measure(word[:-4]):
            self._ev("2", "alli first")
        return self._wrap("2", super()._step2, word)

    def _step3(self, word):
        return self._wrap("3", super()._step3, word)

    def _step4(self, word):
        return self._wrap("4", super()._step4, word)

    def _step5a(self, word):
        if word.endswith("e"):
            stem = word[:-1]
            m = self._measure(stem)
            self._ev("5a", "e", min(m, 2), self._ends_cvc(stem))
        return self._wrap("5a", super()._step5a, word)

    def _step5b(self, word):
        return self._wrap("5b", super()._step5b, word)

    def trace(self, word):
        self.events = set()
        if word in self.pool:
            self._ev("pool")
        elif len(word) <= 2:
            self._ev("short")
        if len(word) == 2 and not self._is_consonant(word, 0) and self._is_consonant(word, 1):
            self._ev("cvc len 2")
        result = self.stem(word)
        events, self.events = self.events, None
        return result, events


# Hand-picked words: the paper's / NLTK docstring examples, the irregular-forms pool,
# mode-specific branches, case and non-ASCII handling, digits, y-handling.
TRICKY_WORDS = """
sky skies dying lying tying news innings inning outings outing cannings canning howe
proceed exceed succeed proceeds exceeded succeeding die lie tie dies lies ties died lied
tied spied flies cries fries skied caresses ponies caress cats feed agreed bled plastered
motoring sing conflated troubled sized hopping tanned falling hissing fizzed failing filing
happy enjoy spy fly try cry toy syzygy ivy by relational conditional rational valenci
hesitanci digitizer conformabli conformably radicalli radically differentli vileli
analogousli vietnamization predication operator feudalism decisiveness hopefulness
callousness formaliti sensitiviti sensibiliti triplicate formative formalize electriciti
electrical hopeful goodness revival allowance inference airliner gyroscopic adjustable
defensible irritant replacement adjustment dependent adoption homologou communism activate
angulariti homologous effective bowdlerize probate rate cease controll roll generalization
oscillators archaeology geology theology apology analogy fully hopefully beautifully
carefully generously finally really totally usually eventually basically logically
tree trees trouble troubles private oaten orrery oats yy yyy yyyy yyyyy ayyy yay yeye
eyed eying eyes dyed dyeing ying yes aye was has its ies ied eed ing ed s ss sss is as
us at it a i y e o ab ba ax ox hiss fizz buzz fall tall all sees agreement
1990s 2000s 4k mp3 mp3s b2b covid19 h1n1 abc123 a1b2c3 123 0 3rds 21st 10th
Running SKIES Skies NEWS News Dying Proceed CATS Happily
cafés naïve résumé écoles straße ÉCOLES İstanbul
national rational gator lator ably trebly gently ness sness tional etional itional tency
bency sizer prizer ously mously ization dization alism talism tiveness fulness tfulness
tousness tivity logy slogy ology ticate ticity tical tful sful
""".split()


def porter_fixture(shared):
    stemmer = TracingStemmer()
    plain = porter.PorterStemmer()

    vocab = set()
    for name in ("train.jsonl", "validation.jsonl", "test.jsonl"):
        path = os.path.join(shared, "data", "dialogsum", name)
        with open(path, encoding="utf-8") as f:
            for line in f:
                row = json.loads(line)
                for key in ("dialogue", "summary", "topic"):
                    # The tokens rouge_score would hand to the stemmer (unstemmed).
                    vocab.update(tokenize.tokenize(row.get(key) or "", None))
    vocab = sorted(vocab)

    rng = random.Random(20240501)
    order = list(vocab)
    rng.shuffle(order)

    traces = {}
    for w in order:
        traces[w] = stemmer.trace(w)

    # Greedy cover: up to PER_EVENT words for every (step, branch/rule, outcome) event.
    PER_EVENT = 12
    chosen = []
    seen = set()
    counts = collections.Counter()
    for w in TRICKY_WORDS:
        if w not in seen:
            seen.add(w)
            chosen.append(w)
            counts.update(stemmer.trace(w)[1])
    for w in order:
        events = traces[w][1]
        if any(counts[e] < PER_EVENT for e in events):
            if w not in seen:
                seen.add(w)
                chosen.append(w)
                counts.update(events)
    # Fill with a random sample of the rest.
    TARGET = 4000
    for w in order:
        if len(chosen) >= TARGET:
            break
        if w not in seen:
            seen.add(w)
            chosen.append(w)
            counts.update(traces[w][1])

    all_events = set()
    for _, ev in traces.values():
        all_events |= ev
    rare = sorted((e for e in counts if counts[e] < 3), key=repr)
    print(f"porter: vocabulary {len(vocab)} words, {len(all_events)} distinct events, "
          f"{len(chosen)} words chosen; events seen < 3 times: {rare}")

    pairs = []
    for w in chosen:
        s = plain.stem(w)
        assert s == stemmer.trace(w)[0]
        pairs.append([w, s])
    dump("porter.json", {
        "source": "nltk 3.9.1 nltk.stem.porter.PorterStemmer() (NLTK_EXTENSIONS), "
                  "words from dialogsum vocabulary + hand-picked; tools/make_rouge_fixtures.py",
        "pairs": pairs,
    })


# ---------------------------------------------------------------------------------------
# (b) DialogSum test split: cross-reference scores
# ---------------------------------------------------------------------------------------

ID_RE = re.compile(r"^test_(\d+)_(\d+)$")


def dialogsum_pairs(rows):
    """(prediction_row, reference_row) pairs: each summary vs the other refs of its dialogue."""
    groups = collections.OrderedDict()
    for i, row in enumerate(rows):
        m = ID_RE.match(row["id"])
        assert m, row["id"]
        groups.setdefault(int(m.group(1)), []).append(i)
    pairs = []
    for i, row in enumerate(rows):
        g = groups[int(ID_RE.match(row["id"]).group(1))]
        for j in g:
            if j != i:
                pairs.append((i, j))
    return pairs


def dialogsum_fixture(shared):
    path = os.path.join(shared, "data", "dialogsum", "test.jsonl")
    with open(path, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    scorer = rouge_scorer.RougeScorer(ROUGE_TYPES, use_stemmer=True)
    out = []
    for i, j in dialogsum_pairs(rows):
        # rouge_score's argument order is score(target, prediction).
        s = scorer.score(rows[j]["summary"], rows[i]["summary"])
        out.append([i, j] + score_list(s))
    print(f"dialogsum: {len(rows)} rows, {len(out)} pairs")
    dump("dialogsum_test.json", {
        "source": "rouge_score 0.1.2 RougeScorer(['rouge1','rouge2','rougeL','rougeLsum'], "
                  "use_stemmer=True).score(target=rows[ref].summary, prediction=rows[pred].summary) "
                  "for data/dialogsum/test.jsonl; tools/make_rouge_fixtures.py",
        "rows": len(rows),
        "columns": ["prediction_row", "reference_row"]
        + [f"{t}.{m}" for t in ROUGE_TYPES for m in ("precision", "recall", "fmeasure")],
        "pairs": out,
    })


# ---------------------------------------------------------------------------------------
# (c) Hand-written pairs
# ---------------------------------------------------------------------------------------

# (prediction, reference) -- our own sentences.
HAND_PAIRS = [
    ("", ""),
    ("", "The kettle whistled while Maria read the morning paper."),
    ("The kettle whistled while Maria read the morning paper.", ""),
    ("!!! ... ??? --- ;;;", "(( )) [] {} ''' \"\"\" ,,,"),
    ("!!! ... ???", "The meeting was moved to Thursday."),
    ("The meeting was moved to Thursday.", "The meeting has been moved to next Thursday afternoon."),
    ("The meeting was moved to Thursday.", "The meeting was moved to Thursday."),
    ("Penguins cannot fly.", "Volcanoes erupt molten rock."),
    ("In 2023 we shipped 1,500 units at $3.99 each.",
     "We shipped 1500 units in 2023 for 3.99 dollars per unit."),
    ("Call 555-0100 before 9:30 or after 17:45 on 12/05/2024.",
     "Ring 5550100 before 9 30 and after 17 45, on the 12th of May 2024."),
    ("Jonah walked to the bakery.\nHe bought two loaves of rye.\nThen he cycled home.",
     "Jonah bought rye bread at the bakery.\nAfterwards he went home by bike."),
    ("first sentence here\n\n   \nsecond sentence there\n",
     "second sentence there\nfirst sentence here"),
    ("alpha beta gamma\ndelta epsilon\nzeta", "zeta\ndelta epsilon\nalpha beta gamma"),
    ("a b c d\nb c a d\nd a", "a b c\nd a b\nc d"),
    ("the the the the", "the cat and the dog"),
    ("go go go go go", "go go"),
    ("buffalo buffalo buffalo buffalo buffalo buffalo buffalo buffalo",
     "Buffalo buffalo Buffalo buffalo buffalo buffalo Buffalo buffalo"),
    ("Café naïve résumé — déjà vu", "cafe naive resume deja vu"),
    ("\u212aelvin visited \u0130stanbul in 1999", "kelvin visited istanbul in 1999"),
    ("日本語のテキスト 😀 test case", "test 😀 case"),
    ("ΟΔΟΣ odos straße STRASSE", "odos strasse"),
    ("The runners were running quickly through the swarming flies.",
     "A runner runs quick; a fly flew past the swarm."),
    ("dying lying tying skies news innings outings cannings",
     "die lie tie sky new inning outing canning"),
    ("HELLO World, HeLLo again", "hello WORLD hello Again"),
    ("don't can't it's well-known state-of-the-art e-mail",
     "do not cannot it is well known state of the art email"),
    ("line one\r\nline two\r\n", "line two\r\nline one"),
    ("tabs\tand   many    spaces\there", "tabs and many spaces here"),
    ("mp3 players and 4k TVs from the 1990s", "4K tvs and MP3 player of the 1990's"),
    ("\n\n\n", "Some reference text that stands alone."),
    ("snake_case_words and CamelCaseWords", "snake case words and camel case words"),
    ("   \n  leading and trailing whitespace  \n  ", "leading and trailing whitespace"),
    ("syzygy toys enjoy happy sky agreed feed", "syzygies toy enjoyed happiness skies agree fed"),
    ("was has its ies ied eed yes", "was has it is ied eed yes"),
    ("Relational conditional rationalization; hopefulness, callousness and generalizations.",
     "relate condition rational hope callous general"),
    ("#Person1# asks #Person2# about the rent.\n#Person2# says it is 800 dollars a month.",
     "#Person2# tells #Person1# the rent is 800 dollars monthly."),
    ("yes", "yes"),
    ("yes", "no"),
    # rougeLsum: hits are clipped by token counts across sentences.
    ("Tom fed the cat.", "Tom fed the cat.\nThe cat fed Tom."),
    ("the cat\nthe cat sat", "the cat\nthe cat\nthe cat"),
    ("a dog barked", "a dog\na dog\nbarked a dog barked"),
]


def pairs_fixture():
    scorer = rouge_scorer.RougeScorer(ROUGE_TYPES, use_stemmer=True)
    stemmer = porter.PorterStemmer()
    out = []
    for pred, ref in HAND_PAIRS:
        s = scorer.score(ref, pred)
        out.append({
            "prediction": pred,
            "reference": ref,
            "prediction_tokens": tokenize.tokenize(pred, stemmer),
            "reference_tokens": tokenize.tokenize(ref, stemmer),
            "prediction_tokens_unstemmed": tokenize.tokenize(pred, None),
            "reference_tokens_unstemmed": tokenize.tokenize(ref, None),
            "scores": score_list(s),
        })
    dump("pairs.json", {
        "source": "rouge_score 0.1.2 RougeScorer(['rouge1','rouge2','rougeL','rougeLsum'], "
                  "use_stemmer=True).score(reference, prediction); tools/make_rouge_fixtures.py",
        "columns": [f"{t}.{m}" for t in ROUGE_TYPES for m in ("precision", "recall", "fmeasure")],
        "pairs": out,
    })


# ---------------------------------------------------------------------------------------
# (d) numpy percentile as used by rouge_score's BootstrapAggregator
# ---------------------------------------------------------------------------------------


def percentile_fixture():
    confidence_interval = 0.95  # BootstrapAggregator default
    delta = (1 - confidence_interval) / 2
    q = 100 * np.array([delta, 0.5, 1 - delta])
    rng = np.random.RandomState(7)
    sizes = [1, 2, 3, 4, 5, 10, 41] + [int(n) for n in rng.randint(6, 90, size=40)]
    cases = []
    for k, n in enumerate(sizes):
        values = rng.random_sample(n) * (10.0 ** rng.randint(-3, 1))
        if k == 5:
            values = np.round(values * 4) / 4  # ties
        cases.append({
            "values": [repr(float(v)) for v in values],
            "percentiles": [repr(float(v)) for v in np.percentile(values, q)],
        })
    # Numbers as repr strings: parsed exactly by Rust's str::parse, so the test compares bits.
    dump("percentile.json", {
        "source": "numpy 1.26.4 np.percentile(values, 100*[d, 0.5, 1-d]) with d=(1-0.95)/2, "
                  "as rouge_score.scoring.BootstrapAggregator; numbers as repr strings; "
                  "tools/make_rouge_fixtures.py",
        "q": [repr(float(v)) for v in q],
        "cases": cases,
    })


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shared", default=os.path.join(REPO, "..", "shared"),
                    help="shared data directory holding data/dialogsum/*.jsonl")
    args = ap.parse_args()
    os.makedirs(OUT_DIR, exist_ok=True)
    porter_fixture(args.shared)
    dialogsum_fixture(args.shared)
    pairs_fixture()
    percentile_fixture()


if __name__ == "__main__":
    sys.exit(main())
