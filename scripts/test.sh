#!/usr/bin/env bash
# Set up, build, and run the whole test suite (docs/testing.md):
#  1. the release preset: GoogleTest through ctest, the script tests, a benchmark smoke run and
#     the paper reproduction in quick mode;
#  2. when clang-16 and libFuzzer are installed (scripts/setup.sh --sanitizers installs them), the asan
#     preset: the parser, config, CLI, serving and output tests under AddressSanitizer and
#     UBSan, then each libFuzzer harness for NPUSIM_FUZZ_SECONDS (default 15) from its corpus.
# NPUSIM_MEMORY_CASES=20000 scripts/test.sh runs a larger memory-reference sweep.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --sanitizers
ctest --preset release

if ! command -v clang++-16 >/dev/null || ! compgen -G "/usr/lib/llvm-16/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a" >/dev/null; then
  echo "test.sh: clang-16 or its libFuzzer is missing: the sanitizer and fuzzer runs are skipped"
  exit 0
fi
start=$SECONDS
cmake --preset asan >/dev/null
# Only what the asan test preset runs: the unit tests of the parsers, configs, CLI, serving,
# arrivals, networks and outputs, the CLI itself, and the fuzzers. The NPU model's own tests
# and the benchmarks stay with the release build.
cmake --build --preset asan -j "$(nproc)" --target sim_tests traces_tests workloads_tests output_tests hostile_inputs_tests npusim \
  test_analysis_only_plugin test_hostile_plugin test_throwing_registration_plugin npusim_fuzzers
ctest --preset asan
built=$SECONDS

seconds=${NPUSIM_FUZZ_SECONDS:-15}
logs=build/asan/fuzz
rm -rf "$logs" && mkdir -p "$logs"
fuzz_one() {
  local name=$1
  # New inputs go to a scratch corpus; the committed seeds are only read (ONNX's are protobuf
  # text, encoded into the build tree at configure time).
  local seeds=tests/fuzz/corpus/$name
  [[ -d build/asan/tests/fuzz/corpus/$name ]] && seeds=build/asan/tests/fuzz/corpus/$name
  mkdir -p "$logs/$name.corpus"
  ASAN_OPTIONS=detect_leaks=0 SYSTEMC_DISABLE_COPYRIGHT_MESSAGE=1 \
    "build/asan/tests/fuzz/fuzz_$name" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -seed=1 -print_final_stats=1 -artifact_prefix="$logs/$name-" "$logs/$name.corpus" "$seeds" \
    > "$logs/$name.log" 2>&1
}
names=(scenario npu_yaml network_yaml scalesim_cfg topology_csv trace_csv sweep)
# The ONNX harness exists when ONNX import is built (setup.sh installs its libraries).
[[ -x build/asan/tests/fuzz/fuzz_onnx ]] && names+=(onnx)
declare -A running=()
failed=()
# Two at a time: the machine has two cores.
for name in "${names[@]}" ""; do
  if [[ -n $name ]]; then
    fuzz_one "$name" &
    running[$!]=$name
  fi
  while ((${#running[@]} >= 2)) || { [[ -z $name ]] && ((${#running[@]} > 0)); }; do
    pid=""
    status=0
    wait -n -p pid "${!running[@]}" || status=$?
    ((status == 0)) || failed+=("${running[$pid]}")
    unset "running[$pid]"
  done
done
for name in "${names[@]}"; do
  # libFuzzer's last status line: "#RUNS DONE cov: N ft: N corp: N/Nb ...".
  done_line=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$logs/$name.log" | tail -1 || true)
  runs=$(grep -oE 'stat::number_of_executed_units: [0-9]+' "$logs/$name.log" | grep -oE '[0-9]+$' || echo "?")
  cov=$(grep -oE 'cov: [0-9]+' <<< "$done_line" | grep -oE '[0-9]+' || echo "?")
  ft=$(grep -oE 'ft: [0-9]+' <<< "$done_line" | grep -oE '[0-9]+' || echo "?")
  echo "fuzz $name: $runs executions in ${seconds} s, cov: $cov ft: $ft (log $logs/$name.log)"
done
echo "test.sh: asan build and tests $((built - start)) s, fuzzers $((SECONDS - built)) s"
if ((${#failed[@]})); then
  for name in "${failed[@]}"; do
    echo "test.sh: fuzzer $name found a failure:" >&2
    grep -E 'ERROR|SUMMARY|runtime error|uncaught|deadly|timeout|Test unit written' "$logs/$name.log" | head -5 >&2
  done
  exit 1
fi
