// Speed of systolic_layer_timing, the systolic array's layer model with its memory
// (docs/systolic-memory.md): it runs inside the FBE table build, every GEMM layer at every
// batch 1..32, so one sweep of ResNet-50 (and ResNet-56) is the yardstick.

#include <vector>

#include <benchmark/benchmark.h>

#include "npu_model/systolic.hpp"
#include "sim/network_yaml.hpp"

namespace {

using namespace npusim;

npu::Npu systolic_preset(npu::Dataflow dataflow) {
  npu::NpuConfig config;  // the default NPU's buffers and channel, as configs/npu/systolic.yaml
  config.array = npu::ArrayKind::systolic;
  config.systolic = {64, 64, dataflow, false};
  config.modes = {npu::BatchingMode::r_batching};
  config.stack_factors = {1};
  return npu::Npu::validate(config);
}

struct LayerQuery {
  npu::SystolicGemm gemm;
  std::uint64_t groups = 1;
};

std::vector<LayerQuery> gemm_layers(const char* model) {
  std::vector<LayerQuery> queries;
  for (const auto& layer : sim::load_model(model).layers) {
    if (layer.work.on_vector_path) continue;
    const npu::GemmShape& g = layer.work.gemm;
    for (std::uint64_t batch = 1; batch <= 32; ++batch) queries.push_back({{batch * g.rows, g.depth, g.cols}, g.groups});
  }
  return queries;
}

// One iteration: every GEMM layer of the model at batch 1..32 (arg: 0 OS, 1 WS, 2 IS).
void table_sweep(benchmark::State& state, const char* model) {
  const npu::Npu npu = systolic_preset(static_cast<npu::Dataflow>(state.range(0)));
  const auto queries = gemm_layers(model);
  double folds = 0;
  for (const LayerQuery& q : queries)
    folds += static_cast<double>(q.groups * npu::folds_of(npu.config().systolic, q.gemm).count());
  for (auto _ : state)
    for (const LayerQuery& q : queries) benchmark::DoNotOptimize(npu::systolic_layer_timing(npu, q.gemm, q.groups));
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * queries.size()));
  state.counters["layer_batches"] = static_cast<double>(queries.size());
  state.counters["folds_per_second"] =
      benchmark::Counter(folds * static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}
void BM_SystolicLayerTimingResNet50(benchmark::State& state) { table_sweep(state, "resnet50"); }
BENCHMARK(BM_SystolicLayerTimingResNet50)->Arg(0)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond);
void BM_SystolicLayerTimingResNet56(benchmark::State& state) { table_sweep(state, "resnet56"); }
BENCHMARK(BM_SystolicLayerTimingResNet56)->Arg(0)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond);

// ResNet-50's last 3x3 layer (7 x 7 x 512 -> 512) on a 32 x 32 WS array at batch 1: the issue's
// 143-cycle weight blocks.
void BM_SystolicLayerTimingLast3x3(benchmark::State& state) {
  npu::NpuConfig config = systolic_preset(npu::Dataflow::weight_stationary).config();
  config.systolic.rows = config.systolic.cols = 32;
  const npu::Npu npu = npu::Npu::validate(config);
  const npu::SystolicGemm gemm{49, 9 * 512, 512};
  npu::SystolicLayerTiming timing;
  for (auto _ : state) benchmark::DoNotOptimize(timing = npu::systolic_layer_timing(npu, gemm, 1));
  state.counters["cycles"] = static_cast<double>(timing.cycles);
  state.counters["compute_cycles"] = static_cast<double>(timing.compute_cycles);
  state.counters["array_cycles_today"] = static_cast<double>(npu::systolic_array_cycles(npu.config().systolic, gemm));
}
BENCHMARK(BM_SystolicLayerTimingLast3x3)->Unit(benchmark::kMicrosecond);

}  // namespace
