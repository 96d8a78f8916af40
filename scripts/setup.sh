#!/usr/bin/env bash
# Installs what npusim needs from Debian's packages (only what is missing), then configures
# and builds the release preset. ONNX import reads models with libonnx and libprotobuf; its tests
# export torchvision networks with python3-torch and python3-torchvision (never at run time).
# With --sanitizers it also installs clang-16 and its runtimes
# (libFuzzer, ASan, UBSan) for the asan preset, which scripts/test.sh runs after the release
# tests. Slurm and munge are for the Slurm backend's test, which starts
# a one-node cluster on this machine (scripts/local-slurm-cluster.sh). Safe to run again: it skips what is already there.
# Usage: scripts/setup.sh [--sanitizers]   (as root, or as a user with sudo)
set -euo pipefail

cd "$(dirname "$0")/.."

packages=(
  g++ cmake ninja-build pkg-config
  libsystemc-dev libyaml-cpp-dev libboost-graph-dev libeigen3-dev libfmt-dev libcli11-dev
  libgtest-dev libbenchmark-dev
  libonnx-dev libprotobuf-dev protobuf-compiler
  python3-matplotlib python3-torch python3-torchvision
  slurmctld slurmd slurm-client munge
)

if [[ ${1:-} == --sanitizers ]]; then
  packages+=(clang-16 libclang-rt-16-dev)
elif (($#)); then
  echo "setup: unknown option $1 (allowed: --sanitizers)" >&2
  exit 2
fi

missing=()
for pkg in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done

if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  as_root=()
  if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null || { echo "setup: need root or sudo to install ${missing[*]}" >&2; exit 1; }
    as_root=(sudo)
  fi
  export DEBIAN_FRONTEND=noninteractive
  "${as_root[@]}" apt-get update -qq
  "${as_root[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

cmake --preset release >/dev/null
cmake --build --preset release -j "$(nproc)"
