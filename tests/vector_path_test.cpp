// The vector path (docs/vector-path.md): the fast model (vector_path.hpp) against hand-worked
// timings and against the cycle-stepped SystemC reference (vector_reference.hpp) on random
// pooling and element-wise layers, batches, placements and buffers; the reference's outputs
// against a direct Eigen computation; bounds, monotonicity in bandwidth, and the error for
// buffers too small for one chunk.

#include <algorithm>
#include <array>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "npu_model/vector_path.hpp"
#include "npu_model/vector_reference.hpp"
#include "toy_npu.hpp"
#include "traces/random_stream.hpp"

namespace npusim {
namespace {

using npu::IntMatrix;
using npu::PoolFunction;
using npu::VectorKind;
using npu::VectorWork;

Eigen::Index to_index(std::uint64_t value) { return static_cast<Eigen::Index>(value); }

std::uint32_t pooled_extent(std::uint32_t in, std::uint32_t kernel, std::uint32_t stride, std::uint32_t padding) {
  return (in + 2 * padding - kernel) / stride + 1;
}

// The work lower() gives a pooling layer (square kernel, stride and padding).
VectorWork pooling(std::uint32_t height, std::uint32_t width, std::uint32_t channels, std::uint32_t kernel,
                   std::uint32_t stride, std::uint32_t padding) {
  VectorWork w;
  w.kind = VectorKind::pooling;
  w.height = height;
  w.width = width;
  w.channels = channels;
  w.kernel_height = w.kernel_width = kernel;
  w.stride_height = w.stride_width = stride;
  w.padding_height = w.padding_width = padding;
  const std::uint64_t out = std::uint64_t{pooled_extent(height, kernel, stride, padding)} *
                            pooled_extent(width, kernel, stride, padding) * channels;
  w.input_elements = std::uint64_t{height} * width * channels;
  w.output_elements = out;
  w.operations = out * kernel * kernel;
  return w;
}

VectorWork elementwise_add(std::uint32_t height, std::uint32_t width, std::uint32_t channels) {
  VectorWork w;
  w.kind = VectorKind::add;
  w.height = height;
  w.width = width;
  w.channels = channels;
  const std::uint64_t elements = std::uint64_t{height} * width * channels;
  w.input_elements = 2 * elements;
  w.output_elements = elements;
  w.operations = elements;
  return w;
}

// The toy NPU (toy_npu.hpp): 1 byte per bus cycle, 10 cycles of latency, 4 lanes, int8.
npu::Npu toy(std::uint64_t input_bytes, std::uint64_t output_bytes, std::uint32_t queue_depth = 4) {
  return npu::Npu::validate(testing::toy_npu_config(input_bytes, 64, output_bytes, queue_depth));
}

// ---- Direct computation -------------------------------------------------------------------

// One channel of a (H*W) x C tensor as an H x W matrix.
IntMatrix plane(const IntMatrix& tensor, std::uint64_t height, std::uint64_t width, std::uint64_t channel) {
  const auto channels = tensor.cols();
  return Eigen::Map<const IntMatrix, 0, Eigen::Stride<Eigen::Dynamic, Eigen::Dynamic>>(
      tensor.data() + channel, to_index(height), to_index(width),
      Eigen::Stride<Eigen::Dynamic, Eigen::Dynamic>(to_index(width) * channels, channels));
}

IntMatrix direct_output(const VectorWork& w, PoolFunction function, const std::vector<IntMatrix>& operands) {
  if (w.kind == VectorKind::add) return operands[0] + operands[1];
  const std::uint32_t out_h = pooled_extent(w.height, w.kernel_height, w.stride_height, w.padding_height);
  const std::uint32_t out_w = pooled_extent(w.width, w.kernel_width, w.stride_width, w.padding_width);
  IntMatrix out(to_index(std::uint64_t{out_h} * out_w), to_index(w.channels));
  for (std::uint32_t c = 0; c < w.channels; ++c) {
    const IntMatrix p = plane(operands[0], w.height, w.width, c);
    for (std::uint32_t y = 0; y < out_h; ++y)
      for (std::uint32_t x = 0; x < out_w; ++x) {
        const auto top = static_cast<std::int64_t>(y * w.stride_height) - w.padding_height;
        const auto left = static_cast<std::int64_t>(x * w.stride_width) - w.padding_width;
        const std::int64_t y0 = std::max<std::int64_t>(0, top), x0 = std::max<std::int64_t>(0, left);
        const std::int64_t y1 = std::min<std::int64_t>(w.height, top + w.kernel_height);
        const std::int64_t x1 = std::min<std::int64_t>(w.width, left + w.kernel_width);
        std::int64_t value = 0;
        if (y1 > y0 && x1 > x0) {
          const auto window = p.block(y0, x0, y1 - y0, x1 - x0);
          value = function == PoolFunction::max
                      ? window.maxCoeff()
                      : window.sum() / static_cast<std::int64_t>(w.kernel_height * w.kernel_width);
        }
        out(to_index(std::uint64_t{y} * out_w + x), c) = value;
      }
  }
  return out;
}

std::vector<std::vector<IntMatrix>> random_operands(traces::RandomStream& rng, const VectorWork& w,
                                                    std::uint32_t batch) {
  const std::size_t tensors = w.kind == VectorKind::add ? 2 : 1;
  std::vector<std::vector<IntMatrix>> operands(batch);
  for (auto& sample : operands)
    for (std::size_t t = 0; t < tensors; ++t) {
      IntMatrix m(to_index(std::uint64_t{w.height} * w.width), to_index(w.channels));
      for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = static_cast<std::int64_t>(rng.uniform_below(201)) - 100;
      sample.push_back(std::move(m));
    }
  return operands;
}

// ---- Hand-worked timings (toy NPU) ----------------------------------------------------------

// Runs the fast model and the reference under the chosen tiling; they must agree.
npu::LayerCost agreed_cost(const npu::Npu& npu, const VectorWork& w, std::uint32_t batch,
                           const npu::Placement& placement = {}) {
  const auto cost = npu::vector_cost(npu, w, batch, placement);
  traces::RandomStream rng(7);
  const auto tiling = npu::choose_vector_tiling(npu, w, batch, placement);
  const auto operands = random_operands(rng, w, batch);
  const auto run = npu::run_vector_reference(npu, w, batch, placement, tiling, PoolFunction::max, operands);
  EXPECT_EQ(run.cycles, cost.cycles);
  EXPECT_EQ(run.compute_cycles, cost.compute_cycles);
  EXPECT_EQ(run.bytes, cost.bytes);
  return cost;
}

TEST(VectorPath, MaxPoolDoubleBuffered) {
  // 2x2 stride-2 max pool of a 4x4x1 map: chunks are output rows 0 and 1, each reading two
  // 4 B input lines and writing 2 B; 2 x 1 x 4 = 8 ops on 4 lanes = 2 cycles.
  // 16 B of input buffer hold both chunks' lines: channel block 1, prefetch 1.
  // Stream: load 0 (slot -1), load 1 (slot 0), write 0 (slot 1), write 1 (slot 2).
  // load 0: 8 B issued at 0, bus 10..18. load 1: issued at 0, bus 18..26.
  // chunk 0: 18..20. write 0: issued at 20, bus max(30, 26) = 30..32.
  // chunk 1: max(20, 26) = 26..28. write 1: issued at 28, bus max(38, 32) = 38..40.
  const auto npu = toy(16, 8);
  const VectorWork w = pooling(4, 4, 1, 2, 2, 0);
  EXPECT_EQ(npu::choose_vector_tiling(npu, w, 1), (npu::VectorTiling{1, 1}));
  const auto cost = agreed_cost(npu, w, 1);
  EXPECT_EQ(cost.cycles, 40u);
  EXPECT_EQ(cost.compute_cycles, 4u);
  EXPECT_EQ(cost.bytes.input, 16u);
  EXPECT_EQ(cost.bytes.output, 4u);
}

TEST(VectorPath, MaxPoolSingleBufferedWaitsForRoom) {
  // The same layer with 8 B of input buffer: one chunk's two lines fit, two chunks' do not, so
  // no prefetch. Stream: load 0 (slot 0), write 0 (slot 1, kind 0), load 1 (slot 1), write 1.
  // load 0: bus 10..18. chunk 0: 18..20. write 0: issued 20, bus 30..32.
  // load 1: room once chunk 0 frees its lines at 20: issued 20, bus max(30, 32) = 32..40.
  // chunk 1: 40..42. write 1: issued 42, bus 52..54.
  const auto npu = toy(8, 8);
  const VectorWork w = pooling(4, 4, 1, 2, 2, 0);
  EXPECT_EQ(npu::choose_vector_tiling(npu, w, 1), (npu::VectorTiling{1, 0}));
  const auto cost = agreed_cost(npu, w, 1);
  EXPECT_EQ(cost.cycles, 54u);
  EXPECT_EQ(cost.compute_cycles, 4u);
}

TEST(VectorPath, LineBufferLoadsEachRowOnce) {
  // 3x3 stride-1 pad-1 max pool of a 4x4x1 map: output rows read input rows [0,1], [0,2],
  // [1,3], [2,3], so the chunks load 2, 1, 1 and 0 lines of 4 B: the map once, 16 B.
  // 4 x 9 = 36 ops = 9 cycles a chunk; 64 B buffers: prefetch min(max(S = 4, Q = 4), 3) = 3.
  // load 0 (8 B): bus 10..18; load 1: 18..22; load 2: 22..26; chunk 3 loads nothing.
  // chunks: 18..27, 27..36, 36..45, 45..54. writes (4 B), ready 27, 36, 45, 54: bus 37..41,
  // 46..50, 55..59, 64..68 (the 5th request waits for the 1st, done at 18, long before).
  const auto npu = toy(64, 64);
  const VectorWork w = pooling(4, 4, 1, 3, 1, 1);
  EXPECT_EQ(npu::choose_vector_tiling(npu, w, 1), (npu::VectorTiling{1, 3}));
  const auto cost = agreed_cost(npu, w, 1);
  EXPECT_EQ(cost.cycles, 68u);
  EXPECT_EQ(cost.compute_cycles, 36u);
  EXPECT_EQ(cost.bytes.input, 16u);
  EXPECT_EQ(cost.bytes.output, 16u);
}

TEST(VectorPath, ElementwiseAddAndPlacement) {
  // a + b on 2x2x2 maps: a line is one row of both operands, 2 x 2 x 2 = 8 B; a chunk writes
  // 2 x 2 = 4 B and does 4 adds in 1 cycle. 16 B in, 8 B out: both rows double-buffer, C = 2
  // channels in one block, prefetch 1.
  // load 0: bus 10..18; load 1: 18..26. chunk 0: 18..19; write 0: bus max(29, 26) = 29..33.
  // chunk 1: 26..27 (4 + 4 B of results fit); write 1: bus max(37, 33) = 37..41.
  const auto npu = toy(16, 8);
  const VectorWork w = elementwise_add(2, 2, 2);
  const auto cost = agreed_cost(npu, w, 1);
  EXPECT_EQ(cost.cycles, 41u);
  EXPECT_EQ(cost.compute_cycles, 2u);
  EXPECT_EQ(cost.bytes.input, 16u);
  EXPECT_EQ(cost.bytes.output, 8u);

  // Both operands already on chip (16 B, they fit): chunk 0: 0..1, write 0: bus 11..15;
  // chunk 1: 1..2, write 1: issued 2, bus max(12, 15) = 15..19.
  const auto on_chip = agreed_cost(npu, w, 1, {.input_on_chip = true});
  EXPECT_EQ(on_chip.cycles, 19u);
  EXPECT_EQ(on_chip.bytes.input, 0u);
  // And the result stays on chip too: only the two compute cycles remain.
  const auto nothing_moves = agreed_cost(npu, w, 1, {.input_on_chip = true, .output_on_chip = true});
  EXPECT_EQ(nothing_moves.cycles, 2u);
  EXPECT_EQ(nothing_moves.offchip_bytes, 0u);
}

TEST(VectorPath, EmptyWorkCostsNothingAndUnshapedWorkIsRefused) {
  const auto npu = toy(64, 64);
  EXPECT_EQ(npu::vector_cost(npu, {}, 3).cycles, 0u);
  EXPECT_THROW((void)npu::vector_cost(npu, {32, 16, 64}, 1), std::invalid_argument);
}

TEST(VectorPath, BuffersTooSmallForOneChunkNameTheBufferAndTheSmallestSize) {
  // 3x3 pad-1 pooling of an 8-wide, 1-channel map at 1 byte: one output row reads 3 rows of
  // 8 B = 24 B of input, and writes 8 B.
  const VectorWork w = pooling(8, 8, 1, 3, 1, 1);
  try {
    (void)npu::vector_cost(toy(23, 64), w, 1);
    FAIL() << "expected NoFeasibleTiling";
  } catch (const npu::NoFeasibleTiling& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("input buffer"), std::string::npos) << what;
    EXPECT_NE(what.find("at least 24 B"), std::string::npos) << what;
    EXPECT_EQ(what.find('\n'), std::string::npos) << what;
  }
  EXPECT_NO_THROW((void)npu::vector_cost(toy(24, 64), w, 1));
  // Reserved bytes come off the input buffer.
  EXPECT_THROW((void)npu::vector_cost(toy(24, 64), w, 1, {.reserved_input_bytes = 1}), npu::NoFeasibleTiling);
  try {
    (void)npu::vector_cost(toy(64, 7), w, 1);
    FAIL() << "expected NoFeasibleTiling";
  } catch (const npu::NoFeasibleTiling& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("output buffer"), std::string::npos) << what;
    EXPECT_NE(what.find("at least 8 B"), std::string::npos) << what;
  }
  EXPECT_NO_THROW((void)npu::vector_cost(toy(64, 8), w, 1));
  // An on-chip input must fit whole: 2 samples x 64 B.
  EXPECT_THROW((void)npu::vector_cost(toy(127, 64), w, 2, {.input_on_chip = true}), npu::NoFeasibleTiling);
  EXPECT_NO_THROW((void)npu::vector_cost(toy(128, 64), w, 2, {.input_on_chip = true}));
}

