// Speed of the workload side: loading and lowering zoo networks, the FBE table of the largest
// one, and the merged arrival stream of the default scenario.

#include <benchmark/benchmark.h>

#include "npu_model/fluid_batching_engine.hpp"
#include "sim/network_yaml.hpp"
#include "sim/scenario_yaml.hpp"

namespace {

using namespace npusim;

void BM_LoadAndLowerZooNetwork(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(sim::load_model("inception_v3"));
}
BENCHMARK(BM_LoadAndLowerZooNetwork)->Unit(benchmark::kMillisecond);

void BM_ControlBlockTableInceptionV3(benchmark::State& state) {
  const auto npu = npu::Npu::validate(npu::NpuConfig{});
  const auto layers = workloads::layer_works(sim::load_model("inception_v3"));
  for (auto _ : state) benchmark::DoNotOptimize(npu::ControlBlockTable::build(npu, layers, 32));
  state.counters["layers"] = static_cast<double>(layers.size());
}
BENCHMARK(BM_ControlBlockTableInceptionV3)->Unit(benchmark::kMillisecond);

void BM_DefaultScenarioArrivalStream(benchmark::State& state) {
  const auto scenario = sim::load_scenario("default");
  traces::ArrivalStream stream(scenario.streams(), scenario.simulation.seed, scenario.base_dir);
  for (auto _ : state) benchmark::DoNotOptimize(stream.next());
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}
BENCHMARK(BM_DefaultScenarioArrivalStream);

}  // namespace
