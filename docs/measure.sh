#!/usr/bin/env bash
# Side-by-side measurement for docs/performance.md: MiniGpt's bench verb and TorchSharp (both variants) on
# WA, WB, WC with 2 threads, alternating engines, 3 rounds; then a WB training run under /usr/bin/time -v
# (the scaling sweep is docs/scaling.sh). Run alone on the machine (no builds or tests in parallel). bench takes train's model
# options and defaults (attention-only on its induction task, n_ctx 32, batch 32), so every shape is given in full.
# With a BASE_CHECKOUT argument (another checkout of MiniGpt, e.g. a git worktree of an earlier commit) that build runs in
# the same rounds as minigpt-base, so "no workload slower than before" is measured, not remembered.
#   bash docs/measure.sh [BASE_CHECKOUT]
set -euo pipefail
cd "$(dirname "$0")/.."
dotnet build -c Release MiniGpt.Train >/dev/null
MG="dotnet MiniGpt.Train/bin/Release/net10.0/MiniGpt.Train.dll"
BASE=""
if [ $# -ge 1 ]; then
  dotnet build -c Release "$1/MiniGpt.Train" >/dev/null
  BASE="dotnet $1/MiniGpt.Train/bin/Release/net10.0/MiniGpt.Train.dll"
  echo "base: $(git -C "$1" log --oneline -1)"
fi
echo "this: $(git log --oneline -1)"
lscpu | grep -E "Model name|^CPU\(s\)" | tr -s ' '
TS=../shared/peers/torchsharp/run.sh
declare -A SHAPE=(
  [WA]="--n-layers 2 --d-model 256 --n-heads 8 --attn-only --n-ctx 256 --batch-size 16 --d-vocab 65"
  [WB]="--n-layers 2 --d-model 256 --n-heads 8 --attn-only=false --d-mlp 1024 --n-ctx 256 --batch-size 16 --d-vocab 65"
  [WC]="--n-layers 4 --d-model 128 --n-heads 4 --attn-only=false --d-mlp 512 --n-ctx 64 --batch-size 12 --d-vocab 65")
echo "== LibTorch fp32 matmul GFLOP/s on 2 threads (the practical peak the issue quotes)"
$TS mm --threads 2 | tail -8
for round in 1 2 3; do
  for w in WA WB WC; do
    echo "round $round $w minigpt $($MG bench ${SHAPE[$w]} --threads 2 --json)"
    [ -n "$BASE" ] && echo "round $round $w minigpt-base $($BASE bench ${SHAPE[$w]} --threads 2 --json)"
    echo "round $round $w torchsharp $($TS bench --workload $w --threads 2 | tail -1)"
    echo "round $round $w torchsharp-sdpa $($TS bench --workload $w --threads 2 --sdpa | tail -1)"
  done
done
echo "== peak RSS, WB train 20 steps"
/usr/bin/time -v $MG train ${SHAPE[WB]} --threads 2 --steps 20 --eval-interval 1000 --out /tmp/minigpt-rss/model.safetensors --overwrite 2>&1 \
  | grep -E "Maximum resident|Elapsed|done|model:"
# the scaling sweep (n_ctx, d_model, 1 and 2 threads, GPT-2 124M) is docs/scaling.sh
