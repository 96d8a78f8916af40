// The memory schedule's placement (docs/memory-schedule.md §10) worked by hand on the toy NPU,
// and properties of the fast evaluation that hold under any placement: its periodic jumps equal
// a step-by-step walk, its timing-free outline equals the walk's bytes and never exceeds its
// cycles, giving up changes nothing it should not, and the mapper honours the placement.

#include <string>

#include <gtest/gtest.h>

#include "npu_model/memory_schedule.hpp"
#include "npu_model/tiling_mapper.hpp"
#include "random_layer.hpp"
#include "toy_npu.hpp"

namespace npusim {
namespace {

// The toy NPU (toy_npu.hpp: 4 x 4 PEs, 1 byte a cycle, 10 cycles of latency, D = 4 at k = 1)
// with 64 B of input and weight buffer, 128 B of accumulators and 4 requests outstanding.
npu::Npu toy() {
  auto c = testing::toy_npu_config(64, 64, 128, 4);
  c.stack_factors = {1};
  return npu::Npu::validate(c);
}

// GEMM R = 8, P = 4, C = 4 as one step: 8 lines of 4 B, weights 4 x 4 = 16 B, accumulators
// 8 x 4 x 4 B = 128 B, a write of 8 x 4 = 32 B. Streaming takes 8 rows x 1 x 1 tile = 8 cycles.
const npu::GemmShape one_step_gemm{8, 4, 4, 1};
npu::Tiling one_step() {
  npu::Tiling t;
  t.band_rows = 8;
  t.col_block = 4;
  return t;
}

npu::ScheduleResult one_step_with(const npu::Placement& placement) {
  return npu::evaluate_schedule(toy(), one_step_gemm, 1, {1, 1, 1}, one_step(), ~std::uint64_t{0}, placement);
}

void expect_one_step(const npu::Placement& placement, std::uint64_t cycles, const npu::TrafficBytes& bytes) {
  const auto r = one_step_with(placement);
  ASSERT_TRUE(r.feasible) << r.infeasible_reason;
  EXPECT_EQ(r.cycles, cycles);
  EXPECT_EQ(r.compute_cycles, 8u);
  EXPECT_EQ(r.bytes, bytes);
}

TEST(MemorySchedulePlacement, NothingPlacedIsTheSchedule) {
  // Weights 16 B issued at 0, bus 10..26; input 32 B bus 26..58; streaming 58..66; the write of
  // 32 B is ready at 66 + 3 = 69, on the bus 79..111.
  expect_one_step({}, 111, {32, 16, 32, 0, 0});
}

TEST(MemorySchedulePlacement, OutputOnChipEndsWhenTheResultsAreComplete) {
  // The same loads and streaming (58..66), and no write: the layer ends at e + D - 1 = 69.
  expect_one_step({.output_on_chip = true}, 69, {32, 16, 0, 0, 0});
}

TEST(MemorySchedulePlacement, InputOnChipMakesNoInputLoad) {
  // Only the weights cross: bus 10..26; streaming 26..34; the write is ready at 37, issued at
  // 37, on the bus from 47 to 79.
  expect_one_step({.input_on_chip = true}, 79, {0, 16, 32, 0, 0});
}

TEST(MemorySchedulePlacement, InputOnChipIgnoresInputResidencyAndPrefetch) {
  npu::Placement p;
  p.input_on_chip = true;
  npu::Tiling t = one_step();
  t.input_resident = true;
  t.input_prefetch = 3;
  const auto r = npu::evaluate_schedule(toy(), one_step_gemm, 1, {1, 1, 1}, t, ~std::uint64_t{0}, p);
  ASSERT_TRUE(r.feasible) << r.infeasible_reason;
  EXPECT_EQ(r.cycles, 79u);
  EXPECT_EQ(r.bytes, (npu::TrafficBytes{0, 16, 32, 0, 0}));
}

TEST(MemorySchedulePlacement, InputOnChipNeedsTheWholeTensorBesideTheReservedBytes) {
  // The input tensor is 1 sample x 8 rows x 1 column x 4 channels x 1 byte = 32 B; the input
  // buffer has 64 B, so 32 reserved bytes leave just enough and 33 too little.
  npu::Placement p;
  p.input_on_chip = true;
  p.reserved_input_bytes = 32;
  EXPECT_TRUE(one_step_with(p).feasible);
  p.reserved_input_bytes = 33;
  const auto r = one_step_with(p);
  EXPECT_FALSE(r.feasible);
  EXPECT_FALSE(r.abandoned);
  EXPECT_NE(r.infeasible_reason.find("input"), std::string::npos) << r.infeasible_reason;
}

TEST(MemorySchedulePlacement, OffChipEpilogueAddsItsBytesAndDelaysTheWrite) {
  // Slot 0 holds the weight load (kind 1), the input load (kind 2) and the epilogue load of the
  // block (kind 3, ready when step 0 starts). Weights bus 10..26, input 26..58, streaming from
  // 58 to 66; the epilogue (32 B, the write's bytes) is issued at 58, on the bus from 68 to 100.
  // The write waits for it: ready at max(66 + 3, 100) = 100, issued at 100, bus 110..142.
  expect_one_step({.epilogue = npu::EpilogueOperand::off_chip}, 142, {32, 16, 32, 0, 32});
}

TEST(MemorySchedulePlacement, OffChipEpilogueWithTheOutputOnChipDelaysTheRelease) {
  // As above without the write: the epilogue's completion at 100 is the last request's.
  expect_one_step({.output_on_chip = true, .epilogue = npu::EpilogueOperand::off_chip}, 100, {32, 16, 0, 0, 32});
}

TEST(MemorySchedulePlacement, OnChipEpilogueChangesNothing) {
  expect_one_step({.epilogue = npu::EpilogueOperand::on_chip}, 111, {32, 16, 32, 0, 0});
}

TEST(MemorySchedulePlacement, OffChipEpilogueWaitsForTheAccumulators) {
  // Two blocks of 4 rows x 4 columns (64 B of accumulators each) in a 64 B output buffer: block
  // 1's accumulators are freed by block 0's write, and its epilogue load waits for them.
  // R = 8, P = 4, C = 4, bands of 4 rows, no prefetch, epilogue off chip:
  //   slot 0: weights 16 B bus 10..26, band 0 (16 B) 26..42; step 0 streams 42..46;
  //           epilogue 0 (16 B) issued at 42, bus 52..68.
  //   slot 1: write 0 (16 B) ready max(46 + 3, 68) = 68, bus 78..94; band 1 issued at 68 (in
  //           order), bus 94..110; step 1 starts at max(46, 110, room at 94) = 110, 110..114;
  //           epilogue 1 issued at 110, bus 120..136.
  //   slot 2: write 1 ready max(117, 136) = 136, bus 146..162.
  auto config = testing::toy_npu_config(64, 64, 64, 4);
  config.stack_factors = {1};
  npu::Tiling t;
  t.band_rows = 4;
  t.col_block = 4;
  npu::Placement p;
  p.epilogue = npu::EpilogueOperand::off_chip;
  const auto r = npu::evaluate_schedule(npu::Npu::validate(config), one_step_gemm, 1, {1, 1, 1}, t,
                                        ~std::uint64_t{0}, p);
  ASSERT_TRUE(r.feasible) << r.infeasible_reason;
  EXPECT_EQ(r.cycles, 162u);
  EXPECT_EQ(r.bytes, (npu::TrafficBytes{32, 16, 32, 0, 32}));
}

TEST(MemorySchedulePlacement, ReservedBytesMakeALoadWaitForRoom) {
  // R = 12, P = 2, C = 4 in three bands of 4 rows: lines of 2 B, 8 B a band, weights 2 x 4 =
  // 8 B, accumulators 4 x 4 x 4 = 64 B a block (two fit the 128 B). Input prefetch 1, outputs
  // on chip (no writes, so that only the input room can hold a load back).
  //   slot -1: band 0 issued at 0, bus 10..18.
  //   slot 0: weights issued at 0, bus 18..26; band 1 issued at 0, bus 26..34.
  //   step 0 streams 26..30 (4 rows x 1 x 1) and frees band 0 at 30; block 0 freed at 33.
  //   slot 1: band 2. With 64 - 48 = 16 B of input room it waits for band 0 to go: issued at
  //           30, bus 40..48. With all 64 B it is issued at 0 and rides the bus from 34 to 42.
  //   step 1 streams 34..38; step 2 from max(38, band 2) and room for block 2 (block 0 went at
  //   33): 48..52 with the reserve, 42..46 without. The layer ends 3 cycles later.
  const npu::GemmShape gemm{12, 2, 4, 1};
  npu::Tiling t;
  t.band_rows = 4;
  t.col_block = 4;
  t.input_prefetch = 1;
  npu::Placement p;
  p.output_on_chip = true;
  const auto free_room = npu::evaluate_schedule(toy(), gemm, 1, {1, 1, 1}, t, ~std::uint64_t{0}, p);
  ASSERT_TRUE(free_room.feasible) << free_room.infeasible_reason;
  EXPECT_EQ(free_room.cycles, 49u);
  p.reserved_input_bytes = 48;
  const auto reserved = npu::evaluate_schedule(toy(), gemm, 1, {1, 1, 1}, t, ~std::uint64_t{0}, p);
  ASSERT_TRUE(reserved.feasible) << reserved.infeasible_reason;
  EXPECT_EQ(reserved.cycles, 55u);
  EXPECT_EQ(reserved.bytes, (npu::TrafficBytes{24, 8, 0, 0, 0}));
  // 49 reserved bytes leave 15: band 0 and band 1 (16 B) no longer fit together before step 0
  // has streamed, which prefetch 1 needs (feasibility rule 1).
  p.reserved_input_bytes = 49;
  EXPECT_FALSE(npu::evaluate_schedule(toy(), gemm, 1, {1, 1, 1}, t, ~std::uint64_t{0}, p).feasible);
}

// ---- Properties over random layers and placements ----

// A random layer on a random NPU (random_layer.hpp), a legal mapping, a tiling that may or may
// not be feasible, and a placement.
struct PlacedCase {
  testing::RandomLayerCase layer;
  npu::Npu npu;
  npu::BatchMapping mapping;
  npu::Tiling tiling;
  npu::Placement placement;

