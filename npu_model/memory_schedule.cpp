#include "npu_model/memory_schedule.hpp"

#include <algorithm>
#include <array>
#include <bit>
#include <cstring>
#include <memory>
#include <stdexcept>

#include <fmt/format.h>

namespace npusim::npu {

std::string to_string(LoopOrder order) {
  return order == LoopOrder::weights_outer ? "weights_outer" : "inputs_outer";
}

std::string to_string(const Tiling& t) {
  return fmt::format("{} band {}x{} cols {} chunks {}{}{} prefetch {}/{}", to_string(t.order), t.band_rows,
                     t.band_samples, t.col_block, t.channel_chunks, t.input_resident ? " input-resident" : "",
                     t.weights_resident ? " weights-resident" : "", t.input_prefetch, t.weight_prefetch);
}

namespace {

// a / b and a % b. The divisors here are mostly powers of two (one chunk or C-block, the bands of
// a map 2^n rows high, tiles 2^n lanes deep), which a shift divides many times faster than a
// division instruction.
struct Quotient {
  std::uint64_t quotient, remainder;
};
Quotient divide(std::uint64_t a, std::uint64_t b) {
  if ((b & (b - 1)) == 0) return {a >> std::countr_zero(b), a & (b - 1)};
  return {a / b, a % b};
}
std::uint64_t ceil_div(std::uint64_t a, std::uint64_t b) { return divide(a + b - 1, b).quotient; }

// Rows [lo, hi] of one sample's input feature map; empty when lo > hi.
struct RowRange {
  std::int64_t lo = 0, hi = -1;
  std::uint64_t count() const { return hi < lo ? 0 : static_cast<std::uint64_t>(hi - lo + 1); }
  // Rows of this range that `other` does not hold.
  std::uint64_t minus(const RowRange& other) const {
    const std::int64_t a = std::max(lo, other.lo), b = std::min(hi, other.hi);
    return count() - (b < a ? 0 : static_cast<std::uint64_t>(b - a + 1));
  }
};

// One pass of packed groups: its shape and how its loops divide it.
struct PassPlan {
  std::uint64_t groups = 1;        // G_q
  bool block_diagonal = false;     // B_P * G_q > 1
  std::uint64_t cols = 0;          // n_q
  std::uint64_t col_block = 0;
  std::uint64_t col_blocks = 1;
  std::uint64_t chunks = 1;
  std::uint64_t chunk_channels = 0;  // channels of every chunk but the last
  std::uint64_t channels = 0;        // channels a line holds in total (all chunks)
  std::uint64_t steps = 0;
  // ceil(depth / t_d) and ceil(cols / t_c) of the steps' blocks, which differ only for the last
  // chunk and the last C-block: precomputed to keep divisions out of every step's record.
  std::uint64_t depth_tiles = 0, last_depth_tiles = 0;
  std::uint64_t col_tiles = 0, last_col_tiles = 0;
  // Likewise the last C-block's columns and one line's bytes in every chunk but the last, and in it.
  std::uint64_t last_block_cols = 0;
  std::uint64_t line_bytes = 0, last_line_bytes = 0;
};

// The loop nest's position of one step.
struct StepIndex {
  std::uint64_t pass = 0, rgroup = 0, band = 0, cblock = 0, chunk = 0;
};

// A step's index and one neighbour's, moved on step by step: the step after it for streaming
// (LayerSteps::seek_streamed), the step before it for loads (LayerSteps::seek_loaded).
struct StepCursor {
  StepIndex at, neighbour;
  std::uint64_t step = 0;
  bool valid = false;
};

// What one step does (docs/memory-schedule.md §5, §10).
struct StepRecord {
  std::uint64_t stream_cycles = 0;
  std::uint64_t input_load = 0, input_release = 0;
  std::uint64_t weight_load = 0, weight_release = 0;
  std::uint64_t accumulator_bytes = 0;  // of its output block: taken at chunk 0, freed once the block is written
  std::uint64_t block_bytes = 0;        // its output block off chip (§5): the write's bytes and the epilogue load's
  bool opens_block = false;             // chunk 0: allocates the accumulators, loads the epilogue operand
  bool closes_block = false;            // last chunk: the block is written after it
};

// Iterations [lo, hi] of one loop whose steps all have equal records, neighbours included (none
// when hi < lo). Only there can a periodic stretch be jumped over.
struct RegularRange {
  std::uint64_t lo = 1, hi = 0;
};
// The first and last iterations of a loop differ from the rest (they open and close it).
RegularRange interior(std::uint64_t count) { return {1, count >= 2 ? count - 2 : 0}; }

// The layer's loop nest under one tiling and placement: steps, their records, and the sums over
// them that need no timing.
class LayerSteps {
 public:
  LayerSteps(const Npu& npu, const GemmShape& shape, std::uint32_t batch, const BatchMapping& mapping,
             const Tiling& tiling, const Placement& placement)
      : shape_(shape), batch_(batch), b_p_(mapping.b_p), tiling_(tiling),
        geometry_(npu.geometry(mapping.k)), fm_(feature_map_of(shape)) {
    const auto& c = npu.config();
    element_bytes = c.element_bytes;
    accumulator_bytes = c.accumulator_bytes;
    input_on_chip = placement.input_on_chip;
    output_on_chip = placement.output_on_chip;
    epilogue_off_chip = placement.epilogue == EpilogueOperand::off_chip;
    input_capacity = c.buffers.input_bytes > placement.reserved_input_bytes
                         ? c.buffers.input_bytes - placement.reserved_input_bytes
                         : 0;
    // An input already on chip is never loaded: residency and prefetch of it mean nothing.
    input_resident = tiling.input_resident && !input_on_chip;
    input_prefetch = input_on_chip ? 0 : tiling.input_prefetch;
    weight_prefetch = tiling.weight_prefetch;
    max_prefetch = std::max(input_prefetch, weight_prefetch);
    grid_rows_ = mapping.b_r;
    band_rows_ = tiling.band_rows;
    band_samples_ = tiling.band_samples;
    check_tiling();
    rgroups = ceil_div(grid_rows_, band_samples_);
    last_rgroup_samples_ = samples_in(rgroups - 1);
    // Every group but the last ends on a grid row before the last (rgroups is rounded up), so
    // all of them are full when the last of them is.
    if ((rgroups - 1) * band_samples_ * b_p_ <= batch_) full_rgroup_samples_ = band_samples_ * b_p_;
    bands = ceil_div(fm_.out_height, band_rows_);
    last_band_rows_ = fm_.out_height - (bands - 1) * band_rows_;
    last_rgroup_rows_ = grid_rows_ - (rgroups - 1) * band_samples_;
    const std::uint64_t packed = groups_per_pass(npu, shape, mapping);
    const Quotient packing = divide(shape.groups, packed);
    full_passes = packing.quotient;
    plans[0] = plan(packed);
    if (packing.remainder) plans[1] = plan(packing.remainder);
    passes = full_passes + (packing.remainder ? 1 : 0);
    steps = full_passes * plans[0].steps + (passes > full_passes ? plans[1].steps : 0);
    several_col_blocks_ = plans[0].col_blocks > 1 || (passes > full_passes && plans[1].col_blocks > 1);
    regular_bands = find_regular_bands();
    regular_rgroups = find_regular_rgroups();
    if (input_resident) {
      if (regular_bands.lo <= regular_bands.hi) regular_fresh_rows_ = fresh_rows(regular_bands.lo);
      first_fresh_rows_ = rows_needed(0).count();
      last_fresh_rows_ = fresh_rows(bands - 1);
    }
  }

  // ---- Fixed quantities ----
  std::uint64_t element_bytes = 1, accumulator_bytes = 4;
  bool input_on_chip = false, output_on_chip = false, epilogue_off_chip = false, input_resident = false;
  std::uint64_t input_capacity = 0;
  std::uint64_t input_prefetch = 0, weight_prefetch = 0, max_prefetch = 0;
  std::uint64_t rgroups = 1, bands = 1, full_passes = 0, passes = 0, steps = 0;
  std::array<PassPlan, 2> plans{};
  RegularRange regular_bands, regular_rgroups;

  LoopOrder order() const { return tiling_.order; }
  bool weights_resident() const { return tiling_.weights_resident; }
  std::uint64_t pipeline_depth() const { return geometry_.pipeline_depth_cycles; }
  const PassPlan& plan_of(std::uint64_t pass) const { return pass < full_passes ? plans[0] : plans[1]; }

  // The whole input tensor of the layer (every real sample, row and channel), as input_on_chip holds it.
  std::uint64_t input_tensor_bytes() const {
    return batch_ * fm_.height * fm_.width * fm_.channels * shape_.groups * element_bytes;
  }
  // Every step's accumulators fit when the first step's do: it has the most rows and columns.
  std::uint64_t largest_accumulator_bytes() const {
    return std::min(band_samples_, grid_rows_) * std::min(band_rows_, fm_.out_height) * fm_.out_width *
           plans[0].col_block * accumulator_bytes;
  }

  // ---- Sums over the steps, without timing ----
  std::uint64_t input_bytes() const {
    if (input_on_chip) return 0;
    std::uint64_t total = pass_input_bytes(plans[0]) * full_passes;
    if (passes > full_passes) total += pass_input_bytes(plans[1]);
    return total;
  }
  // Every line the layer reads, once: what input_resident loads in all.
  std::uint64_t resident_input_bytes() const {
    const std::uint64_t rows = all_fresh_rows();
    std::uint64_t total = rows * line_bytes_all(plans[0]) * full_passes;
    if (passes > full_passes) total += rows * line_bytes_all(plans[1]);
    return batch_ * total;
  }
  std::uint64_t weight_bytes() const {
    std::uint64_t total = pass_weight_bytes(plans[0]) * full_passes;
    if (passes > full_passes) total += pass_weight_bytes(plans[1]);
    return total;
  }
  // Every weight once: what weights_resident loads in all.
  std::uint64_t all_weight_bytes() const { return shape_.groups * shape_.depth * shape_.cols * element_bytes; }
  // Σ of §5's write bytes over the output blocks.
  std::uint64_t block_bytes() const {
    return batch_ * fm_.out_height * fm_.out_width * shape_.groups * shape_.cols * element_bytes;
  }
  std::uint64_t compute_cycles() const {
    std::uint64_t total = pass_compute_cycles(plans[0]) * full_passes;
    if (passes > full_passes) total += pass_compute_cycles(plans[1]);
    return total;
  }

