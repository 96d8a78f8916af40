// Speed of ONNX import (issue 16: under 200 ms for ResNet-50): reading, parsing and lowering the
// model that tests/onnx/export_models.py exports into the build tree (the onnx_export test, or
// `tests/onnx/export_models.py build/release/onnx_models resnet50`).

#include <filesystem>

#include <benchmark/benchmark.h>

#include "sim/network_yaml.hpp"

namespace {

using namespace npusim;

void BM_ImportResNet50Onnx(benchmark::State& state) {
  const std::filesystem::path model = NPUSIM_ONNX_MODELS_DIR "/resnet50.onnx";
  if (!std::filesystem::exists(model)) {
    state.SkipWithError(("no " + model.string() + ": run tests/onnx/export_models.py " NPUSIM_ONNX_MODELS_DIR
                         " resnet50 (needs python3-torch and python3-torchvision)")
                            .c_str());
    return;
  }
  for (auto _ : state) benchmark::DoNotOptimize(sim::load_model(model.string()));
  state.counters["bytes"] = static_cast<double>(std::filesystem::file_size(model));
}
BENCHMARK(BM_ImportResNet50Onnx)->Unit(benchmark::kMillisecond);

}  // namespace
