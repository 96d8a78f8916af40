#!/usr/bin/env bash
# Set up, build, and run the whole test suite (GoogleTest through ctest, plus a benchmark
# smoke run). NPUSIM_MEMORY_CASES=20000 scripts/test.sh runs a larger memory-reference sweep.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
ctest --preset release
