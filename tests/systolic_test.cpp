// The systolic array: the closed-form fold arithmetic against the cycle-stepped SystemC
// reference (cycles) and Eigen (results), hand-computed folds for each dataflow, SCALE-Sim v2's
// reporting convention, and the cost model on a systolic NPU.
//
// The layer with its memory (docs/systolic-memory.md): systolic_layer_timing against the
// cycle-stepped memory reference on random cases of every buffer regime, hand-worked schedules,
// and monotonicity in bandwidth and buffers.
//
// NPUSIM_SYSTOLIC_CASES=<n> runs n random cases instead of 300 (both random tests).

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <map>
#include <string>

#include <gtest/gtest.h>

#include "npu_model/cost_model.hpp"
#include "npu_model/systolic.hpp"
#include "npu_model/systolic_memory_reference.hpp"
#include "npu_model/systolic_reference.hpp"
#include "traces/random_stream.hpp"

namespace npusim {
namespace {

using npu::Dataflow;

npu::Npu systolic_npu(std::uint32_t rows, std::uint32_t cols, Dataflow dataflow, bool stall_free = true) {
  npu::NpuConfig c;
  c.name = "test-systolic";
  c.array = npu::ArrayKind::systolic;
  c.systolic = {rows, cols, dataflow, stall_free};
  c.modes = {npu::BatchingMode::r_batching};
  c.stack_factors = {1};
  return npu::Npu::validate(c);
}

npu::IntMatrix random_matrix(traces::RandomStream& rng, std::uint64_t rows, std::uint64_t cols) {
  npu::IntMatrix m(static_cast<Eigen::Index>(rows), static_cast<Eigen::Index>(cols));
  for (Eigen::Index i = 0; i < m.rows(); ++i)
    for (Eigen::Index j = 0; j < m.cols(); ++j) m(i, j) = static_cast<std::int64_t>(rng.uniform_below(255)) - 127;
  return m;
}

TEST(Systolic, ClosedFormEqualsCycleSteppedReferenceAndEigen) {
  const char* env = std::getenv("NPUSIM_SYSTOLIC_CASES");
  const std::uint64_t cases = env ? std::stoull(env) : 300;
  traces::RandomStream rng(20261122, 7);
  const Dataflow dataflows[] = {Dataflow::output_stationary, Dataflow::weight_stationary, Dataflow::input_stationary};
  int partial_row_folds = 0, partial_col_folds = 0, single_fold = 0;
  for (std::uint64_t i = 0; i < cases; ++i) {
    const auto rows = static_cast<std::uint32_t>(1 + rng.uniform_below(6));
    const auto cols = static_cast<std::uint32_t>(1 + rng.uniform_below(6));
    const Dataflow dataflow = dataflows[i % 3];
    const npu::Npu npu = systolic_npu(rows, cols, dataflow);
    const npu::SystolicGemm gemm{1 + rng.uniform_below(14), 1 + rng.uniform_below(14), 1 + rng.uniform_below(14)};
    const auto a = random_matrix(rng, gemm.m, gemm.k);
    const auto w = random_matrix(rng, gemm.k, gemm.n);
    const auto run = npu::run_systolic_reference(npu, a, w);
    const std::string what = "case " + std::to_string(i) + ": " + npu::to_string(dataflow) + " " +
                             std::to_string(rows) + "x" + std::to_string(cols) + " m=" + std::to_string(gemm.m) +
                             " k=" + std::to_string(gemm.k) + " n=" + std::to_string(gemm.n);
    EXPECT_EQ(run.cycles, npu::systolic_array_cycles(npu.config().systolic, gemm)) << what;
    EXPECT_EQ(run.macs, gemm.m * gemm.k * gemm.n) << what;  // every product exactly once
    EXPECT_EQ(run.folds, npu::folds_of(npu.config().systolic, gemm).count()) << what;
    EXPECT_EQ(run.simulated_ps, run.cycles * run.clock_period_ps) << what;
    EXPECT_TRUE(run.output == a * w) << what;
    const auto layout = npu::layout_of(dataflow, gemm);
    partial_row_folds += layout.over_rows % rows != 0 && layout.over_rows > rows;
    partial_col_folds += layout.over_cols % cols != 0 && layout.over_cols > cols;
    single_fold += run.folds == 1;
  }
  // The random cases must reach partial folds on both axes and single-fold layers.
  EXPECT_GT(partial_row_folds, 10);
  EXPECT_GT(partial_col_folds, 10);
  EXPECT_GT(single_fold, 5);
}

// m = 6, k = 5, n = 3 on a 4 x 4 array.
// OS: m over rows (folds of 4 and 2), n over columns (one fold of 3), k = 5 streamed:
//   (5 + 4 + 3 - 2) + (5 + 2 + 3 - 2) = 10 + 8 = 18 cycles.
// WS: k over rows (4 and 1), n over columns (3), m = 6 streamed, weights shifted in first:
//   (2*4 + 3 + 6 - 2) + (2*1 + 3 + 6 - 2) = 15 + 9 = 24 cycles.
// IS: k over rows (4 and 1), m over columns (4 and 2), n = 3 streamed:
//   (2*4 + 4 + 3 - 2) + (2*1 + 4 + 3 - 2) + (2*4 + 2 + 3 - 2) + (2*1 + 2 + 3 - 2) = 13 + 7 + 11 + 5 = 36.
TEST(Systolic, HandComputedFolds) {
  const npu::SystolicGemm gemm{6, 5, 3};
  const std::pair<Dataflow, std::uint64_t> expected[] = {
      {Dataflow::output_stationary, 18}, {Dataflow::weight_stationary, 24}, {Dataflow::input_stationary, 36}};
  traces::RandomStream rng(5, 1);
  for (const auto& [dataflow, cycles] : expected) {
    const npu::Npu npu = systolic_npu(4, 4, dataflow);
    EXPECT_EQ(npu::systolic_array_cycles(npu.config().systolic, gemm), cycles) << npu::to_string(dataflow);
    EXPECT_EQ(npu::run_systolic_reference(npu, random_matrix(rng, 6, 5), random_matrix(rng, 5, 3)).cycles, cycles)
        << npu::to_string(dataflow);
  }
}

// SCALE-Sim pads every fold to the whole array and reports the last cycle's index:
// OS: 2 folds x (5 + 4 + 4 - 2) - 1 = 21; WS: 2 x (2*4 + 4 + 6 - 2) - 1 = 31;
// IS: 4 x (2*4 + 4 + 3 - 2) - 1 = 51.
TEST(Systolic, ScaleSimConventionOnTheSameGemm) {
  const npu::SystolicGemm gemm{6, 5, 3};
  EXPECT_EQ(npu::scalesim_compute_report(systolic_npu(4, 4, Dataflow::output_stationary).config().systolic, gemm)
                .total_cycles,
            21u);
  EXPECT_EQ(npu::scalesim_compute_report(systolic_npu(4, 4, Dataflow::weight_stationary).config().systolic, gemm)
                .total_cycles,
            31u);
  EXPECT_EQ(npu::scalesim_compute_report(systolic_npu(4, 4, Dataflow::input_stationary).config().systolic, gemm)
                .total_cycles,
            51u);
}

// AlexNet's first layer as SCALE-Sim v2's topologies/conv_nets/alexnet.csv gives it: IFMAP
// 224 x 224 x 3, 11 x 11 filters, 96 of them, stride 4, on a 32 x 32 array.
//   OFMAP side = ceil((224 - 11 + 4) / 4) = ceil(54.25) = 55 (the floor rule gives 54)
//   m = 55 * 55 = 3025 pixels, k = 11 * 11 * 3 = 363, n = 96
//   OS: ceil(3025/32) = 95 row folds x ceil(96/32) = 3 column folds = 285 folds of
//       363 + 32 + 32 - 2 = 425 demand rows -> 121125 rows -> Total Cycles 121124
//   WS: ceil(363/32) = 12 x 3 = 36 folds of 2*32 + 32 + 3025 - 2 = 3119 -> 112284 - 1 = 112283
//   IS: 12 x 95 = 1140 folds of 2*32 + 32 + 96 - 2 = 190 -> 216600 - 1 = 216599
TEST(Systolic, ScaleSimAlexNetConv1) {
  const npu::ScaleSimConv conv{224, 224, 11, 11, 3, 96, 4, 4};
  EXPECT_EQ(npu::scalesim_output_size(224, 11, 4), 55u);
  const npu::SystolicGemm gemm = npu::scalesim_conv_gemm(conv);
  EXPECT_EQ(gemm.m, 3025u);
  EXPECT_EQ(gemm.k, 363u);
  EXPECT_EQ(gemm.n, 96u);
  const auto total = [&](Dataflow d) {
    return npu::scalesim_compute_report(systolic_npu(32, 32, d).config().systolic, gemm).total_cycles;
  };
  EXPECT_EQ(total(Dataflow::output_stationary), 121124u);
  EXPECT_EQ(total(Dataflow::weight_stationary), 112283u);
  EXPECT_EQ(total(Dataflow::input_stationary), 216599u);
  // Mapping efficiency: the folds use 3025 * 96 of 285 * 1024 PE slots (OS) = 99.50 %.
  const auto os = npu::scalesim_compute_report(systolic_npu(32, 32, Dataflow::output_stationary).config().systolic, gemm);
  EXPECT_NEAR(os.mapping_efficiency_pct, 3025.0 * 96 * 100 / (285.0 * 1024), 1e-9);
  EXPECT_NEAR(os.overall_util_pct, 3025.0 * 363 * 96 * 100 / (121124.0 * 1024), 1e-9);
}

// Stall-free, a layer costs exactly its folds. With memory, the double-buffered scratchpads
// overlap the transfers: cycles = max(array, latency + bus cycles).
TEST(Systolic, CostModelOnASystolicNpu) {
  const npu::GemmShape shape{3, 5, 6, 1};  // R = 3 rows per sample, P = 5, C = 6
  const npu::Npu stall_free = systolic_npu(4, 4, Dataflow::weight_stationary);
  // Batch 2 streams m = 6 rows: same GEMM as HandComputedFolds with n = 6 -> n over columns
  // is 4 + 2: (2*4+4+6-2) + (2*1+4+6-2) + (2*4+2+6-2) + (2*1+2+6-2) = 16 + 10 + 14 + 8 = 48.
  const npu::LayerCost cost = npu::best_gemm_cost(stall_free, shape, 2);
  EXPECT_EQ(cost.mapping, (npu::BatchMapping{2, 1, 1}));
  EXPECT_EQ(cost.cycles, 48u);
  EXPECT_EQ(cost.compute_cycles, 48u);
  EXPECT_EQ(cost.stall_cycles, 0u);
  EXPECT_EQ(cost.macs, 2u * 3 * 5 * 6);
  // Off-chip: inputs 6*5 + weights 5*6 + outputs 6*6 = 96 bytes (everything fits its buffer).
  EXPECT_EQ(cost.offchip_bytes, 96u);

  npu::NpuConfig slow = stall_free.config();
  slow.systolic.stall_free = false;
  slow.offchip = {0.5, 100};  // 0.5 GB/s at 1 GHz: 2 cycles per byte; 100 ns = 100 cycles
  const npu::LayerCost bound = npu::best_gemm_cost(npu::Npu::validate(slow), shape, 2);
  // The channel, not the 48-cycle array, decides: the first byte arrives after the latency and
  // the 96 bytes hold the bus 192 cycles, one after another (docs/systolic-memory.md).
  EXPECT_EQ(bound.offchip_bytes, 96u);
  EXPECT_GT(bound.cycles, 100u + 96 * 2);
  EXPECT_EQ(bound.roofline_cycles, 96u * 2);
  EXPECT_EQ(bound.stall_cycles, bound.cycles - bound.compute_cycles);
  EXPECT_THROW(npu::gemm_cost(stall_free, shape, 2, {1, 2, 1}), npu::InvalidMapping);  // no P-batching
}

TEST(Systolic, BatchingAmortisesTheWeightLoad) {
  // WS on a 16 x 16 array, one 64 x 64 weight matrix and 49 rows per sample: the 2h-cycle
  // weight shift and the fill are paid per fold, not per sample, so cycles per sample fall.
  const npu::Npu npu = systolic_npu(16, 16, Dataflow::weight_stationary);
  const npu::GemmShape shape{49, 64, 64, 1};
  const auto per_sample = [&](std::uint32_t b) {
    return static_cast<double>(npu::best_gemm_cost(npu, shape, b).cycles) / b;
  };
  EXPECT_LT(per_sample(8), per_sample(1) * 0.75);
  EXPECT_LT(per_sample(16), per_sample(8));
}

// ---------------------------------------------------------------------------------------------
// The layer with its memory.

std::uint64_t random_cases() {
  const char* env = std::getenv("NPUSIM_SYSTOLIC_CASES");
  return env ? std::stoull(env) : 300;
}

// What a case's buffers were drawn to force (docs/systolic-memory.md §2).
enum class Regime { everything_fits, weights_do_not_fit, inputs_do_not_fit, one_fold };
const char* name_of(Regime r) {
  switch (r) {
    case Regime::everything_fits: return "everything fits";
    case Regime::weights_do_not_fit: return "weights do not fit";
    case Regime::inputs_do_not_fit: return "inputs do not fit";
    case Regime::one_fold: return "buffers of one fold";
  }
  return "?";
}

struct MemoryCase {
  npu::NpuConfig config;
  npu::SystolicGemm gemm;
  std::uint64_t groups = 1;
  npu::Placement placement;
  Regime regime = Regime::everything_fits;
};

// The least each buffer may hold for the fold (docs/systolic-memory.md §8): one stationary
// block, one streamed row, one row of accumulators (two when partial sums spill).
struct LeastBuffers {
  std::uint64_t input = 0, weight = 0, output = 0;
};
LeastBuffers least_buffers(const npu::NpuConfig& c, const npu::SystolicGemm& gemm) {
  const auto layout = npu::layout_of(c.systolic.dataflow, gemm);
  const std::uint64_t rows = std::min<std::uint64_t>(c.systolic.rows, layout.over_rows);
  const std::uint64_t cols = std::min<std::uint64_t>(c.systolic.cols, layout.over_cols);
  const std::uint64_t e = c.element_bytes, a = c.accumulator_bytes;
  switch (c.systolic.dataflow) {
    case Dataflow::output_stationary: return {rows * e, cols * e, rows * cols * a};
    case Dataflow::weight_stationary: return {rows * e, rows * cols * e, 2 * cols * a};
    case Dataflow::input_stationary: return {rows * cols * e, rows * e, 2 * cols * a};
  }
  return {};
}

MemoryCase random_memory_case(traces::RandomStream& rng, std::uint64_t index) {
  const Dataflow dataflows[] = {Dataflow::output_stationary, Dataflow::weight_stationary, Dataflow::input_stationary};
  MemoryCase mc;
  npu::NpuConfig& c = mc.config;
  c.name = "random-systolic";
  c.array = npu::ArrayKind::systolic;
  c.systolic = {static_cast<std::uint32_t>(1 + rng.uniform_below(5)), static_cast<std::uint32_t>(1 + rng.uniform_below(5)),
                dataflows[index % 3], false};
  c.modes = {npu::BatchingMode::r_batching};
  c.stack_factors = {1};
  c.clock_mhz = static_cast<std::uint32_t>(rng.uniform_between(200, 2000));
  c.element_bytes = static_cast<std::uint32_t>(1 + rng.uniform_below(2));
  c.accumulator_bytes = 4;
  c.offchip.bandwidth_gb_per_s = static_cast<double>(rng.uniform_between(200, 40'000)) / 1000.0;
  c.offchip.latency_ns = static_cast<std::uint32_t>(rng.uniform_below(30));
  c.offchip.queue_depth = static_cast<std::uint32_t>(1 + rng.uniform_below(4));
  mc.gemm = {1 + rng.uniform_below(16), 1 + rng.uniform_below(14), 1 + rng.uniform_below(14)};
  mc.groups = 1 + rng.uniform_below(2);
  mc.regime = static_cast<Regime>((index / 3) % 4);
  const std::uint64_t e = c.element_bytes;
  const std::uint64_t activations = mc.gemm.m * mc.gemm.k * e, weights = mc.gemm.k * mc.gemm.n * e;
  const std::uint64_t outputs = mc.gemm.m * mc.gemm.n * c.accumulator_bytes;
  const LeastBuffers least = least_buffers(c, mc.gemm);
  const auto between = [&](std::uint64_t low, std::uint64_t high) {
    return high <= low ? low : rng.uniform_between(low, high);
  };
  switch (mc.regime) {
    case Regime::everything_fits:
      c.buffers = {between(activations, 2 * activations) + least.input, between(weights, 2 * weights) + least.weight,
                   between(outputs, 2 * outputs) + least.output};
      break;
    case Regime::weights_do_not_fit:
      c.buffers = {between(activations, 2 * activations) + least.input, between(least.weight, weights - 1),
                   between(least.output, 2 * outputs)};
      break;
    case Regime::inputs_do_not_fit:
      c.buffers = {between(least.input, activations - 1), between(least.weight, 2 * weights),
                   between(least.output, outputs)};
      break;
    case Regime::one_fold:
      c.buffers = {least.input + rng.uniform_below(2), least.weight + rng.uniform_below(2),
                   least.output + rng.uniform_below(2) * c.accumulator_bytes};
      break;
  }
  // Reserved bytes never take the room a regime was drawn to give the activations.
  const std::uint64_t kept_input = std::max(least.input, mc.regime == Regime::everything_fits ? activations : 0);
  const std::uint64_t spare_input = c.buffers.input_bytes - std::min(c.buffers.input_bytes, kept_input);
  mc.placement.input_on_chip = rng.uniform_below(5) == 0;
  mc.placement.output_on_chip = rng.uniform_below(5) == 0;
  mc.placement.epilogue = static_cast<npu::EpilogueOperand>(rng.uniform_below(3));
  if (rng.uniform_below(3) == 0) mc.placement.reserved_input_bytes = rng.uniform_below(spare_input + 1);
  return mc;
}

std::string describe(const MemoryCase& mc) {
  const auto& c = mc.config;
  return npu::to_string(c.systolic.dataflow) + " " + std::to_string(c.systolic.rows) + "x" +
         std::to_string(c.systolic.cols) + " m=" + std::to_string(mc.gemm.m) + " k=" + std::to_string(mc.gemm.k) +
         " n=" + std::to_string(mc.gemm.n) + " groups=" + std::to_string(mc.groups) + " e=" +
         std::to_string(c.element_bytes) + " buffers=" + std::to_string(c.buffers.input_bytes) + "/" +
         std::to_string(c.buffers.weight_bytes) + "/" + std::to_string(c.buffers.output_bytes) +
         " bw=" + std::to_string(c.offchip.bandwidth_gb_per_s) + " lat=" + std::to_string(c.offchip.latency_ns) +
         " Q=" + std::to_string(c.offchip.queue_depth) + " clock=" + std::to_string(c.clock_mhz) +
         " in_chip=" + std::to_string(mc.placement.input_on_chip) +
         " out_chip=" + std::to_string(mc.placement.output_on_chip) +
         " epilogue=" + std::to_string(static_cast<int>(mc.placement.epilogue)) +
         " reserved=" + std::to_string(mc.placement.reserved_input_bytes) + " (" + name_of(mc.regime) + ")";
}

struct MemoryOperands {
  std::vector<npu::IntMatrix> activations, weights, epilogue;
};
MemoryOperands random_operands(traces::RandomStream& rng, const MemoryCase& mc) {
  MemoryOperands o;
  for (std::uint64_t g = 0; g < mc.groups; ++g) {
    o.activations.push_back(random_matrix(rng, mc.gemm.m, mc.gemm.k));
    o.weights.push_back(random_matrix(rng, mc.gemm.k, mc.gemm.n));
    if (mc.placement.epilogue != npu::EpilogueOperand::none)
      o.epilogue.push_back(random_matrix(rng, mc.gemm.m, mc.gemm.n));
  }
  return o;
}

// Runs the case on both models and checks cycles, compute cycles, bytes per operand and the
// results (Eigen's a * w, plus the fused add's operand).
void expect_models_agree(const MemoryCase& mc, const MemoryOperands& o, const std::string& what) {
  const npu::Npu npu = npu::Npu::validate(mc.config);
  const auto fast = npu::systolic_layer_timing(npu, mc.gemm, mc.groups, mc.placement);
  npu::SystolicMemoryReferenceRun run;
  try {
    run = npu::run_systolic_memory_reference(npu, o.activations, o.weights, mc.placement, o.epilogue);
  } catch (const std::exception& error) {
    ADD_FAILURE() << what << ": the reference threw " << error.what();
    return;
  }
  EXPECT_EQ(fast.cycles, run.cycles) << what;
  EXPECT_EQ(fast.compute_cycles, run.compute_cycles) << what;
  const auto per_operand = [](const npu::TrafficBytes& b) {
    return std::to_string(b.input) + "/" + std::to_string(b.weight) + "/" + std::to_string(b.output) + "/" +
           std::to_string(b.psum) + "/" + std::to_string(b.epilogue);
  };
  EXPECT_EQ(per_operand(fast.bytes), per_operand(run.bytes)) << what << " (input/weight/output/psum/epilogue)";
  EXPECT_EQ(run.simulated_ps, run.cycles * run.clock_period_ps) << what;
  for (std::uint64_t g = 0; g < mc.groups; ++g) {
    npu::IntMatrix expected = o.activations[g] * o.weights[g];
    if (mc.placement.epilogue != npu::EpilogueOperand::none) expected += o.epilogue[g];
    EXPECT_TRUE(run.outputs[g] == expected) << what << " group " << g;
  }
}

TEST(SystolicMemory, FastModelEqualsCycleSteppedReference) {
  const auto begin = std::chrono::steady_clock::now();
  traces::RandomStream rng(20261201, 3);
  std::map<Regime, int> regimes;
  int spilling = 0, kept_reuse = 0, multi_segment = 0, on_chip = 0, fused = 0;
  for (std::uint64_t i = 0; i < random_cases(); ++i) {
    const MemoryCase mc = random_memory_case(rng, i);
    const MemoryOperands o = random_operands(rng, mc);
    const std::string what = "case " + std::to_string(i) + ": " + describe(mc);
    expect_models_agree(mc, o, what);
    if (::testing::Test::HasFailure()) return;  // one readable failure, not hundreds
    const auto& b = mc.config.buffers;
    const std::uint64_t e = mc.config.element_bytes;
    const std::uint64_t input_room = b.input_bytes - mc.placement.reserved_input_bytes;
    const bool activations_fit = mc.gemm.m * mc.gemm.k * e <= input_room;
    const bool weights_fit = mc.gemm.k * mc.gemm.n * e <= b.weight_bytes;
    // A regime counts only where the drawn buffers really force it (a single weight block can
    // be the whole weight matrix, which then always fits).
    const bool forced = mc.regime == Regime::everything_fits      ? activations_fit && weights_fit
                        : mc.regime == Regime::weights_do_not_fit ? !weights_fit
                        : mc.regime == Regime::inputs_do_not_fit  ? !activations_fit
                                                                  : true;
    if (!forced) continue;
    ++regimes[mc.regime];
    const auto timing = npu::systolic_layer_timing(npu::Npu::validate(mc.config), mc.gemm, mc.groups, mc.placement);
    spilling += timing.bytes.psum > 0;
    const auto layout = npu::layout_of(mc.config.systolic.dataflow, mc.gemm);
    multi_segment += layout.streamed > 16 * std::max(mc.config.systolic.rows, mc.config.systolic.cols) ||
                     mc.regime == Regime::one_fold;
    kept_reuse += npu::folds_of(mc.config.systolic, mc.gemm).col_folds > 1 && mc.regime == Regime::everything_fits;
    on_chip += mc.placement.input_on_chip || mc.placement.output_on_chip;
    fused += mc.placement.epilogue == npu::EpilogueOperand::off_chip;
  }
  if (random_cases() < 300) return;
  for (Regime r : {Regime::everything_fits, Regime::weights_do_not_fit, Regime::inputs_do_not_fit, Regime::one_fold})
    EXPECT_GE(regimes[r], 40) << name_of(r);
  EXPECT_GE(spilling, 10);
  EXPECT_GE(multi_segment, 30);
  EXPECT_GE(kept_reuse, 10);
  EXPECT_GE(on_chip, 30);
  EXPECT_GE(fused, 30);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - begin).count();
  EXPECT_LT(seconds, 20.0) << "the agreement test should stay cheap";
}

// A stall-free array keeps SCALE-Sim's convention: the folds alone, whatever the memory; the
// bytes still follow the schedule.
TEST(SystolicMemory, StallFreeIsTheArrayCyclesExactly) {
  traces::RandomStream rng(99, 4);
  for (std::uint64_t i = 0; i < 60; ++i) {
    MemoryCase mc = random_memory_case(rng, i);
    mc.config.systolic.stall_free = true;
    const npu::Npu npu = npu::Npu::validate(mc.config);
    const auto timing = npu::systolic_layer_timing(npu, mc.gemm, mc.groups, mc.placement);
    const std::uint64_t array = mc.groups * npu::systolic_array_cycles(mc.config.systolic, mc.gemm);
    EXPECT_EQ(timing.cycles, array) << describe(mc);
    EXPECT_EQ(timing.compute_cycles, array) << describe(mc);
    mc.config.systolic.stall_free = false;
    const auto with_memory =
        npu::systolic_layer_timing(npu::Npu::validate(mc.config), mc.gemm, mc.groups, mc.placement);
    EXPECT_EQ(timing.bytes, with_memory.bytes) << describe(mc);
  }
}

// More bandwidth never costs cycles. A bigger buffer never costs bytes, and costs cycles only
// rarely and a little: the segment length and the prefetch depth follow the buffers
// (docs/systolic-memory.md §9). A layer takes at least
// its folds and at least the bus time of its bytes.
TEST(SystolicMemory, MoreBandwidthOrBufferNeverCostsCycles) {
  traces::RandomStream rng(7, 12);
  const std::uint64_t cases = random_cases();
  std::uint64_t costlier = 0;
  for (std::uint64_t i = 0; i < cases; ++i) {
    const MemoryCase mc = random_memory_case(rng, i);
    const npu::Npu npu = npu::Npu::validate(mc.config);
    const auto base = npu::systolic_layer_timing(npu, mc.gemm, mc.groups, mc.placement);
    EXPECT_GE(base.cycles, base.compute_cycles) << describe(mc);
    EXPECT_GE(base.cycles, npu.data_cycles(base.bytes.total())) << describe(mc);
    EXPECT_LE(base.compute_cycles, mc.groups * npu::systolic_array_cycles(mc.config.systolic, mc.gemm));

    npu::NpuConfig faster = mc.config;
    faster.offchip.bandwidth_gb_per_s += static_cast<double>(1 + rng.uniform_below(30'000)) / 1000.0;
    EXPECT_LE(npu::systolic_layer_timing(npu::Npu::validate(faster), mc.gemm, mc.groups, mc.placement).cycles,
              base.cycles)
        << "more bandwidth: " << describe(mc);

    npu::NpuConfig bigger = mc.config;
    const std::uint64_t which = rng.uniform_below(3);
    (which == 0 ? bigger.buffers.input_bytes : which == 1 ? bigger.buffers.weight_bytes : bigger.buffers.output_bytes) +=
        1 + rng.uniform_below(512);
    const auto roomier = npu::systolic_layer_timing(npu::Npu::validate(bigger), mc.gemm, mc.groups, mc.placement);
    EXPECT_LE(roomier.bytes.total(), base.bytes.total()) << describe(mc);
    EXPECT_LE(roomier.cycles * 4, base.cycles * 5) << "a bigger buffer " << which << ": " << describe(mc);
    costlier += roomier.cycles > base.cycles;
  }
  EXPECT_LE(costlier * 50, cases) << "a bigger buffer cost cycles in " << costlier << " cases";
}

npu::Npu memory_npu(std::uint32_t rows, std::uint32_t cols, Dataflow dataflow, npu::BufferConfig buffers,
                    double bytes_per_cycle, std::uint32_t latency_cycles, std::uint32_t queue_depth = 4) {
  npu::NpuConfig c = systolic_npu(rows, cols, dataflow, false).config();
  c.clock_mhz = 1000;  // one cycle = 1 ns: bandwidth in GB/s = bytes per cycle
  c.buffers = buffers;
  c.offchip = {bytes_per_cycle, latency_cycles, queue_depth};
  return npu::Npu::validate(c);
}

// WS on a 4 x 4 array, m = 6, k = 8, n = 4, 1-byte elements, 4 bytes a cycle, latency 10,
// everything fits. Two row folds of h = 4 over k, one column fold of w = 4; T = m = 6 rows, one
// segment a fold. Stream order: S0, S1 (two stationary blocks ahead), A0, A1 (activations
// 6 x 4 = 24 bytes a segment, both fit), then the write of the column's 6 x 4 outputs.
//   S0: issue 0, bus 10..14 (16 bytes / 4), done 14.  S1: issue 0, bus 14..18, done 18.
//   A0: issue 0, bus 18..24, done 24.                 A1: issue 0, bus 24..30, done 30.
//   Fold 0: shift 14..18, streams 24..30 (waits for A0), results by 30 + 4 + 4 - 2 = 36.
//   Fold 1: its block shifts into the shadow from 24 (fold 0 began streaming) to 28, hidden;
//           streams 36..42 (A1 long there), fold ends 42 + 4 + 4 - 2 = 48.
//   Write 6 x 4 = 24 bytes: ready 48, bus 58..64 -> the layer takes 64 cycles.
// Without the shadow registers fold 1 would pay its 4-cycle shift again (52 + 16 = 68).
// Compute cycles: shift 4, fold 0 ends 4 + 6 + 6 = 16, fold 1 (shift hidden) 16 + 12 = 28.
TEST(SystolicMemory, HandWorkedWeightStationaryHidesTheSecondWeightLoad) {
  const npu::Npu npu = memory_npu(4, 4, Dataflow::weight_stationary, {1024, 1024, 1024}, 4.0, 10);
  const auto t = npu::systolic_layer_timing(npu, {6, 8, 4}, 1);
  EXPECT_EQ(t.cycles, 64u);
  EXPECT_EQ(t.compute_cycles, 28u);
  EXPECT_EQ(t.bytes.weight, 32u);
  EXPECT_EQ(t.bytes.input, 48u);
  EXPECT_EQ(t.bytes.output, 24u);
  EXPECT_EQ(t.bytes.psum, 0u);
  // Today's closed form without memory: (8 + 4 + 6 - 2) * 2 = 32 cycles of array.
  EXPECT_EQ(npu::systolic_array_cycles(npu.config().systolic, {6, 8, 4}), 32u);
}

// The same GEMM with an output buffer too small for the column's accumulators (6 x 4 x 4 =
// 96 bytes > 64): partial sums spill. Segment rows: 64 / (2 * 4 * 4) = 2, so 3 segments a
// fold; fold 0 writes 3 partial blocks of 2 x 4 x 4 = 32 bytes, fold 1 reads them back:
// psum traffic 2 * 96 = 192 bytes, the outputs 24 bytes once.
TEST(SystolicMemory, PartialSumsSpillWhenTheColumnDoesNotFit) {
  const npu::Npu npu = memory_npu(4, 4, Dataflow::weight_stationary, {1024, 1024, 64}, 4.0, 10);
  const auto t = npu::systolic_layer_timing(npu, {6, 8, 4}, 1);
  EXPECT_EQ(t.bytes.psum, 192u);
  EXPECT_EQ(t.bytes.output, 24u);
  const auto fits = npu::systolic_layer_timing(memory_npu(4, 4, Dataflow::weight_stationary, {1024, 1024, 96}, 4.0, 10),
                                               {6, 8, 4}, 1);
  EXPECT_EQ(fits.bytes.psum, 0u);
  EXPECT_LT(fits.cycles, t.cycles);
}

// OS on a 2 x 2 array, m = 4, k = 3, n = 2, one byte a cycle, no latency, queue of 1, and an
// output buffer for two folds' 2 x 2 x 4-byte accumulators.
// Row folds over m (2 of h = 2), one column fold over n (w = 2); T = k = 3, one segment a fold.
// Activations 4 x 3 = 12 bytes fit the 12-byte input buffer -> read once; the weight column
// block 3 x 2 = 6 bytes fits -> read once for both row folds. Stream order: W0 (slot -1,
// weights first), A0, A1 (fetched ahead: 12 / 6 = 2 segments fit), then per fold its write.
//   W0 bus 0..6, A0 6..12, A1 12..18.  Fold 0 streams 12..15, ends 15 + 2 + 2 - 2 = 17.
//   Fold 1 streams 18..21, ends 23.  Write of fold 0 (4 bytes): ready 17, issue 18 (the queue
//   holds one request: A1 completes at 18), bus 18..22.  Write of fold 1: bus 23..27.
// With room for one fold's accumulators (16 bytes) fold 1 waits for fold 0's write to free
// them: it streams 22..25, ends 27, and its write takes the bus 27..31.
TEST(SystolicMemory, HandWorkedOutputStationaryReadsEachOperandOnce) {
  EXPECT_EQ(npu::systolic_layer_timing(memory_npu(2, 2, Dataflow::output_stationary, {12, 6, 16}, 1.0, 0, 1),
                                       {4, 3, 2}, 1)
                .cycles,
            31u);
  const npu::Npu npu = memory_npu(2, 2, Dataflow::output_stationary, {12, 6, 32}, 1.0, 0, 1);
  const auto t = npu::systolic_layer_timing(npu, {4, 3, 2}, 1);
  EXPECT_EQ(t.bytes.input, 12u);
  EXPECT_EQ(t.bytes.weight, 6u);
  EXPECT_EQ(t.bytes.output, 8u);
  EXPECT_EQ(t.cycles, 27u);
  EXPECT_EQ(t.compute_cycles, 2u * (3 + 2 + 2 - 2));
  // A 5-byte weight buffer cannot keep the 6-byte column block: it is read again per row fold.
  EXPECT_EQ(npu::systolic_layer_timing(memory_npu(2, 2, Dataflow::output_stationary, {12, 5, 32}, 1.0, 0, 1),
                                       {4, 3, 2}, 1)
                .bytes.weight,
            12u);
}

// Placement: activations on chip make no input loads (IS: no stationary loads at all), outputs
// on chip no writes, an off-chip fused add one read of the outputs' bytes.
TEST(SystolicMemory, PlacementRemovesOrAddsTraffic) {
  const npu::Npu npu = memory_npu(4, 4, Dataflow::input_stationary, {4096, 4096, 4096}, 8.0, 20);
  const npu::SystolicGemm gemm{8, 6, 5};
  const auto plain = npu::systolic_layer_timing(npu, gemm, 2);
  EXPECT_EQ(plain.bytes.input, 2u * 8 * 6);
  EXPECT_EQ(plain.bytes.weight, 2u * 6 * 5);
  EXPECT_EQ(plain.bytes.output, 2u * 8 * 5);
  npu::Placement on_chip;
  on_chip.input_on_chip = on_chip.output_on_chip = true;
  const auto resident = npu::systolic_layer_timing(npu, gemm, 2, on_chip);
  EXPECT_EQ(resident.bytes.input, 0u);
  EXPECT_EQ(resident.bytes.output, 0u);
  EXPECT_LT(resident.cycles, plain.cycles);
  npu::Placement fused;
  fused.epilogue = npu::EpilogueOperand::off_chip;
  const auto with_add = npu::systolic_layer_timing(npu, gemm, 2, fused);
  EXPECT_EQ(with_add.bytes.epilogue, 2u * 8 * 5);
  EXPECT_GE(with_add.cycles, plain.cycles);
  fused.reserved_input_bytes = 4096;  // no room left for the stationary activations
  EXPECT_THROW(npu::systolic_layer_timing(npu, gemm, 2, fused), std::invalid_argument);
}

TEST(Systolic, ValidateRejectsOtherBatchingModes) {
  npu::NpuConfig c;
  c.array = npu::ArrayKind::systolic;
  c.modes = {npu::BatchingMode::r_batching, npu::BatchingMode::fluid};
  c.stack_factors = {1};
  try {
    npu::Npu::validate(c);
    FAIL() << "fluid batching was accepted on a systolic array";
  } catch (const npu::NpuConfigError& e) {
    EXPECT_EQ(e.key(), "batching.modes");
  }
  c.modes = {npu::BatchingMode::r_batching};
  c.systolic.rows = 0;
  EXPECT_THROW(npu::Npu::validate(c), npu::NpuConfigError);
}

}  // namespace
}  // namespace npusim
