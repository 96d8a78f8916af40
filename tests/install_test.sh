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

# A policy plugin built against the installed package loads into the installed CLI from YAML.
cmake -S "$source_dir/examples/policy_plugin" -B "$work/plugin" -G Ninja -DCMAKE_BUILD_TYPE=Release \
      -DCMAKE_PREFIX_PATH="$work/prefix" >/dev/null
cmake --build "$work/plugin" >/dev/null
scenario="$source_dir/examples/policy_plugin/scenario.yaml"
plugin="scheduler.plugins=[$work/plugin/greedy_batch.so]"
"$work/prefix/bin/npusim" run "$scenario" --set "$plugin" --out "$work/run" >"$work/run.txt"
grep -q '"policy": "greedy_batch"' "$work/run/summary.json" || { echo "plugin policy did not run" >&2; exit 1; }
grep -q '"completed": 2000' "$work/run/summary.json" || { echo "plugin run did not complete 2000 samples" >&2; exit 1; }
# Its declared parameters are checked like a built-in policy's.
set +e
err=$("$work/prefix/bin/npusim" run "$scenario" --set "$plugin" --set scheduler.greedy_batch.batch_limit=0 2>&1 >/dev/null)
status=$?
set -e
if [[ $status -ne 2 || "$err" != *"scheduler.greedy_batch.batch_limit = 0: allowed an integer in [1, 1024]"* ]]; then
  echo "a bad plugin parameter gave status $status: $err" >&2
  exit 1
fi
# describe lists the plugin's policy with its declared parameter.
"$work/prefix/bin/npusim" describe policies --plugin "$work/plugin/greedy_batch.so" > "$work/describe.txt"
grep -q "^greedy_batch .*(from $work/plugin/greedy_batch.so)" "$work/describe.txt" || { echo "describe misses the plugin" >&2; exit 1; }
grep -q "scheduler.greedy_batch.batch_limit (integer, default 8" "$work/describe.txt" || { echo "describe misses its parameter" >&2; exit 1; }
echo "policy plugin: $(head -1 "$work/run.txt")"
