#!/usr/bin/env bash
# Set up, build, and run the default scenario on the embedded default NPU.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
bin=build/release/sim/npusim
echo
echo "== one layer: ResNet-50 res2 3x3 conv (R=56*56, P=3*3*64, C=64), batch 8, best mapping =="
"$bin" cost --gemm 3136,576,64 --batch 8
echo
echo "== the FBE control-block table for ResNet-56 (CIFAR-100), batch 1..8 =="
"$bin" table --max-batch 8
