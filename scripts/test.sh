#!/usr/bin/env bash
# Set up, build, and run the whole test suite (GoogleTest through ctest, plus a benchmark
# smoke run). NPUSIM_REFERENCE_CASES=100000 scripts/test.sh runs the large reference sweep.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
ctest --preset release
