#include "npu_model/cost_model.hpp"

#include <algorithm>
#include <array>

#include "npu_model/systolic.hpp"

namespace npusim::npu {
namespace {

// A tile of the output (one R tile x one C tile) as far as timing cares: which row/column
// class it belongs to, and whether its P steps fetch weights.
struct TileKind {
  std::uint8_t row_class = 0;  // 0: full T_R/k rows, 1: the last (possibly short) R tile
  std::uint8_t col_class = 0;  // 0: full T_C/k columns, 1: the last (possibly short) C tile
  bool loads_weights = true;
  unsigned index() const { return row_class * 4u + col_class * 2u + (loads_weights ? 1u : 0u); }
};

// Bus (data) cycles of each transfer a tile makes; latency is added per phase, since the
// requests of one phase are issued together and their latencies overlap.
struct TileTimes {
  std::uint64_t rows = 0;
  std::uint64_t load_first = 0;  // operands of P step 0
  std::uint64_t load_full = 0;   // operands of a full-depth P step
  std::uint64_t load_last = 0;   // operands of the last P step
  std::uint64_t write = 0;       // the finished output tile
};

class GemmSchedule {
 public:
  // One pass of `packed` groups.
  GemmSchedule(const Npu& npu, const GemmShape& shape, const BatchMapping& mapping, std::uint64_t packed)
      : npu_(npu), g_(npu.geometry(mapping.k)), shape_(shape), mapping_(mapping), packed_(packed),
        e_(effective_gemm(shape, mapping, packed)) {
    const EffectiveGemm& e = e_;
    block_diagonal_ = e.blocks > 1;
    const std::uint64_t tr = g_.tile_rows, tp = g_.tile_depth, tc = g_.tile_cols;
    n_r_ = (e.rows + tr - 1) / tr;
    n_p_ = (e.depth + tp - 1) / tp;
    n_c_ = (e.cols + tc - 1) / tc;
    rows_[0] = tr;
    rows_[1] = e.rows - (n_r_ - 1) * tr;
    cols_[0] = tc;
    cols_[1] = e.cols - (n_c_ - 1) * tc;
    depth_full_ = tp;
    depth_last_ = e.depth - (n_p_ - 1) * tp;
    has_edge_column_ = cols_[1] != cols_[0];
    full_columns_ = has_edge_column_ ? n_c_ - 1 : n_c_;
    const std::uint64_t slots_needed = n_p_ + (g_.double_buffered ? 1 : 0);
    weights_resident_ = g_.weight_tile_slots >= slots_needed;
    element_bytes_ = npu.config().element_bytes;
    latency_ = npu.latency_cycles();
  }

  std::uint64_t total_cycles() {
    const std::uint8_t first_col_class = full_columns_ > 0 ? 0 : 1;
    const std::uint8_t last_col_class = has_edge_column_ ? 1 : 0;
    // Head: the first step's operands arrive before anything can stream.
    std::uint64_t cycles = loads_only(times(TileKind{row_first(), first_col_class, true}).load_first);
    // Tail (double-buffered): drain the pipeline, then write the last tile.
    if (g_.double_buffered)
      cycles += loads_then_write(0, times(last_tile_of_column(last_col_class)).write);
    const TileKind edge_first{row_first(), 1, true};
    const TileKind full_last = last_tile_of_column(0);
    if (full_columns_ > 0)
      cycles += run_of_columns(0, full_columns_, nullptr, has_edge_column_ ? &edge_first : nullptr);
    if (has_edge_column_)
      cycles += column_cycles(1, full_columns_ > 0 ? &full_last : nullptr, nullptr);
    return cycles;
  }

  std::uint64_t compute_cycles() const {
    return mapping_.b_r * shape_.rows * n_p_ * n_c_;
  }

  std::uint64_t offchip_bytes() const {
    const std::uint64_t input = n_c_ * e_.rows * e_.depth;
    const std::uint64_t distinct_depth = block_diagonal_ ? shape_.depth : e_.depth;
    std::uint64_t weight_cols = full_columns_ * distinct_cols(cols_[0]);
    if (has_edge_column_) weight_cols += distinct_cols(cols_[1]);
    const std::uint64_t weight_fetches = weights_resident_ ? 1 : n_r_;
    const std::uint64_t weights = weight_fetches * distinct_depth * weight_cols;
    const std::uint64_t output = e_.rows * e_.cols;
    return (input + weights + output) * element_bytes_;
  }

