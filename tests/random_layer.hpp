#pragma once
// Random small convolution and GEMM layers, NPUs with byte-sized buffers and random tilings,
// for the property tests of the memory schedule (docs/memory-schedule.md). Buffers are drawn
// around the sizes of the layer's own blocks, so that every regime occurs: everything fits,
// the weights do not, the inputs do not, and buffers of one block.

#include <algorithm>
#include <vector>

#include "npu_model/gemm.hpp"
#include "npu_model/memory_schedule.hpp"
#include "npu_model/npu_config.hpp"
#include "npu_model/int_matrix.hpp"
#include "random_npu.hpp"
#include "traces/random_stream.hpp"

namespace npusim::testing {

struct RandomLayerCase {
  npu::NpuConfig config;
  npu::GemmShape shape;
  std::uint32_t batch = 1;
};

// `scale` 1 keeps cases small enough for the cycle-stepped reference; larger values make
// layers with many steps (for the periodic jumps).
inline RandomLayerCase random_layer_case(traces::RandomStream& rng, std::uint32_t scale = 1) {
  RandomLayerCase c;
  auto& n = c.config;
  n.name = "random";
  const std::uint32_t sizes[] = {1, 2, 3, 4, 6, 8};
  n.pe_count = sizes[rng.uniform_below(6)];
  n.pe_width = static_cast<std::uint32_t>(rng.uniform_between(1, 8));
  n.input_rows = 8;
  n.clock_mhz = static_cast<std::uint32_t>(rng.uniform_between(100, 2000));
  n.element_bytes = 1u << rng.uniform_below(2);
  n.accumulator_bytes = 4;
  n.offchip.bandwidth_gb_per_s = static_cast<double>(rng.uniform_between(100, 20'000)) / 1000.0;
  n.offchip.latency_ns = static_cast<std::uint32_t>(rng.uniform_below(60));
  n.offchip.queue_depth = static_cast<std::uint32_t>(rng.uniform_between(1, 6));
  if (rng.uniform_below(5) == 0) n.modes = {npu::BatchingMode::r_batching};
  n.stack_factors.clear();
  for (std::uint32_t k = 1; k <= 8; ++k)
    if (n.pe_count % k == 0 && n.input_rows % k == 0 && (k == 1 || rng.uniform_below(2)))
      n.stack_factors.push_back(k);

  auto& w = c.shape.window;
  if (rng.uniform_below(5) == 0) {
    // A plain GEMM.
    c.shape.rows = rng.uniform_between(1, 12 * scale);
    c.shape.depth = rng.uniform_between(1, 24);
    c.shape.cols = rng.uniform_between(1, 12);
  } else {
    w.kernel_height = static_cast<std::uint32_t>(rng.uniform_between(1, 3));
    w.kernel_width = static_cast<std::uint32_t>(rng.uniform_between(1, 3));
    w.stride_height = static_cast<std::uint32_t>(rng.uniform_between(1, 2));
    w.stride_width = static_cast<std::uint32_t>(rng.uniform_between(1, 2));
    w.padding_height = static_cast<std::uint32_t>(rng.uniform_below(2));
    w.padding_width = static_cast<std::uint32_t>(rng.uniform_below(2));
    if (rng.uniform_below(4) == 0) {
      // Tall kernels with deep padding and wide strides: several top bands are clipped, the
      // halo spans many lines, windows may skip rows.
      w.kernel_height = static_cast<std::uint32_t>(rng.uniform_between(4, 5));
      w.padding_height = static_cast<std::uint32_t>(rng.uniform_below(w.kernel_height));
      w.stride_height = static_cast<std::uint32_t>(rng.uniform_between(1, 3));
    }
    w.in_height = static_cast<std::uint32_t>(std::max<std::uint64_t>(w.kernel_height, rng.uniform_between(1, 8 * scale)));
    w.in_width = static_cast<std::uint32_t>(std::max<std::uint64_t>(w.kernel_width, rng.uniform_between(1, 7)));
    const std::uint64_t channels = rng.uniform_between(1, 5);
    c.shape.depth = std::uint64_t{w.kernel_height} * w.kernel_width * channels;
    c.shape.cols = rng.uniform_between(1, 8);
    const std::uint64_t out_h = (w.in_height + 2 * w.padding_height - w.kernel_height) / w.stride_height + 1;
    const std::uint64_t out_w = (w.in_width + 2 * w.padding_width - w.kernel_width) / w.stride_width + 1;
    c.shape.rows = out_h * out_w;
  }
  c.shape.groups = rng.uniform_below(3) == 0 ? rng.uniform_between(2, 5) : 1;
  if (c.shape.groups > 1 && rng.uniform_below(2)) c.shape.cols = 1;  // depthwise-like
  c.batch = static_cast<std::uint32_t>(rng.uniform_between(1, scale == 1 ? 4 : 8));

  // Buffers around the layer's blocks: from one line or block to the whole operand.
  const npu::FeatureMap fm = npu::feature_map_of(c.shape);
  const std::uint64_t line = fm.width * fm.channels * c.shape.groups * n.element_bytes;
  const std::uint64_t input_all = line * fm.height * c.batch;
  const std::uint64_t weights_all = c.shape.depth * c.shape.cols * c.shape.groups * n.element_bytes;
  const std::uint64_t outputs_row = fm.out_width * c.shape.cols * c.shape.groups * n.accumulator_bytes;
  const auto around = [&](std::uint64_t small, std::uint64_t all) {
    switch (rng.uniform_below(4)) {
      case 0: return small + rng.uniform_below(small + 1);
      case 1: return all + rng.uniform_below(all + 1);
      default: return small + rng.uniform_below(std::max<std::uint64_t>(all, small) + 1);
    }
  };
  n.buffers.input_bytes = std::max<std::uint64_t>(1, around(line * fm.kernel_height, input_all));
  n.buffers.weight_bytes = std::max<std::uint64_t>(1, around(c.shape.depth * n.element_bytes, weights_all));
  n.buffers.output_bytes = std::max<std::uint64_t>(1, around(outputs_row, outputs_row * fm.out_height * c.batch * 4));
  return c;
}

inline npu::BatchMapping random_mapping(const npu::Npu& npu, const RandomLayerCase& c, traces::RandomStream& rng) {
  return random_legal_mapping(npu, c.shape, c.batch, rng);
}

// Any tiling whose fields are in range (docs/memory-schedule.md §4); it may be infeasible.
inline npu::Tiling random_tiling(const npu::Npu& npu, const RandomLayerCase& c, const npu::BatchMapping& m,
                                 traces::RandomStream& rng) {
  const npu::FeatureMap fm = npu::feature_map_of(c.shape);
  npu::Tiling t;
  t.order = rng.uniform_below(2) ? npu::LoopOrder::inputs_outer : npu::LoopOrder::weights_outer;
  t.band_rows = static_cast<std::uint32_t>(rng.uniform_between(1, fm.out_height));
  if (rng.uniform_below(3) == 0) t.band_rows = static_cast<std::uint32_t>(fm.out_height);
  if (t.band_rows == fm.out_height) t.band_samples = static_cast<std::uint32_t>(rng.uniform_between(1, m.b_r));
  const std::uint64_t packed = npu::groups_per_pass(npu, c.shape, m);
  const std::uint64_t cols = m.b_p * packed * c.shape.cols;
  const std::uint64_t tile_cols = npu.geometry(m.k).tile_cols;
  if (m.b_p * packed > 1 || rng.uniform_below(3) == 0) {
    t.col_block = cols + rng.uniform_below(3);
  } else {
    t.col_block = tile_cols * rng.uniform_between(1, (cols + tile_cols - 1) / tile_cols);
  }
  std::uint32_t chunks = static_cast<std::uint32_t>(rng.uniform_between(1, fm.channels));
  const auto per = (fm.channels + chunks - 1) / chunks;
  while ((chunks - 1) * per >= fm.channels) --chunks;
  t.channel_chunks = chunks;
  t.input_resident = rng.uniform_below(3) == 0;
  t.weights_resident = rng.uniform_below(3) == 0;
  t.input_prefetch = static_cast<std::uint32_t>(rng.uniform_below(4));
  t.weight_prefetch = static_cast<std::uint32_t>(rng.uniform_below(4));
  return t;
}

}  // namespace npusim::testing