  // ---- Step indices ----
  StepIndex index_of(std::uint64_t step) const {
    StepIndex i;
    if (step == 0) return i;  // where every cursor starts
    // Most layers make one pass: no division then.
    i.pass = step < plans[0].steps ? 0 : std::min(divide(step, plans[0].steps).quotient, full_passes);
    const PassPlan& p = plan_of(i.pass);
    const Quotient chunk = divide(step - i.pass * plans[0].steps, p.chunks);
    i.chunk = chunk.remainder;
    if (tiling_.order == LoopOrder::inputs_outer) {
      const Quotient cblock = divide(chunk.quotient, p.col_blocks);
      const Quotient band = divide(cblock.quotient, bands);
      i.cblock = cblock.remainder;
      i.band = band.remainder;
      i.rgroup = band.quotient;
    } else {
      const Quotient band = divide(chunk.quotient, bands);
      const Quotient rgroup = divide(band.quotient, rgroups);
      i.band = band.remainder;
      i.rgroup = rgroup.remainder;
      i.cblock = rgroup.quotient;
    }
    return i;
  }
  // The index of the step after `i` (which is not the last step): index_of(step + 1), by
  // carrying instead of dividing.
  StepIndex next_of(StepIndex i) const {
    const PassPlan& p = plan_of(i.pass);
    if (++i.chunk < p.chunks) return i;
    i.chunk = 0;
    if (tiling_.order == LoopOrder::inputs_outer) {
      if (++i.cblock < p.col_blocks) return i;
      i.cblock = 0;
      if (++i.band < bands) return i;
      i.band = 0;
      if (++i.rgroup < rgroups) return i;
      i.rgroup = 0;
    } else {
      if (++i.band < bands) return i;
      i.band = 0;
      if (++i.rgroup < rgroups) return i;
      i.rgroup = 0;
      if (++i.cblock < p.col_blocks) return i;
      i.cblock = 0;
    }
    ++i.pass;
    return i;
  }
  // The index of the step before `i` (which is not step 0): index_of(step - 1), by borrowing.
  StepIndex prev_of(StepIndex i) const {
    if (i.chunk == 0 && i.cblock == 0 && i.band == 0 && i.rgroup == 0) {
      // The last step of the pass before, whose plan may differ from this one's.
      --i.pass;
      const PassPlan& p = plan_of(i.pass);
      i.chunk = p.chunks - 1;
      i.cblock = p.col_blocks - 1;
      i.band = bands - 1;
      i.rgroup = rgroups - 1;
      return i;
    }
    const PassPlan& p = plan_of(i.pass);
    if (i.chunk > 0) {
      --i.chunk;
      return i;
    }
    i.chunk = p.chunks - 1;
    if (tiling_.order == LoopOrder::inputs_outer) {
      if (i.cblock > 0) {
        --i.cblock;
        return i;
      }
      i.cblock = p.col_blocks - 1;
      if (i.band > 0) {
        --i.band;
        return i;
      }
      i.band = bands - 1;
      --i.rgroup;
    } else {
      if (i.band > 0) {
        --i.band;
        return i;
      }
      i.band = bands - 1;
      if (i.rgroup > 0) {
        --i.rgroup;
        return i;
      }
      i.rgroup = rgroups - 1;
      --i.cblock;
    }
    return i;
  }

  // What step `step`, at index `s`, does (docs/memory-schedule.md §5).
  StepRecord record(const StepIndex& s, std::uint64_t step) const {
    const StepIndex prev = step > 0 ? prev_of(s) : StepIndex{};
    StepRecord r = stream_record(s, step + 1 < steps ? next_of(s) : StepIndex{}, step);
    r.input_load = input_load(prev, s, step);
    r.weight_load = weight_load(prev, s, step);
    return r;
  }
  // Its record but for its loads, which the walk asks for when it issues them, steps ahead of
  // its streaming; `next` is ignored for the last step.
  StepRecord stream_record(const StepIndex& s, const StepIndex& next, std::uint64_t step) const {
    const PassPlan& p = plan_of(s.pass);
    const bool has_next = step + 1 < steps;
    StepRecord r;
    const bool last_cblock = s.cblock + 1 == p.col_blocks;
    const std::uint64_t cols = last_cblock ? p.last_block_cols : p.col_block;
    // Only the last band and the last grid-row group can be short.
    const std::uint64_t out_rows = s.band + 1 < bands ? band_rows_ : last_band_rows_;
    const std::uint64_t im2col_rows = (s.rgroup + 1 < rgroups ? band_samples_ : last_rgroup_rows_) * out_rows * fm_.out_width;
    r.stream_cycles = im2col_rows * (s.chunk + 1 < p.chunks ? p.depth_tiles : p.last_depth_tiles) *
                      (last_cblock ? p.last_col_tiles : p.col_tiles);
    if (!input_resident && !input_on_chip) {
      const bool shares_lines = has_next && same_lines_owner(s, next);
      const RowRange rows = rows_needed(s.band);
      const std::uint64_t lines = shares_lines ? rows.minus(rows_needed(next.band)) : rows.count();
      r.input_release = lines * samples_of(s.rgroup) * chunk_line_bytes(p, s.chunk);
    }
    if (!tiling_.weights_resident && (!has_next || !same_weight_block(s, next)))
      r.weight_release = weight_block_bytes(p, s);
    r.accumulator_bytes = im2col_rows * cols * accumulator_bytes;
    r.opens_block = s.chunk == 0;
    r.closes_block = s.chunk + 1 == p.chunks;
    if (r.opens_block || r.closes_block) {
      // Block-diagonal passes move only the real samples' columns (§5).
      r.block_bytes = p.block_diagonal
                          ? out_rows * fm_.out_width * samples_of(s.rgroup) * p.groups * shape_.cols * element_bytes
                          : im2col_rows * cols * element_bytes;
    }
    return r;
  }
  // The input bytes step `step` at `s` loads; `prev` is ignored for step 0.
  std::uint64_t input_load(const StepIndex& prev, const StepIndex& s, std::uint64_t step) const {
    const PassPlan& p = plan_of(s.pass);
    if (input_resident) {
      if (s.cblock != 0) return 0;
      // Every regular band has the same fresh rows (find_regular_bands); of the others, the first
      // and the last are loaded by every grid-row group and pass.
      const std::uint64_t band = s.band;
      const std::uint64_t rows = band >= regular_bands.lo && band <= regular_bands.hi ? regular_fresh_rows_
                                 : band == 0                                          ? first_fresh_rows_
                                 : band + 1 == bands                                  ? last_fresh_rows_
                                                                                      : fresh_rows(band);
      return rows * samples_of(s.rgroup) * chunk_line_bytes(p, s.chunk);
    }
    if (input_on_chip) return 0;
    // Lines of `s` that the step before does not hold.
    const RowRange rows = rows_needed(s.band);
    const std::uint64_t lines = step > 0 && same_lines_owner(s, prev) ? rows.minus(rows_needed(prev.band)) : rows.count();
    return lines * samples_of(s.rgroup) * chunk_line_bytes(p, s.chunk);
  }
  std::uint64_t weight_load(const StepIndex& prev, const StepIndex& s, std::uint64_t step) const {
    const bool loads = tiling_.weights_resident ? s.rgroup == 0 && s.band == 0 : step == 0 || !same_weight_block(s, prev);
    return loads ? weight_block_bytes(plan_of(s.pass), s) : 0;
  }

  static constexpr std::uint64_t never = ~std::uint64_t{0};

  // The first step from `step` on that loads weights, or one no later (`step` itself) when that
  // is not cheap to know. Resident weights are loaded only by the steps of the first band of the
  // first grid-row group, which open each C-block under weights_outer and each pass under
  // inputs_outer: long stretches between make no weight request.
  std::uint64_t next_weight_load(std::uint64_t step) const {
    if (step >= steps) return never;
    if (!tiling_.weights_resident) return step;
    return next_weight_load(step, index_of(step));
  }
  // The same for a step before the last, at index `i`, with the weights resident.
  std::uint64_t next_weight_load(std::uint64_t step, const StepIndex& i) const {
    if (i.rgroup == 0 && i.band == 0) return step;
    const PassPlan& p = plan_of(i.pass);
    const std::uint64_t pass_start = i.pass * plans[0].steps;
    if (tiling_.order == LoopOrder::weights_outer && i.cblock + 1 < p.col_blocks)
      return pass_start + (i.cblock + 1) * rgroups * bands * p.chunks;
    return pass_start + p.steps < steps ? pass_start + p.steps : never;
  }

  // Likewise for input loads: resident input is loaded only by the steps of C-block 0, which
  // opens each pass under weights_outer and each R-block under inputs_outer.
  std::uint64_t next_input_load(std::uint64_t step) const {
    if (step >= steps) return never;
    if (!input_loads_skip_steps()) return step;
    return next_input_load(step, index_of(step));
  }
  // The same for a step before the last, at index `i`, with the input's loads skipping steps.
  std::uint64_t next_input_load(std::uint64_t step, const StepIndex& i) const {
    if (i.cblock == 0) return step;
    const PassPlan& p = plan_of(i.pass);
    const std::uint64_t pass_start = i.pass * plans[0].steps;
    if (tiling_.order == LoopOrder::inputs_outer) {
      const std::uint64_t rblock_steps = p.col_blocks * p.chunks;
      const std::uint64_t next_rblock = pass_start + (i.rgroup * bands + i.band + 1) * rblock_steps;
      if (next_rblock < pass_start + p.steps) return next_rblock;
    }
    return pass_start + p.steps < steps ? pass_start + p.steps : never;
  }

