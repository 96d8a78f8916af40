#!/usr/bin/env bash
# npusim sweep, local backend: a 240-point sweep with a progress line; a kill -9 in the middle
# and --resume give the same results.csv as an uninterrupted run; failing points are recorded
# and the sweep goes on; malformed sweeps are refused before any point runs.
# Usage: sweep_test.sh NPUSIM_BINARY SOURCE_DIR
set -euo pipefail
npusim=$1
source_dir=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
sweep="$source_dir/configs/sweeps/policies-vs-load.yaml"

# 0. --dry-run expands and checks without running or writing anything.
"$npusim" sweep "$sweep" --dry-run > "$work/dry.txt"
grep -q "^sweep policies-vs-load: 240 points over scheduler.policy, devices\[0\].arrival.rate_hz, simulation.seed" "$work/dry.txt" || fail "dry run: $(head -2 "$work/dry.txt")"
grep -q "^  point 1: fcfs, 10, 2$" "$work/dry.txt" || fail "dry run point 1: $(cat "$work/dry.txt")"

# 1. Uninterrupted, on a terminal (script gives it one): the progress line is drawn.
script -qec "'$npusim' sweep '$sweep' --out '$work/whole' --jobs 2" /dev/null > "$work/tty.txt"
tr '\r' '\n' < "$work/tty.txt" | grep -q "sweep: 240/240 done, 0 failed" || fail "no progress line: $(tail -c 300 "$work/tty.txt")"
[[ $(wc -l < "$work/whole/results.csv") -eq 241 ]] || fail "results.csv should have 240 rows and a header"
[[ $(grep -c ',ok,' "$work/whole/results.csv") -eq 240 ]] || fail "not every point succeeded"
# Every point has the same NPU, network and max_batch: they share one table file.
tables=$(find "$work/whole/table-cache" -type f)
[[ $(grep -c '\.table$' <<< "$tables") -eq 1 && $(wc -l <<< "$tables") -eq 1 ]] || fail "table cache: $tables"

# 2. Killed with SIGKILL (the driver and its points) part-way, then resumed.
setsid "$npusim" sweep "$sweep" --out "$work/killed" --jobs 2 >/dev/null 2>&1 &
leader=$!
for _ in $(seq 200); do
  done_points=$( (find "$work/killed/points" -name metrics.csv 2>/dev/null || true) | wc -l)
  (( done_points >= 30 )) && break
  sleep 0.05
done
kill -9 -- "-$leader" 2>/dev/null || true
wait "$leader" 2>/dev/null || true
[[ ! -f "$work/killed/results.csv" ]] || fail "the killed sweep got as far as results.csv; kill it earlier"
set +e
"$npusim" sweep "$sweep" --out "$work/killed" >/dev/null 2>"$work/again.err"
status=$?
set -e
[[ $status -eq 2 ]] && grep -q "already holds a sweep: add --resume" "$work/again.err" || fail "rerun without --resume: $status $(cat "$work/again.err")"
"$npusim" sweep "$sweep" --out "$work/killed" --resume --jobs 2 > "$work/resume.txt"
grep -q "finished before this run" "$work/resume.txt" || fail "resume reused nothing: $(cat "$work/resume.txt")"
cmp "$work/whole/results.csv" "$work/killed/results.csv" || fail "the resumed results.csv differs from the uninterrupted one"

# 3. A bad combination fails its points; the rest runs; exit status 3.
cat > "$work/mixed.yaml" <<YAML
base: $source_dir/configs/scenarios/resnet50-8cams.yaml
set: {simulation.samples: 200}
grid:
  npu.pe_count: [32, 40]
  npu.batching.stack_factors: [[1, 2, 4], [1, 16]]
YAML
set +e
"$npusim" sweep "$work/mixed.yaml" --out "$work/mixed" > "$work/mixed.txt" 2>&1
status=$?
set -e
[[ $status -eq 3 ]] || fail "a sweep with a failed point exited $status: $(cat "$work/mixed.txt")"
grep -q "4 points, 3 ok, 1 failed" "$work/mixed.txt" || fail "$(cat "$work/mixed.txt")"
grep -q "  failed: point 3: .*npu.batching.stack_factors" "$work/mixed.txt" || fail "the failure is not listed: $(cat "$work/mixed.txt")"
[[ -f "$work/mixed/points/000000/scenario.yaml" ]] || fail "a point does not keep its resolved scenario"
grep -q '^3,failed,40,"\[1, 16\]",.*npu.batching.stack_factors' "$work/mixed/results.csv" || fail "failed row: $(cat "$work/mixed/results.csv")"

# 4. Malformed sweeps: one line, exit 2, nothing written.
expect_refusal() {  # name, sweep text, expected text
  printf '%s\n' "$2" > "$work/$1.yaml"
  set +e
  # Three jobs check the plan on three threads on any machine: the error must be the first in
  # axis order all the same.
  "$npusim" sweep "$work/$1.yaml" --out "$work/$1" --jobs 3 >"$work/$1.out" 2>"$work/$1.err"
  local status=$?
  set -e
  [[ $status -eq 2 && $(wc -l < "$work/$1.err") -eq 1 && ! -s "$work/$1.out" ]] || fail "$1: status $status, $(cat "$work/$1.err")"
  grep -qF "$3" "$work/$1.err" || fail "$1: expected '$3' in $(cat "$work/$1.err")"
  [[ ! -e "$work/$1" ]] || fail "$1: output written"
}
base="base: $source_dir/configs/scenarios/resnet50-8cams.yaml"
expect_refusal unknown-path "$base
grid: {scheduler.polcy: [fcfs]}" "unknown-path.yaml:2: scheduler.polcy = fcfs: "
expect_refusal empty-axis "$base
grid: {scheduler.policy: []}" "grid.scheduler.policy = []: allowed a non-empty list of values"
expect_refusal wrong-type "$base
grid: {simulation.samples: [100, lots]}" "simulation.samples = lots"
# Axis values are checked on every core; the first bad one in axis order is the one named.
expect_refusal first-error "$base
grid: {simulation.samples: [100, 200, lots], scheduler.policy: [fifo, edf]}" "simulation.samples = lots"
expect_refusal zip-lengths "$base
zip: [{npu.pe_count: [32, 64], npu.pe_width: [32]}]" "zip[0].npu.pe_width = 1 values: allowed 2 values"
expect_refusal unknown-key "$base
grids: {}" "grids is not a known key: allowed keys are name, base, set, grid, zip, seeds"
set +e
err=$(PATH=/nonexistent "$npusim" sweep "$sweep" --out "$work/slurmless" --backend slurm 2>&1 >/dev/null)
status=$?
set -e
[[ $status -eq 2 && "$err" == *"sbatch and squeue are not on PATH"*"--backend local"* ]] || fail "missing Slurm: $status $err"
echo "sweep: 240 points with progress and one shared table, resume after kill -9 identical, failures recorded, bad sweeps refused"