// ---- Random agreement -----------------------------------------------------------------------

enum class BufferRegime { everything_fits, input_does_not_fit, one_chunk };

struct RandomVectorCase {
  npu::NpuConfig config;
  VectorWork work;
  std::uint32_t batch = 1;
  npu::Placement placement;
  PoolFunction function = PoolFunction::max;
  BufferRegime regime = BufferRegime::everything_fits;  // what the buffer sizes aimed at
  std::uint64_t input_tensor_bytes = 0;                 // every sample, every operand
  std::uint64_t one_chunk_input_bytes = 0;              // the tallest window's rows, one channel

  // Which regime the case really is in, from the input buffer left after the reservation.
  BufferRegime reached() const {
    const std::uint64_t room = config.buffers.input_bytes - placement.reserved_input_bytes;
    if (input_tensor_bytes <= room) return BufferRegime::everything_fits;
    return room < 2 * one_chunk_input_bytes ? BufferRegime::one_chunk : BufferRegime::input_does_not_fit;
  }
};

// Rows of the input that the tallest window reads (independently of the model's own helper).
std::uint64_t tallest_window_rows(const VectorWork& w) {
  if (w.kind == VectorKind::add) return 1;
  std::uint64_t most = 0;
  const std::uint32_t out_h = pooled_extent(w.height, w.kernel_height, w.stride_height, w.padding_height);
  for (std::uint32_t y = 0; y < out_h; ++y) {
    std::uint64_t rows = 0;
    for (std::uint32_t k = 0; k < w.kernel_height; ++k) {
      const auto row = static_cast<std::int64_t>(y * w.stride_height + k) - w.padding_height;
      rows += row >= 0 && row < static_cast<std::int64_t>(w.height);
    }
    most = std::max(most, rows);
  }
  return most;
}