  bool input_loads_skip_steps() const {
    return input_resident && (tiling_.order == LoopOrder::weights_outer || several_col_blocks_);
  }

  // Whether stream_record reads the step after: only to see which lines or weights go.
  bool records_read_next() const { return (!input_resident && !input_on_chip) || !tiling_.weights_resident; }

  // Moves `c` to `step`, with the step after it as its neighbour when records read it: by a
  // carry from the step before, else by dividing.
  void seek_streamed(StepCursor& c, std::uint64_t step, bool with_next) const {
    if (!with_next) {
      c.at = c.valid && step == c.step + 1 ? next_of(c.at) : index_of(step);
    } else {
      c.at = c.valid && step == c.step + 1 ? c.neighbour : index_of(step);
      if (step + 1 < steps) c.neighbour = next_of(c.at);
    }
    c.step = step;
    c.valid = true;
  }
  // Whether input_load and weight_load read the step before: only for an operand that is
  // streamed, to see what it keeps.
  bool input_loads_read_prev() const { return !input_resident && !input_on_chip; }
  bool weight_loads_read_prev() const { return !tiling_.weights_resident; }

  // Moves `c` to `step`, with the step before it as its neighbour when the loads read it.
  void seek_loaded(StepCursor& c, std::uint64_t step, bool with_prev) const {
    if (c.valid && step == c.step + 1) {
      if (with_prev) c.neighbour = c.at;
      c.at = next_of(c.at);
    } else {
      c.at = index_of(step);
      if (with_prev && step > 0) c.neighbour = prev_of(c.at);
    }
    c.step = step;
    c.valid = true;
  }

 private:
  void check_tiling() const {
    const auto fail = [](const std::string& what) { throw std::invalid_argument("tiling: " + what); };
    if (tiling_.band_rows == 0 || tiling_.band_rows > fm_.out_height)
      fail(fmt::format("band_rows = {} must be in [1, {}]", tiling_.band_rows, fm_.out_height));
    if (tiling_.band_samples == 0 || tiling_.band_samples > grid_rows_)
      fail(fmt::format("band_samples = {} must be in [1, {}]", tiling_.band_samples, grid_rows_));
    if (tiling_.band_samples > 1 && tiling_.band_rows != fm_.out_height)
      fail("band_samples > 1 needs whole-sample bands (band_rows = H')");
    if (tiling_.col_block == 0) fail("col_block must be at least 1");
    if (tiling_.channel_chunks == 0 || tiling_.channel_chunks > fm_.channels)
      fail(fmt::format("channel_chunks = {} must be in [1, {}]", tiling_.channel_chunks, fm_.channels));
    const std::uint64_t per = ceil_div(fm_.channels, tiling_.channel_chunks);
    if ((tiling_.channel_chunks - 1) * per >= fm_.channels)
      fail(fmt::format("channel_chunks = {} leaves an empty chunk of {} channels", tiling_.channel_chunks,
                       fm_.channels));
  }

  PassPlan plan(std::uint64_t groups) const {
    PassPlan p;
    p.groups = groups;
    p.block_diagonal = b_p_ * groups > 1;
    p.cols = b_p_ * groups * shape_.cols;
    if (p.block_diagonal) {
      if (tiling_.col_block < p.cols)
        throw std::invalid_argument(fmt::format("tiling: col_block = {} must cover the {} columns of a block-diagonal pass",
                                                tiling_.col_block, p.cols));
      p.col_block = p.cols;
      p.chunks = 1;
      p.channels = groups * fm_.channels;
      p.chunk_channels = p.channels;
    } else {
      if (tiling_.col_block < p.cols && tiling_.col_block % geometry_.tile_cols != 0)
        throw std::invalid_argument(fmt::format("tiling: col_block = {} must be a multiple of t_c = {} or cover all {} columns",
                                                tiling_.col_block, geometry_.tile_cols, p.cols));
      p.col_block = std::min(tiling_.col_block, p.cols);
      p.chunks = tiling_.channel_chunks;
      p.channels = fm_.channels;
      p.chunk_channels = ceil_div(fm_.channels, p.chunks);
    }
    p.col_blocks = ceil_div(p.cols, p.col_block);
    p.steps = rgroups * bands * p.col_blocks * p.chunks;
    p.depth_tiles = ceil_div(depth_of(p, 0), geometry_.tile_depth);
    p.last_depth_tiles = ceil_div(depth_of(p, p.chunks - 1), geometry_.tile_depth);
    p.col_tiles = ceil_div(block_cols(p, 0), geometry_.tile_cols);
    p.last_col_tiles = ceil_div(block_cols(p, p.col_blocks - 1), geometry_.tile_cols);
    p.last_block_cols = block_cols(p, p.col_blocks - 1);
    p.line_bytes = line_bytes(p, 0);
    p.last_line_bytes = line_bytes(p, p.chunks - 1);
    return p;
  }

  // Whether the last step of an R-block that goes on to another pass, C-block or grid-row group
  // (or to none) loads and frees what it would going on to the next R-block: always, with the
  // operand resident or on chip or a new block or chunk at every step anyway.
  bool weights_end_like_the_rest() const {
    const auto alike = [&](const PassPlan& p) {
      const bool shared = tiling_.order == LoopOrder::inputs_outer ? p.col_blocks == 1 && p.chunks == 1 : p.chunks == 1;
      return tiling_.weights_resident || !shared;
    };
    return alike(plans[0]) && (passes == full_passes || alike(plans[1]));
  }
  bool input_ends_like_the_rest() const {
    // Consecutive bands share no row when the kernel is no taller than the stride.
    const bool chunked = plans[0].chunks > 1 && (passes == full_passes || plans[1].chunks > 1);
    return input_on_chip || input_resident || chunked || fm_.kernel_height <= fm_.stride_height;
  }

  // Bands whose records repeat exactly: whole ones (every row in the feature map, none short),
  // not the first (it opens the grid rows), and not the last unless it ends like the rest. A
  // band's record also reads its neighbours', but only where they are whole too (the rows the
  // band before ends on, the row the band after starts on).
  RegularRange find_regular_bands() const {
    const std::int64_t h = static_cast<std::int64_t>(band_rows_), s = static_cast<std::int64_t>(fm_.stride_height);
    const std::int64_t p = static_cast<std::int64_t>(fm_.padding_height), k = static_cast<std::int64_t>(fm_.kernel_height);
    const std::int64_t n = static_cast<std::int64_t>(bands), height = static_cast<std::int64_t>(fm_.height);
    // Band b starts inside the map from b * h * s >= p on; it ends inside it while
    // (b * h + h - 1) * s - p + k - 1 <= height - 1, and is whole if it is not the short last one.
    const auto over_band_stride = [&](std::int64_t a) {
      return static_cast<std::int64_t>(divide(static_cast<std::uint64_t>(a), static_cast<std::uint64_t>(h * s)).quotient);
    };
    const std::int64_t first_inside = over_band_stride(p + h * s - 1);
    const std::int64_t room = height + p - k - (h - 1) * s;
    if (room < 0) return {1, 0};
    std::int64_t last_inside = std::min(over_band_stride(room), n - 1);
    if (last_band_rows_ != band_rows_) last_inside = std::min(last_inside, n - 2);
    const std::int64_t lo = std::max<std::int64_t>(1, first_inside);
    const bool last_alike = input_ends_like_the_rest() && weights_end_like_the_rest();
    const std::int64_t hi = std::min(last_alike ? n - 1 : n - 2, last_inside);
    if (hi < lo) return {1, 0};
    return {static_cast<std::uint64_t>(lo), static_cast<std::uint64_t>(hi)};
  }

  // Grid-row groups but the first (its weights are the first loaded); the last too when it is
  // full and ends like the rest (its lines always go, as the next group's are other lines).
  RegularRange find_regular_rgroups() const {
    const std::uint64_t last = rgroups - 1;
    const bool full = grid_rows_of(last) == band_samples_ && samples_of(last) == band_samples_ * b_p_;
    if (rgroups >= 2 && full && weights_end_like_the_rest()) return {1, last};
    return interior(rgroups);
  }

  // Σ f(b) over the bands, with f depending on bands b - 1, b and b + 1 only: the regular ones
  // all give f(lo).
  template <typename F>
  std::uint64_t sum_over_bands(F f) const {
    const RegularRange r = regular_bands;
    if (r.hi < r.lo) {
      std::uint64_t total = 0;
      for (std::uint64_t b = 0; b < bands; ++b) total += f(b);
      return total;
    }
    std::uint64_t total = f(r.lo) * (r.hi - r.lo + 1);
    for (std::uint64_t b = 0; b < r.lo; ++b) total += f(b);
    for (std::uint64_t b = r.hi + 1; b < bands; ++b) total += f(b);
    return total;
  }

