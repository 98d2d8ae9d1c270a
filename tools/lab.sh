#!/usr/bin/env bash
# The lab end to end on the shipped models (run by hand; RESULTS.md section 3 quotes its output):
# zero/one/few-shot summaries of one test dialogue, test ROUGE of the summarizer, a LoRA fine-tune
# (r 32, alpha 32, q and v) with ROUGE after, PPO with configs/lab.toml against the shipped
# toxicity classifier (toxicity before/after in toxicity.json), and ROUGE of the PPO policy.
#
#   bash tools/lab.sh RUN_DIR [TEST_ROWS] [LORA_STEPS] [PPO_STEPS]
#
# DETOX (default: detox on PATH) and SHARED (default: ../shared) may be set. Every number lands
# in RUN_DIR as JSON; RUN_DIR/summary.txt gathers them.
set -euo pipefail
run=${1:?usage: bash tools/lab.sh RUN_DIR [TEST_ROWS] [LORA_STEPS] [PPO_STEPS]}
rows=${2:-1500}
lora_steps=${3:-500}
ppo_steps=${4:-10}
detox=${DETOX:-detox}
shared=${SHARED:-../shared}
test=$shared/data/dialogsum/test.jsonl
train=$shared/data/dialogsum/train.jsonl
mkdir -p "$run"
here=$(cd "$(dirname "$0")/.." && pwd)

# 1. Zero-, one- and few-shot prompts on test dialogue 200, examples from train rows 40, 80, 120.
dialogue=$(python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).readlines()[200])["dialogue"])' "$test")
python3 -c 'import sys; l=open(sys.argv[1]).readlines(); open(sys.argv[2],"w").writelines([l[40],l[80],l[120]])' "$train" "$run/shots.jsonl"
{
  echo "zero-shot:"; "$detox" summarize --dialogue "$dialogue"
  echo "one-shot:"; "$detox" summarize --dialogue "$dialogue" --shots 1 --examples "$run/shots.jsonl"
  echo "few-shot (3):"; "$detox" summarize --dialogue "$dialogue" --shots 3 --examples "$run/shots.jsonl"
} > "$run/shots.txt"

# 2. LoRA fine-tune of the shipped summarizer (the lab's adapter).
"$detox" finetune --model "$here/models/dialogsum-t5" --mode lora --lora-r 32 --lora-alpha 32 \
  --target-modules q,v --train "$train" --eval "$shared/data/dialogsum/validation.jsonl" \
  --out "$run/lora" --max-steps "$lora_steps" --batch-size 8 --lr 1e-3 --eval-every 250 \
  --overwrite --json > "$run/lora.json"

# 3. PPO with the lab's settings; toxicity before and after is in ppo/toxicity.json.
"$detox" ppo --config "$here/configs/lab.toml" --dataset "$train" --out "$run/ppo" \
  --max-steps "$ppo_steps" --overwrite > "$run/ppo.txt"

# 4. Test ROUGE: the summarizer, with the LoRA adapter, and the PPO policy.
m=$here/models/dialogsum-t5
"$detox" evaluate --dataset "$test" --samples "$rows" --out "$run/rouge" \
  --model "shipped=$m" --model "lora=$m+$run/lora/final" --model "ppo=$m+$run/ppo/checkpoints/final"

{
  cat "$run/shots.txt"
  echo; echo "LoRA fine-tune:"; cat "$run/lora.json"
  echo; echo "PPO toxicity:"; cat "$run/ppo/toxicity.json"
  echo; echo "ROUGE ($rows test rows, rouge1 / rouge2 / rougeL / rougeLsum):"
  python3 -c 'import json,sys
for m in json.load(open(sys.argv[1]))["models"]:
    r = m["rouge"]
    print(m["name"], *(round(r[k], 4) for k in ("rouge1", "rouge2", "rougeL", "rougeLsum")))' "$run/rouge/evaluation.json"
} > "$run/summary.txt"
cat "$run/summary.txt"
