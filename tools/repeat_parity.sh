#!/usr/bin/env bash
# Runs every parity test binary N times (default 20) and reports failures per binary: a parity
# test that passes only sometimes is a failing test (DEVELOPERS.md). Run by hand after changing
# kernels, backends or tolerances; not part of CI.
#   tools/repeat_parity.sh [N]
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-20}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/detox-ci-target}"
tests=$(ls tests/parity_*.rs | xargs -n1 basename | sed 's/\.rs$//')
args=(); for t in $tests; do args+=(--test "$t"); done
bins=$(cargo test --all-features "${args[@]}" --no-run --message-format=json 2>/dev/null \
  | python3 -c 'import sys, json
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["kind"] == ["test"]:
        print(m["executable"])')
status=0
for bin in $bins; do
  fails=0
  for _ in $(seq "$n"); do
    "$bin" -q >/dev/null 2>&1 || fails=$((fails + 1))
  done
  echo "$(basename "$bin"): $((n - fails))/$n passed"
  [ "$fails" = 0 ] || status=1
done
exit $status
