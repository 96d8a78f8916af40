#!/usr/bin/env bash
# Hostile inputs (issue 15): special files, times past the 64-bit picosecond range, counts that
# overflow, misbehaving plugins, and input the loaders must not accept silently. Every case must
# end with exit status 2 and exactly one line on stderr naming the problem, within 20 s.
# Usage: hostile_inputs_test.sh NPUSIM HOSTILE_PLUGIN THROWING_PLUGIN INPUTS_DIR
set -u
npusim=$1
hostile_plugin=$2
throwing_plugin=$3
inputs=$4
export SYSTEMC_DISABLE_COPYRIGHT_MESSAGE=1

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkfifo "$tmp/fifo"
ln -s /dev/zero "$tmp/zero_link"
ln -s /dev/zero "$tmp/zero.csv"
mkdir "$tmp/dir"
truncate -s 65M "$tmp/big.yaml"
printf 'Layer name,IFMAP Height,IFMAP Width,Filter Height,Filter Width,Channels,Num Filter,Strides,\nco\0nv1,32,32,3,3,3,16,1,\n' \
  >"$tmp/nul_name.csv"
scenario() {  # scenario FILE LINES...: a one-device scenario with the given extra lines
  local file=$1
  shift
  {
    printf 'devices:\n  - {name: cam, model: resnet56, arrival: {process: poisson, rate_hz: 10}, slo_ms: 25}\n'
    printf 'scheduler: {policy: fcfs}\nsimulation: {seed: 1, samples: 5}\n'
    printf '%s\n' "$@"
  } >"$tmp/$file"
}
scenario include_zero.yaml "include: /dev/zero"
scenario include_urandom.yaml "include: /dev/urandom"
scenario include_fifo.yaml "include: $tmp/fifo"
scenario include_link.yaml "include: $tmp/zero_link"
scenario include_dir.yaml "include: $tmp/dir"
sed 's|model: resnet56|model: /dev/zero|' "$tmp/include_zero.yaml" | grep -v include >"$tmp/model_zero.yaml"
sed 's|model: resnet56|model: '"$tmp"'/fifo|' "$tmp/include_zero.yaml" | grep -v include >"$tmp/model_fifo.yaml"
sed 's|{process: poisson, rate_hz: 10}|{process: replay, file: /dev/zero}|' "$tmp/include_zero.yaml" | grep -v include \
  >"$tmp/replay_zero.yaml"
sed 's|{process: poisson, rate_hz: 10}|{process: replay, file: '"$tmp"'/fifo}|' "$tmp/include_zero.yaml" |
  grep -v include >"$tmp/replay_fifo.yaml"
scenario plugin_fifo.yaml
printf 'devices:\n  - {name: cam, model: resnet56, arrival: {process: periodic, fps: 0.000001}, slo_ms: 25}\n' \
  >"$tmp/slow_duration.yaml"
printf 'scheduler: {policy: fcfs}\nsimulation: {seed: 1, duration_s: 10}\n' >>"$tmp/slow_duration.yaml"
plugin_run=("$inputs/plugin_policy.yaml" --set "scheduler.plugins=[$hostile_plugin]")