  std::uint64_t pass_input_bytes(const PassPlan& p) const {
    const std::uint64_t per_row = batch_ * line_bytes_all(p);
    if (input_resident) return per_row * all_fresh_rows();
    const std::uint64_t all_rows = sum_over_bands([&](std::uint64_t b) { return rows_needed(b).count(); });
    // Chunks alternate within every R-block: each step loads all its lines.
    if (p.chunks > 1) return per_row * all_rows * p.col_blocks;
    // Otherwise a band keeps the lines it shares with the band before in the same grid rows.
    const std::uint64_t carried = sum_over_bands([&](std::uint64_t b) {
      return b == 0 ? std::uint64_t{0} : rows_needed(b).count() - rows_needed(b).minus(rows_needed(b - 1));
    });
    if (tiling_.order == LoopOrder::inputs_outer) return per_row * (all_rows - carried);
    // weights_outer sweeps the R-blocks once per C-block; with one grid-row group the first
    // band of a sweep keeps what the last band of the sweep before left.
    std::uint64_t rows = p.col_blocks * (all_rows - carried);
    if (rgroups == 1 && p.col_blocks > 1)
      rows -= (p.col_blocks - 1) * (rows_needed(0).count() - rows_needed(0).minus(rows_needed(bands - 1)));
    return per_row * rows;
  }
  std::uint64_t pass_weight_bytes(const PassPlan& p) const {
    const std::uint64_t once = p.groups * shape_.depth * shape_.cols * element_bytes;
    if (tiling_.weights_resident) return once;
    const bool shared = tiling_.order == LoopOrder::inputs_outer ? p.col_blocks == 1 && p.chunks == 1 : p.chunks == 1;
    return shared ? once : once * rgroups * bands;
  }
  std::uint64_t pass_compute_cycles(const PassPlan& p) const {
    return grid_rows_ * fm_.out_height * fm_.out_width * ((p.chunks - 1) * p.depth_tiles + p.last_depth_tiles) *
           ((p.col_blocks - 1) * p.col_tiles + p.last_col_tiles);
  }

  // Real samples of a grid-row group: every step reads it, so the common answers are kept.
  std::uint64_t samples_of(std::uint64_t rgroup) const {
    if (rgroup + 1 == rgroups) return last_rgroup_samples_;
    return full_rgroup_samples_ != 0 ? full_rgroup_samples_ : samples_in(rgroup);
  }
  std::uint64_t samples_in(std::uint64_t rgroup) const {
    // Grid rows hold B_P samples each, the last one the rest: rows [r0, r1) hold the samples
    // from r0 * B_P up to min(B, r1 * B_P).
    const std::uint64_t r0 = rgroup * band_samples_;
    const std::uint64_t r1 = std::min<std::uint64_t>(grid_rows_, r0 + band_samples_);
    return std::min<std::uint64_t>(batch_, r1 * b_p_) - r0 * b_p_;
  }
  std::uint64_t grid_rows_of(std::uint64_t rgroup) const {
    return std::min<std::uint64_t>(grid_rows_, (rgroup + 1) * band_samples_) - rgroup * band_samples_;
  }
  std::uint64_t out_rows_of(std::uint64_t band) const {
    return std::min<std::uint64_t>(fm_.out_height, (band + 1) * band_rows_) - band * band_rows_;
  }
  RowRange rows_needed(std::uint64_t band) const {
    const std::int64_t y0 = static_cast<std::int64_t>(band * band_rows_);
    const std::int64_t y1 = y0 + static_cast<std::int64_t>(out_rows_of(band)) - 1;
    const std::int64_t sh = static_cast<std::int64_t>(fm_.stride_height), ph = static_cast<std::int64_t>(fm_.padding_height);
    return {std::max<std::int64_t>(0, y0 * sh - ph),
            std::min<std::int64_t>(static_cast<std::int64_t>(fm_.height) - 1,
                                   y1 * sh - ph + static_cast<std::int64_t>(fm_.kernel_height) - 1)};
  }
  // Σ fresh_rows over the bands: every row the layer reads, once. The bands' rows rise with the
  // band, and without gaps between them (a stride no taller than the kernel) they span from
  // the first band's first row to the last band's last.
  std::uint64_t all_fresh_rows() const {
    const RowRange first = rows_needed(0), last = rows_needed(bands - 1);
    if (fm_.stride_height <= fm_.kernel_height && first.count() != 0 && last.count() != 0)
      return static_cast<std::uint64_t>(last.hi - first.lo + 1);
    return sum_over_bands([&](std::uint64_t b) { return fresh_rows(b); });
  }
  // Rows of a band that no band before it in the same grid rows needs (what input_resident loads).
  // Out of line: a walk asks it only for the few irregular bands, and inlined it kept the input
  // load, which every step makes, from being inlined itself.
  [[gnu::noinline]] std::uint64_t fresh_rows(std::uint64_t band) const {
    RowRange fresh = rows_needed(band);
    if (band > 0) fresh.lo = std::max(fresh.lo, rows_needed(band - 1).hi + 1);
    return fresh.count();
  }
  std::uint64_t chunk_channels(const PassPlan& p, std::uint64_t chunk) const {
    return chunk + 1 < p.chunks ? p.chunk_channels : p.channels - (p.chunks - 1) * p.chunk_channels;
  }
  std::uint64_t line_bytes(const PassPlan& p, std::uint64_t chunk) const {
    return fm_.width * chunk_channels(p, chunk) * element_bytes;
  }
  static std::uint64_t chunk_line_bytes(const PassPlan& p, std::uint64_t chunk) {
    return chunk + 1 < p.chunks ? p.line_bytes : p.last_line_bytes;
  }
  // One input row of one sample, every chunk's channels.
  std::uint64_t line_bytes_all(const PassPlan& p) const { return fm_.width * p.channels * element_bytes; }
  std::uint64_t block_cols(const PassPlan& p, std::uint64_t cblock) const {
    return std::min(p.col_block, p.cols - cblock * p.col_block);
  }
  std::uint64_t depth_of(const PassPlan& p, std::uint64_t chunk) const {
    if (p.block_diagonal) return b_p_ * p.groups * shape_.depth;
    return fm_.kernel_height * fm_.kernel_width * chunk_channels(p, chunk);
  }
  std::uint64_t weight_block_bytes(const PassPlan& p, const StepIndex& s) const {
    if (p.block_diagonal) return p.groups * shape_.depth * shape_.cols * element_bytes;
    return depth_of(p, s.chunk) * block_cols(p, s.cblock) * element_bytes;
  }
  static bool same_lines_owner(const StepIndex& a, const StepIndex& b) {
    return a.pass == b.pass && a.chunk == b.chunk && a.rgroup == b.rgroup;
  }
  static bool same_weight_block(const StepIndex& a, const StepIndex& b) {
    return a.pass == b.pass && a.chunk == b.chunk && a.cblock == b.cblock;
  }

  GemmShape shape_;
  std::uint64_t batch_ = 1, b_p_ = 1;
  Tiling tiling_;
  const StackGeometry& geometry_;
  FeatureMap fm_;
  std::uint64_t grid_rows_ = 1, band_rows_ = 1, band_samples_ = 1;
  bool several_col_blocks_ = false;
  std::uint64_t last_band_rows_ = 1, last_rgroup_rows_ = 1;  // the others have band_rows_, band_samples_
  // samples_of the last grid-row group, and of the others when they all hold B_P samples in
  // every grid row (else 0).
  std::uint64_t last_rgroup_samples_ = 0, full_rgroup_samples_ = 0;
  // fresh_rows of a regular band, of the first and of the last: kept when the input is resident.
  std::uint64_t regular_fresh_rows_ = 0, first_fresh_rows_ = 0, last_fresh_rows_ = 0;
};

// Npu::data_cycles, ceil(bytes * clock / bandwidth), with the division by the bandwidth done by a
// multiplication by its reciprocal: a walk turns bytes into bus cycles several times, and a
// 64-bit division takes tens of cycles.
class BusCycles {
 public:
  explicit BusCycles(const Npu& npu)
      : clock_(npu.config().clock_mhz), bandwidth_(npu.bandwidth_mbps()), reciprocal_(~std::uint64_t{0} / bandwidth_) {}
  std::uint64_t operator()(std::uint64_t bytes) const {
    const std::uint64_t dividend = bytes * clock_ + bandwidth_ - 1;
    // dividend * floor((2^64 - 1) / bandwidth) / 2^64 is more than dividend / bandwidth - 1 and
    // at most dividend / bandwidth: the quotient, or one short of it.
    std::uint64_t quotient = static_cast<std::uint64_t>((static_cast<Product>(dividend) * reciprocal_) >> 64);
    if (dividend - quotient * bandwidth_ >= bandwidth_) ++quotient;
    return quotient;
  }

 private:
  __extension__ typedef unsigned __int128 Product;  // GCC's and Clang's, beyond ISO C++
  std::uint64_t clock_, bandwidth_, reciprocal_;
};

// The outline, and what the walk's abandonment test watches, max(last stream end, bus free), can
// no longer stay under once every step has streamed.
struct Foresight {
  ScheduleOutline outline;
  std::uint64_t bytes_before_last_write = 0;  // every request's but the last block's write
  std::uint64_t abandonment_floor = 0;
};

Foresight foresee(const Npu& npu, const BusCycles& data_cycles, const LayerSteps& layer) {
  Foresight f;
  ScheduleOutline& o = f.outline;
  o.bytes.input = layer.input_bytes();
  o.bytes.weight = layer.weight_bytes();
  if (!layer.output_on_chip) o.bytes.output = layer.block_bytes();
  if (layer.epilogue_off_chip) o.bytes.epilogue = layer.block_bytes();
  o.compute_cycles = layer.compute_cycles();
  // The first step streams once its loads have crossed the bus, one after the other; the last
  // block's write leaves D - 1 cycles after the streaming ends; the bus carries every byte.
  const StepRecord first = layer.record(StepIndex{}, 0);
  const StepRecord last = layer.record(layer.index_of(layer.steps - 1), layer.steps - 1);
  const std::uint64_t last_write = layer.output_on_chip ? 0 : last.block_bytes;
  const auto transfer = [&](std::uint64_t bytes) { return bytes == 0 ? 0 : npu.latency_cycles() + data_cycles(bytes); };
  const std::uint64_t streaming_done = transfer(first.input_load + first.weight_load) + o.compute_cycles;
  o.min_cycles = std::max(streaming_done + layer.pipeline_depth() - 1 + transfer(last_write), transfer(o.bytes.total()));
  f.bytes_before_last_write = o.bytes.total() - last_write;
  f.abandonment_floor = std::max(streaming_done, transfer(f.bytes_before_last_write));
  return f;
}

// Pending releases of one buffer, (time, bytes) in time order: a ring kept inline while short
// (it usually is: releases that can no longer matter are absorbed) that grows on the heap.
class ReleaseQueue {
 public:
  struct Release {
    std::uint64_t time, bytes;
  };
  ReleaseQueue() = default;
  ReleaseQueue(const ReleaseQueue&) = delete;
  ReleaseQueue& operator=(const ReleaseQueue&) = delete;

