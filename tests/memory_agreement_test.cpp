// Properties of the memory schedule's fast evaluation (npu_model/memory_schedule.hpp):
//  - it equals the cycle-stepped SystemC reference (npu_model/memory_reference.hpp), cycles and
//    bytes per operand, on random layers, mappings, tilings and placements that reach every
//    buffer regime and every placement flag;
//  - its jumps over periodic stretches change nothing: it equals a step-by-step walk.
//
// NPUSIM_MEMORY_CASES=<n> runs n reference cases instead of 1,000; NPUSIM_MEMORY_SEED=<s>
// changes the seed.

#include <cstdlib>
#include <string>

#include <gtest/gtest.h>

#include "npu_model/memory_reference.hpp"
#include "npu_model/memory_schedule.hpp"
#include "random_layer.hpp"

namespace npusim {
namespace {

std::uint64_t env_or(const char* name, std::uint64_t fallback) {
  const char* value = std::getenv(name);
  return value ? std::stoull(value) : fallback;
}

std::string describe(const testing::RandomLayerCase& c, const npu::BatchMapping& m, const npu::Tiling& t,
                     const npu::Placement& p) {
  const auto& w = c.shape.window;
  return "npu " + std::to_string(c.config.pe_count) + "x" + std::to_string(c.config.pe_width) + " buffers " +
         std::to_string(c.config.buffers.input_bytes) + "/" + std::to_string(c.config.buffers.weight_bytes) + "/" +
         std::to_string(c.config.buffers.output_bytes) + " queue " + std::to_string(c.config.offchip.queue_depth) +
         ", layer " + std::to_string(c.shape.rows) + "x" + std::to_string(c.shape.depth) + "x" +
         std::to_string(c.shape.cols) + " g" + std::to_string(c.shape.groups) + " window " +
         std::to_string(w.in_height) + "x" + std::to_string(w.in_width) + " k" + std::to_string(w.kernel_height) +
         "x" + std::to_string(w.kernel_width) + " s" + std::to_string(w.stride_height) + " p" +
         std::to_string(w.padding_height) + ", batch " + std::to_string(c.batch) + ", mapping " + npu::to_string(m) +
         ", tiling " + npu::to_string(t) + ", placement input_on_chip " + std::to_string(p.input_on_chip) +
         " output_on_chip " + std::to_string(p.output_on_chip) + " epilogue " +
         std::to_string(static_cast<int>(p.epilogue)) + " reserved " + std::to_string(p.reserved_input_bytes);
}

std::uint64_t input_tensor_bytes(const testing::RandomLayerCase& c) {
  const npu::FeatureMap fm = npu::feature_map_of(c.shape);
  return c.batch * fm.height * fm.width * fm.channels * c.shape.groups * c.config.element_bytes;
}

// Random operands in the reference's layout (memory_reference.hpp).
struct Operands {
  std::vector<npu::IntMatrix> feature_maps;
  std::vector<npu::IntMatrix> weights;
  std::vector<std::vector<npu::IntMatrix>> epilogue;  // a fused add's second operand, if any
};

Operands random_operands(traces::RandomStream& rng, const testing::RandomLayerCase& c, const npu::Placement& p) {
  const npu::FeatureMap fm = npu::feature_map_of(c.shape);
  Operands o;
  for (std::uint32_t b = 0; b < c.batch; ++b)
    o.feature_maps.push_back(testing::random_matrix(rng, fm.height * fm.width, fm.channels * c.shape.groups));
  for (std::uint64_t g = 0; g < c.shape.groups; ++g)
    o.weights.push_back(testing::random_matrix(rng, c.shape.depth, c.shape.cols));
  if (p.epilogue != npu::EpilogueOperand::none) {
    o.epilogue.resize(c.batch);
    for (auto& sample : o.epilogue)
      for (std::uint64_t g = 0; g < c.shape.groups; ++g)
        sample.push_back(testing::random_matrix(rng, fm.out_height * fm.out_width, c.shape.cols));
  }
  return o;
}

struct Regimes {
  int feasible = 0, everything_fits = 0, weights_do_not_fit = 0, inputs_do_not_fit = 0, tight_output = 0,
      halo_reuse = 0, chunks = 0, block_diagonal = 0, weights_outer = 0, prefetch = 0, default_placement = 0,
      input_on_chip = 0, output_on_chip = 0, epilogue_on_chip = 0, epilogue_off_chip = 0, reserved = 0;
};

TEST(MemoryAgreement, FastEvaluationEqualsCycleSteppedReference) {
  const std::uint64_t cases = env_or("NPUSIM_MEMORY_CASES", 1000);
  traces::RandomStream rng(env_or("NPUSIM_MEMORY_SEED", 20261201), 1);
  Regimes seen;
  std::uint64_t tried = 0;
  while (static_cast<std::uint64_t>(seen.feasible) < cases) {
    ASSERT_LT(++tried, cases * 20) << "too few feasible random tilings";
    auto c = testing::random_layer_case(rng);
    const npu::Placement p = testing::random_placement(rng, c.config, c.shape, c.batch);
    const npu::Npu npu = npu::Npu::validate(c.config);
    const npu::BatchMapping m = testing::random_mapping(npu, c, rng);
    const npu::Tiling t = testing::random_tiling(npu, c, m, rng);
    const npu::ScheduleResult fast = npu::evaluate_schedule(npu, c.shape, c.batch, m, t, ~0ull, p);
    if (!fast.feasible) continue;
    ++seen.feasible;
    const Operands o = random_operands(rng, c, p);
    const std::string where = "case " + std::to_string(seen.feasible) + ": " + describe(c, m, t, p);
    npu::MemoryReferenceRun ref;
    ASSERT_NO_THROW(ref = npu::run_memory_reference(npu, c.shape, c.batch, m, t, o.feature_maps, o.weights, p,
                                                    o.epilogue))
        << where;
    ASSERT_EQ(fast.cycles, ref.cycles) << where;
    ASSERT_EQ(fast.compute_cycles, ref.compute_cycles) << where;
    ASSERT_EQ(fast.bytes.input, ref.bytes.input) << where;
    ASSERT_EQ(fast.bytes.weight, ref.bytes.weight) << where;
    ASSERT_EQ(fast.bytes.output, ref.bytes.output) << where;
    ASSERT_EQ(fast.bytes.psum, ref.bytes.psum) << where;
    ASSERT_EQ(fast.bytes.epilogue, ref.bytes.epilogue) << where;

    const npu::FeatureMap fm = npu::feature_map_of(c.shape);
    const std::uint64_t weights_all = c.shape.depth * c.shape.cols * c.shape.groups * c.config.element_bytes;
    const std::uint64_t input_all = input_tensor_bytes(c);
    const std::uint64_t input_room = c.config.buffers.input_bytes - p.reserved_input_bytes;
    if (weights_all <= c.config.buffers.weight_bytes && input_all <= input_room) ++seen.everything_fits;
    if (weights_all > c.config.buffers.weight_bytes) ++seen.weights_do_not_fit;
    if (input_all > input_room) ++seen.inputs_do_not_fit;
    if (c.config.buffers.output_bytes < 2 * fm.out_width * c.shape.cols * c.config.accumulator_bytes) ++seen.tight_output;
    if (t.band_rows < fm.out_height && fm.kernel_height > fm.stride_height) ++seen.halo_reuse;
    if (t.channel_chunks > 1) ++seen.chunks;
    if (m.b_p * npu::groups_per_pass(npu, c.shape, m) > 1) ++seen.block_diagonal;
    if (t.order == npu::LoopOrder::weights_outer) ++seen.weights_outer;
    if (t.input_prefetch > 0 || t.weight_prefetch > 0) ++seen.prefetch;
    if (p == npu::Placement{}) ++seen.default_placement;
    if (p.input_on_chip) ++seen.input_on_chip;
    if (p.output_on_chip) ++seen.output_on_chip;
    if (p.epilogue == npu::EpilogueOperand::on_chip) ++seen.epilogue_on_chip;
    if (p.epilogue == npu::EpilogueOperand::off_chip) ++seen.epilogue_off_chip;
    if (p.reserved_input_bytes > 0) ++seen.reserved;
  }
  // Every regime must have been exercised, or the agreement proves less than it claims.
  const int floor = static_cast<int>(cases / 50);
  EXPECT_GT(seen.everything_fits, floor);
  EXPECT_GT(seen.weights_do_not_fit, floor);
  EXPECT_GT(seen.inputs_do_not_fit, floor);
  EXPECT_GT(seen.tight_output, floor);
  EXPECT_GT(seen.halo_reuse, floor);
  EXPECT_GT(seen.chunks, floor);
  EXPECT_GT(seen.block_diagonal, floor);
  EXPECT_GT(seen.weights_outer, floor);
  EXPECT_GT(seen.prefetch, floor);
  EXPECT_GT(seen.default_placement, floor);
  EXPECT_GT(seen.input_on_chip, floor);
  EXPECT_GT(seen.output_on_chip, floor);
  EXPECT_GT(seen.epilogue_on_chip, floor);
  EXPECT_GT(seen.epilogue_off_chip, floor);
  EXPECT_GT(seen.reserved, floor);
}

TEST(MemoryAgreement, PeriodicJumpsEqualAStepByStepWalk) {
  traces::RandomStream rng(env_or("NPUSIM_MEMORY_SEED", 7), 2);
  int feasible = 0, jumped = 0;
  for (int i = 0; feasible < 3000 && i < 60000; ++i) {
    auto c = testing::random_layer_case(rng, 6);
    const npu::Placement p = testing::random_placement(rng, c.config, c.shape, c.batch);
    const npu::Npu npu = npu::Npu::validate(c.config);
    const npu::BatchMapping m = testing::random_mapping(npu, c, rng);
    const npu::Tiling t = testing::random_tiling(npu, c, m, rng);
    const npu::ScheduleResult fast = npu::evaluate_schedule(npu, c.shape, c.batch, m, t, ~0ull, p);
    const npu::ScheduleResult walk = npu::evaluate_schedule_step_by_step(npu, c.shape, c.batch, m, t, p);
    const std::string where = describe(c, m, t, p);
    ASSERT_EQ(fast.feasible, walk.feasible) << where;
    if (!walk.feasible) continue;
    ++feasible;
    if (fast.walked_steps < walk.walked_steps) ++jumped;
    ASSERT_EQ(fast.cycles, walk.cycles) << where;
    ASSERT_EQ(fast.compute_cycles, walk.compute_cycles) << where;
    ASSERT_EQ(fast.bytes, walk.bytes) << where;
  }
  EXPECT_GE(feasible, 3000);
  EXPECT_GT(jumped, 300);
}

}  // namespace
}  // namespace npusim
