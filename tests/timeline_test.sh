#!/usr/bin/env bash
# npusim run --trace / --vcd: the timeline is valid Chrome trace-event JSON, stays inside its
# window, has one NPU slice at a time with batch and mapping, preemptions, exits and the FIFO
# counter and the NPU power counter; the VCD declares the FBE registers and the FIFO length.
# Usage: timeline_test.sh NPUSIM_BINARY SOURCE_DIR
set -euo pipefail
npusim=$1
source_dir=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$npusim" run "$source_dir/configs/scenarios/resnet50-bursty.yaml" --set simulation.samples=3000 \
  --trace "$work/t.json" --trace-window 2000:4000 --vcd "$work/t.vcd" >/dev/null
/usr/bin/python3 - "$work/t.json" <<'PY'
import json, sys
trace = json.load(open(sys.argv[1]))
events = trace["traceEvents"]
def fail(why):
    sys.exit(f"FAIL: {why}")
timed = [e for e in events if e["ph"] != "M"]
if not timed: fail("no events")
if any(not (2000e3 <= e["ts"] < 4000e3) for e in timed): fail("an event outside the 2000..4000 ms window")
layers = sorted((e for e in timed if e["ph"] == "X" and e.get("cat") == "layer"), key=lambda e: e["ts"])
if len(layers) < 100: fail(f"only {len(layers)} layer slices")
for a, b in zip(layers, layers[1:]):
    if a["ts"] + a["dur"] > b["ts"] + 1e-6: fail(f"NPU slices overlap at {b['ts']} us")
if any(not {"batch", "mapping", "model", "cycles"} <= e["args"].keys() for e in layers): fail("a slice lacks its args")
names = {e["name"] for e in timed}
for needed in ("preempt", "FIFO length"):
    if needed not in names: fail(f"no {needed} event")
if not any(e.get("cat") == "exit" for e in timed): fail("no exit events")
# The power counter: leakage (40 mW by default) between layers, more while a layer runs.
power = [e["args"]["watts"] for e in timed if e["name"] == "NPU power"]
if len(power) < len(layers): fail(f"{len(power)} power samples for {len(layers)} layers")
if min(power) < 0.04 - 1e-12: fail(f"power {min(power)} W below the leakage")
if max(power) <= 0.04: fail("no layer raises the power above the leakage")
print(f"timeline: {len(timed)} events, {len(layers)} layer slices")
PY
for var in fbe.B_act fbe.l fbe.B_old fbe.l_old length; do
  grep -q "\$var .* ${var#fbe.} " "$work/t.vcd" || { echo "FAIL: the VCD does not declare $var" >&2; exit 1; }
done
(( $(stat -c %s "$work/t.vcd") < 2000000 )) || { echo "FAIL: the VCD is not bounded by its window" >&2; exit 1; }
set +e
err=$("$npusim" run default --trace "$work/x.json" --trace-window 5:1 2>&1 >/dev/null)
status=$?
set -e
[[ $status -eq 2 && "$err" == *"--trace-window 5:1: allowed START_MS:END_MS"* ]] || { echo "FAIL: bad window: $err" >&2; exit 1; }
echo "timeline and VCD checked"
