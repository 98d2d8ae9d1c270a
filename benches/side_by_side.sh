#!/usr/bin/env bash
# detox and PyTorch on the same shapes, one after the other, on this machine; prints one table.
#
#   benches/side_by_side.sh [--threads N] [--repeats R] [--sft] [--ppo] [--device cpu] [--out DIR]
#
# Needs a release build of detox (cargo build --release; DETOX=path overrides) and a Python with
# tools/requirements.txt installed (PYTHON=path, default python3). Run it on an idle machine: the
# two sides run one after the other, never together. --sft adds the LoRA / full fine-tuning step
# (minutes, ~17 GB), --ppo the PPO step and the lab iteration (~10 minutes).
set -euo pipefail
cd "$(dirname "$0")/.."
threads=2; repeats=2; sft=0; ppo=0; device=cpu; out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --threads) threads="$2"; shift 2 ;;
    --repeats) repeats="$2"; shift 2 ;;
    --sft) sft=1; shift ;;
    --ppo) ppo=1; shift ;;
    --device) device="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    *) echo "side_by_side.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
DETOX="${DETOX:-${CARGO_TARGET_DIR:-target}/release/detox}"
PYTHON="${PYTHON:-python3}"
[ -x "$DETOX" ] || { echo "side_by_side.sh: no detox binary at $DETOX (cargo build --release, or set DETOX)" >&2; exit 2; }
"$PYTHON" -c "import torch, transformers" 2>/dev/null || { echo "side_by_side.sh: $PYTHON cannot import torch + transformers (pip install -r tools/requirements.txt)" >&2; exit 2; }
out="${out:-$(mktemp -d)}"; mkdir -p "$out"
export RAYON_NUM_THREADS="$threads" OMP_NUM_THREADS="$threads"
: > "$out/detox.jsonl"; : > "$out/torch.jsonl"

echo "== detox bench ($device)" >&2
"$DETOX" bench --device "$device" --repeats "$repeats" --jsonl "$out/detox.jsonl" >&2
echo "== PyTorch bench" >&2
"$PYTHON" benches/pytorch_bench.py --threads "$threads" --repeats "$repeats" | tee /dev/stderr | grep '^{' >> "$out/torch.jsonl"
if [ "$sft" = 1 ]; then
  echo "== detox SFT step" >&2
  "$DETOX" bench --device "$device" --what sft-lora,sft-full --repeats "$repeats" --jsonl "$out/detox.jsonl" >&2
  echo "== PyTorch + peft SFT step" >&2
  "$PYTHON" benches/pytorch_sft_bench.py --threads "$threads" --repeats "$repeats" | tee /dev/stderr | grep '^{' >> "$out/torch.jsonl"
fi
if [ "$ppo" = 1 ]; then
  echo "== detox bench-ppo" >&2
  "$DETOX" bench-ppo --device "$device" --repeats 2 --iteration --jsonl "$out/detox_ppo.jsonl" >&2
  echo "== trl PPOTrainer.step" >&2
  "$PYTHON" benches/pytorch_ppo_bench.py --model base --threads "$threads" --repeats 2 --iteration --json "$out/torch_ppo.json" >&2
fi
"$PYTHON" benches/side_by_side_table.py "$out" --threads "$threads" --device "$device"