  bool empty() const { return size_ == 0; }
  std::size_t size() const { return size_; }
  const Release& front() const { return data_[head_]; }
  const Release& operator[](std::size_t k) const { return data_[(head_ + k) & mask_]; }
  void push(std::uint64_t time, std::uint64_t bytes) {
    if (size_ == mask_ + 1) grow();
    data_[(head_ + size_) & mask_] = {time, bytes};
    ++size_;
  }
  void pop() {
    head_ = (head_ + 1) & mask_;
    --size_;
  }
  void shift(std::uint64_t delta) {
    Release* data = data_;
    for (std::size_t k = 0, n = size_, head = head_, mask = mask_; k < n; ++k) data[(head + k) & mask].time += delta;
  }

 private:
  void grow() {
    auto bigger = std::make_unique<Release[]>(2 * (mask_ + 1));
    for (std::size_t k = 0; k < size_; ++k) bigger[k] = (*this)[k];
    heap_ = std::move(bigger);
    data_ = heap_.get();
    head_ = 0;
    mask_ = 2 * mask_ + 1;
  }
  std::array<Release, 16> inline_;
  std::unique_ptr<Release[]> heap_;
  Release* data_ = inline_.data();
  std::size_t head_ = 0, size_ = 0, mask_ = inline_.size() - 1;
};

// A buffer as the DMA engine sees it: bytes held, and the releases that steps already streamed
// will make. An unbounded one never runs out of room (every byte it will ever hold fits at once),
// so nothing about it is tracked.
struct Buffer {
  std::uint64_t capacity = 0;
  std::uint64_t held = 0;
  bool bounded = true;
  ReleaseQueue releases;

  // First cycle >= earliest at which `bytes` fit, consuming the releases it waits for; false
  // when even every known release leaves too little room.
  bool make_room(std::uint64_t bytes, std::uint64_t& earliest) {
    if (!bounded) return true;
    while (held + bytes > capacity) {
      if (releases.empty()) return false;
      const auto [time, freed] = releases.front();
      held -= freed;
      earliest = std::max(earliest, time);
      releases.pop();
    }
    held += bytes;
    return true;
  }
  void release(std::uint64_t time, std::uint64_t bytes) {
    if (bounded) releases.push(time, bytes);
  }
  // Releases at or before `time` no longer constrain anything that happens from `time` on.
  void absorb_until(std::uint64_t time) {
    while (!releases.empty() && releases.front().time <= time) {
      held -= releases.front().bytes;
      releases.pop();
    }
  }
};

// Storage that lives inline up to N elements and on the heap beyond, left uninitialised: its
// users fill what they read.
template <typename T, std::size_t N>
class SmallArray {
 public:
  explicit SmallArray(std::size_t size) {
    if (size > N) {
      heap_ = std::make_unique_for_overwrite<T[]>(size);
      data_ = heap_.get();
    }
  }
  SmallArray(const SmallArray&) = delete;
  SmallArray& operator=(const SmallArray&) = delete;
  T& operator[](std::size_t k) { return data_[k]; }
  const T& operator[](std::size_t k) const { return data_[k]; }
  T* data() { return data_; }

 private:
  std::array<T, N> inline_;
  std::unique_ptr<T[]> heap_;
  T* data_ = inline_.data();
};

// A snapshot of the walk's state (ScheduleWalk::snapshot): values kept inline while few (left
// uninitialised, as only what is written is read), on the heap beyond.
class Snapshot {
 public:
  Snapshot() = default;
  Snapshot(const Snapshot&) = delete;
  Snapshot& operator=(const Snapshot&) = delete;

  std::int64_t* resize(std::size_t size) {
    if (size > capacity_) {
      heap_ = std::make_unique_for_overwrite<std::int64_t[]>(2 * size);
      capacity_ = 2 * size;
      on_heap_ = true;
    }
    size_ = size;
    return data();
  }
  // Ends the snapshot at `end`, short of the size reserved.
  void end_at(const std::int64_t* end) { size_ = static_cast<std::size_t>(end - data()); }
  std::int64_t* data() { return on_heap_ ? heap_.get() : inline_.data(); }
  const std::int64_t* data() const { return on_heap_ ? heap_.get() : inline_.data(); }
  friend bool operator==(const Snapshot& a, const Snapshot& b) {
    return a.size_ == b.size_ && std::memcmp(a.data(), b.data(), a.size_ * sizeof(std::int64_t)) == 0;
  }

 private:
  std::array<std::int64_t, 192> inline_;
  std::unique_ptr<std::int64_t[]> heap_;
  std::size_t size_ = 0, capacity_ = inline_.size();
  bool on_heap_ = false;
};

enum class Failure { none, input_room, weight_room, output_room, input_tensor, abandoned };

class ScheduleWalk {
 public:
  ScheduleWalk(const Npu& npu, const LayerSteps& layer, bool jump, std::uint64_t give_up_above)
      : npu_(npu), data_cycles_(npu), layer_(layer), jump_(jump), give_up_above_(give_up_above),
        queue_depth_(npu.config().offchip.queue_depth), ring_(queue_depth_),
        slot_count_(std::bit_ceil(layer.max_prefetch + 3)), slots_(slot_count_) {
    const auto& c = npu.config();
    latency_ = npu.latency_cycles();
    pipeline_ = layer.pipeline_depth();
    input_.capacity = layer.input_capacity;
    weight_.capacity = c.buffers.weight_bytes;
    output_.capacity = c.buffers.output_bytes;
    // A resident operand that fits whole can never wait for room.
    input_.bounded = !layer.input_on_chip && !(layer.input_resident && layer.resident_input_bytes() <= input_.capacity);
    weight_.bounded = !(layer.weights_resident() && layer.all_weight_bytes() <= weight_.capacity);
    input_loads_skip_steps_ = layer.input_loads_skip_steps();
    records_read_next_ = layer.records_read_next();
    steps_ = layer.steps;
    input_prefetch_ = static_cast<std::int64_t>(layer.input_prefetch);
    weight_prefetch_ = static_cast<std::int64_t>(layer.weight_prefetch);
    loads_input_ = !layer.input_on_chip;
    output_on_chip_ = layer.output_on_chip;
    epilogue_off_chip_ = layer.epilogue_off_chip;
    input_loads_read_prev_ = layer.input_loads_read_prev();
    weight_loads_read_prev_ = layer.weight_loads_read_prev();
    std::fill_n(ring_.data(), queue_depth_, 0);
    // No step is numbered ~0; slot_of fills the completions of a slot when a step claims it.
    for (std::uint64_t k = 0; k < slot_count_; ++k) slots_[k].step = ~std::uint64_t{0};
  }

  ScheduleResult run() {
    ScheduleResult result;
    result.steps = layer_.steps;
    if (layer_.input_on_chip && layer_.input_tensor_bytes() > layer_.input_capacity)
      fail(Failure::input_tensor, layer_.input_tensor_bytes(), 0, layer_.input_capacity);
    else if (layer_.largest_accumulator_bytes() > output_.capacity)
      fail(Failure::output_room, layer_.largest_accumulator_bytes(), 0, output_.capacity);
    else if (give_up_above_ != ~std::uint64_t{0})
      plan_abandonment();
    if (ok_) {
      const std::int64_t first_slot = -static_cast<std::int64_t>(layer_.max_prefetch);
      for (std::int64_t slot = first_slot; slot < 0 && ok_; ++slot) requests_of_slot(slot);
    }
    if (ok_) walk_passes();
    if (ok_) requests_of_slot(static_cast<std::int64_t>(layer_.steps));
    if (!ok_) {
      result.infeasible_reason = reason();
      result.abandoned = failure_ == Failure::abandoned;
      return result;
    }
    result.feasible = true;
    result.walked_steps = walked_;
    result.cycles = std::max(last_stream_end_ + pipeline_ - 1, bus_free_);
    result.compute_cycles = counters_.compute_cycles;
    result.bytes = counters_.bytes;
    return result;
  }

 private:
  struct Counters {
    std::uint64_t compute_cycles = 0;
    TrafficBytes bytes;
  };
  // The completions of the loads made for a step before it streams.
  struct StepSlot {
    std::uint64_t step;  // less slot_origin_
    std::uint64_t input_done, weight_done;  // less slot_time_shift_
  };
  // Requests by kind, each with the bytes it last moved and their bus cycles: in a periodic
  // stretch the sizes repeat, and the division is skipped.
  enum Kind { write_kind, weight_kind, input_kind, epilogue_kind, kinds };

  void fail(Failure failure, std::uint64_t bytes, std::uint64_t step, std::uint64_t capacity) {
    if (ok_) {
      failure_ = failure;
      failed_bytes_ = bytes;
      failed_step_ = step;
      failed_capacity_ = capacity;
    }
    ok_ = false;
  }
  std::string reason() const {
    switch (failure_) {
      case Failure::input_room:
      case Failure::weight_room:
        return fmt::format("{} buffer: {} bytes for step {} do not fit {} bytes once the steps before its "
                           "prefetch window have released theirs",
                           failure_ == Failure::input_room ? "input" : "weight", failed_bytes_, failed_step_,
                           failed_capacity_);
      case Failure::output_room:
        return fmt::format("output buffer: {} bytes of accumulators for step {} exceed its {} bytes", failed_bytes_,
                           failed_step_, failed_capacity_);
      case Failure::input_tensor:
        return fmt::format("input buffer: the layer's input tensor of {} bytes does not fit the {} bytes left to it",
                           failed_bytes_, failed_capacity_);
      case Failure::abandoned:
        return "abandoned: slower than the cycles allowed";
      case Failure::none:
        break;
    }
    return {};
  }

