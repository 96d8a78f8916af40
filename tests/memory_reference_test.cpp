// The cycle-stepped memory reference (npu_model/memory_reference.hpp) against hand-worked
// timings of docs/memory-schedule.md, against Eigen on random small layers, and against the
// traffic every schedule must carry.

#include <algorithm>
#include <chrono>
#include <iterator>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "random_npu.hpp"
#include "toy_npu.hpp"
#include "npu_model/memory_reference.hpp"
#include "traces/random_stream.hpp"

namespace npusim {
namespace {

using npu::IntMatrix;

Eigen::Index to_index(std::uint64_t value) { return static_cast<Eigen::Index>(value); }

// The toy NPU (toy_npu.hpp: one byte per bus cycle, 10 cycles of latency, D = 4) with small
// buffers: 16 B of input lines, 16 B of weights, 64 B of accumulators, 16 requests outstanding.
npu::NpuConfig toy_config() {
  auto c = testing::toy_npu_config(16, 16, 64, 16);
  c.stack_factors = {1};
  return c;
}

npu::GemmShape plain_gemm(std::uint64_t rows, std::uint64_t depth, std::uint64_t cols,
                          std::uint64_t groups = 1) {
  npu::GemmShape shape;
  shape.rows = rows;
  shape.depth = depth;
  shape.cols = cols;
  shape.groups = groups;
  return shape;
}

npu::GemmShape convolution(std::uint32_t height, std::uint32_t width, std::uint64_t channels,
                           std::uint32_t kernel, std::uint32_t stride, std::uint32_t padding,
                           std::uint64_t cols, std::uint64_t groups = 1) {
  npu::GemmShape shape;
  shape.window = {height, width, kernel, kernel, stride, stride, padding, padding};
  const std::uint64_t out_h = (height + 2 * padding - kernel) / stride + 1;
  const std::uint64_t out_w = (width + 2 * padding - kernel) / stride + 1;
  shape.rows = out_h * out_w;
  shape.depth = std::uint64_t{kernel} * kernel * channels;
  shape.cols = cols;
  shape.groups = groups;
  return shape;
}

IntMatrix random_matrix(traces::RandomStream& rng, std::uint64_t rows, std::uint64_t cols) {
  IntMatrix m(to_index(rows), to_index(cols));
  for (Eigen::Index i = 0; i < m.rows(); ++i)
    for (Eigen::Index j = 0; j < m.cols(); ++j)
      m(i, j) = static_cast<std::int64_t>(rng.uniform_below(17)) - 8;
  return m;
}

struct Operands {
  std::vector<IntMatrix> feature_maps;  // per sample: (H*W) x (C_g*groups)
  std::vector<IntMatrix> weights;       // per group: P x C
  std::vector<std::vector<IntMatrix>> epilogue;  // per sample and group: R x C; empty without a fused add
};

Operands random_operands(traces::RandomStream& rng, const npu::GemmShape& shape, std::uint32_t batch,
                         bool fused_add = false) {
  const npu::FeatureMap f = npu::feature_map_of(shape);
  Operands o;
  for (std::uint32_t b = 0; b < batch; ++b)
    o.feature_maps.push_back(random_matrix(rng, f.height * f.width, f.channels * shape.groups));
  for (std::uint64_t g = 0; g < shape.groups; ++g)
    o.weights.push_back(random_matrix(rng, shape.depth, shape.cols));
  if (fused_add) {
    o.epilogue.resize(batch);
    for (auto& sample : o.epilogue)
      for (std::uint64_t g = 0; g < shape.groups; ++g)
        sample.push_back(random_matrix(rng, f.out_height * f.out_width, shape.cols));
  }
  return o;
}

// The lowered matrix of one group: row y'*W' + x', column (k_h*K_w + k_w)*C_g + c.
IntMatrix im2col(const IntMatrix& feature_map, const npu::FeatureMap& f, std::uint64_t group) {
  IntMatrix lowered = IntMatrix::Zero(to_index(f.out_height * f.out_width),
                                      to_index(f.kernel_height * f.kernel_width * f.channels));
  for (std::uint64_t oy = 0; oy < f.out_height; ++oy)
    for (std::uint64_t ox = 0; ox < f.out_width; ++ox)
      for (std::uint64_t kh = 0; kh < f.kernel_height; ++kh)
        for (std::uint64_t kw = 0; kw < f.kernel_width; ++kw) {
          const auto y = static_cast<std::int64_t>(oy * f.stride_height + kh) -
                         static_cast<std::int64_t>(f.padding_height);
          const auto x = static_cast<std::int64_t>(ox * f.stride_width + kw) -
                         static_cast<std::int64_t>(f.padding_width);
          if (y < 0 || x < 0 || y >= static_cast<std::int64_t>(f.height) ||
              x >= static_cast<std::int64_t>(f.width))
            continue;
          for (std::uint64_t c = 0; c < f.channels; ++c)
            lowered(to_index(oy * f.out_width + ox), to_index((kh * f.kernel_width + kw) * f.channels + c)) =
                feature_map(y * static_cast<std::int64_t>(f.width) + x, to_index(group * f.channels + c));
        }
  return lowered;
}

void expect_outputs_equal_eigen(const npu::MemoryReferenceRun& run, const npu::GemmShape& shape,
                                const Operands& operands, const std::string& where = {}) {
  const npu::FeatureMap f = npu::feature_map_of(shape);
  ASSERT_EQ(run.outputs.size(), operands.feature_maps.size()) << where;
  for (std::size_t b = 0; b < operands.feature_maps.size(); ++b) {
    ASSERT_EQ(run.outputs[b].size(), shape.groups) << where;
    for (std::uint64_t g = 0; g < shape.groups; ++g) {
      IntMatrix expected = im2col(operands.feature_maps[b], f, g) * operands.weights[g];
      if (!operands.epilogue.empty()) expected += operands.epilogue[b][g];
      ASSERT_EQ(run.outputs[b][g], expected) << where << " sample " << b << " group " << g;
    }
  }
}

// Bands of `band_rows` output rows, C-blocks of `col_block` columns, nothing resident or prefetched.
npu::Tiling banded_tiling(std::uint32_t band_rows, std::uint64_t col_block) {
  npu::Tiling t;
  t.order = npu::LoopOrder::inputs_outer;
  t.band_rows = band_rows;
  t.col_block = col_block;
  return t;
}

// --- hand-worked timings ------------------------------------------------------------------------

// R = 4, P = 4, C = 4, one sample, <1,1,1>, one band of all 4 rows and one C-block: one step.
// Lines are the 4 rows of 1 x 4 int8 = 4 B each: input load 16 B. Weight block 4 x 4 = 16 B.
// Stream order (slot, kind): weights (0,1), input (0,2), write (1,0).
//   weights: issue 0, bus from 0 + lat 10 = 10 for 16 cycles, complete 26
//   input:   issue 0, bus from max(0 + 10, 26) = 26 for 16, complete 42
//   step 0:  starts at 42 (input arrives last; 4*4*4 = 64 B of accumulators fit 64 B),
//            streams M * ceil(4/4) * ceil(4/4) = 4 rows, ends e = 46
//   write:   ready e + D - 1 = 49, bus from 49 + 10 = 59 for 4*4 = 16, complete 75
// T = max(e + D - 1 = 49, 75) = 75.
TEST(MemoryReference, PlainGemmOneStep) {
  const auto npu = npu::Npu::validate(toy_config());
  const auto shape = plain_gemm(4, 4, 4);
  traces::RandomStream rng(1);
  const Operands o = random_operands(rng, shape, 1);
  const auto run = npu::run_memory_reference(npu, shape, 1, {1, 1, 1}, banded_tiling(4, 4),
                                             o.feature_maps, o.weights);
  EXPECT_EQ(run.cycles, 75u);
  EXPECT_EQ(run.compute_cycles, 4u);
  EXPECT_EQ(run.bytes, (npu::TrafficBytes{16, 16, 16, 0}));
  EXPECT_EQ(run.clock_period_ps, 1000u);
  EXPECT_EQ(run.simulated_ps, 75'000u);
  expect_outputs_equal_eigen(run, shape, o);
}

// R = 8, P = 4, C = 4, bands of 2 rows: four steps, each M = 2 rows streaming 2 cycles, each
// loading 2 lines = 8 B and writing 2 x 4 = 8 B; step 0 loads the one weight block (16 B).
// Input prefetch 1, queue depth Q = 2. Accumulators: 2*4*4 = 32 B a block, two fit in 64 B.
// Stream order (slot, kind, step): I0 (-1,2), W0 (0,1), I1 (0,2), Wr0 (1,0), I2 (1,2), Wr1 (2,0),
// I3 (2,2), Wr2 (3,0), Wr3 (4,0).
//   I0:  t 0,  bus from 10 for 8, c 18
//   W0:  t 0 (one outstanding), bus from max(10, 18) = 18 for 16, c 34
//   I1:  two outstanding until I0 completes: t 18, bus from max(28, 34) = 34 for 8, c 42
//   step 0: s = max(I0 18, W0 34) = 34, e 36
//   Wr0: ready 36 + 3 = 39 (W0 done at 34 frees a slot), bus from max(49, 42) = 49 for 8, c 57
//   I2:  room since step 0 freed its lines at 36; slot when I1 completes: t 42,
//        bus from max(52, 57) = 57, c 65
//   step 1: s = max(e0 36, I1 42) = 42, e 44
//   Wr1: ready 47, slot when Wr0 completes: t 57, bus from max(67, 65) = 67, c 75
//   step 2: s = max(e1 44, I2 65; room for its 32 B from Wr0's completion at 57) = 65, e 67
//   I3:  slot when I2 completes: t 65, bus from max(75, 75) = 75, c 83
//   Wr2: ready 70, slot when Wr1 completes: t 75, bus from max(85, 83) = 85, c 93
//   step 3: s = max(e2 67, I3 83; room from Wr1 at 75) = 83, e 85
//   Wr3: ready 88, bus from max(98, 93) = 98, c 106
// T = max(85 + 3, 106) = 106.
TEST(MemoryReference, PrefetchOneWithTwoQueueSlots) {
  auto config = toy_config();
  config.offchip.queue_depth = 2;
  const auto npu = npu::Npu::validate(config);
  const auto shape = plain_gemm(8, 4, 4);
  auto tiling = banded_tiling(2, 4);
  tiling.input_prefetch = 1;
  traces::RandomStream rng(2);
  const Operands o = random_operands(rng, shape, 1);
  const auto run = npu::run_memory_reference(npu, shape, 1, {1, 1, 1}, tiling, o.feature_maps, o.weights);
  EXPECT_EQ(run.cycles, 106u);
  EXPECT_EQ(run.compute_cycles, 8u);
  EXPECT_EQ(run.bytes, (npu::TrafficBytes{32, 16, 32, 0}));
  EXPECT_EQ(run.simulated_ps, 106'000u);
  expect_outputs_equal_eigen(run, shape, o);
}

// 3x3 convolution, stride 1, padding 1, over a 4x4 x 1-channel map, C = 2: H' = W' = 4, P = 9.
// Bands of 2 output rows: step 0 reads input rows [max(0, 0-1), min(3, 1-1+2)] = [0, 2],
// step 1 rows [max(0, 2-1), min(3, 3-1+2)] = [1, 3]. A line is 4 x 1 int8 = 4 B. Step 0 loads 3
// lines (12 B); step 1 loads only row 3 (4 B): rows 1 and 2 are the halo it keeps, row 0 is freed
// at e0. Each line comes in once: 16 B. Weights 9 x 2 = 18 B (the weight buffer is 32 B here).
// M = 2 rows * 4 = 8, streaming 8 * ceil(9/4) * ceil(2/4) = 24 cycles. Accumulators
// 8 * 2 * 4 = 64 B: the whole output buffer, so step 1 also waits for write 0.
// Stream order: W0 (0,1), I0 (0,2), Wr0 (1,0), I1 (1,2), Wr1 (2,0).
//   W0:  t 0, bus from 10 for 18, c 28
//   I0:  t 0, bus from 28 for 12, c 40
//   step 0: s 40, e 64
//   Wr0: 8 * 2 = 16 B, ready 64 + 3 = 67, bus from 77, c 93
//   I1:  behind Wr0 in the queue: t 67, bus from max(77, 93) = 93 for 4, c 97
//   step 1: s = max(e0 64, I1 97, room from Wr0 at 93) = 97, e 121
//   Wr1: ready 124, bus from 134 for 16, c 150
// T = 150.
TEST(MemoryReference, ConvolutionBandsReuseHaloLines) {
  auto config = toy_config();
  config.buffers.weight_bytes = 32;
  const auto npu = npu::Npu::validate(config);
  const auto shape = convolution(4, 4, 1, 3, 1, 1, 2);
  traces::RandomStream rng(3);
  const Operands o = random_operands(rng, shape, 1);
  const auto run = npu::run_memory_reference(npu, shape, 1, {1, 1, 1}, banded_tiling(2, 4),
                                             o.feature_maps, o.weights);
  EXPECT_EQ(run.cycles, 150u);
  EXPECT_EQ(run.compute_cycles, 48u);
  EXPECT_EQ(run.bytes.input, 4u * 4u);  // every one of the 4 input rows exactly once
  EXPECT_EQ(run.bytes, (npu::TrafficBytes{16, 18, 32, 0}));
  expect_outputs_equal_eigen(run, shape, o);
}

// As PrefetchOneWithTwoQueueSlots but input prefetch 2 and Q = 16: the input buffer (16 B) holds
// two steps' lines, so the third load waits for room.
// Stream order: I0 (-2,2), I1 (-1,2), W0 (0,1), I2 (0,2), Wr0 (1,0), I3 (1,2), Wr1 (2,0), Wr2 (3,0),
// Wr3 (4,0).
//   I0:  t 0, bus from 10 for 8, c 18
//   I1:  t 0, bus from 18 for 8, c 26
//   W0:  t 0, bus from 26 for 16, c 42
//   step 0: s = max(I0 18, W0 42) = 42, e 44; it frees its 8 B of lines at 44
//   I2:  16 B held until 44: t 44, bus from max(54, 42) = 54 for 8, c 62
//   step 1: s = max(e0 44, I1 26) = 44 (second accumulator block fits), e 46
//   Wr0: ready 44 + 3 = 47, bus from max(57, 62) = 62 for 8, c 70
//   I3:  room since step 1 freed its lines at 46: t 47, bus from max(57, 70) = 70, c 78
//   Wr1: ready 49, bus from max(59, 78) = 78, c 86
//   step 2: s = max(e1 46, I2 62, room from Wr0 at 70) = 70, e 72
//   Wr2: ready 75, bus from max(85, 86) = 86, c 94
//   step 3: s = max(e2 72, I3 78, room from Wr1 at 86) = 86, e 88
//   Wr3: ready 91, bus from max(101, 94) = 101, c 109
// T = 109.
TEST(MemoryReference, PrefetchedLoadWaitsForRoom) {
  const auto npu = npu::Npu::validate(toy_config());
  const auto shape = plain_gemm(8, 4, 4);
  auto tiling = banded_tiling(2, 4);
  tiling.input_prefetch = 2;
  traces::RandomStream rng(4);
  const Operands o = random_operands(rng, shape, 1);
  const auto run = npu::run_memory_reference(npu, shape, 1, {1, 1, 1}, tiling, o.feature_maps, o.weights);
  EXPECT_EQ(run.cycles, 109u);
  EXPECT_EQ(run.compute_cycles, 8u);
  EXPECT_EQ(run.bytes, (npu::TrafficBytes{32, 16, 32, 0}));
  expect_outputs_equal_eigen(run, shape, o);
}

// Fluid <2,2,1> for 3 samples of R = 2, P = 2, C = 2: grid row 0 holds samples 0 and 1, grid
// row 1 holds sample 2 and an empty cell. The pass is block-diagonal: d = 2*2 = 4 lanes,
// n = 2*2 = 4 columns. One R-block of both grid rows (band_samples 2): M = 2 * 2 = 4.
// Lines: 3 real samples x 2 rows x (1 x 2 int8) = 12 B; the empty cell is never loaded.
// Weights: the distinct 2 x 2 = 4 B. Write: only real samples' columns,
// (2 rows * 2 samples + 2 rows * 1 sample) * 2 columns = 12 B.
//   W0:  t 0, bus from 10 for 4, c 14
//   I0:  t 0, bus from 14 for 12, c 26
//   step 0: s 26, streams 4 * ceil(4/4) * ceil(4/4) = 4, e 30
//   Wr0: ready 33, bus from 43 for 12, c 55
// T = 55.
TEST(MemoryReference, FluidGridWritesOnlyRealSamples) {
  auto config = toy_config();
  config.modes = {npu::BatchingMode::r_batching, npu::BatchingMode::p_batching, npu::BatchingMode::fluid};
  const auto npu = npu::Npu::validate(config);
  const auto shape = plain_gemm(2, 2, 2);
  auto tiling = banded_tiling(2, 4);
  tiling.band_samples = 2;
  traces::RandomStream rng(5);
  const Operands o = random_operands(rng, shape, 3);
  const auto run = npu::run_memory_reference(npu, shape, 3, {2, 2, 1}, tiling, o.feature_maps, o.weights);
  EXPECT_EQ(run.cycles, 55u);
  EXPECT_EQ(run.compute_cycles, 4u);
  EXPECT_EQ(run.bytes, (npu::TrafficBytes{12, 4, 12, 0}));
  expect_outputs_equal_eigen(run, shape, o);
}

// --- placement (docs/memory-schedule.md §10) ---------------------------------------------------

// 3x3 convolution, stride 1, padding 1, over a 4x4 x 1-channel map, C = 4: H' = W' = 4, P = 9.
// One-row bands: four steps of M = 4 rows, each streaming 4 * ceil(9/4) * ceil(4/4) = 12
// cycles into 4 * 4 * 4 = 64 B of accumulators, the whole output buffer. Step j reads input
// rows [max(0, j-1), min(3, j+1)]; a line is 4 x 1 int8 = 4 B. Step 0 loads rows 0-1 (8 B),
// step 1 row 2, step 2 row 3, step 3 nothing new; all four lines fit the 16 B input buffer.
// Weights 9 x 4 = 36 B. The output stays on chip: no writes.
// Stream order: W0 (0,1), I0 (0,2), I1 (1,2), I2 (2,2).
//   W0:  t 0, bus from 10 for 36, c 46
//   I0:  t 0, bus from 46 for 8, c 54
//   I1:  t 0, bus from 54 for 4, c 58
//   I2:  t 0, bus from 58 for 4, c 62
//   step 0: s = max(W0 46, I0 54) = 54, e 66; its block is free at e + D - 1 = 69
//   step 1: s = max(e0 66, I1 58, room at 69) = 69, e 81; free at 84
//   step 2: s = max(81, I2 62, room at 84) = 84, e 96; free at 99
//   step 3: s = max(96, room at 99) = 99, e 111; free at 114
// T = max(111 + 3, last completion 62) = 114.
TEST(MemoryReference, OutputOnChipFreesAccumulatorsWhenTheWriteWouldBeReady) {
  auto config = toy_config();
  config.buffers.weight_bytes = 36;
  const auto npu = npu::Npu::validate(config);
  const auto shape = convolution(4, 4, 1, 3, 1, 1, 4);
  traces::RandomStream rng(11);
  const Operands o = random_operands(rng, shape, 1);
  const auto run = npu::run_memory_reference(npu, shape, 1, {1, 1, 1}, banded_tiling(1, 4), o.feature_maps,
                                             o.weights, {.output_on_chip = true});
  EXPECT_EQ(run.cycles, 114u);
  EXPECT_EQ(run.compute_cycles, 48u);
  EXPECT_EQ(run.bytes, (npu::TrafficBytes{16, 36, 0, 0, 0}));
  expect_outputs_equal_eigen(run, shape, o);
}

// As ConvolutionBandsReuseHaloLines (4x4 x 1 map, 3x3, padding 1, C = 2, bands of 2 output
// rows, steps of 24 cycles filling the 64 B output buffer), but the input tensor, 4 * 4 * 1 =
// 16 B, is on chip: it fills the 20 B input buffer beside 4 reserved bytes exactly. No input
// loads, so the tiling's input residency and prefetch change nothing.
// Stream order: W0 (0,1), Wr0 (1,0), Wr1 (2,0).
//   W0:  t 0, bus from 10 for 18, c 28
//   step 0: s 28 (its lines are there from cycle 0), e 52
//   Wr0: 8 * 2 = 16 B, ready 55, bus from 65 for 16, c 81
//   step 1: s = max(e0 52, room from Wr0 at 81) = 81, e 105
//   Wr1: ready 108, bus from 118 for 16, c 134
// T = 134.
TEST(MemoryReference, InputOnChipIsNeverLoaded) {
  auto config = toy_config();
  config.buffers.input_bytes = 20;
  config.buffers.weight_bytes = 32;
  const auto npu = npu::Npu::validate(config);
  const auto shape = convolution(4, 4, 1, 3, 1, 1, 2);
  traces::RandomStream rng(12);
  const Operands o = random_operands(rng, shape, 1);
  auto tiling = banded_tiling(2, 4);
  tiling.input_resident = true;
  tiling.input_prefetch = 2;
  const npu::Placement on_chip{.input_on_chip = true, .reserved_input_bytes = 4};
  const auto run =
      npu::run_memory_reference(npu, shape, 1, {1, 1, 1}, tiling, o.feature_maps, o.weights, on_chip);
  EXPECT_EQ(run.cycles, 134u);
  EXPECT_EQ(run.compute_cycles, 48u);
  EXPECT_EQ(run.bytes, (npu::TrafficBytes{0, 18, 32, 0, 0}));
  expect_outputs_equal_eigen(run, shape, o);

  // One more reserved byte and the 16 B tensor no longer fits the 15 B left.
  const npu::Placement too_much{.input_on_chip = true, .reserved_input_bytes = 5};
  EXPECT_THROW(npu::run_memory_reference(npu, shape, 1, {1, 1, 1}, tiling, o.feature_maps, o.weights, too_much),
               std::runtime_error);
}

// R = 4, P = 4, C = 4, bands of 2 rows: two steps of M = 2 rows streaming 2 cycles, each loading
// 2 lines (8 B) into 2 * 4 * 4 = 32 B of accumulators; the one weight block is 16 B. Each output
// block has 2 * 4 = 8 B, written and, for the fused add, read.
// Stream order (slot, kind): W0 (0,1), I0 (0,2), E0 (0,3), Wr0 (1,0), I1 (1,2), E1 (1,3),
// Wr1 (2,0).
//   W0:  t 0, bus from 10 for 16, c 26
//   I0:  t 0, bus from 26 for 8, c 34
//   step 0: s 34, e 36
//   E0:  ready s0 = 34: t 34, bus from 44 for 8, c 52
//   Wr0: ready max(e0 + 3 = 39, E0 52) = 52, bus from 62 for 8, c 70
//   I1:  behind Wr0: t 52, bus from max(62, 70) = 70, c 78
//   step 1: s = max(e0 36, I1 78) = 78, e 80
//   E1:  ready 78, bus from 88, c 96
//   Wr1: ready max(83, 96) = 96, bus from 106, c 114
// T = 114.
TEST(MemoryReference, OffChipEpilogueOperandDelaysTheWrite) {
  const auto npu = npu::Npu::validate(toy_config());
  const auto shape = plain_gemm(4, 4, 4);
  traces::RandomStream rng(13);
  const Operands o = random_operands(rng, shape, 1, true);
  const auto run = npu::run_memory_reference(npu, shape, 1, {1, 1, 1}, banded_tiling(2, 4), o.feature_maps,
                                             o.weights, {.epilogue = npu::EpilogueOperand::off_chip}, o.epilogue);
  EXPECT_EQ(run.cycles, 114u);
  EXPECT_EQ(run.compute_cycles, 4u);
  EXPECT_EQ(run.bytes, (npu::TrafficBytes{16, 16, 16, 0, 16}));
  expect_outputs_equal_eigen(run, shape, o);
}

// The same layer with the operand on chip: the timing and traffic of no fused add.
//   W0 c 26, I0 c 34; step 0: s 34, e 36
//   Wr0: ready 39, bus from 49 for 8, c 57
//   I1:  t 39, bus from 57, c 65; step 1: s 65, e 67
//   Wr1: ready 70, bus from 80, c 88
// T = 88.
TEST(MemoryReference, OnChipEpilogueOperandCostsNothing) {
  const auto npu = npu::Npu::validate(toy_config());
  const auto shape = plain_gemm(4, 4, 4);
  traces::RandomStream rng(14);
  const Operands o = random_operands(rng, shape, 1, true);
  const auto run = npu::run_memory_reference(npu, shape, 1, {1, 1, 1}, banded_tiling(2, 4), o.feature_maps,
                                             o.weights, {.epilogue = npu::EpilogueOperand::on_chip}, o.epilogue);
  EXPECT_EQ(run.cycles, 88u);
  EXPECT_EQ(run.compute_cycles, 4u);
  EXPECT_EQ(run.bytes, (npu::TrafficBytes{16, 16, 16, 0, 0}));
  expect_outputs_equal_eigen(run, shape, o);
  const auto plain = npu::run_memory_reference(npu, shape, 1, {1, 1, 1}, banded_tiling(2, 4), o.feature_maps,
                                               o.weights);
  EXPECT_EQ(plain.cycles, run.cycles);
  EXPECT_EQ(plain.bytes, run.bytes);
}

// R = 8, P = 4, C = 4, bands of 4 rows: two steps of M = 4 streaming 4 cycles, each loading
// 4 lines (16 B) into 4 * 4 * 4 = 64 B of accumulators, the whole output buffer. Input
// prefetch 1 into a 32 B input buffer. The output stays on chip, but a block is released only
// once the fused add's operand (4 * 4 = 16 B) has landed in it.
// Stream order: I0 (-1,2), W0 (0,1), I1 (0,2), E0 (0,3), E1 (1,3).
//   I0:  t 0, bus from 10 for 16, c 26
//   W0:  t 0, bus from 26 for 16, c 42
//   I1:  t 0, bus from 42 for 16, c 58
//   step 0: s = max(I0 26, W0 42) = 42, e 46
//   E0:  ready 42, bus from max(52, 58) = 58, c 74
//   block 0 free at max(e0 + 3 = 49, E0 74) = 74
//   step 1: s = max(e0 46, I1 58, room at 74) = 74, e 78
//   E1:  ready 74, bus from 84, c 100; block 1 free at max(81, 100) = 100
// T = max(78 + 3, 100) = 100.
TEST(MemoryReference, OutputOnChipWaitsForTheEpilogueOperand) {
  auto config = toy_config();
  config.buffers.input_bytes = 32;
  const auto npu = npu::Npu::validate(config);
  const auto shape = plain_gemm(8, 4, 4);
  auto tiling = banded_tiling(4, 4);
  tiling.input_prefetch = 1;
  traces::RandomStream rng(15);
  const Operands o = random_operands(rng, shape, 1, true);
  const npu::Placement placement{.output_on_chip = true, .epilogue = npu::EpilogueOperand::off_chip};
  const auto run =
      npu::run_memory_reference(npu, shape, 1, {1, 1, 1}, tiling, o.feature_maps, o.weights, placement, o.epilogue);
  EXPECT_EQ(run.cycles, 100u);
  EXPECT_EQ(run.compute_cycles, 8u);
  EXPECT_EQ(run.bytes, (npu::TrafficBytes{32, 16, 0, 0, 32}));
  expect_outputs_equal_eigen(run, shape, o);
}

// PrefetchedLoadWaitsForRoom on a 24 B input buffer with 8 B reserved: the 16 B left give its
// timing, T = 109; without the reservation the third load need not wait, and the layer ends sooner.
TEST(MemoryReference, ReservedBytesShrinkTheInputBuffer) {
  auto config = toy_config();
  config.buffers.input_bytes = 24;
  const auto npu = npu::Npu::validate(config);
  const auto shape = plain_gemm(8, 4, 4);
  auto tiling = banded_tiling(2, 4);
  tiling.input_prefetch = 2;
  traces::RandomStream rng(16);
  const Operands o = random_operands(rng, shape, 1);
  const auto run = npu::run_memory_reference(npu, shape, 1, {1, 1, 1}, tiling, o.feature_maps, o.weights,
                                             {.reserved_input_bytes = 8});
  EXPECT_EQ(run.cycles, 109u);
  EXPECT_EQ(run.bytes, (npu::TrafficBytes{32, 16, 32, 0, 0}));
  expect_outputs_equal_eigen(run, shape, o);
  const auto unreserved =
      npu::run_memory_reference(npu, shape, 1, {1, 1, 1}, tiling, o.feature_maps, o.weights);
  EXPECT_LT(unreserved.cycles, run.cycles);
  EXPECT_THROW(npu::run_memory_reference(npu, shape, 1, {1, 1, 1}, tiling, o.feature_maps, o.weights,
                                         {.reserved_input_bytes = 25}),
               std::runtime_error);
}

// --- random layers against Eigen ---------------------------------------------------------------

struct RandomLayer {
  npu::NpuConfig config;
  npu::GemmShape shape;
  std::uint32_t batch = 1;
  npu::BatchMapping mapping;
  npu::Tiling tiling;
  npu::Placement placement;
};

npu::NpuConfig random_npu(traces::RandomStream& rng) {
  npu::NpuConfig c;
  c.name = "random";
  const std::uint32_t widths[] = {1, 2, 3, 4, 8};
  const std::uint32_t counts[] = {1, 2, 4, 8};
  c.pe_width = widths[rng.uniform_below(5)];
  c.pe_count = counts[rng.uniform_below(4)];
  c.input_rows = 4 * static_cast<std::uint32_t>(rng.uniform_between(1, 2));  // a multiple of every k <= 4
  c.clock_mhz = rng.uniform_below(2) ? 1000 : 500;
  c.element_bytes = rng.uniform_below(3) == 0 ? 2 : 1;
  c.accumulator_bytes = 4;
  const double bandwidths[] = {0.5, 1.0, 2.5, 8.0, 16.0};
  c.offchip.bandwidth_gb_per_s = bandwidths[rng.uniform_below(5)];
  const std::uint32_t latencies[] = {0, 4, 20, 60};
  c.offchip.latency_ns = latencies[rng.uniform_below(4)];
  c.offchip.queue_depth = static_cast<std::uint32_t>(rng.uniform_between(1, 6));
  c.modes = {npu::BatchingMode::r_batching};
  if (rng.uniform_below(3) != 0) c.modes.push_back(npu::BatchingMode::p_batching);
  if (rng.uniform_below(3) != 0) c.modes.push_back(npu::BatchingMode::fluid);
  c.stack_factors = {1};
  for (std::uint32_t k : {2u, 4u})
    if (c.pe_count % k == 0 && rng.uniform_below(2)) c.stack_factors.push_back(k);
  c.buffers = {1u << 20, 1u << 20, 1u << 20};  // replaced once the tiling is known
  return c;
}

npu::GemmShape random_shape(traces::RandomStream& rng) {
  switch (rng.uniform_below(5)) {
    case 0:
      return plain_gemm(rng.uniform_between(1, 12), rng.uniform_between(1, 8), rng.uniform_between(1, 8),
                        rng.uniform_between(1, 3));
    case 1: {  // depthwise
      const auto size = static_cast<std::uint32_t>(rng.uniform_between(2, 10));
      return convolution(size, size, 1, 3, static_cast<std::uint32_t>(rng.uniform_between(1, 2)), 1, 1,
                         rng.uniform_between(2, 8));
    }
    case 2: {  // pointwise over few channels: P small enough for P-batching and packed groups
      const auto height = static_cast<std::uint32_t>(rng.uniform_between(1, 6));
      const auto width = static_cast<std::uint32_t>(rng.uniform_between(1, 6));
      return convolution(height, width, rng.uniform_between(1, 2), 1,
                         static_cast<std::uint32_t>(rng.uniform_between(1, 2)), 0, rng.uniform_between(1, 4),
                         rng.uniform_between(1, 4));
    }
    default: {  // convolution, possibly grouped, strided, padded, non-square
      const auto height = static_cast<std::uint32_t>(rng.uniform_between(1, 10));
      const auto width = static_cast<std::uint32_t>(rng.uniform_between(1, 10));
      const auto padding = static_cast<std::uint32_t>(rng.uniform_below(2));
      const auto kernel = std::min(static_cast<std::uint32_t>(rng.uniform_between(1, 3)),
                                   std::min(height, width) + 2 * padding);
      return convolution(height, width, rng.uniform_between(1, 8), kernel,
                         static_cast<std::uint32_t>(rng.uniform_between(1, 3)), padding,
                         rng.uniform_between(1, 8), rng.uniform_between(1, 3));
    }
  }
}

// Unlike testing::random_legal_mapping, favours P-batched and fluid mappings, which are legal only
// for small P and would otherwise be rare.
npu::BatchMapping random_batched_mapping(const npu::Npu& npu, const npu::GemmShape& shape, std::uint32_t batch,
                                         traces::RandomStream& rng) {
  const std::vector<npu::BatchMapping> legal = testing::legal_mappings(npu, shape, batch);
  // P-batching and fluid mappings are legal only for small P; pick them half the time they are.
  std::vector<npu::BatchMapping> batched;
  std::copy_if(legal.begin(), legal.end(), std::back_inserter(batched),
               [](const auto& m) { return m.b_p > 1; });
  if (!batched.empty() && rng.uniform_below(2)) return batched[rng.uniform_below(batched.size())];
  return legal[rng.uniform_below(legal.size())];
}

// A tiling in range (docs/memory-schedule.md §4) for every pass of the layer.
npu::Tiling random_tiling(const npu::Npu& npu, const RandomLayer& layer, traces::RandomStream& rng) {
  const npu::FeatureMap f = npu::feature_map_of(layer.shape);
  const std::uint64_t packed = npu::groups_per_pass(npu, layer.shape, layer.mapping);
  const std::uint64_t t_c = npu.geometry(layer.mapping.k).tile_cols;
  std::uint64_t widest_block_diagonal = 0, widest = 0;
  for (std::uint64_t first = 0; first < layer.shape.groups; first += packed) {
    const std::uint64_t groups = std::min(packed, layer.shape.groups - first);
    const std::uint64_t n_q = layer.mapping.b_p * groups * layer.shape.cols;
    widest = std::max(widest, n_q);
    if (layer.mapping.b_p * groups > 1) widest_block_diagonal = std::max(widest_block_diagonal, n_q);
  }
  npu::Tiling t;
  t.order = rng.uniform_below(2) ? npu::LoopOrder::weights_outer : npu::LoopOrder::inputs_outer;
  t.band_rows = static_cast<std::uint32_t>(rng.uniform_between(1, f.out_height));
  if (rng.uniform_below(3) == 0) t.band_rows = static_cast<std::uint32_t>(f.out_height);
  t.band_samples =
      t.band_rows == f.out_height ? static_cast<std::uint32_t>(rng.uniform_between(1, layer.mapping.b_r)) : 1;
  if (widest_block_diagonal > 0 || rng.uniform_below(3) == 0)
    t.col_block = widest + rng.uniform_below(3);
  else
    t.col_block = t_c * rng.uniform_between(1, 3);
  const auto chunks = static_cast<std::uint32_t>(rng.uniform_between(1, f.channels));
  const std::uint64_t chunk_size = (f.channels + chunks - 1) / chunks;
  t.channel_chunks = (chunks - 1) * chunk_size < f.channels ? chunks : 1;
  t.input_resident = rng.uniform_below(4) == 0;
  t.weights_resident = rng.uniform_below(3) == 0;
  t.input_prefetch = static_cast<std::uint32_t>(rng.uniform_below(4));
  t.weight_prefetch = static_cast<std::uint32_t>(rng.uniform_below(4));
  return t;
}

struct BufferSizes {
  std::uint64_t input = 0, weight = 0, output = 0;
};

// The smallest buffers Npu::validate accepts.
BufferSizes validation_minimum(const npu::NpuConfig& c) {
  BufferSizes least{std::uint64_t{c.input_rows} * c.pe_width * c.element_bytes,
                    std::uint64_t{c.pe_width} * c.pe_count * c.element_bytes, 0};
  for (auto k : c.stack_factors)
    least.output = std::max<std::uint64_t>(
        least.output, std::uint64_t{c.input_rows / k} * (c.pe_count / k) * c.accumulator_bytes);
  return least;
}

// Buffers that make the tiling feasible by a conservative rule: while a load of step j waits,
// every step up to j - d - 1 has released, so the buffer holds at most the lines (blocks) of
// steps j - d .. j: d + 1 times a bound on one step's share. Resident operands need the whole
// layer; an accumulator block needs at most band_samples * band_rows * W' rows of the widest
// C-block.
BufferSizes conservative_buffers(const RandomLayer& layer, const npu::Npu& npu) {
  const npu::FeatureMap f = npu::feature_map_of(layer.shape);
  const auto& t = layer.tiling;
  const std::uint64_t e = layer.config.element_bytes, a = layer.config.accumulator_bytes;
  const std::uint64_t packed = npu::groups_per_pass(npu, layer.shape, layer.mapping);
  const std::uint64_t chunk_channels = (f.channels + t.channel_chunks - 1) / t.channel_chunks;
  const std::uint64_t samples =
      std::min<std::uint64_t>(layer.batch, std::uint64_t{t.band_samples} * layer.mapping.b_p);
  const std::uint64_t rows =
      std::min<std::uint64_t>(f.height, (t.band_rows - 1) * f.stride_height + f.kernel_height);
  const std::uint64_t step_lines = samples * rows * f.width * packed * f.channels * e;
  const std::uint64_t all_lines = layer.batch * f.height * f.width * f.channels * layer.shape.groups * e;
  const std::uint64_t widest = layer.mapping.b_p * packed * layer.shape.cols;
  const std::uint64_t block =
      std::max(f.kernel_height * f.kernel_width * chunk_channels * std::min(t.col_block, widest),
               packed * layer.shape.depth * layer.shape.cols) *
      e;
  const std::uint64_t all_blocks = layer.shape.groups * layer.shape.depth * layer.shape.cols * e;
  return {t.input_resident ? all_lines : (t.input_prefetch + 1) * step_lines,
          t.weights_resident ? all_blocks : (t.weight_prefetch + 1) * block,
          std::uint64_t{t.band_samples} * t.band_rows * f.out_width * std::min(t.col_block, widest) * a};
}

std::uint64_t at_least(std::uint64_t bytes, std::uint64_t least) { return std::max(bytes, least); }

// Feasible: the conservative sizes, or up to twice that. Tight: some buffers between half the
// conservative size and all of it, so loads and allocations wait for room, and some tilings are
// infeasible. Never below what Npu::validate demands.
RandomLayer random_layer(traces::RandomStream& rng, bool tight) {
  RandomLayer layer;
  layer.config = random_npu(rng);
  layer.shape = random_shape(rng);
  layer.batch = static_cast<std::uint32_t>(rng.uniform_between(1, 4));
  const auto probe = npu::Npu::validate(layer.config);
  layer.mapping = random_batched_mapping(probe, layer.shape, layer.batch, rng);
  layer.tiling = random_tiling(probe, layer, rng);
  const BufferSizes bound = conservative_buffers(layer, probe);
  const BufferSizes least = validation_minimum(layer.config);
  const auto size = [&](std::uint64_t conservative, std::uint64_t minimum) {
    if (tight && rng.uniform_below(2))
      return rng.uniform_between(at_least(conservative / 2, minimum), at_least(conservative, minimum));
    return at_least(conservative + (rng.uniform_below(2) ? rng.uniform_below(conservative + 1) : 0), minimum);
  };
  layer.config.buffers.input_bytes = size(bound.input, least.input);
  layer.config.buffers.weight_bytes = size(bound.weight, least.weight);
  layer.config.buffers.output_bytes = size(bound.output, least.output);
  layer.placement = testing::random_placement(rng, layer.config, layer.shape, layer.batch);
  return layer;
}

// Input rows some output row reads: every line the layer must load at least once (per sample,
// pass and chunk; the chunks of a pass split its channels, so channels add up to C_g * groups).
std::uint64_t bytes_of_lines_read(const RandomLayer& layer) {
  const npu::FeatureMap f = npu::feature_map_of(layer.shape);
  std::set<std::int64_t> rows;
  for (std::uint64_t oy = 0; oy < f.out_height; ++oy)
    for (std::uint64_t kh = 0; kh < f.kernel_height; ++kh) {
      const auto y =
          static_cast<std::int64_t>(oy * f.stride_height + kh) - static_cast<std::int64_t>(f.padding_height);
      if (y >= 0 && y < static_cast<std::int64_t>(f.height)) rows.insert(y);
    }
  return layer.batch * rows.size() * f.width * f.channels * layer.shape.groups * layer.config.element_bytes;
}

bool has_fused_add(const RandomLayer& layer) { return layer.placement.epilogue != npu::EpilogueOperand::none; }

std::string describe(const RandomLayer& l) {
  const npu::FeatureMap f = npu::feature_map_of(l.shape);
  return fmt::format(
      "npu {}x{} T_R {} k {} Q {} lat {}ns {}GB/s e {} buffers {}/{}/{}; layer {}x{}x{} k{}x{} s{} p{} -> "
      "{}x{}, "
      "P {} C {} groups {}; batch {} mapping {}; tiling {}; input on chip {} output on chip {} epilogue {} "
      "reserved {}",
      l.config.pe_count, l.config.pe_width, l.config.input_rows, l.mapping.k, l.config.offchip.queue_depth,
      l.config.offchip.latency_ns, l.config.offchip.bandwidth_gb_per_s, l.config.element_bytes,
      l.config.buffers.input_bytes, l.config.buffers.weight_bytes, l.config.buffers.output_bytes, f.height,
      f.width, f.channels, f.kernel_height, f.kernel_width, f.stride_height, f.padding_height, f.out_height,
      f.out_width, l.shape.depth, l.shape.cols, l.shape.groups, l.batch, npu::to_string(l.mapping),
      npu::to_string(l.tiling), l.placement.input_on_chip, l.placement.output_on_chip,
      static_cast<int>(l.placement.epilogue), l.placement.reserved_input_bytes);
}

// Outputs equal Eigen's, and the traffic is what any schedule of the layer must carry.
void expect_correct_run(const RandomLayer& layer, const npu::Npu& npu, const Operands& o,
                        const npu::MemoryReferenceRun& run, const std::string& where) {
  expect_outputs_equal_eigen(run, layer.shape, o, where);
  EXPECT_EQ(run.simulated_ps, run.cycles * run.clock_period_ps) << where;

  const npu::FeatureMap f = npu::feature_map_of(layer.shape);
  const std::uint64_t e = layer.config.element_bytes;
  const std::uint64_t lines_read = bytes_of_lines_read(layer);
  if (layer.placement.input_on_chip) {
    EXPECT_EQ(run.bytes.input, 0u) << where;
  } else {
    EXPECT_GE(run.bytes.input, lines_read) << where;
  }
  // A resident input loads the union of the bands' row ranges once; that is exactly the rows
  // read unless a band of several rows strides over rows no tap touches.
  if (!layer.placement.input_on_chip && layer.tiling.input_resident &&
      (f.stride_height <= f.kernel_height || layer.tiling.band_rows == 1)) {
    EXPECT_EQ(run.bytes.input, lines_read) << where;
  }
  const std::uint64_t distinct_weights = layer.shape.groups * layer.shape.depth * layer.shape.cols * e;
  EXPECT_GE(run.bytes.weight, distinct_weights) << where;
  if (layer.tiling.weights_resident) {
    EXPECT_EQ(run.bytes.weight, distinct_weights) << where;
  }
  const std::uint64_t output_tensor = layer.batch * layer.shape.rows * layer.shape.cols * layer.shape.groups * e;
  EXPECT_EQ(run.bytes.output, layer.placement.output_on_chip ? 0 : output_tensor) << where;
  EXPECT_EQ(run.bytes.epilogue, layer.placement.epilogue == npu::EpilogueOperand::off_chip ? output_tensor : 0)
      << where;
  EXPECT_EQ(run.bytes.psum, 0u) << where;
  // Every byte crosses the one bus after at least one latency; the last row takes D to land.
  EXPECT_GE(run.cycles, npu.latency_cycles() + npu.data_cycles(run.bytes.total())) << where;
  EXPECT_GE(run.cycles, run.compute_cycles + npu.geometry(layer.mapping.k).pipeline_depth_cycles - 1)
      << where;
  EXPECT_GE(run.compute_cycles, layer.mapping.b_r * layer.shape.rows) << where;
}

struct Coverage {
  int plain = 0, strided = 0, padded = 0, grouped = 0, depthwise = 0, p_batched = 0, fluid = 0, stacked = 0,
      chunked = 0, weights_outer = 0, inputs_outer = 0, input_resident = 0, weights_resident = 0,
      whole_samples = 0, several_col_blocks = 0, prefetched = 0, packed_groups = 0, input_on_chip = 0,
      output_on_chip = 0, epilogue_on_chip = 0, epilogue_off_chip = 0, reserved = 0;

  void count(const RandomLayer& layer, const npu::Npu& npu) {
    const npu::FeatureMap f = npu::feature_map_of(layer.shape);
    const bool is_conv = layer.shape.window.in_height != 0;
    plain += is_conv ? 0 : 1;
    strided += f.stride_height > 1 ? 1 : 0;
    padded += f.padding_height > 0 ? 1 : 0;
    grouped += layer.shape.groups > 1 && f.channels > 1 ? 1 : 0;
    depthwise += is_conv && f.channels == 1 && layer.shape.cols == 1 && layer.shape.groups > 1 ? 1 : 0;
    p_batched += npu::mode_of(layer.mapping) == npu::BatchingMode::p_batching ? 1 : 0;
    fluid += npu::mode_of(layer.mapping) == npu::BatchingMode::fluid ? 1 : 0;
    stacked += layer.mapping.k > 1 ? 1 : 0;
    chunked += layer.tiling.channel_chunks > 1 ? 1 : 0;
    weights_outer += layer.tiling.order == npu::LoopOrder::weights_outer ? 1 : 0;
    inputs_outer += layer.tiling.order == npu::LoopOrder::inputs_outer ? 1 : 0;
    input_resident += layer.tiling.input_resident ? 1 : 0;
    weights_resident += layer.tiling.weights_resident ? 1 : 0;
    whole_samples += layer.tiling.band_samples > 1 ? 1 : 0;
    several_col_blocks += layer.tiling.col_block < layer.shape.cols ? 1 : 0;
    prefetched += layer.tiling.input_prefetch > 0 && layer.tiling.weight_prefetch > 0 ? 1 : 0;
    packed_groups +=
        layer.shape.groups > 1 && npu::groups_per_pass(npu, layer.shape, layer.mapping) > 1 ? 1 : 0;
    input_on_chip += layer.placement.input_on_chip ? 1 : 0;
    output_on_chip += layer.placement.output_on_chip ? 1 : 0;
    epilogue_on_chip += layer.placement.epilogue == npu::EpilogueOperand::on_chip ? 1 : 0;
    epilogue_off_chip += layer.placement.epilogue == npu::EpilogueOperand::off_chip ? 1 : 0;
    reserved += layer.placement.reserved_input_bytes > 0 ? 1 : 0;
  }

  void expect_each_at_least(int least) const {
    const std::vector<std::pair<std::string, int>> counts{{"plain", plain},
                                                          {"strided", strided},
                                                          {"padded", padded},
                                                          {"grouped", grouped},
                                                          {"depthwise", depthwise},
                                                          {"p_batched", p_batched},
                                                          {"fluid", fluid},
                                                          {"stacked", stacked},
                                                          {"chunked", chunked},
                                                          {"weights_outer", weights_outer},
                                                          {"inputs_outer", inputs_outer},
                                                          {"input_resident", input_resident},
                                                          {"weights_resident", weights_resident},
                                                          {"whole_samples", whole_samples},
                                                          {"several_col_blocks", several_col_blocks},
                                                          {"prefetched", prefetched},
                                                          {"packed_groups", packed_groups},
                                                          {"input_on_chip", input_on_chip},
                                                          {"output_on_chip", output_on_chip},
                                                          {"epilogue_on_chip", epilogue_on_chip},
                                                          {"epilogue_off_chip", epilogue_off_chip},
                                                          {"reserved", reserved}};
    for (const auto& [name, seen] : counts) EXPECT_GE(seen, least) << name;
  }
};

TEST(MemoryReference, RandomFeasibleLayersEqualEigenAndCarryTheirTraffic) {
  constexpr int cases = 300;
  traces::RandomStream rng(20240611, 7);
  Coverage seen;
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < cases; ++i) {
    const RandomLayer layer = random_layer(rng, false);
    const auto npu = npu::Npu::validate(layer.config);
    const Operands o = random_operands(rng, layer.shape, layer.batch, has_fused_add(layer));
    const std::string where = fmt::format("case {}: {}", i, describe(layer));
    npu::MemoryReferenceRun run;
    ASSERT_NO_THROW(run = npu::run_memory_reference(npu, layer.shape, layer.batch, layer.mapping, layer.tiling,
                                                    o.feature_maps, o.weights, layer.placement, o.epilogue))
        << where;
    expect_correct_run(layer, npu, o, run, where);
    if (HasFailure()) return;
    seen.count(layer, npu);
  }
  RecordProperty(
      "seconds",
      fmt::format("{:.3f}", std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count()));
  seen.expect_each_at_least(10);
}

// Buffers below the conservative sizes: a run either finishes with the right numbers and
// traffic, or reports that it cannot go on.
TEST(MemoryReference, RandomTightBuffersFinishCorrectlyOrReportDeadlock) {
  constexpr int cases = 300;
  traces::RandomStream rng(20240612, 8);
  int finished = 0, deadlocked = 0;
  for (int i = 0; i < cases; ++i) {
    const RandomLayer layer = random_layer(rng, true);
    const auto npu = npu::Npu::validate(layer.config);
    const Operands o = random_operands(rng, layer.shape, layer.batch, has_fused_add(layer));
    const std::string where = fmt::format("case {}: {}", i, describe(layer));
    npu::MemoryReferenceRun run;
    try {
      run = npu::run_memory_reference(npu, layer.shape, layer.batch, layer.mapping, layer.tiling,
                                      o.feature_maps, o.weights, layer.placement, o.epilogue);
    } catch (const std::runtime_error&) {
      ++deadlocked;
      continue;
    }
    ++finished;
    expect_correct_run(layer, npu, o, run, where);
    if (HasFailure()) return;
  }
  EXPECT_GE(finished, cases / 3);
  EXPECT_GE(deadlocked, 10);
}

// --- errors ------------------------------------------------------------------------------------

// 3x3, padding 1, over 4x4 x 2 channels: a line is 4 x 2 = 8 B and the input buffer holds two.
// With one-row bands step 1 reads rows 0..2 (24 B), and step 0 frees none of them: its load can
// never issue.
TEST(MemoryReference, InfeasibleTilingDeadlocks) {
  auto config = toy_config();
  config.buffers.weight_bytes = 32;
  const auto npu = npu::Npu::validate(config);
  const auto shape = convolution(4, 4, 2, 3, 1, 1, 1);
  traces::RandomStream rng(6);
  const Operands o = random_operands(rng, shape, 1);
  EXPECT_THROW(npu::run_memory_reference(npu, shape, 1, {1, 1, 1}, banded_tiling(1, 4), o.feature_maps,
                                         o.weights),
               std::runtime_error);
}

TEST(MemoryReference, RejectsBadInputs) {
  auto config = toy_config();
  config.modes = {npu::BatchingMode::r_batching, npu::BatchingMode::p_batching};
  config.buffers = {64, 64, 256};  // the 4 lines (32 B), the 18 x 3 weights, 16 x 3 accumulators
  const auto npu = npu::Npu::validate(config);
  const auto shape = convolution(4, 4, 2, 3, 1, 1, 3);  // H' = W' = 4, C_g = 2, P = 18
  traces::RandomStream rng(7);
  const Operands o = random_operands(rng, shape, 1);
  const npu::BatchMapping one{1, 1, 1};
  const auto run = [&](const npu::GemmShape& s, std::uint32_t batch, const npu::BatchMapping& m,
                       const npu::Tiling& t, const std::vector<IntMatrix>& maps,
                       const std::vector<IntMatrix>& weights) {
    return npu::run_memory_reference(npu, s, batch, m, t, maps, weights);
  };
  const npu::Tiling good = banded_tiling(4, 4);
  EXPECT_NO_THROW(run(shape, 1, one, good, o.feature_maps, o.weights));

  EXPECT_THROW(run(shape, 2, {2, 1, 1}, good, o.feature_maps, o.weights),
               std::invalid_argument);  // one map, two samples
  EXPECT_THROW(run(shape, 1, one, good, {IntMatrix::Zero(16, 3)}, o.weights), std::invalid_argument);
  EXPECT_THROW(run(shape, 1, one, good, o.feature_maps, {IntMatrix::Zero(18, 2)}), std::invalid_argument);
  EXPECT_THROW(run(shape, 1, one, good, o.feature_maps, {}), std::invalid_argument);
  auto wrong_rows = shape;
  wrong_rows.rows = 15;
  EXPECT_THROW(run(wrong_rows, 1, one, good, o.feature_maps, o.weights), std::invalid_argument);
  EXPECT_THROW(run(shape, 1, {1, 1, 2}, good, o.feature_maps, o.weights),
               npu::InvalidMapping);  // k = 2 not allowed
  EXPECT_THROW(run(shape, 1, {2, 1, 1}, good, o.feature_maps, o.weights),
               npu::InvalidMapping);  // b_r != ceil(B/b_p)

  const auto bad = [&](auto&& change) {
    npu::Tiling t = good;
    change(t);
    return t;
  };
  EXPECT_THROW(run(shape, 1, one, bad([](npu::Tiling& t) { t.band_rows = 0; }), o.feature_maps, o.weights),
               std::invalid_argument);
  EXPECT_THROW(run(shape, 1, one, bad([](npu::Tiling& t) { t.band_rows = 5; }), o.feature_maps, o.weights),
               std::invalid_argument);
  EXPECT_THROW(run(shape, 1, one, bad([](npu::Tiling& t) { t.band_samples = 0; }), o.feature_maps, o.weights),
               std::invalid_argument);
  EXPECT_THROW(run(shape, 1, one, bad([](npu::Tiling& t) { t.band_samples = 2; }), o.feature_maps, o.weights),
               std::invalid_argument);  // more than B_R = 1
  EXPECT_THROW(run(shape, 1, one, bad([](npu::Tiling& t) { t.col_block = 0; }), o.feature_maps, o.weights),
               std::invalid_argument);
  EXPECT_THROW(run(shape, 1, one, bad([](npu::Tiling& t) { t.col_block = 2; }), o.feature_maps, o.weights),
               std::invalid_argument);  // neither a multiple of t_c = 4 nor >= n_q = 3
  EXPECT_THROW(
      run(shape, 1, one, bad([](npu::Tiling& t) { t.channel_chunks = 0; }), o.feature_maps, o.weights),
      std::invalid_argument);
  EXPECT_THROW(
      run(shape, 1, one, bad([](npu::Tiling& t) { t.channel_chunks = 3; }), o.feature_maps, o.weights),
      std::invalid_argument);  // more chunks than C_g = 2

  // Two samples of R = 2 rows: whole-sample bands need band_rows = H'.
  const auto gemm = plain_gemm(2, 2, 2);
  const Operands two = random_operands(rng, gemm, 2);
  auto several_samples = banded_tiling(1, 4);
  several_samples.band_samples = 2;
  EXPECT_THROW(run(gemm, 2, {2, 1, 1}, several_samples, two.feature_maps, two.weights),
               std::invalid_argument);
  // P-batched <1,2,1>: a block-diagonal pass of n_q = 4 columns needs col_block >= 4.
  EXPECT_NO_THROW(run(gemm, 2, {1, 2, 1}, banded_tiling(2, 4), two.feature_maps, two.weights));
  EXPECT_THROW(run(gemm, 2, {1, 2, 1}, banded_tiling(2, 2), two.feature_maps, two.weights),
               std::invalid_argument);
  // C_g = 4 in 3 chunks of 2 leaves the third empty.
  const auto wide = plain_gemm(2, 4, 2);
  const Operands w = random_operands(rng, wide, 1);
  auto three_chunks = banded_tiling(2, 4);
  three_chunks.channel_chunks = 3;
  EXPECT_THROW(run(wide, 1, one, three_chunks, w.feature_maps, w.weights), std::invalid_argument);

  // A fused add's operand is R x C per sample and group, and only a fused add has one.
  const Operands fused = random_operands(rng, shape, 1, true);
  const auto with_add = [&](npu::EpilogueOperand epilogue, const std::vector<std::vector<IntMatrix>>& operand) {
    return npu::run_memory_reference(npu, shape, 1, one, good, fused.feature_maps, fused.weights,
                                     {.epilogue = epilogue}, operand);
  };
  EXPECT_NO_THROW(with_add(npu::EpilogueOperand::off_chip, fused.epilogue));
  EXPECT_THROW(with_add(npu::EpilogueOperand::off_chip, {}), std::invalid_argument);
  EXPECT_THROW(with_add(npu::EpilogueOperand::none, fused.epilogue), std::invalid_argument);
  EXPECT_THROW(with_add(npu::EpilogueOperand::on_chip, {{}}), std::invalid_argument);  // no groups
  EXPECT_THROW(with_add(npu::EpilogueOperand::on_chip, {{IntMatrix::Zero(16, 2)}}), std::invalid_argument);
}

}  // namespace
}  // namespace npusim
