// Speed and memory of the serving engine: simulated samples per second of wall time on one
// core, and the process's peak resident memory as runs grow. Exact percentiles keep every
// latency up to a limit per device and overall; here the limit is 10,000 so that every run
// passes it, after which memory must stay flat however long the run.

#include <sys/resource.h>

#include <benchmark/benchmark.h>

#include "sim/serving.hpp"

namespace {

using namespace npusim;

double peak_rss_kib() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_maxrss);
}

// ResNet-50-EE, 8 Poisson cameras, exit_aware, fluid batching on, about 70 % load.
void BM_ServingResNet50ExitAware(benchmark::State& state) {
  scheduler::PolicyRegistry registry;
  scheduler::register_builtin_policies(registry);
  const auto samples = std::to_string(state.range(0));
  const auto scenario = sim::load_scenario(NPUSIM_SOURCE_DIR "/configs/scenarios/resnet50-8cams.yaml",
                                           {"simulation.samples=" + samples, "metrics.exact_percentile_samples=10000"}, registry);
  std::uint64_t completed = 0;
  double busy = 0.0;
  for (auto _ : state) {
    const auto result = sim::run_serving(scenario, registry);
    completed += result.metrics.overall().completed;
    busy = static_cast<double>(result.stats.layer_busy_ps) /
           static_cast<double>(result.stats.end_ps - result.stats.first_arrival_ps);
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(completed));
  state.counters["npu_busy"] = busy;
  state.counters["peak_rss_kib"] = peak_rss_kib();
}
BENCHMARK(BM_ServingResNet50ExitAware)->Arg(20000)->Arg(200000)->Arg(400000)->Unit(benchmark::kMillisecond);

}  // namespace