  StepSlot& slot_of(std::uint64_t step) {
    const std::uint64_t key = step - slot_origin_;
    StepSlot& slot = slots_[key & (slot_count_ - 1)];
    if (slot.step != key) {
      slot.step = key;
      slot.input_done = slot.weight_done = 0 - slot_time_shift_;
    }
    return slot;
  }

  // One request in stream order; returns its completion.
  std::uint64_t issue(Kind kind, std::uint64_t bytes, std::uint64_t ready) {
    if (bytes != memo_bytes_[kind]) {
      memo_bytes_[kind] = bytes;
      memo_cycles_[kind] = data_cycles_(bytes);
    }
    const std::uint64_t slot_free = ring_[ring_pos_] + ring_shift_;
    const std::uint64_t t = std::max({last_issue_, ready, slot_free});
    const std::uint64_t start = std::max(t + latency_, bus_free_);
    const std::uint64_t done = start + memo_cycles_[kind];
    last_issue_ = t;
    bus_free_ = done;
    ring_[ring_pos_] = done - ring_shift_;
    if (++ring_pos_ == queue_depth_) ring_pos_ = 0;
    ++requests_;
    return done;
  }

  template <Kind kind>
  void load(std::uint64_t step) {
    constexpr bool input = kind == input_kind;
    // A step that loads nothing need not claim its slot: an unclaimed slot reads as one whose
    // loads completed long ago, and skipping the cursor's seek is what makes quiet stretches cheap.
    if (input ? input_loads_skip_steps_ : layer_.weights_resident()) {
      std::uint64_t& next_load = input ? next_input_load_ : next_weight_load_;
      if (step < next_load) return;
      // A step found to load still does: only past it is there more to find.
      if (step > next_load) {
        // The step after the operand's last load is found from its cursor by a carry, not by dividing.
        const StepCursor& last = input ? input_cursor_ : weight_cursor_;
        const StepIndex at = last.valid && step == last.step + 1 ? layer_.next_of(last.at) : layer_.index_of(step);
        next_load = input ? layer_.next_input_load(step, at) : layer_.next_weight_load(step, at);
        if (step < next_load) return;
      }
    }
    StepSlot& slot = slot_of(step);
    // Each operand's loads come in step order (but after a jump): a cursor of their own follows them.
    StepCursor& at = input ? input_cursor_ : weight_cursor_;
    layer_.seek_loaded(at, step, input ? input_loads_read_prev_ : weight_loads_read_prev_);
    const std::uint64_t bytes =
        input ? layer_.input_load(at.neighbour, at.at, step) : layer_.weight_load(at.neighbour, at.at, step);
    if (bytes == 0) return;
    Buffer& buffer = input ? input_ : weight_;
    std::uint64_t ready = 0;
    if (!buffer.make_room(bytes, ready))
      return fail(input ? Failure::input_room : Failure::weight_room, bytes, step, buffer.capacity);
    const std::uint64_t done = issue(kind, bytes, ready);
    (input ? slot.input_done : slot.weight_done) = done - slot_time_shift_;
    (input ? last_input_done_ : last_weight_done_) = done;
    (input ? counters_.bytes.input : counters_.bytes.weight) += bytes;
  }

  // The block that step `last_step_` closed is written (docs/memory-schedule.md §6), or with its
  // output on chip, only released, when its results are complete and its epilogue operand is in.
  void close_block() {
    std::uint64_t ready = last_stream_end_ + pipeline_ - 1;
    if (epilogue_off_chip_) ready = std::max(ready, epilogue_done_);
    if (output_on_chip_) return output_.release(ready, last_block_.accumulator_bytes);
    output_.release(issue(write_kind, last_block_.block_bytes, ready), last_block_.accumulator_bytes);
    counters_.bytes.output += last_block_.block_bytes;
  }

  // Slot s: the write of step s - 1, the weight load of step s + d_w, the input load of step
  // s + d_i (docs/memory-schedule.md §6); the epilogue load of slot s follows in stream().
  void requests_of_slot(std::int64_t slot) {
    if (slot >= 1 && last_block_.closed) close_block();
    const std::int64_t w = slot + weight_prefetch_;
    if (w >= 0 && static_cast<std::uint64_t>(w) < steps_) load<weight_kind>(static_cast<std::uint64_t>(w));
    const std::int64_t i = slot + input_prefetch_;
    if (ok_ && loads_input_ && i >= 0 && static_cast<std::uint64_t>(i) < steps_)
      load<input_kind>(static_cast<std::uint64_t>(i));
  }

  // Inlined into the step: called on its own it cost more than it does (measured with callgrind).
  [[gnu::always_inline]] void stream(std::uint64_t step) {
    const StepSlot& slot = slot_of(step);
    layer_.seek_streamed(stream_cursor_, step, records_read_next_);
    const StepRecord r = layer_.stream_record(stream_cursor_.at, stream_cursor_.neighbour, step);
    std::uint64_t start =
        std::max({last_stream_end_, slot.input_done + slot_time_shift_, slot.weight_done + slot_time_shift_});
    if (r.opens_block && !output_.make_room(r.accumulator_bytes, start))
      return fail(Failure::output_room, r.accumulator_bytes, step, output_.capacity);
    last_stream_end_ = start + r.stream_cycles;
    counters_.compute_cycles += r.stream_cycles;
    if (r.input_release) input_.release(last_stream_end_, r.input_release);
    if (r.weight_release) weight_.release(last_stream_end_, r.weight_release);
    if (r.opens_block && epilogue_off_chip_) {
      // Slot `step`, kind 3: the block's epilogue operand, once its accumulators exist.
      epilogue_done_ = issue(epilogue_kind, r.block_bytes, start);
      counters_.bytes.epilogue += r.block_bytes;
    }
    last_block_ = {r.accumulator_bytes, r.block_bytes, r.closes_block};
    last_step_ = step;
  }

  // With cycles to give up above, a tiling that cannot make it is abandoned before it is walked;
  // otherwise the walk watches how long the rest must take at least.
  void plan_abandonment() {
    const Foresight foresight = foresee(npu_, data_cycles_, layer_);
    if (foresight.abandonment_floor > give_up_above_) return fail(Failure::abandoned, 0, 0, 0);
    total_compute_ = foresight.outline.compute_cycles;
    bytes_before_last_write_ = foresight.bytes_before_last_write;
    // The rest of the streaming and of the bus bound the layer only if the walk cannot turn out
    // infeasible instead: a resident operand that may not fit must keep the walk's own verdict,
    // which the mapper reads (an infeasible resident tiling sends it to the streamed variant).
    foresee_ = !(layer_.input_resident && input_.bounded) && !(layer_.weights_resident() && weight_.bounded);
  }

  void step(std::uint64_t j) {
    ++walked_;
    requests_of_slot(static_cast<std::int64_t>(j));
    if (ok_) stream(j);
    watch_abandonment();
  }

  void watch_abandonment() {
    if (!ok_ || give_up_above_ == ~std::uint64_t{0}) return;
    // Every event from here on happens later, so the layer takes at least this long; with
    // foresight, the streaming left and the bytes left on the bus come on top. None of these
    // bounds falls from one step to the next, so watching after a jump is watching every step
    // jumped over.
    std::uint64_t at_least = std::max(last_stream_end_, bus_free_);
    if (foresee_)
      at_least = std::max(last_stream_end_ + (total_compute_ - counters_.compute_cycles),
                          bus_free_ + data_cycles_(bytes_before_last_write_ - counters_.bytes.total()));
    if (at_least > give_up_above_) fail(Failure::abandoned, 0, 0, 0);
  }

  // ---- Periodic stretches ----
  // Releases of a queue longer than this are not snapshotted (no jump is tried meanwhile).
  static constexpr std::size_t snapshot_queue_limit = 1024;

  // The state that decides everything to come, with times relative to the last stream end and
  // values that can no longer matter clamped, so that two moments a period apart compare equal.
  // After an iteration that made no request, the request side (last issue, bus, queue slots,
  // epilogue) stands still while the streaming moves on, and the next iterations make none
  // either: it is left out, and a jump leaves it where it is. Returns false when the state is
  // too large to compare.
  bool snapshot(Snapshot& into, bool requests_made) {
    input_.absorb_until(last_issue_);
    weight_.absorb_until(last_issue_);
    output_.absorb_until(last_stream_end_);
    std::size_t size = 3 + (requests_made ? 4 + queue_depth_ : 0) + layer_.input_prefetch + layer_.weight_prefetch;
    for (const Buffer* b : {&input_, &weight_, &output_}) {
      if (b->releases.size() > snapshot_queue_limit) return false;
      if (b->bounded) size += 2 + 2 * b->releases.size();
    }
    std::int64_t* out = into.resize(size);
    // Locals: the snapshot's stores could otherwise alias the members they read, which the
    // compiler would then read again after every store.
    const std::uint64_t now = last_stream_end_, last_issue = last_issue_;
    const auto rel = [now](std::uint64_t t) { return static_cast<std::int64_t>(t) - static_cast<std::int64_t>(now); };
    const RequestSide side = request_side(requests_made);
    *out++ = side.made;
    if (requests_made) {
      *out++ = side.last_issue;
      *out++ = side.bus;
      *out++ = rel(std::max(epilogue_done_, now));
      // Completions never fall in request order (each waits for the bus the one before frees), so
      // the requests still in flight after the last issue are the newest few, taken newest first:
      // the rest, which would all read as the last issue, are left out, and how many are in
      // flight (written ahead of them) says where. The ring is read as it is stored (less
      // ring_shift_), from its position down to 0, then from its end down to the position.
      std::int64_t* in_flight = out++;
      const std::uint64_t* ring = ring_.data();
      const std::uint64_t done_by = last_issue - ring_shift_, origin = now - ring_shift_;
      const std::int64_t* first = out;
      const auto newest_down_to = [&](std::uint64_t from, std::uint64_t to) {
        for (std::uint64_t k = from; k > to; --k) {
          if (ring[k - 1] <= done_by) return false;
          *out++ = static_cast<std::int64_t>(ring[k - 1] - origin);
        }
        return true;
      };
      if (newest_down_to(ring_pos_, 0)) newest_down_to(queue_depth_, ring_pos_);
      *in_flight = out - first;
    }
    // Past its prefetch distance, no load of an operand has been made for a step yet. Requests
    // complete in the order they issue, so once an operand's latest load is done by the last
    // stream end, every one of its loads ahead would read 0: a single 0 says so. Otherwise that
    // load is one of them and reads more, and a 1 comes first.
    const StepSlot* slots = slots_.data();
    const std::uint64_t mask = slot_count_ - 1, first_ahead = last_step_ + 1 - slot_origin_, shift = slot_time_shift_;
    const auto loads_ahead = [&](std::uint64_t prefetch, std::uint64_t StepSlot::*done, std::uint64_t last_done) {
      *out++ = last_done > now;
      if (last_done <= now) return;
      for (std::uint64_t key = first_ahead; key < first_ahead + prefetch; ++key) {
        const StepSlot& slot = slots[key & mask];
        *out++ = slot.step == key ? rel(std::max(slot.*done + shift, now)) : 0;
      }
    };
    loads_ahead(layer_.input_prefetch, &StepSlot::input_done, last_input_done_);
    loads_ahead(layer_.weight_prefetch, &StepSlot::weight_done, last_weight_done_);
    const auto buffer_state = [&](const Buffer& b) {
      if (!b.bounded) return;
      const std::size_t pending = b.releases.size();
      *out++ = static_cast<std::int64_t>(b.held);
      *out++ = static_cast<std::int64_t>(pending);
      for (std::size_t k = 0; k < pending; ++k) {
        const ReleaseQueue::Release release = b.releases[k];
        *out++ = rel(release.time);
        *out++ = static_cast<std::int64_t>(release.bytes);
      }
    };
    buffer_state(input_);
    buffer_state(weight_);
    buffer_state(output_);
    into.end_at(out);
    return true;
  }

