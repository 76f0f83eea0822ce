#!/usr/bin/env bash
# A refactor must not move the numbers or the speed. This builds BASE (a commit, e.g. the one a branch started
# from) beside the working tree and, in one run:
#   1. trains the default model (`train`, the induction task) with both builds and compares the logged losses;
#   2. runs `circuits` with both builds on BASE's checkpoint and compares every number of circuits.json
#      that both write (keys only one side writes are listed, not compared);
#   3. times `bench` on WA, WB and WC, alternating the two builds, ROUNDS rounds (median ms per step, and the
#      ratio of the medians of the rounds);
#   4. runs BenchmarkDotNet's TrainStepBench on this tree (median and bytes allocated per step).
# Usage: docs/before-after.sh BASE [ROUNDS]. Run it alone on the machine: the timings are of 2 threads.
set -euo pipefail
cd "$(dirname "$0")/.."
base=${1:?usage: docs/before-after.sh BASE [ROUNDS]: BASE is the commit to compare with, e.g. b72fb3f}
rounds=${2:-3}
work=$(mktemp -d /tmp/minigpt-before-after.XXXXXX)
trap 'git worktree remove --force "$work/before" >/dev/null 2>&1 || true' EXIT
git worktree add --detach "$work/before" "$base" >/dev/null
echo "== base $(git -C "$work/before" log -1 --format='%h %s') | this tree $(git log -1 --format='%h') (+ uncommitted: $(git status --porcelain | wc -l) files)"
echo "== CPU: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; vector path: $(grep -o 'avx512f' /proc/cpuinfo | head -1 || echo 'no avx512f')"
(cd "$work/before" && dotnet build -c Release MiniGpt.Train >/dev/null)
dotnet build -c Release MiniGpt.Train >/dev/null
BEFORE="dotnet $work/before/MiniGpt.Train/bin/Release/net10.0/MiniGpt.Train.dll"
AFTER="dotnet MiniGpt.Train/bin/Release/net10.0/MiniGpt.Train.dll"

echo "== 1. train (defaults), logged losses"
$BEFORE train --out "$work/b/model.safetensors" --threads 2 | grep '^step' | sed 's/ | lr.*//' > "$work/train-before.txt"
$AFTER train --out "$work/a/model.safetensors" --threads 2 | grep '^step' | sed 's/ | lr.*//' > "$work/train-after.txt"
if diff -q "$work/train-before.txt" "$work/train-after.txt" >/dev/null; then
  echo "identical: $(wc -l < "$work/train-after.txt") step lines (step, loss, val, repeat); last: $(tail -1 "$work/train-after.txt")"
else
  echo "DIFFERENT:"; diff "$work/train-before.txt" "$work/train-after.txt" || true
fi
cmp -s "$work/b/model.safetensors" "$work/a/model.safetensors" && echo "the two checkpoints are byte-identical" || echo "the two checkpoints differ"

echo "== 2. circuits on the default model (base's checkpoint)"
$BEFORE circuits --checkpoint "$work/b/model.safetensors" --out "$work/cb" --threads 2 > "$work/circuits-before.txt"
$AFTER circuits --checkpoint "$work/b/model.safetensors" --out "$work/ca" --threads 2 > "$work/circuits-after.txt"
python3 - "$work/cb/circuits.json" "$work/ca/circuits.json" <<'PY'
import json, sys
def leaves(node, path=""):
    if isinstance(node, dict):
        for k, v in node.items(): yield from leaves(v, f"{path}.{k}" if path else k)
    elif isinstance(node, list):
        for i, v in enumerate(node): yield from leaves(v, f"{path}[{i}]")
    else:
        yield path, node
skip = ("seconds", "checkpoint", "training_log.path")
b = {p: v for p, v in leaves(json.load(open(sys.argv[1]))) if not p.endswith(skip)}
a = {p: v for p, v in leaves(json.load(open(sys.argv[2]))) if not p.endswith(skip)}
common = sorted(set(a) & set(b))
nums = [p for p in common if isinstance(b[p], (int, float)) and not isinstance(b[p], bool)]
diff = [p for p in common if a[p] != b[p]]
print(f"{len(common)} values in both ({len(nums)} numbers): {len(diff)} differ")
for p in diff[:20]: print(f"  {p}: {b[p]!r} -> {a[p]!r}")
only_b, only_a = sorted(set(b) - set(a)), sorted(set(a) - set(b))
if only_b: print(f"only before ({len(only_b)}): {', '.join(only_b[:12])}{' …' if len(only_b) > 12 else ''}")
if only_a: print(f"only after ({len(only_a)}): {', '.join(only_a[:12])}{' …' if len(only_a) > 12 else ''}")
PY
echo "-- table before"; sed -n '/^head /,/^clean loss/p' "$work/circuits-before.txt"
echo "-- table after"; sed -n '/^head /,/^clean loss/p' "$work/circuits-after.txt"

echo "== 3. bench, alternating builds, $rounds rounds (median ms per step)"
declare -A SHAPE=(
  [WA]="--n-layers 2 --d-model 256 --n-heads 8 --attn-only --n-ctx 256 --batch-size 16 --d-vocab 65"
  [WB]="--n-layers 2 --d-model 256 --n-heads 8 --attn-only=false --d-mlp 1024 --n-ctx 256 --batch-size 16 --d-vocab 65"
  [WC]="--n-layers 4 --d-model 128 --n-heads 4 --attn-only=false --d-mlp 512 --n-ctx 64 --batch-size 12 --d-vocab 65")
median() { python3 -c 'import json,sys; print(json.loads(sys.stdin.read())["median_ms"])'; }
for w in WA WB WC; do
  b=(); a=()
  for r in $(seq "$rounds"); do
    b+=("$($BEFORE bench ${SHAPE[$w]} --threads 2 --json | median)")
    a+=("$($AFTER bench ${SHAPE[$w]} --threads 2 --json | median)")
  done
  python3 - "$w" "${b[*]}" "${a[*]}" <<'PY'
import statistics, sys
w, b, a = sys.argv[1], [float(x) for x in sys.argv[2].split()], [float(x) for x in sys.argv[3].split()]
mb, ma = statistics.median(b), statistics.median(a)
print(f"{w}: before {mb:.2f} ms ({', '.join(f'{x:.1f}' for x in b)}), after {ma:.2f} ms ({', '.join(f'{x:.1f}' for x in a)}), after/before {ma / mb:.3f}")
PY
done

echo "== 4. BenchmarkDotNet TrainStepBench (this tree)"
dotnet run -c Release --project MiniGpt.Bench -- --filter '*TrainStepBench*' 2>&1 | grep -E '^\| *(Method|Step) ' || true
rm -rf "$work"
