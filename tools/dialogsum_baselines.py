"""Trivial DialogSum baselines, written as `detox rouge --pairs` files (run by hand, no
dependencies beyond the standard library):

  lead2:   the first two utterances, speaker tags kept
  longest: "#Person1# and #Person2# are talking about " + the longest utterance (tag dropped)

    python tools/dialogsum_baselines.py ../shared/data/dialogsum/test.jsonl OUT_DIR
    detox rouge --pairs OUT_DIR/lead2.jsonl --json

Each row is scored against its own reference (test has 3 rows per dialogue), as `detox evaluate`
scores a model.
"""
import json
import os
import re
import sys


def utterances(dialogue):
    return [u.strip() for u in dialogue.split("\n") if u.strip()]


def lead2(dialogue):
    return " ".join(utterances(dialogue)[:2])


def longest(dialogue):
    body = [re.sub(r"^#Person\d+#:\s*", "", u) for u in utterances(dialogue)]
    return "#Person1# and #Person2# are talking about " + max(body, key=len)


def main(path, out):
    os.makedirs(out, exist_ok=True)
    rows = [json.loads(l) for l in open(path, encoding="utf-8") if l.strip()]
    for name, fn in [("lead2", lead2), ("longest", longest)]:
        with open(os.path.join(out, name + ".jsonl"), "w", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps({"prediction": fn(r["dialogue"]), "reference": r["summary"]}) + "\n")
        print(name, len(rows), "rows")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
