#!/usr/bin/env bash
# scripts/plot.py draws every sweep figure as PNG and SVG from a real sweep, draws CDFs of
# single runs, and refuses input that is not npusim's. Usage: plot_sweep_test.sh NPUSIM SOURCE_DIR
set -euo pipefail
npusim=$1
source_dir=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
cat > "$work/sweep.yaml" <<YAML
base: $source_dir/configs/scenarios/resnet50-bursty.yaml
set: {simulation.samples: 300}
grid:
  scheduler.policy: [fcfs, exit_aware]
  devices[0].arrival.rate_hz: [8, 16]
seeds: 2
YAML
"$npusim" sweep "$work/sweep.yaml" --out "$work/sweep" >/dev/null
/usr/bin/python3 "$source_dir/scripts/plot.py" "$work/sweep/results.csv" --x 'devices[0].arrival.rate_hz' --out "$work/plots" >/dev/null
for figure in latency-vs-load slo-vs-load utilisation-vs-load energy-vs-load latency-cdf; do
  [[ "$(head -c 8 "$work/plots/$figure.png" | od -An -tx1 | tr -d ' \n')" == "89504e470d0a1a0a" ]] || fail "$figure.png is not a PNG"
  grep -q "<svg" "$work/plots/$figure.svg" || fail "$figure.svg is not an SVG"
done
/usr/bin/python3 "$source_dir/scripts/plot.py" --cdf "$work/sweep/points/000000/summary.json" --out "$work/single" >/dev/null
[[ -s "$work/single/latency-cdf.png" ]] || fail "no CDF from a single summary"
set +e
err=$(/usr/bin/python3 "$source_dir/scripts/plot.py" "$work/sweep/results.csv" --x rate --out "$work/bad" 2>&1)
status=$?
set -e
[[ $status -ne 0 && "$err" == *"no column 'rate'"* ]] || fail "an unknown column was not refused: $err"
echo "plot.py: five sweep figures and a single-run CDF, bad column refused"