cases=0
failures=0
# refuses NEEDLE ARGS...: npusim ARGS must exit 2 within 20 s with one stderr line containing NEEDLE.
refuses() {
  local needle=$1
  shift
  cases=$((cases + 1))
  timeout -k 5 20 "$npusim" "$@" >"$tmp/out" 2>"$tmp/err" </dev/null
  local status=$?
  local lines
  lines=$(wc -l <"$tmp/err")
  local problem=""
  if [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then
    problem="did not finish within 20 s"
  elif [ "$status" -ne 2 ]; then
    problem="exit status $status, expected 2"
  elif [ "$lines" -ne 1 ]; then
    problem="$lines lines on stderr, expected 1"
  elif ! grep -qF -- "$needle" "$tmp/err"; then
    problem="stderr does not contain \"$needle\""
  fi
  if [ -n "$problem" ]; then
    failures=$((failures + 1))
    echo "FAIL: npusim $*: $problem"
    sed 's/^/  stderr: /' "$tmp/err" | head -5
  else
    echo "ok: npusim $*: $(cat "$tmp/err")"
  fi
}

# accepts ARGS...: npusim ARGS must succeed (exit 0) within 20 s.
accepts() {
  cases=$((cases + 1))
  if timeout -k 5 20 "$npusim" "$@" >"$tmp/out" 2>"$tmp/err" </dev/null; then
    echo "ok: npusim $*: accepted"
  else
    failures=$((failures + 1))
    echo "FAIL: npusim $*: exit status $?, expected 0"
    sed 's/^/  stderr: /' "$tmp/err" | head -5
  fi
}

# Special files: regular files only, whatever a link points at; never blocking.
for file in /dev/zero /dev/urandom "$tmp/fifo" "$tmp/zero_link"; do
  refuses "allowed a regular file" model "$file"
  refuses "allowed a regular file" validate "$file"
done
refuses "is a directory" model "$tmp/dir"
refuses "is a directory" validate "$tmp/dir"
refuses "allowed at most 67108864 bytes" validate "$tmp/big.yaml"
refuses "allowed at most 67108864 bytes" run "$tmp/big.yaml"
refuses "allowed a regular file" cost --npu /dev/zero --gemm 8,8,8
refuses "allowed a regular file" cost --npu "$tmp/zero_link" --gemm 8,8,8
refuses "allowed a regular file" cost --npu "$tmp/fifo" --gemm 8,8,8
refuses "allowed a regular file" cost --topology /dev/zero
refuses "allowed a regular file" cost --topology "$tmp/fifo"
refuses "allowed a regular file" table --npu "$tmp/zero_link"
refuses "allowed a regular file" model resnet56 --npu "$tmp/zero_link"
refuses "allowed a regular file" model "$tmp/zero.csv"
for file in include_zero include_urandom include_fifo include_link model_zero model_fifo replay_zero replay_fifo; do
  refuses "allowed a regular file" run "$tmp/$file.yaml"
done
refuses "is a directory" validate "$tmp/include_dir.yaml"
sed 's|^scheduler|npu: '"$tmp"'/zero_link\nscheduler|' "$tmp/plugin_fifo.yaml" >"$tmp/npu_link.yaml"
refuses "zero_link: is a character device: allowed a regular file" validate "$tmp/npu_link.yaml"
refuses "not a regular file" run "$tmp/plugin_fifo.yaml" --set "scheduler.plugins=[$tmp/fifo]"
refuses "may only replace a regular file" trace "$tmp/plugin_fifo.yaml" --samples 5 --out "$tmp/fifo"

# Time: every arrival, deadline and step must fit in 64-bit picoseconds.
refuses "simulation.samples = 20: allowed" run "$inputs/periodic_slow.yaml"
refuses "simulation.samples = 20: allowed" run "$inputs/poisson_slow.yaml"
refuses "simulation.samples = 20: allowed" run "$inputs/on_off_long_gap.yaml"
refuses "no sample arrived" run "$inputs/on_off_long_gap_duration.yaml"
refuses "arrival_ns = 10000000000000000: allowed at most 4000000000000000 ns" run "$inputs/replay_late.yaml"
refuses "allowed 0 to 4000000000000000 ns" trace "$tmp/slow_duration.yaml" --samples 20 --out "$tmp/slow.csv"
refuses "too large to model" cost --gemm 4294967296,4294967296,4294967296
refuses "MACs: allowed at most" cost --gemm 1048576,1048576,1048576
refuses "--gemm 1\x0A2,3,4: allowed R,P,C" cost --gemm "$(printf '1\n2,3,4')"
refuses "allowed an SLO of at most 1e9 ms" run "$inputs/slo_factor_huge.yaml" --set npu.clock_mhz=1
refuses "layer conv1" model "$inputs/huge_layer.yaml"
refuses "huge_layer.yaml" model "$inputs/huge_layer.yaml"
refuses "layer conv1" run "$inputs/huge_layer_run.yaml"
refuses "network n: layer c at batch 1024" run "$inputs/large_layer_run.yaml"

# ONNX models: truncated, damaged, random, empty, huge, special files and unsupported ops get one
# line; the intact model imports. The models are encoded here from protobuf text (protoc).
onnx_proto=/usr/include/onnx/onnx.proto
for name in conv unsupported_op cycle einsum_overflow; do
  if ! protoc --encode=onnx.ModelProto -I "$(dirname "$onnx_proto")" "$onnx_proto" <"$inputs/$name.onnx.txt" \
    >"$tmp/$name.onnx"; then
    failures=$((failures + 1))
    echo "FAIL: protoc could not encode $inputs/$name.onnx.txt (scripts/setup.sh installs protobuf-compiler and libonnx-dev)"
  fi
done
size=$(stat -c %s "$tmp/conv.onnx")
head -c $((size / 2)) "$tmp/conv.onnx" >"$tmp/conv_half.onnx"
head -c $((size - 7)) "$tmp/conv.onnx" >"$tmp/conv_short.onnx"
yes 'not a protobuf' | head -c 4096 >"$tmp/text.onnx"
head -c 4096 /dev/urandom >"$tmp/random.onnx"
: >"$tmp/empty.onnx"
truncate -s 3G "$tmp/huge.onnx"
ln -s /dev/zero "$tmp/zero.onnx"
printf 'network:\n  name: n\n  backbone: text.onnx\n  exits:\n    - {name: e, after: y, probability: 0.5, classes: 4}\n' \
  >"$tmp/overlay_text.yaml"
accepts model "$tmp/conv.onnx"
refuses "conv_half.onnx: " model "$tmp/conv_half.onnx"
refuses "conv_short.onnx: " model "$tmp/conv_short.onnx"
refuses "text.onnx: not an ONNX model (the protobuf does not parse: malformed or truncated)" model "$tmp/text.onnx"
refuses "random.onnx: " model "$tmp/random.onnx"
refuses "empty.onnx: not an ONNX model (no graph with nodes)" model "$tmp/empty.onnx"
refuses "allowed at most 2146435072 bytes (2047 MiB)" model "$tmp/huge.onnx"
refuses "allowed a regular file" model "$tmp/zero.onnx"
refuses "node nonzero: op NonZero (opset 17) is not supported: allowed Abs, Add" model "$tmp/unsupported_op.onnx"
refuses "node nonzero: op NonZero" table --model "$tmp/unsupported_op.onnx"
refuses "node first (Relu, opset 17): its inputs depend on a cycle of nodes: allowed an acyclic graph" model "$tmp/cycle.onnx"
refuses "node outer (Einsum, opset 17): equation zab,cd->z over [1, 32768, 32768] and [1048576, 1048576]: more than 2^62" model "$tmp/einsum_overflow.onnx"
refuses "text.onnx: not an ONNX model" model "$tmp/overlay_text.yaml"

# Plugins: whatever they throw or answer, one line naming the policy and the plugin.
refuses "policy throws_int (plugin $hostile_plugin)" run "${plugin_run[@]}" --set scheduler.policy=throws_int
refuses "policy throws_std (plugin $hostile_plugin)" run "${plugin_run[@]}" --set scheduler.policy=throws_std
refuses "policy throws_in_create (plugin $hostile_plugin)" run "${plugin_run[@]}" --set scheduler.policy=throws_in_create
refuses "policy bad_kind (plugin $hostile_plugin)" run "${plugin_run[@]}" --set scheduler.policy=bad_kind
refuses "past the largest simulated time" run "${plugin_run[@]}" --set scheduler.policy=idle_far
refuses "no progress" run "${plugin_run[@]}" --set scheduler.policy=idle_creep
refuses "waiting with no arrival or wake-up to come" run "${plugin_run[@]}" --set scheduler.policy=idle_forever
refuses "policy plugin $throwing_plugin" run "$inputs/plugin_policy.yaml" --set "scheduler.plugins=[$throwing_plugin]"
refuses "policy plugin $throwing_plugin" describe policies --plugin "$throwing_plugin"

# Stricter input.
refuses "two_documents.yaml:5: a second YAML document" run "$inputs/two_documents.yaml"
refuses "tagged.yaml:2: tag !foo" run "$inputs/tagged.yaml"
refuses "tag !foo: allowed plain YAML without tags" validate default --set "scheduler.policy=!foo fcfs"
refuses "arrival_ns =  1000: allowed a whole number" run "$inputs/replay_padded.yaml"
# SCALE-Sim pads its topology columns and reads them with int(): padding there is accepted.
accepts model "$inputs/padded_topology.csv"
accepts cost --topology "$inputs/padded_topology.csv"
refuses "Layer name = \"co\\x00nv1\"" model "$tmp/nul_name.csv"
refuses "Layer name = \"co\\x00nv1\"" cost --topology "$tmp/nul_name.csv"
refuses "devices is missing" validate "$inputs/alias_bomb_include.yaml"
refuses "no sample arrived" run "$inputs/no_arrivals.yaml"
refuses "no sample arrived" run "$inputs/replay_empty.yaml"
refuses "devices[0].name = cam\"1: allowed a name" run "$inputs/device_name_quote.yaml"
refuses "devices[0].name = cam\\x0Ax" run "$inputs/device_name_newline.yaml"
refuses "device_name_not_utf8.yaml" run "$inputs/device_name_not_utf8.yaml"
# Energy figures are the user's; one that no layer's energy ledger can hold is their mistake.
refuses "default.yaml>: layer 0 of mobilenetv2 at batch 1 costs" run default --set npu.energy.mac_pj=1e12

echo "$cases cases, $failures failed"
[ "$failures" -eq 0 ]