 private:
  std::uint8_t row_first() const { return n_r_ == 1 ? 1 : 0; }
  bool later_rows_load_weights() const { return !weights_resident_; }

  TileKind last_tile_of_column(std::uint8_t col_class) const {
    if (n_r_ == 1) return {1, col_class, true};
    return {1, col_class, later_rows_load_weights()};
  }

  // Weights a C tile of `cols` columns fetches per depth row. Block-diagonal tiles fetch each
  // distinct weight once (sample slots share a group's weights, so columns repeat with period
  // packed * C) and the buffer logic writes the copies and the zeros.
  std::uint64_t distinct_cols(std::uint64_t cols) const { return std::min(cols, packed_ * shape_.cols); }

  std::uint64_t load(const TileKind& t, std::uint64_t depth) const {
    const std::uint64_t input_bytes = rows_[t.row_class] * depth * element_bytes_;
    std::uint64_t cycles = npu_.data_cycles(input_bytes);
    if (t.loads_weights) {
      const std::uint64_t distinct_depth = block_diagonal_ ? shape_.depth : depth;
      cycles += npu_.data_cycles(distinct_depth * distinct_cols(cols_[t.col_class]) * element_bytes_);
    }
    return cycles;
  }

  const TileTimes& times(const TileKind& t) {
    const unsigned i = t.index();
    if (!cached_[i]) {
      TileTimes& c = cache_[i];
      c.rows = rows_[t.row_class];
      c.load_full = n_p_ > 1 ? load(t, depth_full_) : 0;
      c.load_last = load(t, depth_last_);
      c.load_first = n_p_ > 1 ? c.load_full : c.load_last;
      c.write = npu_.data_cycles(rows_[t.row_class] * cols_[t.col_class] * element_bytes_);
      cached_[i] = true;
    }
    return cache_[i];
  }

  // Channel time of a phase whose loads need `load` bus cycles (0: no load requests).
  std::uint64_t loads_only(std::uint64_t load) const { return load ? latency_ + load : 0; }
  // ... and which also writes a tile of `write` bus cycles, issued `drain` cycles in.
  std::uint64_t loads_then_write(std::uint64_t load, std::uint64_t write) const {
    return latency_ + std::max(load, std::uint64_t{g_.pipeline_depth_cycles}) + write;
  }

  // Cycles of all P-step phases of tile `cur`, given the tile before it (whose output is
  // written during cur's first phase when double-buffered) and the tile after it (whose first
  // operands are prefetched during cur's last phase).
  std::uint64_t tile_cycles(const TileKind* prev, const TileKind& cur, const TileKind* next) {
    const TileTimes& c = times(cur);
    const std::uint64_t next_first = next ? times(*next).load_first : 0;
    if (!g_.double_buffered) {
      // Serial phases: stream rows, then load the next step; the last step also waits for the
      // drain and writes the tile before the next tile may use the single output buffer.
      std::uint64_t cycles = n_p_ * c.rows;
      if (n_p_ >= 2) cycles += (n_p_ - 2) * loads_only(c.load_full) + loads_only(c.load_last);
      return cycles + loads_then_write(next_first, c.write);
    }
    const std::uint64_t load_step1 = n_p_ > 2 ? c.load_full : (n_p_ == 2 ? c.load_last : next_first);
    const std::uint64_t dma0 =
        prev ? loads_then_write(load_step1, times(*prev).write) : loads_only(load_step1);
    std::uint64_t cycles = std::max(c.rows, dma0);
    if (n_p_ >= 3)
      cycles += (n_p_ - 3) * std::max(c.rows, loads_only(c.load_full)) +
                std::max(c.rows, loads_only(c.load_last));
    if (n_p_ >= 2) cycles += std::max(c.rows, loads_only(next_first));
    return cycles;
  }

  struct TileRun {
    TileKind kind;
    std::uint64_t count;
  };

