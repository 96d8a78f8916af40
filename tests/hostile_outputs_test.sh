#!/usr/bin/env bash
# Hostile outputs and sweeps (issue 15): each case is one command that must be refused with
# exit status 2 and exactly one line on stderr within 20 s, or, for valid input with odd
# names, must write CSV and JSON that parse. Device nodes are stood in for by FIFOs and
# directories in a private folder; /dev/full is used only as a full standard output.
# Usage: hostile_outputs_test.sh NPUSIM_BINARY SOURCE_DIR
set -euo pipefail
npusim=$1
source_dir=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export SYSTEMC_DISABLE_COPYRIGHT_MESSAGE=1
failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }
quick=(--set simulation.duration_s=1)

# refused NAME CHECK_REGEX -- ARGS...: exit 2, one stderr line matching CHECK_REGEX, <= 20 s.
refused() {
  local name=$1 pattern=$2
  shift 3
  local start=$SECONDS status=0
  timeout 30 "$npusim" "$@" > "$work/$name.out" 2> "$work/$name.err" || status=$?
  local took=$((SECONDS - start)) lines
  lines=$(wc -l < "$work/$name.err")
  if [[ $status -ne 2 ]]; then fail "$name: exit $status, wanted 2: $(head -c 300 "$work/$name.err")"; return; fi
  if [[ $lines -ne 1 ]]; then fail "$name: $lines lines on stderr: $(head -c 300 "$work/$name.err")"; return; fi
  if ! grep -Eq "$pattern" "$work/$name.err"; then fail "$name: the line does not match /$pattern/: $(cat "$work/$name.err")"; return; fi
  if ((took > 20)); then fail "$name: took $took s"; return; fi
  echo "ok   $name: $(cat "$work/$name.err")"
}

# ---- outputs that are not regular files ----
mkfifo "$work/fifo" "$work/fifo.vcd" "$work/fifo.csv"
mkdir "$work/a-directory"
refused trace-into-fifo "fifo.*FIFO.*regular file" -- run default "${quick[@]}" --trace "$work/fifo"
[[ -p "$work/fifo" ]] || fail "the FIFO given to --trace is no longer a FIFO"
refused trace-into-directory "a-directory.*directory.*regular file" -- run default "${quick[@]}" --trace "$work/a-directory"
refused vcd-into-fifo "fifo.vcd.*FIFO" -- run default "${quick[@]}" --vcd "$work/fifo.vcd"
refused trace-command-into-fifo "fifo.csv.*FIFO" -- trace default --samples 5 --out "$work/fifo.csv"
[[ -p "$work/fifo.csv" ]] || fail "the FIFO given to trace --out is no longer a FIFO"
refused trace-command-into-directory "a-directory.*directory" -- trace default --samples 5 --out "$work/a-directory"
mkfifo "$work/partial-fifo.json.partial"
refused trace-partial-is-fifo "partial-fifo.json.partial.*FIFO" -- run default "${quick[@]}" --trace "$work/partial-fifo.json"

mkdir -p "$work/out-fifo" "$work/out-dir/metrics.csv"
mkfifo "$work/out-fifo/summary.json"
refused out-summary-is-fifo "summary.json.*FIFO" -- run default "${quick[@]}" --out "$work/out-fifo"
[[ -p "$work/out-fifo/summary.json" ]] || fail "--out removed or replaced a FIFO named summary.json"
refused out-metrics-is-directory "metrics.csv.*directory" -- run default "${quick[@]}" --out "$work/out-dir"
[[ -d "$work/out-dir/metrics.csv" ]] || fail "--out removed a directory named metrics.csv"
refused out-is-fifo "exists and is not a directory" -- run default "${quick[@]}" --out "$work/fifo"

# ---- standard output that cannot be written ----
stdout_full() {
  local name=$1
  shift
  local status=0
  timeout 30 "$npusim" "$@" > /dev/full 2> "$work/$name.err" || status=$?
  if [[ $status -ne 2 || $(wc -l < "$work/$name.err") -ne 1 ]] || ! grep -q "cannot write standard output" "$work/$name.err"; then
    fail "$name > /dev/full: exit $status: $(head -c 300 "$work/$name.err")"
  else
    echo "ok   $name > /dev/full: $(cat "$work/$name.err")"
  fi
}
stdout_full validate validate default
stdout_full describe describe models
stdout_full model model resnet56
stdout_full run run default "${quick[@]}"
stdout_full sweep-dry-run sweep "$source_dir/configs/sweeps/policies-vs-load.yaml" --dry-run

