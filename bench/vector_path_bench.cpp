// Speed of the vector path's fast model (docs/vector-path.md): it runs in the control-block table
// build for every pooling and element-wise layer at every batch 1..32.

#include <vector>

#include <benchmark/benchmark.h>

#include "npu_model/vector_path.hpp"
#include "npu_model/vector_reference.hpp"
#include "sim/network_yaml.hpp"

namespace {

using namespace npusim;

std::vector<npu::VectorWork> vector_layers(const char* model) {
  std::vector<npu::VectorWork> layers;
  for (const auto& layer : sim::load_model(model).layers)
    if (layer.work.on_vector_path && layer.work.vector.kind != npu::VectorKind::unshaped)
      layers.push_back(layer.work.vector);
  return layers;
}

// Every vector layer of a network at batches 1..32 on the default NPU, as the table build asks.
void vector_table(benchmark::State& state, const char* model) {
  const auto npu = npu::Npu::validate(npu::NpuConfig{});
  const auto layers = vector_layers(model);
  for (auto _ : state)
    for (const auto& work : layers)
      for (std::uint32_t batch = 1; batch <= 32; ++batch) benchmark::DoNotOptimize(npu::vector_cost(npu, work, batch));
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * layers.size() * 32));
  state.counters["vector_layers"] = static_cast<double>(layers.size());
}
void BM_VectorPathTableResNet50(benchmark::State& state) { vector_table(state, "resnet50"); }
BENCHMARK(BM_VectorPathTableResNet50)->Unit(benchmark::kMillisecond);
void BM_VectorPathTableResNet56(benchmark::State& state) { vector_table(state, "resnet56"); }
BENCHMARK(BM_VectorPathTableResNet56)->Unit(benchmark::kMillisecond);

// One large layer: ResNet-50's 3x3 stride-2 max pool (112 x 112 x 64) at batch 32, 1,792 chunks.
void BM_VectorPathMaxPoolBatch32(benchmark::State& state) {
  const auto npu = npu::Npu::validate(npu::NpuConfig{});
  npu::VectorWork pool{112 * 112 * 64, 56 * 56 * 64, 56 * 56 * 64 * 9};
  pool.kind = npu::VectorKind::pooling;
  pool.height = pool.width = 112;
  pool.channels = 64;
  pool.kernel_height = pool.kernel_width = 3;
  pool.stride_height = pool.stride_width = 2;
  pool.padding_height = pool.padding_width = 1;
  for (auto _ : state) benchmark::DoNotOptimize(npu::vector_cost(npu, pool, 32));
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}
BENCHMARK(BM_VectorPathMaxPoolBatch32)->Unit(benchmark::kMicrosecond);

// For scale: the cycle-stepped reference on a 16 x 16 x 16 add at batch 2.
void BM_VectorReferenceCycles(benchmark::State& state) {
  npu::NpuConfig config;
  config.vector_lanes = 16;
  const auto npu = npu::Npu::validate(config);
  npu::VectorWork add{2 * 16 * 16 * 16, 16 * 16 * 16, 16 * 16 * 16};
  add.kind = npu::VectorKind::add;
  add.height = add.width = add.channels = 16;
  const std::vector<std::vector<npu::IntMatrix>> operands(2, std::vector<npu::IntMatrix>(2, npu::IntMatrix::Constant(256, 16, 3)));
  const auto tiling = npu::choose_vector_tiling(npu, add, 2);
  std::uint64_t cycles = 0;
  for (auto _ : state)
    cycles += npu::run_vector_reference(npu, add, 2, {}, tiling, npu::PoolFunction::max, operands).cycles;
  state.counters["simulated_cycles_per_second"] = benchmark::Counter(static_cast<double>(cycles), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_VectorReferenceCycles)->Unit(benchmark::kMillisecond);

}  // namespace
