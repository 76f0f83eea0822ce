#!/usr/bin/env bash
# The scaling sweep of docs/performance.md for one build, or two side by side (alternating, so both see the same
# machine): n_ctx 64…2048 at d_model 256 and d_model 64…768 at n_ctx 256 (WB's shape otherwise: 2 layers, d_head 32,
# d_mlp 4·d_model, batch 16), 1 and 2 threads, and GPT-2 124M at B 4, T 64 (2 threads). One line per run: the build,
# the shape, bench's JSON line (median ms, tokens/s, MFU) and the peak RSS (/usr/bin/time -v), or the one-line error
# when the shape does not run. Run alone on the machine.
#   bash docs/scaling.sh [BASE_CHECKOUT]     # BASE_CHECKOUT: another checkout of MiniGpt (e.g. a git worktree), built here too
set -uo pipefail
cd "$(dirname "$0")/.."
builds=("$PWD")
[ $# -ge 1 ] && builds=("$1" "$PWD")
for b in "${builds[@]}"; do dotnet build -c Release "$b/MiniGpt.Train" >/dev/null || exit 1; done
lscpu | grep -E "Model name|^CPU\(s\)" | tr -s ' '
echo "vector path: DOTNET_EnableAVX512=${DOTNET_EnableAVX512:-default} DOTNET_EnableAVX=${DOTNET_EnableAVX:-default}"

run() { # label, args…
  local label=$1; shift
  for b in "${builds[@]}"; do
    local rev; rev=$(git -C "$b" rev-parse --short HEAD)
    local out; out=$( { /usr/bin/time -v dotnet "$b/MiniGpt.Train/bin/Release/net10.0/MiniGpt.Train.dll" bench "$@" --json; } 2>&1 )
    local rss; rss=$(grep "Maximum resident" <<<"$out" | awk '{print $NF}')
    local line; line=$(grep '^{' <<<"$out" || grep -v -E "^\s|Command|Exit status" <<<"$out" | head -1)
    echo "$rev | $label | rss_kb $rss | $line"
  done
}

WB="--n-layers 2 --n-heads 8 --attn-only=false --d-vocab 65"
for threads in 2 1; do
  for t in 64 128 256 512 1024 2048; do
    steps=20; [ "$t" -ge 512 ] && steps=6
    run "n_ctx $t, d_model 256, $threads threads" $WB --d-model 256 --d-mlp 1024 --n-ctx "$t" --batch-size 16 --threads "$threads" --steps $steps
  done
  for d in 64 128 256 512 768; do
    run "d_model $d, n_ctx 256, $threads threads" --n-layers 2 --d-model "$d" --n-heads $((d / 32)) --attn-only=false --n-ctx 256 --batch-size 16 --d-vocab 65 --threads "$threads"
  done
done
run "GPT-2 124M, B 4, T 64, 2 threads" --n-layers 12 --d-model 768 --n-heads 12 --attn-only=false --d-mlp 3072 --n-ctx 64 --batch-size 4 --d-vocab 50257 --threads 2 --steps 10
