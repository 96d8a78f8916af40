#!/usr/bin/env bash
# Set up, build, and run the default scenario (configs/scenarios/default.yaml, also compiled
# into the binary): five smart-home devices share the default NPU under the exit-aware
# scheduler. Before it: the zoo, the scenario's arrival stream, a network and its FBE table.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
bin=build/release/sim/npusim
mkdir -p out
echo
echo "== the model zoo =="
"$bin" describe models
echo
echo "== the default scenario's arrival stream: first 100,000 samples =="
"$bin" trace default --samples 100000 --out out/default-trace.csv
head -n 6 out/default-trace.csv
echo
echo "== resnet56 as lowered: exits and totals =="
"$bin" model resnet56 | tail -n 9
echo
echo "== the FBE control block for resnet56 on the default NPU (batch 1..8), last rows =="
"$bin" table --model resnet56 --max-batch 8 | tail -n 4
echo
echo "== the default scenario served by the exit-aware scheduler (out/default/summary.json) =="
"$bin" run default --out out/default