  // A snapshot's first words: whether requests were made, and then the last issue and when the
  // bus can next carry data, relative to the last stream end.
  struct RequestSide {
    std::int64_t made = 0, last_issue = 0, bus = 0;
    friend bool operator==(const RequestSide&, const RequestSide&) = default;
  };
  RequestSide request_side(bool requests_made) const {
    if (!requests_made) return {};
    const std::int64_t now = static_cast<std::int64_t>(last_stream_end_);
    return {1, static_cast<std::int64_t>(last_issue_) - now,
            static_cast<std::int64_t>(std::max(bus_free_, last_issue_ + latency_)) - now};
  }

  // Moves the state `steps` steps and `delta` cycles on; the request side too if `requests`.
  void shift_all(std::uint64_t delta, std::uint64_t steps, bool requests) {
    if (requests) {
      ring_shift_ += delta;
      // The last request of the period repeats a period on: its issue and completion move with it.
      bus_free_ += delta;
      epilogue_done_ = std::max(epilogue_done_, last_stream_end_) + delta;
      last_issue_ += delta;
    }
    // The loads of the steps ahead repeat a period on: their slots stay, renumbered, with their
    // load completions moved on (the ones before the last stream end, which a step reads as
    // that, stay before it). Slots of steps already streamed now name steps before the last.
    slot_origin_ += steps;
    slot_time_shift_ += delta;
    last_input_done_ = std::max(last_input_done_, last_stream_end_) + delta;
    last_weight_done_ = std::max(last_weight_done_, last_stream_end_) + delta;
    last_stream_end_ += delta;
    last_step_ += steps;
    input_.releases.shift(delta);
    weight_.releases.shift(delta);
    output_.releases.shift(delta);
  }

  // One loop of the nest: its iterations, their stride in steps, the field of a step's index it
  // counts, which iterations are alike, and how many iterations each operand's prefetch reaches
  // past the current one.
  struct Loop {
    std::uint64_t count, stride;
    std::uint64_t StepIndex::*index;
    RegularRange regular;
    std::uint64_t input_lookahead = 0, weight_lookahead = 0;
  };
  Loop with_lookaheads(Loop loop) const {
    const auto lookahead = [&](std::uint64_t prefetch) { return loop.stride == 1 ? prefetch : ceil_div(prefetch, loop.stride); };
    loop.input_lookahead = lookahead(layer_.input_prefetch);
    loop.weight_lookahead = lookahead(layer_.weight_prefetch);
    return loop;
  }

  // What one iteration adds once the state repeats: stream cycles, counters, and whether the
  // request side moves too (snapshot()). Left uninitialised: only what is written is read.
  struct Period {
    std::uint64_t cycles, compute_cycles;
    std::uint64_t input, weight, output, epilogue;
    bool requests;
  };
  // The first jump of a loop's walk: after iteration `at`, decided by the records of the `reach`
  // steps from the walk's base (its iterations up to `at` and the loads their prefetch makes).
  struct FirstJump {
    std::uint64_t at, reach;
    Period period;
  };

  // Moves a cursor `skipped` iterations on in a loop whose steps are [first, end), by its `index`
  // field, when the cursor's step and neighbour stay inside: only that field tells them from where
  // they were. Any other cursor is found again, by dividing, when next used.
  static void move_cursor(StepCursor& c, std::uint64_t first, std::uint64_t end, std::uint64_t StepIndex::*index,
                          std::uint64_t skipped, std::uint64_t steps) {
    if (c.valid && c.step > first && c.step + steps + 1 < end) {
      c.at.*index += skipped;
      c.neighbour.*index += skipped;
      c.step += steps;
    } else {
      c.valid = false;
    }
  }

  // Walks `count` iterations of `stride` steps from `base`, each by `body`. Iterations in
  // `regular` are alike, so once two of them in a row leave the state equal up to a shift, the
  // ones up to where each operand's prefetch window would reach past the regular range, or for
  // weights, into a step that loads any, are jumped over.
  template <typename Body>
  void iterate(std::uint64_t base, const Loop& loop, Body&& body) {
    const auto [count, stride, index, regular, input_lookahead, weight_lookahead] = loop;
    // The state after a regular iteration i is compared with the one after iteration i - 1, which
    // need not be regular: iteration i + 1 repeats iteration i if their own records are alike,
    // and so are the loads their prefetch reaches, and the block written as iteration i starts
    // (the last one of iteration i - 1) is like any but the loop's last. A jump lands on the last
    // iteration L whose records and loads, up to its prefetch, stay within the regular ones, or
    // whose weight window, like all from iteration i on, loads no weights.
    if (count == 1) return body(base);  // a loop of one iteration (one chunk, one C-block) has nothing to jump
    const std::uint64_t first_compared = std::max<std::uint64_t>(regular.lo, 1);
    const std::uint64_t lookahead = std::max(input_lookahead, layer_.weights_resident() ? 0 : weight_lookahead);
    const bool can_jump =
        jump_ && regular.lo <= regular.hi && regular.hi < count && regular.hi >= first_compared + lookahead + 1;
    const std::uint64_t last_jumpable = can_jump ? regular.hi - lookahead : 0;
    const auto landing = [&](std::uint64_t i) {
      if (regular.hi >= weight_lookahead && regular.hi - weight_lookahead >= last_jumpable) return last_jumpable;
      const std::uint64_t regular_weights = regular.hi >= weight_lookahead ? regular.hi - weight_lookahead : 0;
      // Iteration L's weight window ends at step base + L * stride + stride - 1 + d_w.
      const std::uint64_t window_base = base + layer_.weight_prefetch;
      const std::uint64_t quiet_until = layer_.next_weight_load(window_base + i * stride) - window_base;
      return std::min(last_jumpable, std::max(regular_weights, quiet_until / stride - 1));
    };
    // The two snapshots of this level take turns: the one after the iteration before, and the
    // one being taken.
    std::array<Snapshot, 2>& snapshots = snapshots_[depth_++];
    const std::size_t level = depth_ - 1;
    first_jump_made_[level] = first_jump_made_[level + 1] = false;
    int current = 0;
    bool compared = false;  // the other one holds the state after the iteration before
    std::uint64_t previous_end = 0;
    Counters previous_counters;
    // In the innermost loop a snapshot costs about as much as an iteration, and most that are
    // taken while the state settles differ from the one before already in where the request side
    // stands: a snapshot is taken only when that agrees with the iteration before (the first
    // iteration compared, with where it stood as the loop began: a loop entered while the state
    // settles would waste its first snapshot). A repetition may then be found an iteration later.
    const bool screen = stride == 1;
    RequestSide last_side = screen ? request_side(requests_ != 0) : RequestSide{};
    std::uint64_t i = 0;
    if (replay_armed_[level]) {
      // The loop around jumped, and this walk starts as the one compared there did: it repeats
      // that walk up to its first jump, and then the jump, without snapshots.
      replay_armed_[level] = false;
      const FirstJump& replay = replays_[level];
      for (; i <= replay.at && ok_; ++i) body(base + i * stride);
      const std::uint64_t land = ok_ ? landing(replay.at) : 0;
      if (land > replay.at) {
        first_jumps_[level] = replay;
        first_jump_made_[level] = true;
        jump(loop, base, land - replay.at, replay.period);
        i = land + 1;
      }
    }
    for (; i < count && ok_; ++i) {
      const std::uint64_t requests_before = requests_;
      body(base + i * stride);
      if (i >= last_jumpable || i + 1 < first_compared || !ok_) continue;  // last_jumpable is 0 when the loop cannot jump
      const bool requests_made = requests_ != requests_before;
      if (screen) {
        const RequestSide side = request_side(requests_made);
        const bool alike = side == last_side;
        last_side = side;
        if (!alike) {
          compared = false;
          continue;
        }
      }
      // A snapshot that nothing before it can match and no later one is compared with is skipped.
      if (!compared && i + 1 >= last_jumpable) continue;
      Snapshot& now = snapshots[current];
      const bool taken = snapshot(now, requests_made);
      const std::uint64_t land = taken && compared && now == snapshots[1 - current] ? landing(i) : i;
      if (land > i) {
        const TrafficBytes& is = counters_.bytes;
        const TrafficBytes& was = previous_counters.bytes;
        const Period period{last_stream_end_ - previous_end,
                            counters_.compute_cycles - previous_counters.compute_cycles,
                            is.input - was.input,
                            is.weight - was.weight,
                            is.output - was.output,
                            is.epilogue - was.epilogue,
                            now.data()[0] != 0};
        if (!first_jump_made_[level]) {
          first_jumps_[level] = {i, (i + 1) * stride + layer_.max_prefetch, period};
          first_jump_made_[level] = true;
        }
        jump(loop, base, land - i, period);
        // Iteration land + 1 starts as iteration i did (the state after iteration i - 1 repeats a
        // period on), so the loop inside walks it as it walked iteration i, up to its first jump,
        // if the records that decided that jump, and the loads their prefetch made, are regular
        // ones there too. A period that made no request compared no request side.
        const FirstJump& inner = first_jumps_[level + 1];
        if (first_jump_made_[level + 1] && period.requests && land + 1 < count &&
            (land + 1) * stride + inner.reach <= (regular.hi + 1) * stride) {
          replays_[level + 1] = inner;
          replay_armed_[level + 1] = true;
        }
        i = land;
        compared = false;
        continue;
      }
      compared = taken;
      current = 1 - current;
      previous_end = last_stream_end_;
      previous_counters = counters_;
    }
    replay_armed_[level + 1] = false;
    --depth_;
  }