  npu::ScheduleResult evaluate(std::uint64_t give_up_above = ~std::uint64_t{0}) const {
    return npu::evaluate_schedule(npu, layer.shape, layer.batch, mapping, tiling, give_up_above, placement);
  }
  std::string describe() const {
    const auto& s = layer.shape;
    const auto& w = s.window;
    const auto& b = layer.config.buffers;
    const auto& p = placement;
    return "layer " + std::to_string(s.rows) + "x" + std::to_string(s.depth) + "x" + std::to_string(s.cols) + " g" +
           std::to_string(s.groups) + " window " + std::to_string(w.in_height) + "x" + std::to_string(w.in_width) +
           " k" + std::to_string(w.kernel_height) + " s" + std::to_string(w.stride_height) + " p" +
           std::to_string(w.padding_height) + ", batch " + std::to_string(layer.batch) + ", buffers " +
           std::to_string(b.input_bytes) + "/" + std::to_string(b.weight_bytes) + "/" + std::to_string(b.output_bytes) +
           ", mapping " + npu::to_string(mapping) + ", tiling " + npu::to_string(tiling) + ", placement in " +
           std::to_string(p.input_on_chip) + " out " + std::to_string(p.output_on_chip) + " epilogue " +
           std::to_string(static_cast<int>(p.epilogue)) + " reserved " + std::to_string(p.reserved_input_bytes);
  }
};

// Taller kernels, more padding and longer strides than random_layer.hpp draws (up to 7, 3 and
// 3 rows): several bands at the top and bottom of a map are then cut by its edges.
void widen_window(testing::RandomLayerCase& layer, traces::RandomStream& rng) {
  auto& w = layer.shape.window;
  if (w.in_height == 0) return;  // a plain GEMM
  const std::uint64_t channels = layer.shape.depth / (std::uint64_t{w.kernel_height} * w.kernel_width);
  w.kernel_height = static_cast<std::uint32_t>(rng.uniform_between(1, 7));
  w.stride_height = static_cast<std::uint32_t>(rng.uniform_between(1, 3));
  w.padding_height = static_cast<std::uint32_t>(rng.uniform_below(std::min<std::uint32_t>(4, w.kernel_height)));
  w.in_height = std::max(w.in_height, w.kernel_height);
  layer.shape.depth = std::uint64_t{w.kernel_height} * w.kernel_width * channels;
  const std::uint64_t out_height = (w.in_height + 2 * w.padding_height - w.kernel_height) / w.stride_height + 1;
  const std::uint64_t out_width = (w.in_width + 2 * w.padding_width - w.kernel_width) / w.stride_width + 1;
  layer.shape.rows = out_height * out_width;
}

PlacedCase draw(traces::RandomStream& rng, std::uint32_t scale) {
  auto layer = testing::random_layer_case(rng, scale);
  if (rng.uniform_below(2)) widen_window(layer, rng);
  const npu::Npu npu = npu::Npu::validate(layer.config);
  const npu::BatchMapping mapping = testing::random_mapping(npu, layer, rng);
  const npu::Tiling tiling = testing::random_tiling(npu, layer, mapping, rng);
  npu::Placement p;
  if (rng.uniform_below(4) != 0) {
    p.input_on_chip = rng.uniform_below(3) == 0;
    p.output_on_chip = rng.uniform_below(3) == 0;
    const npu::EpilogueOperand epilogues[] = {npu::EpilogueOperand::none, npu::EpilogueOperand::on_chip,
                                              npu::EpilogueOperand::off_chip};
    p.epilogue = epilogues[rng.uniform_below(3)];
    if (rng.uniform_below(2)) p.reserved_input_bytes = rng.uniform_below(layer.config.buffers.input_bytes / 2 + 1);
  }
  return {layer, npu, mapping, tiling, p};
}

// Calls `check(case, its result, rng)` on `wanted` feasible random cases, stopping at the first
// failure; returns how many it found.
template <typename Check>
int for_feasible_cases(std::uint64_t seed, std::uint32_t scale, int wanted, Check check) {
  traces::RandomStream rng(seed, 3);
  int feasible = 0;
  for (int i = 0; feasible < wanted && i < 20 * wanted && !::testing::Test::HasFatalFailure(); ++i) {
    const PlacedCase c = draw(rng, scale);
    const auto r = c.evaluate();
    if (!r.feasible) continue;
    ++feasible;
    check(c, r, rng);
  }
  return feasible;
}

TEST(MemoryScheduleProperties, JumpsEqualAStepByStepWalkUnderAnyPlacement) {
  traces::RandomStream rng(31, 3);
  int feasible = 0, jumped = 0, quiet = 0;
  for (int i = 0; feasible < 4000 && i < 80000; ++i) {
    const PlacedCase c = draw(rng, 6);
    const auto fast = c.evaluate();
    const auto walk = npu::evaluate_schedule_step_by_step(c.npu, c.layer.shape, c.layer.batch, c.mapping, c.tiling,
                                                          c.placement);
    ASSERT_EQ(fast.feasible, walk.feasible) << c.describe();
    if (!walk.feasible) continue;
    ++feasible;
    ASSERT_EQ(fast.cycles, walk.cycles) << c.describe();
    ASSERT_EQ(fast.compute_cycles, walk.compute_cycles) << c.describe();
    ASSERT_EQ(fast.bytes, walk.bytes) << c.describe();
    ASSERT_EQ(walk.walked_steps, walk.steps) << c.describe();
    if (fast.walked_steps < walk.steps) {
      ++jumped;
      // Stretches that make no request at all (everything on chip) are jumped over too.
      if (c.placement.input_on_chip && c.placement.output_on_chip && c.tiling.weights_resident) ++quiet;
    }
  }
  EXPECT_GE(feasible, 4000);
  EXPECT_GT(jumped, 1000);
  EXPECT_GT(quiet, 5);
}

TEST(MemoryScheduleProperties, OutlineEqualsTheWalksBytesAndBoundsItsCycles) {
  const int feasible = for_feasible_cases(32, 3, 4000, [](const PlacedCase& c, const npu::ScheduleResult& r, auto&) {
    const auto& s = c.layer.shape;
    const auto o = npu::outline_schedule(c.npu, s, c.layer.batch, c.mapping, c.tiling, c.placement);
    ASSERT_EQ(o.bytes, r.bytes) << c.describe();
    ASSERT_EQ(o.compute_cycles, r.compute_cycles) << c.describe();
    ASSERT_LE(o.min_cycles, r.cycles) << c.describe();
    ASSERT_GE(o.min_cycles, r.compute_cycles) << c.describe();
    // The placement's own bytes: nothing crosses for an operand on chip, an off-chip epilogue
    // reads what the writes would write.
    const std::uint64_t outputs = c.layer.batch * s.rows * s.cols * s.groups * c.layer.config.element_bytes;
    if (c.placement.input_on_chip) {
      ASSERT_EQ(r.bytes.input, 0u) << c.describe();
    }
    ASSERT_EQ(r.bytes.output, c.placement.output_on_chip ? 0 : outputs) << c.describe();
    ASSERT_EQ(r.bytes.epilogue, c.placement.epilogue == npu::EpilogueOperand::off_chip ? outputs : 0) << c.describe();
  });
  EXPECT_GE(feasible, 4000);
}

TEST(MemoryScheduleProperties, GivingUpAboveTheCyclesChangesNothingAndBelowIsJustified) {
  int abandoned = 0;
  const int feasible = for_feasible_cases(33, 4, 3000, [&](const PlacedCase& c, const npu::ScheduleResult& r, auto& rng) {
    const auto at = c.evaluate(r.cycles);
    ASSERT_TRUE(at.feasible) << c.describe();
    ASSERT_EQ(at.cycles, r.cycles) << c.describe();
    ASSERT_EQ(at.bytes, r.bytes) << c.describe();
    const auto under = c.evaluate(rng.uniform_below(r.cycles));
    if (under.abandoned) {
      ++abandoned;
      ASSERT_FALSE(under.feasible) << c.describe();
    } else {
      // Not given up: then the walk finished, with the full result.
      ASSERT_TRUE(under.feasible) << c.describe();
      ASSERT_EQ(under.cycles, r.cycles) << c.describe();
    }
  });
  EXPECT_GE(feasible, 3000);
  EXPECT_GT(abandoned, 1000);
}

TEST(MemoryScheduleProperties, MapperHonoursThePlacement) {
  traces::RandomStream rng(34, 3);
  int found = 0, faster_on_chip = 0;
  for (int i = 0; found < 600 && i < 20000; ++i) {
    const PlacedCase c = draw(rng, 2);
    const auto& s = c.layer.shape;
    const auto& p = c.placement;
    const auto choice = npu::choose_tiling(c.npu, s, c.layer.batch, c.mapping, ~std::uint64_t{0}, p);
    const npu::FeatureMap fm = npu::feature_map_of(s);
    const std::uint64_t room = c.layer.config.buffers.input_bytes - p.reserved_input_bytes;
    const std::uint64_t tensor = std::uint64_t{c.layer.batch} * fm.height * fm.width * fm.channels * s.groups *
                                 c.layer.config.element_bytes;
    if (p.input_on_chip && tensor > room) {
      ASSERT_FALSE(choice.found);
      continue;
    }
    if (!choice.found) continue;
    ++found;
    PlacedCase chosen = c;
    chosen.tiling = choice.tiling;
    // What it reports is the schedule of what it chose, under the placement.
    const auto r = chosen.evaluate();
    ASSERT_TRUE(r.feasible) << chosen.describe();
    ASSERT_EQ(r.cycles, choice.result.cycles) << chosen.describe();
    ASSERT_EQ(r.bytes, choice.result.bytes) << chosen.describe();
    // An input already on chip is neither kept resident nor prefetched: those variants are the same.
    if (p.input_on_chip) {
      ASSERT_FALSE(choice.tiling.input_resident) << chosen.describe();
      ASSERT_EQ(choice.tiling.input_prefetch, 0u) << chosen.describe();
    }
    // Taking operands off the channel never costs cycles (the known exception: a different
    // chunk count).
    const auto plain = npu::choose_tiling(c.npu, s, c.layer.batch, c.mapping);
    if (plain.found && plain.tiling.channel_chunks == choice.tiling.channel_chunks && p.reserved_input_bytes == 0 &&
        p.epilogue != npu::EpilogueOperand::off_chip) {
      ASSERT_LE(choice.result.cycles, plain.result.cycles) << chosen.describe();
      if (choice.result.cycles < plain.result.cycles) ++faster_on_chip;
    }
  }
  EXPECT_GE(found, 600);
  EXPECT_GT(faster_on_chip, 50);
}

}  // namespace
}  // namespace npusim