RandomVectorCase random_vector_case(traces::RandomStream& rng) {
  RandomVectorCase c;
  auto& n = c.config;
  n.name = "random";
  n.clock_mhz = static_cast<std::uint32_t>(rng.uniform_between(100, 2000));
  n.element_bytes = 1u << rng.uniform_below(3);
  n.vector_lanes = static_cast<std::uint32_t>(rng.uniform_between(1, 16));
  n.offchip.bandwidth_gb_per_s = static_cast<double>(rng.uniform_between(100, 20'000)) / 1000.0;
  n.offchip.latency_ns = static_cast<std::uint32_t>(rng.uniform_below(40));
  n.offchip.queue_depth = static_cast<std::uint32_t>(rng.uniform_between(1, 8));
  c.batch = static_cast<std::uint32_t>(rng.uniform_below(4) == 0 ? rng.uniform_between(5, 16) : rng.uniform_between(1, 4));
  const auto height = static_cast<std::uint32_t>(rng.uniform_between(1, 12));
  const auto width = static_cast<std::uint32_t>(rng.uniform_between(1, 12));
  const auto channels = static_cast<std::uint32_t>(rng.uniform_between(1, 12));
  switch (rng.uniform_below(4)) {
    case 0:
      c.work = elementwise_add(height, width, channels);
      break;
    case 1:  // global average pool: the window is the whole map
      c.work = pooling(height, width, channels, 1, 1, 0);
      c.work.kernel_height = height;
      c.work.kernel_width = width;
      c.work.output_elements = channels;
      c.work.operations = std::uint64_t{channels} * height * width;
      c.function = PoolFunction::average;
      break;
    default: {
      const auto kernel = static_cast<std::uint32_t>(rng.uniform_between(1, std::min(4u, std::min(height, width) + 1)));
      const auto padding = static_cast<std::uint32_t>(rng.uniform_below(kernel / 2 + 1));
      const auto stride = static_cast<std::uint32_t>(rng.uniform_between(1, 3));
      c.work = pooling(std::max(height, kernel), std::max(width, kernel), channels, kernel, stride, padding);
      c.function = rng.uniform_below(2) ? PoolFunction::max : PoolFunction::average;
    }
  }
  const VectorWork& w = c.work;
  const std::uint64_t tensors = w.kind == VectorKind::add ? 2 : 1;
  const std::uint64_t line = tensors * w.width * n.element_bytes;  // one row, one channel
  const std::uint64_t out_w = w.kind == VectorKind::add ? w.width : pooled_extent(w.width, w.kernel_width, w.stride_width, w.padding_width);
  const std::uint64_t one_chunk_in = tallest_window_rows(w) * line;
  const std::uint64_t one_chunk_out = out_w * n.element_bytes;
  const std::uint64_t tensor = c.batch * std::uint64_t{w.height} * line * w.channels;
  c.input_tensor_bytes = tensor;
  c.one_chunk_input_bytes = one_chunk_in;

  c.placement.input_on_chip = rng.uniform_below(5) == 0;
  c.placement.output_on_chip = rng.uniform_below(5) == 0;
  c.placement.reserved_input_bytes = rng.uniform_below(3) == 0 ? rng.uniform_below(64) : 0;
  c.regime = static_cast<BufferRegime>(rng.uniform_below(3));
  const std::uint64_t reserved = c.placement.reserved_input_bytes;
  switch (c.regime) {
    case BufferRegime::everything_fits:
      n.buffers.input_bytes = reserved + tensor + rng.uniform_below(tensor + 1);
      n.buffers.output_bytes = c.batch * std::uint64_t{w.channels} * out_w * n.element_bytes *
                                   (w.kind == VectorKind::add ? w.height : pooled_extent(w.height, w.kernel_height, w.stride_height, w.padding_height)) +
                               rng.uniform_below(16);
      break;
    case BufferRegime::input_does_not_fit:
      n.buffers.input_bytes = reserved + std::max(one_chunk_in, std::min(tensor - 1, one_chunk_in * rng.uniform_between(1, 6) + rng.uniform_below(one_chunk_in + 1)));
      n.buffers.output_bytes = one_chunk_out * rng.uniform_between(1, 6) + rng.uniform_below(one_chunk_out);
      break;
    case BufferRegime::one_chunk:
      n.buffers.input_bytes = reserved + one_chunk_in + rng.uniform_below(std::max<std::uint64_t>(1, one_chunk_in / 2));
      n.buffers.output_bytes = one_chunk_out + rng.uniform_below(std::max<std::uint64_t>(1, one_chunk_out / 2));
      break;
  }
  if (c.placement.input_on_chip) n.buffers.input_bytes = std::max(n.buffers.input_bytes, reserved + tensor);
  n.buffers.input_bytes = std::max<std::uint64_t>(n.buffers.input_bytes, 1);
  return c;
}

// Sometimes a tiling other than the chosen one: any channel block that fits once, any prefetch
// up to the largest the buffer allows.
npu::VectorTiling random_feasible_tiling(traces::RandomStream& rng, const npu::Npu& npu, const RandomVectorCase& c) {
  npu::VectorTiling chosen = npu::choose_vector_tiling(npu, c.work, c.batch, c.placement);
  if (rng.uniform_below(3) != 0) return chosen;
  for (;;) {
    const std::uint64_t block = rng.uniform_between(1, c.work.channels);
    try {
      const std::uint64_t largest = npu::max_prefetch_chunks(npu, c.work, c.batch, c.placement, block);
      return {block, rng.uniform_between(0, largest)};
    } catch (const npu::NoFeasibleTiling&) {
      // That block is too wide for a buffer: draw another (block 1 always fits).
    }
  }
}

TEST(VectorPathAgreement, FastModelEqualsTheCycleSteppedReference) {
  traces::RandomStream rng(2024, 12);
  constexpr int cases = 1000;
  std::array<int, 3> regimes{};
  int input_on_chip = 0, output_on_chip = 0, add = 0, global_pool = 0, single_buffered = 0, prefetching = 0,
      several_blocks = 0, large_batch = 0, other_tiling = 0;
  for (int i = 0; i < cases; ++i) {
    const RandomVectorCase c = random_vector_case(rng);
    const auto npu = npu::Npu::validate(c.config);
    const npu::VectorTiling tiling = random_feasible_tiling(rng, npu, c);
    const auto cost = npu::vector_cost_tiled(npu, c.work, c.batch, c.placement, tiling);
    const auto operands = random_operands(rng, c.work, c.batch);
    const auto run = npu::run_vector_reference(npu, c.work, c.batch, c.placement, tiling, c.function, operands);
    const std::string where =
        fmt::format("case {}: kind {}, {}x{}x{} k{} s{} p{}, batch {}, in {} B, out {} B, Q {}, block {}, prefetch {}",
                    i, static_cast<int>(c.work.kind), c.work.height, c.work.width, c.work.channels,
                    c.work.kernel_height, c.work.stride_height, c.work.padding_height, c.batch,
                    c.config.buffers.input_bytes, c.config.buffers.output_bytes, c.config.offchip.queue_depth,
                    tiling.channel_block, tiling.prefetch_chunks);
    ASSERT_EQ(run.cycles, cost.cycles) << where;
    ASSERT_EQ(run.compute_cycles, cost.compute_cycles) << where;
    ASSERT_EQ(run.bytes, cost.bytes) << where;
    for (std::uint32_t b = 0; b < c.batch; ++b)
      ASSERT_EQ(run.outputs[b], direct_output(c.work, c.function, operands[b])) << where << ", sample " << b;
    if (!c.placement.input_on_chip) ++regimes[static_cast<std::size_t>(c.reached())];
    input_on_chip += c.placement.input_on_chip;
    output_on_chip += c.placement.output_on_chip;
    add += c.work.kind == VectorKind::add;
    global_pool += c.work.kind == VectorKind::pooling && c.work.kernel_height == c.work.height &&
                   c.work.kernel_width == c.work.width && c.work.height > 1;
    const auto chosen = npu::choose_vector_tiling(npu, c.work, c.batch, c.placement);
    single_buffered += tiling.prefetch_chunks == 0 && !c.placement.input_on_chip;
    prefetching += tiling.prefetch_chunks > 0;
    several_blocks += tiling.channel_block < c.work.channels;
    large_batch += c.batch >= 5;
    other_tiling += !(tiling == chosen);
  }
  for (const auto& [name, count] :
       {std::pair{"everything_fits", regimes[0]}, {"input_does_not_fit", regimes[1]}, {"one_chunk", regimes[2]},
        {"input_on_chip", input_on_chip}, {"output_on_chip", output_on_chip}, {"add", add},
        {"global_pool", global_pool}, {"single_buffered", single_buffered}, {"prefetching", prefetching},
        {"several_blocks", several_blocks}, {"large_batch", large_batch}, {"other_tiling", other_tiling}})
    RecordProperty(name, count);
  // Every regime is reached often enough to mean something.
  for (int count : regimes) EXPECT_GE(count, cases / 8);
  EXPECT_GE(input_on_chip, cases / 10);
  EXPECT_GE(output_on_chip, cases / 10);
  EXPECT_GE(add, cases / 8);
  EXPECT_GE(global_pool, cases / 10);
  EXPECT_GE(single_buffered, cases / 10);
  EXPECT_GE(prefetching, cases / 4);
  EXPECT_GE(several_blocks, cases / 10);
  EXPECT_GE(large_batch, cases / 8);
  EXPECT_GE(other_tiling, cases / 8);
}

// ---- Properties of the fast model --------------------------------------------------------

TEST(VectorPathProperties, BoundsHoldAndBandwidthNeverCostsCycles) {
  traces::RandomStream rng(99, 12);
  for (int i = 0; i < 2000; ++i) {
    RandomVectorCase c = random_vector_case(rng);
    const auto npu = npu::Npu::validate(c.config);
    const auto cost = npu::vector_cost(npu, c.work, c.batch, c.placement);
    const std::string where = fmt::format("case {}", i);
    ASSERT_GE(cost.cycles, std::max(cost.compute_cycles, npu.data_cycles(cost.offchip_bytes))) << where;
    ASSERT_GE(cost.cycles, cost.roofline_cycles) << where;
    ASSERT_LE(cost.compulsory_bytes, cost.offchip_bytes) << where;
    ASSERT_EQ(cost.stall_cycles, cost.cycles - cost.compute_cycles) << where;
    ASSERT_GE(cost.compute_cycles * c.config.vector_lanes, c.work.operations * c.batch) << where;
    // Whole MB/s: the configuration takes at most 3 decimals of GB/s.
    const std::uint64_t mb_per_s = npu.bandwidth_mbps() * rng.uniform_between(101, 400) / 100;
    c.config.offchip.bandwidth_gb_per_s = static_cast<double>(mb_per_s) / 1000.0;
    const auto faster = npu::vector_cost(npu::Npu::validate(c.config), c.work, c.batch, c.placement);
    ASSERT_LE(faster.cycles, cost.cycles) << where;
    ASSERT_EQ(faster.bytes, cost.bytes) << where;
  }
}

TEST(VectorPathProperties, LargeBatchesCostWhatTheirSamplesDo) {
  // The fast model jumps over samples that repeat; a large batch must still cost at least the
  // samples' compute and at most that many single-sample runs back to back.
  const auto npu = npu::Npu::validate(testing::toy_npu_config(96, 64, 32, 4));
  const VectorWork w = pooling(8, 8, 3, 3, 2, 1);
  const auto one = npu::vector_cost(npu, w, 1);
  for (std::uint32_t batch : {2u, 7u, 32u}) {
    const auto many = npu::vector_cost(npu, w, batch);
    EXPECT_EQ(many.compute_cycles, batch * one.compute_cycles);
    EXPECT_EQ(many.bytes.input, batch * one.bytes.input);
    EXPECT_LE(many.cycles, batch * one.cycles);
    EXPECT_GE(many.cycles, one.cycles);
  }
  // And the jump lands where the reference's cycle-by-cycle walk does.
  traces::RandomStream rng(5);
  const auto operands = random_operands(rng, w, 32);
  const auto run =
      npu::run_vector_reference(npu, w, 32, {}, npu::choose_vector_tiling(npu, w, 32), PoolFunction::max, operands);
  EXPECT_EQ(run.cycles, npu::vector_cost(npu, w, 32).cycles);
}

}  // namespace
}  // namespace npusim
