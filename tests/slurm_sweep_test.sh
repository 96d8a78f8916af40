#!/usr/bin/env bash
# npusim sweep --backend slurm on a real one-node Slurm cluster started here: the results.csv
# equals the local backend's (run one point at a time), byte for byte; a task that dies shows
# up as failed points.
# Usage: slurm_sweep_test.sh NPUSIM_BINARY SOURCE_DIR
set -euo pipefail
npusim=$1
source_dir=$2
work=$(mktemp -d)
cluster="$work/cluster"
cleanup() {
  "$source_dir/scripts/local-slurm-cluster.sh" stop "$cluster" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
# Starting slurmctld, slurmd and munged needs root (CI runs as root, as scripts/setup.sh does).
if [[ $(id -u) -ne 0 ]]; then echo "skipped: a local Slurm cluster needs root"; exit 77; fi

"$source_dir/scripts/local-slurm-cluster.sh" start "$cluster" >/dev/null
export SLURM_CONF="$cluster/slurm.conf"

cat > "$work/sweep.yaml" <<YAML
name: slurm-check
base: $source_dir/configs/scenarios/resnet50-bursty.yaml
set: {simulation.samples: 500}
grid:
  scheduler.policy: [fcfs, edf, exit_aware]
  devices[0].arrival.rate_hz: [8, 16]
seeds: 2
YAML
"$npusim" sweep "$work/sweep.yaml" --out "$work/local" --jobs 1 >/dev/null
"$npusim" sweep "$work/sweep.yaml" --out "$work/slurm" --backend slurm --points-per-task 3 \
  --slurm-option=--partition=local --slurm-option=--time=10 > "$work/slurm.txt"
grep -q "12 points, 12 ok, 0 failed" "$work/slurm.txt" || fail "$(cat "$work/slurm.txt")"
cmp "$work/local/results.csv" "$work/slurm/results.csv" || fail "Slurm's results.csv differs from the local one"
ls "$work/slurm/slurm/"*_*.log >/dev/null || fail "no task logs"
# sbatch options reach sbatch: a partition that does not exist is refused, in one line.
set +e
err=$("$npusim" sweep "$work/sweep.yaml" --out "$work/nopart" --backend slurm --slurm-option=--partition=nope 2>&1 >/dev/null)
status=$?
set -e
[[ $status -eq 2 && "$err" == "npusim: error: sbatch failed: "*"partition"* ]] || fail "a bad partition: $status $err"

# A task that dies: an sbatch wrapper makes array task 1 exit before running anything. Its
# points (6..11) must come back as failed, with the reason, and the others as they were.
mkdir -p "$work/bin"
cat > "$work/bin/sbatch" <<'WRAP'
#!/bin/sh
for script; do :; done
sed -i '2i [ "$SLURM_ARRAY_TASK_ID" = 1 ] && exit 1' "$script"
exec /usr/bin/sbatch "$@"
WRAP
chmod +x "$work/bin/sbatch"
set +e
PATH="$work/bin:$PATH" "$npusim" sweep "$work/sweep.yaml" --out "$work/dying" --backend slurm --points-per-task 6 \
  > "$work/dying.txt" 2>&1
status=$?
set -e
[[ $status -eq 3 ]] || fail "a sweep with a dead task exited $status: $(cat "$work/dying.txt")"
grep -q "12 points, 6 ok, 6 failed" "$work/dying.txt" || fail "$(cat "$work/dying.txt")"
for point in 6 7 8 9 10 11; do
  grep -q "^$point,failed,.*Slurm task 1 of job [0-9]* ended without a result" "$work/dying/results.csv" || fail "point $point"
done
diff <(head -7 "$work/local/results.csv") <(head -7 "$work/dying/results.csv") || fail "task 0's points differ"
echo "slurm: 12-point sweep on a one-node cluster matches the local backend; dead tasks become failed points"
