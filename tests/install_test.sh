#!/usr/bin/env bash
# The installed package works for out-of-tree code: install the build, build
# examples/out_of_tree against it, and check its answer against the installed CLI.
# Usage: install_test.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build_dir=$1
source_dir=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cmake --install "$build_dir" --prefix "$work/prefix" >/dev/null
cmake -S "$source_dir/examples/out_of_tree" -B "$work/build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
      -DCMAKE_PREFIX_PATH="$work/prefix" >/dev/null
cmake --build "$work/build" >/dev/null
got=$("$work/build/cost_one_layer")
cycles=$("$work/prefix/bin/npusim" cost --gemm 1024,27,16 --batch 4 --json | sed 's/.*"cycles": \([0-9]*\).*/\1/')
if [[ "$got" != "cycles $cycles" ]]; then
  echo "out-of-tree program says '$got', the installed CLI says $cycles cycles" >&2
  exit 1
fi
echo "out-of-tree build against the installed package: $got"
