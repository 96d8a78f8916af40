#include "npu_model/cost_model.hpp"

#include <algorithm>
#include <array>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "npu_model/systolic.hpp"

namespace npusim::npu {
namespace {

std::uint64_t ceil_div(std::uint64_t a, std::uint64_t b) { return (a + b - 1) / b; }

// Input rows that some output row's window reads.
std::uint64_t rows_read(const FeatureMap& f) {
  const auto covered = [&](std::uint64_t y) {
    const std::int64_t top = static_cast<std::int64_t>(y * f.stride_height) - static_cast<std::int64_t>(f.padding_height);
    const std::int64_t lo = std::max<std::int64_t>(0, top);
    const std::int64_t hi = std::min<std::int64_t>(static_cast<std::int64_t>(f.height) - 1,
                                                   top + static_cast<std::int64_t>(f.kernel_height) - 1);
    return std::pair{lo, hi};
  };
  if (f.kernel_height >= f.stride_height) {
    // Windows overlap or touch: every row from the first window's top to the last one's bottom.
    const std::int64_t lo = covered(0).first, hi = covered(f.out_height - 1).second;
    return hi < lo ? 0 : static_cast<std::uint64_t>(hi - lo + 1);
  }
  std::uint64_t rows = 0;  // windows do not overlap
  for (std::uint64_t y = 0; y < f.out_height; ++y) {
    const auto [lo, hi] = covered(y);
    if (hi >= lo) rows += static_cast<std::uint64_t>(hi - lo + 1);
  }
  return rows;
}

// Bytes no schedule can avoid moving, by operand: the weights once, the input lines some output
// reads once, the outputs once. The mapper also uses them to see whether an operand fits.
TrafficBytes compulsory_traffic(const Npu& npu, const GemmShape& shape, std::uint32_t batch) {
  const FeatureMap f = feature_map_of(shape);
  const std::uint64_t e = npu.config().element_bytes;
  TrafficBytes t;
  t.weight = shape.groups * shape.depth * shape.cols * e;
  t.input = batch * rows_read(f) * f.width * f.channels * shape.groups * e;
  t.output = batch * shape.rows * shape.cols * shape.groups * e;
  return t;
}

// Streaming cycles of the mapping with memory for free: every pass streams B_R * R rows per
// (depth tile, column tile).
std::uint64_t streaming_floor(const Npu& npu, const GemmShape& shape, const BatchMapping& mapping) {
  const auto& g = npu.geometry(mapping.k);
  const std::uint64_t packed = groups_per_pass(npu, shape, mapping);
  const auto pass = [&](std::uint64_t groups) {
    const EffectiveGemm e = effective_gemm(shape, mapping, groups);
    return e.rows * ceil_div(e.depth, g.tile_depth) * ceil_div(e.cols, g.tile_cols);
  };
  std::uint64_t cycles = (shape.groups / packed) * pass(packed);
  if (shape.groups % packed) cycles += pass(shape.groups % packed);
  return cycles;
}

// The smallest buffers any tiling of this layer needs (one band of one output row, one channel
// per chunk, one column tile, nothing prefetched), over the stack factors the NPU allows.
std::string smallest_buffers_message(const Npu& npu, const GemmShape& shape) {
  const FeatureMap f = feature_map_of(shape);
  const auto& c = npu.config();
  const std::uint64_t e = c.element_bytes;
  const std::uint64_t input = std::min(f.kernel_height, f.height) * f.width * e;
  std::uint64_t weights = ~std::uint64_t{0}, output = ~std::uint64_t{0};
  for (const auto& g : npu.geometries()) {
    const std::uint64_t cols = std::min<std::uint64_t>(g.tile_cols, shape.cols);
    weights = std::min(weights, f.kernel_height * f.kernel_width * cols * e);
    output = std::min(output, f.out_width * cols * c.accumulator_bytes);
  }
  const auto kib = [](std::uint64_t bytes) { return static_cast<double>(bytes) / 1024.0; };
  if (c.buffers.input_bytes < input)
    return fmt::format("buffers.input_kib = {}: too small for a {}x{}x{} input with a {}-row kernel; at least {} KiB "
                       "({} bytes: one band of input rows of one channel)",
                       kib(c.buffers.input_bytes), f.height, f.width, f.channels, f.kernel_height, kib(input), input);
  if (c.buffers.weight_bytes < weights)
    return fmt::format("buffers.weight_kib = {}: too small; at least {} KiB ({} bytes: one channel's taps for one column tile)",
                       kib(c.buffers.weight_bytes), kib(weights), weights);
  if (c.buffers.output_bytes < output)
    return fmt::format("buffers.output_kib = {}: too small; at least {} KiB ({} bytes: accumulators of one output row "
                       "for one column tile)", kib(c.buffers.output_bytes), kib(output), output);
  return "no tiling fits the buffers";
}

struct MapperChoice {
  ScheduleResult result;
  Tiling tiling;
  bool found = false;
};

bool better(const ScheduleResult& a, const ScheduleResult& b) {
  if (a.cycles != b.cycles) return a.cycles < b.cycles;
  return a.bytes.total() < b.bytes.total();
}

// Exhaustive over a candidate set that depends on the layer and mapping only, never on the
// buffer sizes or the bandwidth: with more buffer every candidate is as fast or faster and more
// of them fit, and with more bandwidth every candidate is as fast or faster, so the choice can
// only get better (the monotonicity tests rely on this).
MapperChoice choose_tiling(const Npu& npu, const GemmShape& shape, std::uint32_t batch, const BatchMapping& mapping,
                           std::uint64_t give_up_above = ~std::uint64_t{0}) {
  const FeatureMap f = feature_map_of(shape);
  const auto& geometry = npu.geometry(mapping.k);
  const auto& c = npu.config();
  const std::uint64_t packed = groups_per_pass(npu, shape, mapping);
  const bool block_diagonal = mapping.b_p * packed > 1;
  const std::uint64_t cols = mapping.b_p * packed * shape.cols;
  const TrafficBytes whole = compulsory_traffic(npu, shape, batch);
  const bool input_fits = whole.input <= c.buffers.input_bytes;
  const bool weights_fit = whole.weight <= c.buffers.weight_bytes;

  // Bands of 1 and 4 output rows, whole samples, and whole grids.
  std::vector<std::pair<std::uint32_t, std::uint32_t>> bands;  // (band_rows, band_samples)
  for (std::uint64_t rows = 1; rows < f.out_height && rows <= 4; rows *= 4)
    bands.emplace_back(static_cast<std::uint32_t>(rows), 1);
  bands.emplace_back(static_cast<std::uint32_t>(f.out_height), 1);
  if (mapping.b_r > 1) bands.emplace_back(static_cast<std::uint32_t>(f.out_height), mapping.b_r);
  // One column tile at a time, or every column at once.
  std::vector<std::uint64_t> col_blocks{cols};
  if (!block_diagonal)
    for (std::uint64_t tiles = 4; tiles >= 1; tiles /= 2)
      if (tiles * geometry.tile_cols < cols) col_blocks.insert(col_blocks.begin(), tiles * geometry.tile_cols);

  MapperChoice best;
  const std::uint64_t max_chunks = block_diagonal ? 1 : f.channels;
  // Chunk counts from 1 up, stopping at the first where some tiling fits. Whether one fits is
  // decided without timing (an abandoned candidate says nothing about fitting), so the stopping
  // point does not move with the bandwidth.
  bool fits = false;
  for (std::uint64_t chunks = 1; chunks <= max_chunks && !fits; chunks = chunks < max_chunks ? std::min(max_chunks, chunks * 2) : chunks + 1) {
    const std::uint64_t per = ceil_div(f.channels, chunks);
    if ((chunks - 1) * per >= f.channels) continue;
    bool abandoned_any = false;
    for (const LoopOrder order : {LoopOrder::inputs_outer, LoopOrder::weights_outer}) {
      for (const auto& [band_rows, band_samples] : bands) {
        for (const std::uint64_t col_block : col_blocks) {
          Tiling t;
          t.order = order;
          t.band_rows = band_rows;
          t.band_samples = band_samples;
          t.col_block = col_block;
          t.channel_chunks = static_cast<std::uint32_t>(chunks);
          const std::uint64_t r_blocks = ceil_div(mapping.b_r, band_samples) * ceil_div(f.out_height, band_rows);
          const std::uint64_t c_blocks = ceil_div(cols, col_block);
          const std::uint64_t input_sharing = order == LoopOrder::inputs_outer && chunks == 1 ? c_blocks : 1;
          const std::uint64_t weight_sharing = order == LoopOrder::weights_outer && chunks == 1 ? r_blocks : 1;
          // An operand that fits stays resident: its loads are then a subset of the streamed
          // variant's and never wait for room, so the streamed variant cannot be faster; it is
          // tried only when the resident one turns out not to fit.
          for (const std::uint64_t level : {3u, 0u}) {
            t.input_prefetch = static_cast<std::uint32_t>(std::min<std::uint64_t>(64, level * input_sharing));
            t.weight_prefetch = static_cast<std::uint32_t>(std::min<std::uint64_t>(64, level * weight_sharing));
            for (int variant = 0; variant < 2; ++variant) {
              t.input_resident = variant == 0 && input_fits;
              t.weights_resident = variant == 0 && weights_fit;
              if (variant == 1 && !input_fits && !weights_fit) break;
              // A candidate that cannot beat the best so far is abandoned as soon as that is sure.
              const ScheduleResult r =
                  evaluate_schedule(npu, shape, batch, mapping, t, best.found ? best.result.cycles : give_up_above);
              if (r.feasible && (!best.found || better(r, best.result))) {
                best.result = r;
                best.tiling = t;
                best.found = true;
              }
              fits = fits || r.feasible;
              abandoned_any = abandoned_any || r.abandoned;
              if (r.feasible || r.abandoned) break;
            }
          }
        }
      }
    }
    if (!fits && abandoned_any) {
      // The most frugal tiling of this chunk count fits whenever any does.
      Tiling frugal;
      frugal.band_rows = 1;
      frugal.col_block = col_blocks.front();
      frugal.channel_chunks = static_cast<std::uint32_t>(chunks);
      fits = evaluate_schedule(npu, shape, batch, mapping, frugal).feasible;
    }
  }
  return best;
}

LayerCost cost_of(const Npu& npu, const GemmShape& shape, std::uint32_t batch, const BatchMapping& mapping,
                  const Tiling& tiling, const ScheduleResult& r) {
  LayerCost cost;
  cost.mapping = mapping;
  cost.tiling = tiling;
  cost.cycles = r.cycles;
  cost.compute_cycles = r.compute_cycles;
  cost.bytes = r.bytes;
  cost.offchip_bytes = r.bytes.total();
  cost.compulsory_bytes = compulsory_traffic(npu, shape, batch).total();
  cost.roofline_cycles = std::max(streaming_floor(npu, shape, mapping), npu.data_cycles(cost.compulsory_bytes));
  return cost;
}

LayerCost finish(const Npu& npu, LayerCost cost) {
  cost.stall_cycles = cost.cycles - cost.compute_cycles;
  cost.mac_utilisation = cost.cycles == 0 ? 0.0
                                          : static_cast<double>(cost.macs) /
                                                (static_cast<double>(cost.cycles) *
                                                 static_cast<double>(npu.macs_per_cycle()));
  return cost;
}

// Off-chip bytes of one group on a systolic array. The stationary operand (WS: weights, IS:
// inputs; OS keeps outputs) is read once. A streamed operand is read once when it fits its
// buffer, and otherwise again for every fold of the other spatial dimension. Outputs are
// written once.
std::uint64_t systolic_offchip_bytes(const Npu& npu, const SystolicGemm& gemm) {
  const auto& c = npu.config();
  const SystolicFolds folds = folds_of(c.systolic, gemm);
  const std::uint64_t eb = c.element_bytes;
  const std::uint64_t input = gemm.m * gemm.k * eb, weights = gemm.k * gemm.n * eb, output = gemm.m * gemm.n * eb;
  const auto streamed = [](std::uint64_t bytes, std::uint64_t capacity, std::uint64_t refetches) {
    return bytes <= capacity ? bytes : bytes * refetches;
  };
  switch (c.systolic.dataflow) {
    case Dataflow::output_stationary:
      return streamed(input, c.buffers.input_bytes, folds.col_folds) +
             streamed(weights, c.buffers.weight_bytes, folds.row_folds) + output;
    case Dataflow::weight_stationary:
      return weights + streamed(input, c.buffers.input_bytes, folds.col_folds) + output;
    case Dataflow::input_stationary:
      return input + streamed(weights, c.buffers.weight_bytes, folds.col_folds) + output;
  }
  return 0;
}

// R-batching on a systolic array: the batch's rows stream through one after another, groups
// run one by one. Double-buffered scratchpads overlap the off-chip transfers with the folds,
// so the layer takes the longer of the two (never longer than the array when stall-free).
LayerCost systolic_gemm_cost(const Npu& npu, const GemmShape& shape, std::uint32_t batch) {
  const SystolicGemm gemm{std::uint64_t{batch} * shape.rows, shape.depth, shape.cols};
  LayerCost cost;
  cost.mapping = {batch, 1, 1};
  cost.compute_cycles = shape.groups * systolic_array_cycles(npu.config().systolic, gemm);
  cost.offchip_bytes = shape.groups * systolic_offchip_bytes(npu, gemm);
  cost.cycles = cost.compute_cycles;
  if (!npu.config().systolic.stall_free)
    cost.cycles = std::max(cost.cycles, npu.latency_cycles() + npu.data_cycles(cost.offchip_bytes));
  return cost;
}

}  // namespace

LayerCost gemm_cost_unchecked(const Npu& npu, const GemmShape& shape, std::uint32_t batch,
                              const BatchMapping& mapping) {
  LayerCost cost;
  if (npu.is_systolic()) {
    cost = systolic_gemm_cost(npu, shape, batch);
  } else {
    const MapperChoice choice = choose_tiling(npu, shape, batch, mapping);
    if (!choice.found) throw NoFeasibleTiling(smallest_buffers_message(npu, shape));
    cost = cost_of(npu, shape, batch, mapping, choice.tiling, choice.result);
  }
  cost.macs = std::uint64_t{batch} * shape.rows * shape.depth * shape.cols * shape.groups;
  return finish(npu, cost);
}

LayerCost gemm_cost_tiled(const Npu& npu, const GemmShape& shape, std::uint32_t batch,
                          const BatchMapping& mapping, const Tiling& tiling) {
  require_legal(npu, shape, batch, mapping);
  const ScheduleResult r = evaluate_schedule(npu, shape, batch, mapping, tiling);
  if (!r.feasible) throw NoFeasibleTiling(fmt::format("tiling {}: {}", to_string(tiling), r.infeasible_reason));
  LayerCost cost = cost_of(npu, shape, batch, mapping, tiling, r);
  cost.macs = std::uint64_t{batch} * shape.rows * shape.depth * shape.cols * shape.groups;
  return finish(npu, cost);
}

LayerCost gemm_cost(const Npu& npu, const GemmShape& shape, std::uint32_t batch,
                    const BatchMapping& mapping) {
  require_legal(npu, shape, batch, mapping);
  return gemm_cost_unchecked(npu, shape, batch, mapping);
}

LayerCost best_gemm_cost(const Npu& npu, const GemmShape& shape, std::uint32_t batch) {
  require_legal(npu, shape, batch, {batch, 1, 1});
  if (npu.is_systolic()) return gemm_cost_unchecked(npu, shape, batch, {batch, 1, 1});
  LayerCost best;
  bool found = false;
  const auto better_cost = [](const LayerCost& a, const LayerCost& b) {
    if (a.cycles != b.cycles) return a.cycles < b.cycles;
    if (a.offchip_bytes != b.offchip_bytes) return a.offchip_bytes < b.offchip_bytes;
    if (a.mapping.k != b.mapping.k) return a.mapping.k < b.mapping.k;
    return a.mapping.b_p < b.mapping.b_p;
  };
  for (const auto& g : npu.geometries()) {
    // P-batching widths of powers of two and the whole batch: the grid shapes a control block
    // would hold, at a fraction of the search.
    for (std::uint32_t b_p = 1; b_p <= batch; b_p = b_p == batch ? batch + 1 : std::min(batch, b_p * 2)) {
      const BatchMapping mapping{(batch + b_p - 1) / b_p, b_p, g.k};
      if (b_p > 1 && b_p * shape.depth > g.tile_depth) break;
      if (!npu.allows(mode_of(mapping))) continue;
      // Mappings slower than the best so far are abandoned early; ties still compete.
      const MapperChoice choice = choose_tiling(npu, shape, batch, mapping, found ? best.cycles : ~std::uint64_t{0});
      if (!choice.found) continue;
      LayerCost cost = cost_of(npu, shape, batch, mapping, choice.tiling, choice.result);
      cost.macs = std::uint64_t{batch} * shape.rows * shape.depth * shape.cols * shape.groups;
      cost = finish(npu, cost);
      if (!found || better_cost(cost, best)) best = cost;
      found = true;
    }
  }
  if (!found) throw NoFeasibleTiling(smallest_buffers_message(npu, shape));
  return best;
}

LayerCost vector_cost(const Npu& npu, const VectorWork& work, std::uint32_t batch) {
  if (work.input_elements == 0 && work.output_elements == 0 && work.operations == 0)
    return LayerCost{.mapping = {batch, 1, 1}};  // e.g. a concatenation: nothing moves
  const std::uint64_t lanes = npu.config().vector_lanes;
  const std::uint64_t element_bytes = npu.config().element_bytes;
  const std::uint64_t ops = work.operations * batch;
  const std::uint64_t read_bytes = work.input_elements * batch * element_bytes;
  const std::uint64_t write_bytes = work.output_elements * batch * element_bytes;
  LayerCost cost;
  cost.mapping = {batch, 1, 1};
  cost.compute_cycles = (ops + lanes - 1) / lanes;
  const std::uint64_t bus = npu.data_cycles(read_bytes) + npu.data_cycles(write_bytes);
  cost.cycles = std::max(cost.compute_cycles, npu.latency_cycles() + bus);
  cost.offchip_bytes = read_bytes + write_bytes;
  cost.stall_cycles = cost.cycles - cost.compute_cycles;
  cost.mac_utilisation = 0.0;
  return cost;
}

}  // namespace npusim::npu