  // Jumps `skipped` iterations of `loop`, walked from `base`, each adding `period`.
  void jump(const Loop& loop, std::uint64_t base, std::uint64_t skipped, const Period& period) {
    shift_all(period.cycles * skipped, loop.stride * skipped, period.requests);
    for (StepCursor* c : {&stream_cursor_, &input_cursor_, &weight_cursor_})
      move_cursor(*c, base, base + loop.count * loop.stride, loop.index, skipped, loop.stride * skipped);
    counters_.compute_cycles += skipped * period.compute_cycles;
    TrafficBytes& bytes = counters_.bytes;
    bytes = {bytes.input + skipped * period.input, bytes.weight + skipped * period.weight,
             bytes.output + skipped * period.output, bytes.psum, bytes.epilogue + skipped * period.epilogue};
    watch_abandonment();
  }

  // Walks loops[level..] from step `base`. A loop of one iteration (one chunk, one C-block) has
  // nothing to jump, so walk_pass leaves it out.
  void walk_loops(const Loop* loops, std::size_t levels, std::uint64_t base) {
    if (levels == 0) return step(base);
    // The innermost loop walks its steps itself, a call less for every step.
    if (levels == 1) return iterate(base, *loops, [&](std::uint64_t b) { step(b); });
    iterate(base, *loops, [&](std::uint64_t b) { walk_loops(loops + 1, levels - 1, b); });
  }

  void walk_pass(std::uint64_t base, const PassPlan& p) {
    const std::uint64_t bands = layer_.bands, rgroups = layer_.rgroups;
    const Loop chunks{p.chunks, 1, &StepIndex::chunk, interior(p.chunks)};
    std::array<Loop, 4> nest;
    if (layer_.order() == LoopOrder::inputs_outer) {
      const std::uint64_t cstride = p.chunks, bstride = p.chunks * p.col_blocks, gstride = bstride * bands;
      nest = {Loop{rgroups, gstride, &StepIndex::rgroup, layer_.regular_rgroups},
              Loop{bands, bstride, &StepIndex::band, layer_.regular_bands},
              Loop{p.col_blocks, cstride, &StepIndex::cblock, interior(p.col_blocks)}, chunks};
    } else {
      const std::uint64_t bstride = p.chunks, gstride = p.chunks * bands, cstride = gstride * rgroups;
      nest = {Loop{p.col_blocks, cstride, &StepIndex::cblock, interior(p.col_blocks)},
              Loop{rgroups, gstride, &StepIndex::rgroup, layer_.regular_rgroups},
              Loop{bands, bstride, &StepIndex::band, layer_.regular_bands}, chunks};
    }
    std::array<Loop, 4> loops;
    std::size_t levels = 0;
    for (const Loop& loop : nest)
      if (loop.count > 1) loops[levels++] = with_lookaheads(loop);
    walk_loops(loops.data(), levels, base);
  }

  void walk_passes() {
    // Every full pass is alike, the first and last included: each starts and ends its own
    // operands. The remainder pass differs, and the prefetch window must not reach it.
    const std::uint64_t full = layer_.full_passes;
    const Loop passes{full, layer_.plans[0].steps, &StepIndex::pass, {0, full - 1}};
    iterate(0, full > 1 ? with_lookaheads(passes) : passes, [&](std::uint64_t b) { walk_pass(b, layer_.plans[0]); });
    if (ok_ && layer_.passes > full) walk_pass(full * layer_.plans[0].steps, layer_.plans[1]);
  }

  static constexpr std::size_t max_levels = 5;  // passes, and the four loops of a pass

  const Npu& npu_;
  BusCycles data_cycles_;
  const LayerSteps& layer_;
  bool jump_ = true;
  std::uint64_t give_up_above_ = ~std::uint64_t{0};
  std::uint64_t latency_ = 0, pipeline_ = 1;
  std::uint64_t queue_depth_ = 1;

  // Timing state.
  std::uint64_t last_issue_ = 0, bus_free_ = 0, last_stream_end_ = 0, epilogue_done_ = 0;
  // What abandonment foresees (plan_abandonment).
  bool foresee_ = false;
  std::uint64_t total_compute_ = 0, bytes_before_last_write_ = 0;
  std::uint64_t ring_pos_ = 0, last_step_ = 0, walked_ = 0, requests_ = 0;  // ring_pos_: request count mod Q
  SmallArray<std::uint64_t, 64> ring_;  // completions of the last Q requests, by request number mod Q
  // ring_ holds completions less ring_shift_, so that a jump moves every request in flight at
  // once. A jump would also lift the completions before the last issue to it; those are left
  // below it instead, where issue() and snapshot() read them the same (they compare each with
  // the last issue, which stays ahead of every such lift).
  std::uint64_t ring_shift_ = 0;
  // Steps from the one last streamed through the prefetch window, by step mod slot_count_ (a
  // power of two of at least the window plus 3).
  std::uint64_t slot_count_ = 1;
  SmallArray<StepSlot, 16> slots_;
  // Step slot_origin_ + j lives in slots_[j mod slot_count_], which names it by j; its load
  // completions are kept less slot_time_shift_ (modulo 2^64), which a jump moves on.
  std::uint64_t slot_origin_ = 0, slot_time_shift_ = 0;
  // The completion of each operand's latest load, moved on by a jump like the slots.
  std::uint64_t last_input_done_ = 0, last_weight_done_ = 0;
  // No step before these loads the operand (LayerSteps::next_input_load, next_weight_load).
  std::uint64_t next_input_load_ = 0, next_weight_load_ = 0;
  bool input_loads_skip_steps_ = false;
  // The layer's quantities every step reads, kept here to spare a load through layer_.
  std::uint64_t steps_ = 0;
  std::int64_t input_prefetch_ = 0, weight_prefetch_ = 0;
  bool loads_input_ = true, output_on_chip_ = false, epilogue_off_chip_ = false;
  // Which cursors keep their neighbour (LayerSteps::records_read_next, input_loads_read_prev,
  // weight_loads_read_prev).
  bool records_read_next_ = true, input_loads_read_prev_ = true, weight_loads_read_prev_ = true;
  Buffer input_, weight_, output_;
  // What close_block needs of the step last streamed.
  struct StreamedBlock {
    std::uint64_t accumulator_bytes = 0, block_bytes = 0;
    bool closed = false;
  } last_block_;
  StepCursor stream_cursor_, input_cursor_, weight_cursor_;
  std::array<std::uint64_t, kinds> memo_bytes_{}, memo_cycles_{};
  std::size_t depth_ = 0;  // nesting level of iterate()
  // Per level of iterate(): two snapshots, see iterate().
  std::array<std::array<Snapshot, 2>, max_levels> snapshots_;
  // Per level of iterate(): the first jump of its latest walk, and the one its next walk repeats.
  std::array<FirstJump, max_levels + 1> first_jumps_, replays_;
  std::array<bool, max_levels + 1> first_jump_made_{}, replay_armed_{};
  Counters counters_;
  bool ok_ = true;
  Failure failure_ = Failure::none;
  std::uint64_t failed_bytes_ = 0, failed_step_ = 0, failed_capacity_ = 0;
};

}  // namespace

ScheduleOutline outline_schedule(const Npu& npu, const GemmShape& shape, std::uint32_t batch,
                                 const BatchMapping& mapping, const Tiling& tiling, const Placement& placement) {
  return foresee(npu, BusCycles(npu), LayerSteps(npu, shape, batch, mapping, tiling, placement)).outline;
}

ScheduleResult evaluate_schedule(const Npu& npu, const GemmShape& shape, std::uint32_t batch,
                                 const BatchMapping& mapping, const Tiling& tiling,
                                 std::uint64_t give_up_above_cycles, const Placement& placement) {
  const LayerSteps layer(npu, shape, batch, mapping, tiling, placement);
  return ScheduleWalk(npu, layer, true, give_up_above_cycles).run();
}

ScheduleResult evaluate_schedule_step_by_step(const Npu& npu, const GemmShape& shape, std::uint32_t batch,
                                              const BatchMapping& mapping, const Tiling& tiling,
                                              const Placement& placement) {
  const LayerSteps layer(npu, shape, batch, mapping, tiling, placement);
  return ScheduleWalk(npu, layer, false, ~std::uint64_t{0}).run();
}

}  // namespace npusim::npu
