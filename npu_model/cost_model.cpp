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
  const std::uint64_t band_rows = std::min(f.kernel_height, f.height);
  std::uint64_t input = ~std::uint64_t{0}, weights = ~std::uint64_t{0}, output = ~std::uint64_t{0};
  for (const auto& g : npu.geometries()) {
    // Grouped layers pack groups side by side; a packed pass needs all its groups' channels at
    // once (one chunk), a plain one a single channel per chunk.
    const std::uint64_t packed = groups_per_pass(npu, shape, {1, 1, g.k});
    const bool block_diagonal = packed > 1;
    const std::uint64_t channels = block_diagonal ? packed * f.channels : 1;
    const std::uint64_t cols = block_diagonal ? packed * shape.cols : std::min<std::uint64_t>(g.tile_cols, shape.cols);
    input = std::min(input, band_rows * f.width * channels * e);
    weights = std::min(weights, block_diagonal ? packed * shape.depth * shape.cols * e
                                               : f.kernel_height * f.kernel_width * cols * e);
    output = std::min(output, f.out_width * cols * c.accumulator_bytes);
  }
  const auto kib = [](std::uint64_t bytes) { return static_cast<double>(bytes) / 1024.0; };
  if (c.buffers.input_bytes < input)
    return fmt::format("buffers.input_kib = {}: too small for a {}x{}x{} input with a {}-row kernel; at least {} KiB "
                       "({} bytes: one band of input rows of the channels one pass reads)",
                       kib(c.buffers.input_bytes), f.height, f.width, f.channels * shape.groups, f.kernel_height,
                       kib(input), input);
  if (c.buffers.weight_bytes < weights)
    return fmt::format("buffers.weight_kib = {}: too small; at least {} KiB ({} bytes: the taps of one channel chunk "
                       "for one column block)", kib(c.buffers.weight_bytes), kib(weights), weights);
  if (c.buffers.output_bytes < output)
    return fmt::format("buffers.output_kib = {}: too small; at least {} KiB ({} bytes: accumulators of one output row "
                       "for one column block)", kib(c.buffers.output_bytes), kib(output), output);
  return fmt::format("no tiling fits buffers of {} / {} / {} KiB (input / weight / output) with the prefetch the "
                     "schedule needs", kib(c.buffers.input_bytes), kib(c.buffers.weight_bytes),
                     kib(c.buffers.output_bytes));
}

LayerCost cost_of(const Npu& npu, const GemmShape& shape, std::uint32_t batch, const BatchMapping& mapping,
                  const Tiling& tiling, const ScheduleResult& r, const Placement& placement) {
  LayerCost cost;
  cost.mapping = mapping;
  cost.tiling = tiling;
  cost.placement = placement;
  cost.cycles = r.cycles;
  cost.compute_cycles = r.compute_cycles;
  cost.bytes = r.bytes;
  cost.offchip_bytes = r.bytes.total();
  cost.compulsory_bytes = compulsory_traffic(npu, shape, batch, placement).total();
  cost.roofline_cycles = std::max(streaming_floor(npu, shape, mapping), npu.data_cycles(cost.compulsory_bytes));
  cost.on_chip = dot_product_accesses(npu, shape, batch, mapping, tiling, r.compute_cycles, r.bytes, placement);
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

// R-batching on a systolic array: the batch's rows stream through one after another, groups
// run one by one, on the memory subsystem of docs/systolic-memory.md. Compulsory bytes: the
// lowered activations, the weights and the outputs once each (the systolic array forms no
// im2col rows on chip), those on chip excepted.
LayerCost systolic_gemm_cost(const Npu& npu, const GemmShape& shape, std::uint32_t batch, const Placement& placement) {
  const SystolicGemm gemm{std::uint64_t{batch} * shape.rows, shape.depth, shape.cols};
  const SystolicLayerTiming timing = systolic_layer_timing(npu, gemm, shape.groups, placement);
  LayerCost cost;
  cost.mapping = {batch, 1, 1};
  cost.placement = placement;
  cost.cycles = timing.cycles;
  cost.compute_cycles = timing.compute_cycles;
  cost.bytes = timing.bytes;
  cost.offchip_bytes = timing.bytes.total();
  const std::uint64_t e = npu.config().element_bytes;
  TrafficBytes operands;
  operands.input = shape.groups * gemm.m * gemm.k * e;
  operands.weight = shape.groups * gemm.k * gemm.n * e;
  operands.output = shape.groups * gemm.m * gemm.n * e;
  cost.compulsory_bytes = placed_once(operands, placement).total();
  cost.roofline_cycles = npu.config().systolic.stall_free
                             ? cost.compute_cycles
                             : std::max(cost.compute_cycles, npu.data_cycles(cost.compulsory_bytes));
  cost.on_chip = systolic_accesses(npu, gemm.m, gemm.k, gemm.n, shape.groups, cost.bytes, placement);
  return cost;
}

}  // namespace

LayerCost gemm_cost_unchecked(const Npu& npu, const GemmShape& shape, std::uint32_t batch,
                              const BatchMapping& mapping, const Placement& placement) {
  LayerCost cost;
  if (npu.is_systolic()) {
    cost = systolic_gemm_cost(npu, shape, batch, placement);
  } else {
    const MapperChoice choice = choose_tiling(npu, shape, batch, mapping, ~std::uint64_t{0}, placement);
    if (!choice.found) throw NoFeasibleTiling(smallest_buffers_message(npu, shape));
    cost = cost_of(npu, shape, batch, mapping, choice.tiling, choice.result, placement);
  }
  cost.macs = std::uint64_t{batch} * shape.rows * shape.depth * shape.cols * shape.groups;
  return finish(npu, cost);
}

LayerCost gemm_cost_tiled(const Npu& npu, const GemmShape& shape, std::uint32_t batch,
                          const BatchMapping& mapping, const Tiling& tiling, const Placement& placement) {
  require_legal(npu, shape, batch, mapping);
  const ScheduleResult r = evaluate_schedule(npu, shape, batch, mapping, tiling, ~std::uint64_t{0}, placement);
  if (!r.feasible) throw NoFeasibleTiling(fmt::format("tiling {}: {}", to_string(tiling), r.infeasible_reason));
  LayerCost cost = cost_of(npu, shape, batch, mapping, tiling, r, placement);
  cost.macs = std::uint64_t{batch} * shape.rows * shape.depth * shape.cols * shape.groups;
  return finish(npu, cost);
}

LayerCost gemm_cost(const Npu& npu, const GemmShape& shape, std::uint32_t batch,
                    const BatchMapping& mapping, const Placement& placement) {
  require_legal(npu, shape, batch, mapping);
  return gemm_cost_unchecked(npu, shape, batch, mapping, placement);
}

EnergyParts layer_energy(const Npu& npu, const LayerCost& cost) {
  return price_energy(npu, cost.macs, cost.on_chip, cost.offchip_bytes, cost.cycles);
}

LayerCost best_gemm_cost(const Npu& npu, const GemmShape& shape, std::uint32_t batch, const Placement& placement) {
  require_legal(npu, shape, batch, {batch, 1, 1});
  if (npu.is_systolic()) return gemm_cost_unchecked(npu, shape, batch, {batch, 1, 1}, placement);
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
      const MapperChoice choice =
          choose_tiling(npu, shape, batch, mapping, found ? best.cycles : ~std::uint64_t{0}, placement);
      if (!choice.found) continue;
      LayerCost cost = cost_of(npu, shape, batch, mapping, choice.tiling, choice.result, placement);
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