  // Sum over a sequence of runs of identical tiles; items inside a run see identical
  // neighbours, so a run costs at most three distinct tile evaluations.
  std::uint64_t tile_runs_cycles(const TileRun* runs, std::size_t n, const TileKind* before,
                                 const TileKind* after) {
    std::uint64_t cycles = 0;
    for (std::size_t i = 0; i < n; ++i) {
      const TileKind& k = runs[i].kind;
      const TileKind* prev = i == 0 ? before : &runs[i - 1].kind;
      const TileKind* next = i + 1 == n ? after : &runs[i + 1].kind;
      const std::uint64_t m = runs[i].count;
      if (m == 1) {
        cycles += tile_cycles(prev, k, next);
      } else {
        cycles += tile_cycles(prev, k, &k) + tile_cycles(&k, k, next);
        if (m > 2) cycles += (m - 2) * tile_cycles(&k, k, &k);
      }
    }
    return cycles;
  }

  std::uint64_t column_cycles(std::uint8_t col_class, const TileKind* before,
                              const TileKind* after) {
    std::array<TileRun, 3> runs{};
    std::size_t n = 0;
    if (n_r_ == 1) {
      runs[n++] = {{1, col_class, true}, 1};
    } else {
      runs[n++] = {{0, col_class, true}, 1};
      if (n_r_ > 2) runs[n++] = {{0, col_class, later_rows_load_weights()}, n_r_ - 2};
      runs[n++] = {{1, col_class, later_rows_load_weights()}, 1};
    }
    return tile_runs_cycles(runs.data(), n, before, after);
  }

  // `count` identical columns of class col_class.
  std::uint64_t run_of_columns(std::uint8_t col_class, std::uint64_t count,
                               const TileKind* before, const TileKind* after) {
    const TileKind first{row_first(), col_class, true};
    const TileKind last = last_tile_of_column(col_class);
    if (count == 1) return column_cycles(col_class, before, after);
    std::uint64_t cycles =
        column_cycles(col_class, before, &first) + column_cycles(col_class, &last, after);
    if (count > 2) cycles += (count - 2) * column_cycles(col_class, &last, &first);
    return cycles;
  }

  const Npu& npu_;
  const StackGeometry& g_;
  GemmShape shape_;
  BatchMapping mapping_;
  std::uint64_t packed_ = 1;
  EffectiveGemm e_;
  bool block_diagonal_ = false;
  std::uint64_t n_r_ = 0, n_p_ = 0, n_c_ = 0;
  std::array<std::uint64_t, 2> rows_{}, cols_{};
  std::uint64_t depth_full_ = 0, depth_last_ = 0;
  bool has_edge_column_ = false;
  std::uint64_t full_columns_ = 0;  // columns of the full T_C/k width
  std::uint64_t element_bytes_ = 1;
  std::uint64_t latency_ = 0;
  bool weights_resident_ = false;
  std::array<TileTimes, 8> cache_{};
  std::array<bool, 8> cached_{};
};

void add_passes(LayerCost& cost, const Npu& npu, const GemmShape& shape, const BatchMapping& mapping,
                std::uint64_t packed, std::uint64_t passes) {
  if (passes == 0) return;
  GemmSchedule schedule(npu, shape, mapping, packed);
  cost.cycles += passes * schedule.total_cycles();
  cost.compute_cycles += passes * schedule.compute_cycles();
  cost.offchip_bytes += passes * schedule.offchip_bytes();
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
    cost.mapping = mapping;
    // Passes of `packed` groups back to back, then one pass of the remaining groups.
    const std::uint64_t packed = groups_per_pass(npu, shape, mapping);
    add_passes(cost, npu, shape, mapping, packed, shape.groups / packed);
    add_passes(cost, npu, shape, mapping, shape.groups % packed, shape.groups % packed ? 1 : 0);
  }
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
  const auto better = [](const LayerCost& a, const LayerCost& b) {
    if (a.cycles != b.cycles) return a.cycles < b.cycles;
    if (a.offchip_bytes != b.offchip_bytes) return a.offchip_bytes < b.offchip_bytes;
    if (a.mapping.k != b.mapping.k) return a.mapping.k < b.mapping.k;
    return a.mapping.b_p < b.mapping.b_p;
  };
  for (const auto& g : npu.geometries()) {
    for (std::uint32_t b_p = 1; b_p <= batch; ++b_p) {
      const BatchMapping mapping{(batch + b_p - 1) / b_p, b_p, g.k};
      if (b_p > 1 && b_p * shape.depth > g.tile_depth) break;
      if (!npu.allows(mode_of(mapping))) continue;
      const LayerCost cost = gemm_cost_unchecked(npu, shape, batch, mapping);
      if (!found || better(cost, best)) best = cost;
      found = true;
    }
  }
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
