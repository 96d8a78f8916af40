// Property: the closed-form cost model and the cycle-stepped SystemC reference agree to the
// cycle (and on compute cycles and off-chip bytes), and the reference computes the same
// numbers as Eigen's GEMM, on random (layer, batch, mapping, npu) cases.
//
// NPUSIM_REFERENCE_CASES=<n> runs n cases instead of the default 1000 (e.g. 100000 for a
// soak run); NPUSIM_REFERENCE_SEED=<s> changes the seed.

#include <cstdlib>
#include <string>

#include <gtest/gtest.h>

#include "npu_model/cost_model.hpp"
#include "npu_model/reference_array.hpp"
#include "random_npu.hpp"

namespace npusim {
namespace {

std::uint64_t env_or(const char* name, std::uint64_t fallback) {
  const char* value = std::getenv(name);
  return value ? std::stoull(value) : fallback;
}

struct Coverage {
  int serial = 0, double_buffered = 0, streamed_weights = 0, p_batched = 0, fluid = 0,
      stacked = 0, multi_p_step = 0, packed_groups = 0, remainder_pass = 0;
};

TEST(ReferenceAgreement, ClosedFormEqualsCycleSteppedReferenceAndEigen) {
  const std::uint64_t cases = env_or("NPUSIM_REFERENCE_CASES", 1000);
  traces::RandomStream rng(env_or("NPUSIM_REFERENCE_SEED", 20221030), 1);
  Coverage seen;
  for (std::uint64_t i = 0; i < cases; ++i) {
    auto c = testing::random_case(rng);
    const npu::Npu npu = npu::Npu::validate(c.config);
    c.mapping = testing::random_legal_mapping(npu, c, rng);
    const auto operands = testing::random_operands(rng, c.shape, c.batch);

    const npu::LayerCost model = npu::gemm_cost(npu, c.shape, c.batch, c.mapping);
    const npu::ReferenceRun reference =
        npu::run_reference_array(npu, operands.weights, operands.inputs, c.mapping);

    const auto& g = npu.geometry(c.mapping.k);
    const std::uint64_t packed = npu::groups_per_pass(npu, c.shape, c.mapping);
    const auto e = npu::effective_gemm(c.shape, c.mapping, packed);
    const std::uint64_t p_steps = (e.depth + g.tile_depth - 1) / g.tile_depth;
    const std::string where = ::testing::PrintToString(i) + ": npu " +
        std::to_string(c.config.pe_count) + "x" + std::to_string(c.config.pe_width) + " T_R " +
        std::to_string(c.config.input_rows) + (g.double_buffered ? " double" : " serial") +
        ", gemm " + std::to_string(c.shape.rows) + "x" + std::to_string(c.shape.depth) + "x" +
        std::to_string(c.shape.cols) + " x " + std::to_string(c.shape.groups) + " groups (" +
        std::to_string(packed) + " a pass), batch " + std::to_string(c.batch) + ", mapping " +
        npu::to_string(c.mapping);
    ASSERT_EQ(model.cycles, reference.cycles) << "case " << where;
    ASSERT_EQ(model.compute_cycles, reference.compute_cycles) << "case " << where;
    ASSERT_EQ(model.offchip_bytes, reference.offchip_bytes) << "case " << where;
    ASSERT_EQ(reference.simulated_ps, reference.cycles * reference.clock_period_ps)
        << "case " << where;
    for (std::uint32_t b = 0; b < c.batch; ++b)
      for (std::uint64_t grp = 0; grp < c.shape.groups; ++grp) {
        const npu::IntMatrix expected = operands.inputs[b][grp] * operands.weights[grp];
        ASSERT_EQ(reference.outputs[b][grp], expected) << "case " << where << ", sample " << b << ", group " << grp;
      }

    seen.serial += g.double_buffered ? 0 : 1;
    seen.double_buffered += g.double_buffered ? 1 : 0;
    seen.streamed_weights += g.weight_tile_slots < p_steps + (g.double_buffered ? 1 : 0) ? 1 : 0;
    seen.p_batched += npu::mode_of(c.mapping) == npu::BatchingMode::p_batching ? 1 : 0;
    seen.fluid += npu::mode_of(c.mapping) == npu::BatchingMode::fluid ? 1 : 0;
    seen.stacked += c.mapping.k > 1 ? 1 : 0;
    seen.multi_p_step += p_steps > 1 ? 1 : 0;
    seen.packed_groups += packed > 1 ? 1 : 0;
    seen.remainder_pass += c.shape.groups % packed != 0 ? 1 : 0;
  }
  // The random cases must actually reach every regime of the schedule.
  if (cases >= 1000) {
    EXPECT_GT(seen.serial, 20);
    EXPECT_GT(seen.double_buffered, 20);
    EXPECT_GT(seen.streamed_weights, 20);
    EXPECT_GT(seen.p_batched, 20);
    EXPECT_GT(seen.fluid, 20);
    EXPECT_GT(seen.stacked, 20);
    EXPECT_GT(seen.multi_p_step, 20);
    EXPECT_GT(seen.packed_groups, 20);
    EXPECT_GT(seen.remainder_pass, 10);
  }
}

}  // namespace
}  // namespace npusim

namespace npusim {
namespace {

// Real layer shapes on the default NPU, under the mapping the FBE would pick.
TEST(ReferenceAgreement, RealLayersOnTheDefaultNpu) {
  const npu::Npu npu = npu::Npu::validate(npu::NpuConfig{});
  traces::RandomStream rng(77, 4);
  struct Case {
    const char* name;
    npu::GemmShape shape;
    std::uint32_t batch;
  };
  const Case cases[] = {
      {"resnet56 conv1, batch 2", {32 * 32, 27, 16, 1}, 2},
      {"resnet56 stage3 conv, batch 1", {8 * 8, 576, 64, 1}, 1},
      {"resnet56 exit classifier fc, batch 4", {1, 64, 100, 1}, 4},
      {"resnet56 stage1 conv, batch 4", {32 * 32, 144, 16, 1}, 4},
      {"resnet50 layer4 3x3 conv, batch 2", {7 * 7, 3 * 3 * 512, 512, 1}, 2},
      {"mobilenetv2 block2 depthwise (one group), batch 8", {56 * 56, 9, 1, 1}, 8},
  };
  for (const auto& c : cases) {
    const npu::LayerCost best = npu::best_gemm_cost(npu, c.shape, c.batch);
    const npu::IntMatrix weights = testing::random_matrix(rng, c.shape.depth, c.shape.cols);
    std::vector<npu::IntMatrix> inputs;
    for (std::uint32_t b = 0; b < c.batch; ++b)
      inputs.push_back(testing::random_matrix(rng, c.shape.rows, c.shape.depth));
    const auto reference = npu::run_reference_array(npu, weights, inputs, best.mapping);
    EXPECT_EQ(best.cycles, reference.cycles) << c.name << " " << npu::to_string(best.mapping);
    EXPECT_EQ(best.offchip_bytes, reference.offchip_bytes) << c.name;
    for (std::uint32_t b = 0; b < c.batch; ++b) EXPECT_EQ(reference.outputs[b][0], inputs[b] * weights) << c.name;
  }
}

}  // namespace
}  // namespace npusim
