#include "npu_model/cost_model.hpp"

#include <algorithm>
#include <array>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "npu_model/systolic.hpp"
#include "npu_model/tiling_mapper.hpp"

namespace npusim::npu {
namespace {

std::uint64_t ceil_div(std::uint64_t a, std::uint64_t b) { return (a + b - 1) / b; }

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

}  // namespace npusim::npu
