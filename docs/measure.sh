#!/usr/bin/env bash
# Side-by-side measurement for docs/performance.md: MiniGpt's bench verb and TorchSharp (both variants) on
# WA, WB, WC with 2 threads, alternating engines, 3 rounds; then a WB training run under /usr/bin/time -v;
# then the scaling sweep. Run alone on the machine (no builds or tests in parallel). bench takes train's model
# options and defaults (attention-only on its induction task, n_ctx 32, batch 32), so every shape is given in full.
set -euo pipefail
cd "$(dirname "$0")/.."
dotnet build -c Release MiniGpt.Train >/dev/null
MG="dotnet MiniGpt.Train/bin/Release/net10.0/MiniGpt.Train.dll"
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
    echo "round $round $w torchsharp $($TS bench --workload $w --threads 2 | tail -1)"
    echo "round $round $w torchsharp-sdpa $($TS bench --workload $w --threads 2 --sdpa | tail -1)"
  done
done
echo "== peak RSS, WB train 20 steps"
/usr/bin/time -v $MG train ${SHAPE[WB]} --threads 2 --steps 20 --eval-interval 1000 --out /tmp/minigpt-rss/model.safetensors --overwrite 2>&1 \
  | grep -E "Maximum resident|Elapsed|done|model:"
echo "== scaling: n_ctx at d_model 256 (WB shape, batch 16)"
for t in 64 128 256 512 1024; do
  steps=20; [ $t -ge 512 ] && steps=6
  echo "n_ctx $t $($MG bench --n-layers 2 --d-model 256 --n-heads 8 --attn-only=false --d-mlp 1024 --n-ctx $t --batch-size 16 --d-vocab 65 --threads 2 --steps $steps --json)"
done
echo "== scaling: d_model at n_ctx 256 (WB shape, d_head 32, d_mlp 4·d_model, batch 16)"
for d in 64 128 256 512; do
  echo "d_model $d $($MG bench --n-layers 2 --d-model $d --n-heads $((d / 32)) --attn-only=false --n-ctx 256 --batch-size 16 --d-vocab 65 --threads 2 --json)"
done
