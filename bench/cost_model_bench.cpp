// Speed of the cost model and of the FBE control-block search.
// Targets (issue 12): the memory schedule's evaluation of one tiling >= 2 M per second on one
// core; the control-block table of a ~60-layer network for batch 1..32 in under 200 ms.
// Issue 7: a whole AlexNet on a 32 x 32 systolic array well under a millisecond.

#include <vector>

#include <benchmark/benchmark.h>

#include "npu_model/cost_model.hpp"
#include "npu_model/fluid_batching_engine.hpp"
#include "npu_model/int_matrix.hpp"
#include "npu_model/memory_reference.hpp"
#include "npu_model/memory_schedule.hpp"
#include "npu_model/systolic.hpp"
#include "sim/network_yaml.hpp"

namespace {

using namespace npusim;

struct CostQuery {
  npu::GemmShape shape;
  std::uint32_t batch;
  npu::BatchMapping mapping;
};

// Every legal (layer, batch, mapping) of the zoo ResNet-56's GEMM layers (exits included) at batches 1..32 on the
// default NPU: the mix the FBE search and a scheduler actually ask for.
std::vector<CostQuery> resnet56_queries(const npu::Npu& npu) {
  std::vector<CostQuery> queries;
  for (const auto& layer : sim::load_model("resnet56").layers) {
    const auto& work = layer.work;
    if (work.on_vector_path) continue;
    for (std::uint32_t batch = 1; batch <= 32; ++batch) {
      if (npu.is_systolic()) queries.push_back({work.gemm, batch, {batch, 1, 1}});  // R-batching only
      for (const auto& g : npu.geometries())
        for (std::uint32_t b_p = 1; b_p <= batch; ++b_p) {
          const npu::BatchMapping m{(batch + b_p - 1) / b_p, b_p, g.k};
          if (npu::mapping_violation(npu, work.gemm, batch, m).empty())
            queries.push_back({work.gemm, batch, m});
        }
    }
  }
  return queries;
}

void evaluate_resnet56_queries(benchmark::State& state, const npu::Npu& npu) {
  const auto queries = resnet56_queries(npu);
  std::size_t i = 0;
  for (auto _ : state) {
    const auto& q = queries[i];
    benchmark::DoNotOptimize(npu::gemm_cost_unchecked(npu, q.shape, q.batch, q.mapping));
    i = i + 1 == queries.size() ? 0 : i + 1;
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
  state.counters["distinct_queries"] = static_cast<double>(queries.size());
}

// The mapper's search for one (layer, batch, mapping): every candidate tiling evaluated.
void BM_GemmCostMapperSearch(benchmark::State& state) {
  evaluate_resnet56_queries(state, npu::Npu::validate(npu::NpuConfig{}));
}
BENCHMARK(BM_GemmCostMapperSearch);

// The tilings the mapper chooses for ResNet-56's queries at batches 1, 8 and 32.
struct TiledQuery {
  CostQuery q;
  npu::Tiling tiling;
};
std::vector<TiledQuery> resnet56_tiled_queries(const npu::Npu& npu) {
  std::vector<TiledQuery> queries;
  for (const auto& q : resnet56_queries(npu))
    if (q.batch == 1 || q.batch == 8 || q.batch == 32)
      queries.push_back({q, npu::gemm_cost_unchecked(npu, q.shape, q.batch, q.mapping).tiling});
  return queries;
}

void evaluate_tiled_queries(benchmark::State& state, const npu::Placement& placement) {
  const auto npu = npu::Npu::validate(npu::NpuConfig{});
  const auto queries = resnet56_tiled_queries(npu);
  std::size_t i = 0;
  for (auto _ : state) {
    const auto& [q, tiling] = queries[i];
    benchmark::DoNotOptimize(
        npu::evaluate_schedule(npu, q.shape, q.batch, q.mapping, tiling, ~std::uint64_t{0}, placement));
    i = i + 1 == queries.size() ? 0 : i + 1;
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}

// One evaluation of the memory schedule for a tiling the mapper chose (what the serving engine
// would ask if it re-priced a layer): the figure the 2 M/s target is about.
void BM_ScheduleEvaluation(benchmark::State& state) { evaluate_tiled_queries(state, {}); }
BENCHMARK(BM_ScheduleEvaluation);

// The same with the placement a residency plan often gives (docs/memory-schedule.md §10): the
// output kept on chip and a fused add's operand read from off chip into the accumulators.
void BM_ScheduleEvaluationPlaced(benchmark::State& state) {
  evaluate_tiled_queries(state, {.output_on_chip = true, .epilogue = npu::EpilogueOperand::off_chip});
}
BENCHMARK(BM_ScheduleEvaluationPlaced);

// A large layer: ResNet-50's conv1 at batch 32 (R = 401,408 rows), to show the evaluation
// jumps over the periodic stretch instead of walking every band.
void BM_GemmCostLargeLayer(benchmark::State& state) {
  const auto npu = npu::Npu::validate(npu::NpuConfig{});
  npu::GemmShape conv1{112 * 112, 7 * 7 * 3, 64, 1};
  conv1.window = {224, 224, 7, 7, 2, 2, 3, 3};
  for (auto _ : state)
    benchmark::DoNotOptimize(npu::gemm_cost_unchecked(npu, conv1, 32, {32, 1, 1}));
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}
BENCHMARK(BM_GemmCostLargeLayer)->Unit(benchmark::kMillisecond);

void control_block_table(benchmark::State& state, const char* model) {
  const auto npu = npu::Npu::validate(npu::NpuConfig{});
  const auto layers = workloads::layer_works(sim::load_model(model));
  const auto max_batch = static_cast<std::uint32_t>(state.range(0));
  for (auto _ : state)
    benchmark::DoNotOptimize(npu::ControlBlockTable::build(npu, layers, max_batch));
  state.counters["layers"] = static_cast<double>(layers.size());
}
void BM_ControlBlockTableResNet56(benchmark::State& state) { control_block_table(state, "resnet56"); }
BENCHMARK(BM_ControlBlockTableResNet56)->Arg(32)->Unit(benchmark::kMillisecond);
// ~60 layers: the yardstick.
void BM_ControlBlockTableResNet50(benchmark::State& state) { control_block_table(state, "resnet50"); }
BENCHMARK(BM_ControlBlockTableResNet50)->Arg(32)->Unit(benchmark::kMillisecond);

// For scale: the cycle-stepped memory reference on a 16 x 16 x 8 -> 16 3x3 convolution,
// batch 2, on a 16 x 16 array.
void BM_MemoryReferenceCycles(benchmark::State& state) {
  npu::NpuConfig config;
  config.pe_count = config.pe_width = config.input_rows = config.vector_lanes = 16;
  const auto npu = npu::Npu::validate(config);
  npu::GemmShape conv{16 * 16, 9 * 8, 16, 1};
  conv.window = {16, 16, 3, 3, 1, 1, 1, 1};
  const std::vector<npu::IntMatrix> maps(2, npu::IntMatrix::Constant(256, 8, 2));
  const std::vector<npu::IntMatrix> weights(1, npu::IntMatrix::Constant(72, 16, 3));
  const npu::Tiling tiling = npu::gemm_cost_unchecked(npu, conv, 2, {2, 1, 1}).tiling;
  std::uint64_t cycles = 0;
  for (auto _ : state) cycles += npu::run_memory_reference(npu, conv, 2, {2, 1, 1}, tiling, maps, weights).cycles;
  state.counters["simulated_cycles_per_second"] =
      benchmark::Counter(static_cast<double>(cycles), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_MemoryReferenceCycles)->Unit(benchmark::kMillisecond);

npu::Npu systolic_npu(npu::Dataflow dataflow, std::uint32_t size, bool stall_free) {
  npu::NpuConfig config;
  config.array = npu::ArrayKind::systolic;
  config.systolic = {size, size, dataflow, stall_free};
  config.modes = {npu::BatchingMode::r_batching};
  config.stack_factors = {1};
  return npu::Npu::validate(config);
}

// ResNet-56's GEMM layers at batches 1..32 on a 64 x 64 systolic array (arg: 0 OS, 1 WS, 2 IS),
// with its memory bound: what the FBE table and the schedulers ask of a systolic NPU.
void BM_SystolicGemmCostEvaluation(benchmark::State& state) {
  evaluate_resnet56_queries(state, systolic_npu(static_cast<npu::Dataflow>(state.range(0)), 64, false));
}
BENCHMARK(BM_SystolicGemmCostEvaluation)->Arg(0)->Arg(1)->Arg(2);

// SCALE-Sim v2's topologies/conv_nets/alexnet.csv (five convolutions) on a 32 x 32 array
// (arg: dataflow), reported in SCALE-Sim's convention: one iteration is the whole network.
void BM_ScaleSimAlexNet32x32(benchmark::State& state) {
  const auto npu = systolic_npu(static_cast<npu::Dataflow>(state.range(0)), 32, true);
  const std::vector<npu::ScaleSimConv> alexnet{{224, 224, 11, 11, 3, 96, 4, 4},
                                               {27, 27, 5, 5, 96, 256, 1, 1},
                                               {13, 13, 3, 3, 256, 384, 1, 1},
                                               {13, 13, 3, 3, 384, 384, 1, 1},
                                               {13, 13, 3, 3, 384, 256, 1, 1}};
  std::uint64_t cycles = 0;
  for (auto _ : state) {
    for (const auto& conv : alexnet)
      cycles += npu::scalesim_compute_report(npu.config().systolic, npu::scalesim_conv_gemm(conv)).total_cycles;
    benchmark::DoNotOptimize(cycles);
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * alexnet.size()));
}
BENCHMARK(BM_ScaleSimAlexNet32x32)->Arg(0)->Arg(1)->Arg(2)->Unit(benchmark::kNanosecond);

}  // namespace

BENCHMARK_MAIN();
