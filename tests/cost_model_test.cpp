// Timing tests with the arithmetic written out, plus properties of the closed-form model.

#include <gtest/gtest.h>

#include "npu_model/cost_model.hpp"
#include "random_npu.hpp"

namespace npusim {
namespace {

// A toy NPU where every number is easy: 4 PEs x 4 lanes, T_R = 4, 1 GHz, 4 GB/s = 4 bytes per
// cycle, 10 ns = 10 cycles of latency, int8 data, int32 accumulators.
// Pipeline depth D = 1 multiply + log2(4) = 2 adder levels + 1 accumulate = 4 cycles.
// n bytes hold the bus for ceil(n / 4) cycles. The requests of a phase are issued together, so
// loads of L bus cycles take 10 + L; a write issued D cycles in ends at 10 + max(L, D) + W.
npu::NpuConfig toy_config() {
  npu::NpuConfig c;
  c.name = "toy";
  c.clock_mhz = 1000;
  c.pe_count = 4;
  c.pe_width = 4;
  c.input_rows = 4;
  c.element_bytes = 1;
  c.accumulator_bytes = 4;
  c.vector_lanes = 4;
  c.buffers.input_bytes = 32;   // two 4x4 int8 input tiles
  c.buffers.weight_bytes = 32;  // two 4x4 int8 weight tiles
  c.buffers.output_bytes = 128; // two 4x4 int32 accumulator tiles
  c.offchip.bandwidth_gb_per_s = 4.0;
  c.offchip.latency_ns = 10;
  c.stack_factors = {1, 2};
  return c;
}

TEST(CostModel, ToyNpuDerivedConstants) {
  const auto npu = npu::Npu::validate(toy_config());
  EXPECT_EQ(npu.latency_cycles(), 10u);
  EXPECT_EQ(npu.data_cycles(16), 4u);       // 16 / 4
  EXPECT_EQ(npu.data_cycles(17), 5u);       // ceil(17 / 4)
  EXPECT_EQ(npu.transfer_cycles(16), 14u);  // 10 + 4
  EXPECT_EQ(npu.transfer_cycles(0), 0u);    // no request at all
  EXPECT_EQ(npu.geometry(1).pipeline_depth_cycles, 4u);  // 1 + 2 + 1
  EXPECT_EQ(npu.geometry(2).pipeline_depth_cycles, 5u);  // 1 + 2 + log2(2) + 1
  EXPECT_TRUE(npu.geometry(1).double_buffered);
}

TEST(CostModel, DoubleBufferedRBatchingWorkedExample) {
  const auto npu = npu::Npu::validate(toy_config());
  // R=8, P=4, C=4, batch 1: two R tiles of 4 rows, one P step, one C tile. The weight buffer
  // holds 2 tiles >= 1 P step + 1 prefetch slot, so weights are fetched once.
  const auto cost = npu::gemm_cost(npu, {8, 4, 4, 1}, 1, {1, 1, 1});
  // head:    10 + input 16 B (4) + weights 16 B (4)                       = 18
  // phase 0: stream 4 rows || 10 + load step 1 input (4)    -> max(4, 14) = 14
  // phase 1: stream 4 rows || 10 + max(no load 0, D 4) + write tile 0 16 B (4)
  //                                                          -> max(4, 18) = 18
  // tail:    10 + D 4 + write tile 1 (4)                                  = 18
  EXPECT_EQ(cost.cycles, 18u + 14u + 18u + 18u);
  EXPECT_EQ(cost.compute_cycles, 8u);
  EXPECT_EQ(cost.stall_cycles, 68u - 8u);
  EXPECT_EQ(cost.offchip_bytes, 32u + 16u + 32u);  // inputs 2x16, weights 16, outputs 2x16
  EXPECT_EQ(cost.macs, 8u * 4u * 4u);
  EXPECT_DOUBLE_EQ(cost.mac_utilisation, 128.0 / (68.0 * 16.0));
}

// The worked example of docs/npu-model.md section 5.
TEST(CostModel, StreamedWeightsWorkedExample) {
  const auto npu = npu::Npu::validate(toy_config());
  // R=8, P=8, C=4: 2 R tiles x 2 P steps x 1 C tile = 4 steps. The weight buffer has 2 slots
  // < 2 P steps + 1, so weights are streamed with every step: each load is input 16 B (4) +
  // weights 16 B (4) = 8 bus cycles.
  const auto cost = npu::gemm_cost(npu, {8, 8, 4, 1}, 1, {1, 1, 1});
  // head:            10 + 8                                   = 18
  // step 0 (t0, p0): max(4 rows, 10 + 8)                      = 18
  // step 1 (t0, p1): max(4 rows, 10 + 8)                      = 18
  // step 2 (t1, p0): max(4 rows, 10 + max(8, D 4) + write 4)  = 22
  // step 3 (t1, p1): max(4 rows, no requests 0)               =  4
  // tail:            10 + D 4 + write 4                       = 18
  EXPECT_EQ(cost.cycles, 18u + 18u + 18u + 22u + 4u + 18u);
  EXPECT_EQ(cost.compute_cycles, 16u);                // 4 steps x 4 rows
  EXPECT_EQ(cost.offchip_bytes, 4u * 32u + 2u * 16u);  // 4 loads of 32 B, 2 tile writes
}

TEST(CostModel, SingleOutputBufferSerialisesThePhases) {
  auto config = toy_config();
  config.buffers.output_bytes = 64;  // one accumulator tile: no double buffering
  const auto npu = npu::Npu::validate(config);
  EXPECT_FALSE(npu.geometry(1).double_buffered);
  const auto cost = npu::gemm_cost(npu, {8, 4, 4, 1}, 1, {1, 1, 1});
  // head:    18 as above
  // phase 0: 4 rows, then 10 + max(load step 1: 4, D 4) + write tile 0 (4)   = 4 + 18 = 22
  // phase 1: 4 rows, then 10 + max(nothing to load: 0, D 4) + write tile 1 (4) = 4 + 18 = 22
  EXPECT_EQ(cost.cycles, 18u + 22u + 22u);
}

TEST(CostModel, PBatchingFillsIdleLanesOfASmallPLayer) {
  const auto npu = npu::Npu::validate(toy_config());
  // R=4, P=2, C=1 with batch 2.
  // <1,2,1>: effective 4 x 4 x 2 (block-diagonal weights), one tile.
  //   head: 10 + input 4x4 = 16 B (4) + 2 distinct weights (1)       = 15
  //   phase 0: 4 rows, nothing to load                               =  4
  //   tail: 10 + D 4 + write 4x2 = 8 B (2)                           = 16
  const auto p_batched = npu::gemm_cost(npu, {4, 2, 1, 1}, 2, {1, 2, 1});
  EXPECT_EQ(p_batched.cycles, 15u + 4u + 16u);
  // <2,1,1>: effective 8 x 2 x 1, two R tiles.
  //   head: 10 + input 4x2 = 8 B (2) + weights 2 B (1)               = 13
  //   phase 0: 4 rows || 10 + load input 8 B (2)                     = 12
  //   phase 1: 4 rows || 10 + max(0, D 4) + write 4x1 = 4 B (1)      = 15
  //   tail: 10 + D 4 + write 4 B (1)                                 = 15
  const auto r_batched = npu::gemm_cost(npu, {4, 2, 1, 1}, 2, {2, 1, 1});
  EXPECT_EQ(r_batched.cycles, 13u + 12u + 15u + 15u);
  const auto best = npu::best_gemm_cost(npu, {4, 2, 1, 1}, 2);
  EXPECT_EQ(best.mapping, (npu::BatchMapping{1, 2, 1}));
  EXPECT_EQ(best.cycles, p_batched.cycles);
}

TEST(CostModel, GroupsRunBackToBack) {
  const auto npu = npu::Npu::validate(toy_config());
  const auto one = npu::gemm_cost(npu, {8, 4, 4, 1}, 1, {1, 1, 1});
  const auto three = npu::gemm_cost(npu, {8, 4, 4, 3}, 1, {1, 1, 1});
  EXPECT_EQ(three.cycles, 3 * one.cycles);
  EXPECT_EQ(three.offchip_bytes, 3 * one.offchip_bytes);
  EXPECT_EQ(three.macs, 3 * one.macs);
}

TEST(CostModel, GroupsArePackedSideBySideInP) {
  const auto npu = npu::Npu::validate(toy_config());
  // R=8, P=2, C=4 per group, 3 groups, batch 1, <1,1,1>: floor(4 lanes / 2) = 2 groups a pass,
  // so one pass of 2 groups (8 x 4 x 8, block-diagonal) and one of the last group (8 x 2 x 4).
  EXPECT_EQ(npu::groups_per_pass(npu, {8, 2, 4, 3}, {1, 1, 1}), 2u);
  const auto cost = npu::gemm_cost(npu, {8, 2, 4, 3}, 1, {1, 1, 1});
  // Pass of 2 groups: 2 R tiles x 2 C tiles, weights resident (2 slots >= 1 step + 1).
  // A load: input 4x4 = 16 B (4); weights of a C tile: 2 rows x min(4, 2 * 4) distinct = 8 B (2).
  //   head:        10 + 4 + 2                        = 16
  //   (c0,r0):     max(4, 10 + 4)                    = 14
  //   (c0,r1):     max(4, 10 + max(4 + 2, D 4) + 4)  = 20   (writes tile (c0,r0))
  //   (c1,r0):     max(4, 10 + max(4, 4) + 4)        = 18
  //   (c1,r1):     max(4, 10 + max(0, 4) + 4)        = 18
  //   tail:        10 + 4 + 4                        = 18   -> 104
  // Pass of 1 group: input 4x2 = 8 B (2), weights 2x4 = 8 B (2), tiles 4x4 = 16 B (4).
  //   head 10 + 2 + 2 = 14; (r0) max(4, 10 + 2) = 12; (r1) max(4, 10 + 4 + 4) = 18;
  //   tail 10 + 4 + 4 = 18                                  -> 62
  EXPECT_EQ(cost.cycles, 104u + 62u);
  EXPECT_EQ(cost.macs, 8u * 2u * 4u * 3u);
  // Without packing room (P = 4 fills the 4 lanes) the groups run one by one.
  EXPECT_EQ(npu::groups_per_pass(npu, {8, 4, 4, 3}, {1, 1, 1}), 1u);
  // Nor on an NPU without the block-diagonal logic of P-batching.
  auto r_only = toy_config();
  r_only.modes = {npu::BatchingMode::r_batching};
  const auto baseline = npu::Npu::validate(r_only);
  EXPECT_EQ(npu::groups_per_pass(baseline, {8, 2, 4, 3}, {1, 1, 1}), 1u);
  EXPECT_GT(npu::gemm_cost(baseline, {8, 2, 4, 3}, 1, {1, 1, 1}).cycles, cost.cycles);
}

TEST(CostModel, IllegalMappingsAreRejectedWithTheReason) {
  const auto npu = npu::Npu::validate(toy_config());
  const npu::GemmShape shape{4, 3, 4, 1};
  EXPECT_THROW(npu::gemm_cost(npu, shape, 4, {1, 1, 1}), npu::InvalidMapping);  // b_r != 4
  EXPECT_THROW(npu::gemm_cost(npu, shape, 4, {4, 1, 4}), npu::InvalidMapping);  // k not allowed
  // b_p * P <= k * T_P: 2 * 3 = 6 > 4 lanes at k = 1, but fits the 8 lanes of k = 2.
  EXPECT_NE(npu::mapping_violation(npu, shape, 2, {1, 2, 1}).find("exceeds"), std::string::npos);
  EXPECT_EQ(npu::mapping_violation(npu, shape, 2, {1, 2, 2}), "");
  auto r_only = toy_config();
  r_only.modes = {npu::BatchingMode::r_batching};
  const auto baseline = npu::Npu::validate(r_only);
  EXPECT_NE(npu::mapping_violation(baseline, {4, 1, 1, 1}, 2, {1, 2, 1}).find("not enabled"),
            std::string::npos);
  EXPECT_EQ(npu::best_gemm_cost(baseline, {4, 1, 1, 1}, 2).mapping.b_p, 1u);
}

TEST(CostModel, VectorPathCost) {
  const auto npu = npu::Npu::validate(toy_config());
  // 2x2 max-pool over 4x4x2 -> 2x2x2: 32 inputs, 8 outputs, 8 * 4 = 32 ops, batch 2.
  const npu::VectorWork work{32, 8, 32};
  const auto cost = npu::vector_cost(npu, work, 2);
  // compute: 64 ops / 4 lanes = 16; channel: 10 + read 64 B (16) + write 16 B (4) = 30
  EXPECT_EQ(cost.compute_cycles, 16u);
  EXPECT_EQ(cost.cycles, 30u);
  EXPECT_EQ(cost.offchip_bytes, 80u);
}

// Properties over random cases.
class CostModelProperties : public ::testing::Test {
 protected:
  traces::RandomStream rng{4242, 2};
};

TEST_F(CostModelProperties, BreakdownIsConsistentAndBounded) {
  for (int i = 0; i < 2000; ++i) {
    auto c = testing::random_case(rng);
    const auto npu = npu::Npu::validate(c.config);
    c.mapping = testing::random_legal_mapping(npu, c, rng);
    const auto cost = npu::gemm_cost(npu, c.shape, c.batch, c.mapping);
    ASSERT_LE(cost.compute_cycles, cost.cycles);
    ASSERT_EQ(cost.stall_cycles, cost.cycles - cost.compute_cycles);
    ASSERT_GT(cost.mac_utilisation, 0.0);
    ASSERT_LE(cost.mac_utilisation, 1.0);
    // Every sample's input is read and its output written at least once.
    const std::uint64_t eb = c.config.element_bytes;
    ASSERT_GE(cost.offchip_bytes, c.batch * (c.shape.rows * c.shape.depth + c.shape.rows * c.shape.cols) * eb);
  }
}

TEST_F(CostModelProperties, SlowerMemoryNeverHelps) {
  for (int i = 0; i < 2000; ++i) {
    auto c = testing::random_case(rng);
    const auto fast = npu::Npu::validate(c.config);
    c.mapping = testing::random_legal_mapping(fast, c, rng);
    auto slow_config = c.config;
    slow_config.offchip.bandwidth_gb_per_s = std::max(0.001, std::round(c.config.offchip.bandwidth_gb_per_s * 500.0) / 1000.0);
    slow_config.offchip.latency_ns += static_cast<std::uint32_t>(rng.uniform_below(20));
    const auto slow = npu::Npu::validate(slow_config);
    ASSERT_GE(npu::gemm_cost(slow, c.shape, c.batch, c.mapping).cycles,
              npu::gemm_cost(fast, c.shape, c.batch, c.mapping).cycles);
  }
}

TEST_F(CostModelProperties, BestMappingIsNoWorseThanAnyLegalMapping) {
  for (int i = 0; i < 500; ++i) {
    auto c = testing::random_case(rng);
    const auto npu = npu::Npu::validate(c.config);
    const auto best = npu::best_gemm_cost(npu, c.shape, c.batch);
    ASSERT_TRUE(npu::mapping_violation(npu, c.shape, c.batch, best.mapping).empty());
    for (auto k : npu.config().stack_factors)
      for (std::uint32_t b_p = 1; b_p <= c.batch; ++b_p) {
        const npu::BatchMapping m{(c.batch + b_p - 1) / b_p, b_p, k};
        if (!npu::mapping_violation(npu, c.shape, c.batch, m).empty()) continue;
        ASSERT_LE(best.cycles, npu::gemm_cost(npu, c.shape, c.batch, m).cycles);
      }
  }
}

}  // namespace
}  // namespace npusim
