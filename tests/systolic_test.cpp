// The systolic array: the closed-form fold arithmetic against the cycle-stepped SystemC
// reference (cycles) and Eigen (results), hand-computed folds for each dataflow, SCALE-Sim v2's
// reporting convention, and the cost model on a systolic NPU.
//
// NPUSIM_SYSTOLIC_CASES=<n> runs n random cases instead of 300.

#include <cstdlib>
#include <string>

#include <gtest/gtest.h>

#include "npu_model/cost_model.hpp"
#include "npu_model/systolic.hpp"
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
  EXPECT_EQ(bound.cycles, 100u + 96 * 2);  // the channel, not the 48-cycle array, decides
  EXPECT_EQ(bound.stall_cycles, bound.cycles - 48);
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