# ---- odd names: refused at load, or written as valid CSV and JSON ----
odd_name() {
  local name=$1 value=$2
  local status=0
  rm -rf "$work/odd"
  timeout 30 "$npusim" run default "${quick[@]}" --set "devices[0].name=$value" --out "$work/odd" --samples-csv \
    > /dev/null 2> "$work/odd.err" || status=$?
  if [[ $status -eq 2 && $(wc -l < "$work/odd.err") -eq 1 ]]; then
    echo "ok   name $name: refused: $(cat "$work/odd.err")"
    return
  fi
  if [[ $status -ne 0 ]]; then fail "name $name: exit $status: $(head -c 300 "$work/odd.err")"; return; fi
  if /usr/bin/python3 - "$work/odd" <<'PY'
import csv, json, sys
d = sys.argv[1]
with open(f"{d}/summary.json", "rb") as f:
    json.loads(f.read().decode("utf-8"))  # strict: invalid UTF-8 raises
with open(f"{d}/samples.csv", newline="", encoding="utf-8", errors="surrogateescape") as f:
    rows = list(csv.reader(f, strict=True))
widths = {len(r) for r in rows}
if widths != {10}:
    sys.exit(f"samples.csv rows of {sorted(widths)} fields")
PY
  then echo "ok   name $name: accepted, samples.csv and summary.json parse"
  else fail "name $name: accepted but an output is malformed"
  fi
}
odd_name comma '"a,b"'
odd_name quote "'say \"hi\"'"
odd_name newline '"two\nlines"'
odd_name control '"bell\a"'
odd_name not-utf8 "$(printf 'cam\xff\xfe')"

# ---- sweeps ----
cat > "$work/set.yaml" <<'YAML'
base: default
set:
  simulation.duration_s: 2
grid:
  scheduler.policy: [fcfs]
YAML
"$npusim" sweep "$work/set.yaml" --out "$work/set" --jobs 1 --set simulation.duration_s=1 > /dev/null 2>&1 || true
if grep -q "^ *duration_s: 1$" "$work/set/points/000000/scenario.yaml" 2>/dev/null; then
  echo "ok   sweep: --set on the command line wins over the file's set:"
else
  fail "sweep: the file's set: won over --set: $(grep -h "duration_s" "$work/set/points/000000/scenario.yaml" 2>&1 | head -3)"
fi

printf 'base: default\nseeds: [1, 1]\n' > "$work/dup-seeds.yaml"
refused duplicate-seeds "seeds.*1" -- sweep "$work/dup-seeds.yaml" --dry-run
printf 'base: default\ngrid:\n  scheduler.policy: [fcfs, edf, fcfs]\n' > "$work/dup-grid.yaml"
refused duplicate-grid-values "scheduler.policy.*fcfs" -- sweep "$work/dup-grid.yaml" --dry-run
/usr/bin/python3 - "$work/huge.yaml" <<'PY'
import sys
values = ", ".join(str(i) for i in range(1, 1002))
with open(sys.argv[1], "w") as f:
    f.write(f"base: default\ngrid:\n  simulation.seed: [{values}]\n  simulation.samples: [{values}]\n")
PY
refused too-many-points "grid.simulation.seed .*grid.simulation.samples.*1,?000,?000" -- sweep "$work/huge.yaml" --dry-run
printf 'base: default\nseeds: 100000\ngrid:\n  scheduler.policy: [fcfs, edf, prema, exit_aware, lazy_batching, static_batch, fcfs2, x, y, z, w]\n' \
  > "$work/huge-seeds.yaml"
refused too-many-points-seeds "seeds.*more than" -- sweep "$work/huge-seeds.yaml" --dry-run

cat > "$work/resume.yaml" <<'YAML'
base: default
set:
  simulation.duration_s: 1
grid:
  scheduler.policy: [fcfs, edf, exit_aware]
YAML
"$npusim" sweep "$work/resume.yaml" --out "$work/resume" --jobs 2 > "$work/resume1.txt" 2>&1 || fail "sweep: $(cat "$work/resume1.txt")"
: > "$work/resume/points/000001/metrics.csv"
head -c 20 "$work/resume/points/000002/summary.json" > "$work/cut" && mv "$work/cut" "$work/resume/points/000002/summary.json"
status=0
"$npusim" sweep "$work/resume.yaml" --out "$work/resume" --jobs 2 --resume > "$work/resume2.txt" 2>&1 || status=$?
if [[ $status -eq 0 ]] && grep -q "3 points, 3 ok, 0 failed (1 finished before this run, 2 re-run" "$work/resume2.txt" &&
   [[ $(grep -c ',ok,' "$work/resume/results.csv") -eq 3 ]]; then
  echo "ok   sweep --resume: $(cat "$work/resume2.txt")"
else
  fail "sweep --resume with damaged points: exit $status: $(cat "$work/resume2.txt") $(cat "$work/resume/results.csv" 2>&1 | cut -c1-80)"
fi
if awk -F, 'NR > 1 && $2 == "failed" && $NF == "" { bad = 1 } END { exit bad }' "$work/resume/results.csv"; then :; else
  fail "results.csv has a failed row with no reason"
fi

if ((failures > 0)); then
  echo "$failures case(s) failed" >&2
  exit 1
fi
echo "hostile outputs: every case refused with one line and exit 2, or written well-formed"
