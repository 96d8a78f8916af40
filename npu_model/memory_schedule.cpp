#include "npu_model/memory_schedule.hpp"

#include <algorithm>
#include <array>
#include <bit>
#include <stdexcept>
#include <vector>

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

std::uint64_t ceil_div(std::uint64_t a, std::uint64_t b) { return (a + b - 1) / b; }

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
};

// The loop nest's position of one step.
struct StepIndex {
  std::uint64_t pass = 0, rgroup = 0, band = 0, cblock = 0, chunk = 0;
};

// What one step does (docs/memory-schedule.md §5).
struct StepRecord {
  std::uint64_t stream_cycles = 0;
  std::uint64_t input_load = 0, input_release = 0;
  std::uint64_t weight_load = 0, weight_release = 0;
  std::uint64_t accumulator_alloc = 0;  // taken when it starts streaming (chunk 0)
  std::uint64_t accumulator_bytes = 0;  // of its output block, freed when the block is written
  std::uint64_t write = 0;              // last chunk: the output block
  bool writes = false;
};

// A buffer as the DMA engine sees it: bytes held, and the releases (time, bytes) that steps
// already streamed will make, in time order.
struct BufferState {
  using Release = std::pair<std::uint64_t, std::uint64_t>;
  std::uint64_t capacity = 0;
  std::uint64_t held = 0;

  bool empty() const { return head_ == queue_.size(); }
  std::size_t size() const { return queue_.size() - head_; }
  const Release* begin() const { return queue_.data() + head_; }
  const Release* end() const { return queue_.data() + queue_.size(); }
  void push(std::uint64_t time, std::uint64_t bytes) { queue_.emplace_back(time, bytes); }
  void pop() {
    // Rewinding when empty keeps the storage from growing; otherwise the consumed prefix is
    // dropped once it dominates, so a buffer that is never drained stays bounded too.
    if (++head_ == queue_.size()) {
      queue_.clear();
      head_ = 0;
    } else if (head_ >= 64 && 2 * head_ >= queue_.size()) {
      queue_.erase(queue_.begin(), queue_.begin() + static_cast<std::ptrdiff_t>(head_));
      head_ = 0;
    }
  }

  // First cycle >= earliest at which `bytes` fit, consuming the releases it waits for; false
  // when even every known release leaves too little room.
  bool make_room(std::uint64_t bytes, std::uint64_t& earliest) {
    while (held + bytes > capacity) {
      if (empty()) return false;
      const Release& r = queue_[head_];
      held -= r.second;
      earliest = std::max(earliest, r.first);
      pop();
    }
    held += bytes;
    return true;
  }
  // Releases at or before `time` no longer constrain anything that happens from `time` on.
  void absorb_until(std::uint64_t time) {
    while (!empty() && queue_[head_].first <= time) {
      held -= queue_[head_].second;
      pop();
    }
  }
  void shift(std::uint64_t delta) {
    for (std::size_t k = head_; k < queue_.size(); ++k) queue_[k].first += delta;
  }
 private:
  // The pending releases are queue_[head_, end): a vector consumed from the front, which
  // unlike std::deque allocates nothing once warm (this is the walk's innermost loop).
  std::vector<Release> queue_;
  std::size_t head_ = 0;
};

class ScheduleWalk {
 public:
  ScheduleWalk(const Npu& npu, const GemmShape& shape, std::uint32_t batch, const BatchMapping& mapping,
               const Tiling& tiling)
      : npu_(npu), shape_(shape), batch_(batch), mapping_(mapping), tiling_(tiling),
        geometry_(npu.geometry(mapping.k)), fm_(feature_map_of(shape)) {
    const auto& c = npu.config();
    element_bytes_ = c.element_bytes;
    accumulator_bytes_ = c.accumulator_bytes;
    latency_ = npu.latency_cycles();
    queue_depth_ = c.offchip.queue_depth;
    pipeline_ = geometry_.pipeline_depth_cycles;
    input_.capacity = c.buffers.input_bytes;
    weight_.capacity = c.buffers.weight_bytes;
    output_.capacity = c.buffers.output_bytes;
    grid_rows_ = mapping.b_r;
    band_rows_ = tiling.band_rows;
    band_samples_ = tiling.band_samples;
    check_tiling();
    rgroups_ = ceil_div(grid_rows_, band_samples_);
    bands_ = ceil_div(fm_.out_height, band_rows_);
    const std::uint64_t packed = groups_per_pass(npu, shape, mapping);
    full_passes_ = shape.groups / packed;
    plans_[0] = plan(packed);
    if (shape.groups % packed) plans_[1] = plan(shape.groups % packed);
    passes_ = full_passes_ + (shape.groups % packed ? 1 : 0);
    steps_ = full_passes_ * plans_[0].steps + (passes_ > full_passes_ ? plans_[1].steps : 0);
    input_prefetch_ = tiling.input_prefetch;
    weight_prefetch_ = tiling.weight_prefetch;
    ring_.assign(queue_depth_, 0);
    // A power of two, so that a step's slot is a mask rather than a division; any size of at
    // least the prefetch window plus 3 keeps every record the walk still asks for.
    records_.resize(std::bit_ceil(std::max<std::uint64_t>(input_prefetch_, weight_prefetch_) + 3));
  }

  ScheduleResult run(bool jump, std::uint64_t give_up_above) {
    jump_ = jump;
    give_up_above_ = give_up_above;
    ScheduleResult result;
    result.steps = steps_;
    const std::int64_t first_slot = -static_cast<std::int64_t>(std::max(input_prefetch_, weight_prefetch_));
    for (std::int64_t slot = first_slot; slot < 0 && ok_; ++slot) requests_of_slot(slot);
    if (ok_) walk_passes();
    if (ok_) requests_of_slot(static_cast<std::int64_t>(steps_));
    if (!ok_) {
      result.infeasible_reason = reason_;
      result.abandoned = abandoned_;
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
    p.block_diagonal = mapping_.b_p * groups > 1;
    p.cols = mapping_.b_p * groups * shape_.cols;
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
    p.steps = rgroups_ * bands_ * p.col_blocks * p.chunks;
    p.depth_tiles = ceil_div(depth_of(p, 0), geometry_.tile_depth);
    p.last_depth_tiles = ceil_div(depth_of(p, p.chunks - 1), geometry_.tile_depth);
    p.col_tiles = ceil_div(block_cols(p, 0), geometry_.tile_cols);
    p.last_col_tiles = ceil_div(block_cols(p, p.col_blocks - 1), geometry_.tile_cols);
    return p;
  }

  const PassPlan& plan_of(std::uint64_t pass) const { return pass < full_passes_ ? plans_[0] : plans_[1]; }

  StepIndex index_of(std::uint64_t step) const {
    StepIndex i;
    i.pass = std::min(step / plans_[0].steps, full_passes_);
    std::uint64_t rest = step - i.pass * plans_[0].steps;
    const PassPlan& p = plan_of(i.pass);
    i.chunk = rest % p.chunks;
    rest /= p.chunks;
    if (tiling_.order == LoopOrder::inputs_outer) {
      i.cblock = rest % p.col_blocks;
      rest /= p.col_blocks;
      i.band = rest % bands_;
      i.rgroup = rest / bands_;
    } else {
      i.band = rest % bands_;
      rest /= bands_;
      i.rgroup = rest % rgroups_;
      i.cblock = rest / rgroups_;
    }
    return i;
  }

  // Real samples of an R-block's grid rows.
  std::uint64_t samples_of(const StepIndex& s) const {
    // Grid rows hold B_P samples each, the last one the rest: rows [r0, r1) hold the samples
    // from r0 * B_P up to min(B, r1 * B_P).
    const std::uint64_t r0 = s.rgroup * band_samples_;
    const std::uint64_t r1 = std::min<std::uint64_t>(grid_rows_, r0 + band_samples_);
    return std::min<std::uint64_t>(batch_, r1 * mapping_.b_p) - r0 * mapping_.b_p;
  }
  std::uint64_t grid_rows_of(const StepIndex& s) const {
    return std::min<std::uint64_t>(grid_rows_, (s.rgroup + 1) * band_samples_) - s.rgroup * band_samples_;
  }
  std::uint64_t out_rows_of(const StepIndex& s) const {
    return std::min<std::uint64_t>(fm_.out_height, (s.band + 1) * band_rows_) - s.band * band_rows_;
  }
  RowRange rows_needed(const StepIndex& s) const {
    const std::int64_t y0 = static_cast<std::int64_t>(s.band * band_rows_);
    const std::int64_t y1 = y0 + static_cast<std::int64_t>(out_rows_of(s)) - 1;
    const std::int64_t sh = static_cast<std::int64_t>(fm_.stride_height), ph = static_cast<std::int64_t>(fm_.padding_height);
    return {std::max<std::int64_t>(0, y0 * sh - ph),
            std::min<std::int64_t>(static_cast<std::int64_t>(fm_.height) - 1,
                                   y1 * sh - ph + static_cast<std::int64_t>(fm_.kernel_height) - 1)};
  }
  std::uint64_t chunk_channels(const PassPlan& p, std::uint64_t chunk) const {
    return chunk + 1 < p.chunks ? p.chunk_channels : p.channels - (p.chunks - 1) * p.chunk_channels;
  }
  std::uint64_t line_bytes(const StepIndex& s) const {
    return fm_.width * chunk_channels(plan_of(s.pass), s.chunk) * element_bytes_;
  }
  std::uint64_t block_cols(const PassPlan& p, std::uint64_t cblock) const {
    return std::min(p.col_block, p.cols - cblock * p.col_block);
  }
  std::uint64_t depth_of(const PassPlan& p, std::uint64_t chunk) const {
    if (p.block_diagonal) return mapping_.b_p * p.groups * shape_.depth;
    return fm_.kernel_height * fm_.kernel_width * chunk_channels(p, chunk);
  }
  std::uint64_t weight_block_bytes(const StepIndex& s) const {
    const PassPlan& p = plan_of(s.pass);
    if (p.block_diagonal) return p.groups * shape_.depth * shape_.cols * element_bytes_;
    return depth_of(p, s.chunk) * block_cols(p, s.cblock) * element_bytes_;
  }
  bool same_lines_owner(const StepIndex& a, const StepIndex& b) const {
    return a.pass == b.pass && a.chunk == b.chunk && a.rgroup == b.rgroup;
  }
  bool same_weight_block(const StepIndex& a, const StepIndex& b) const {
    return a.pass == b.pass && a.chunk == b.chunk && a.cblock == b.cblock;
  }
  // Each step's record is asked for by its weight load, its input load and its streaming.
  const StepRecord& record(std::uint64_t step) {
    auto& slot = records_[step & (records_.size() - 1)];
    if (!slot.first || slot.second.first != step) {
      slot.second = {step, compute_record(step)};
      slot.first = true;
    }
    return slot.second.second;
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
      if (++i.band < bands_) return i;
      i.band = 0;
      if (++i.rgroup < rgroups_) return i;
      i.rgroup = 0;
    } else {
      if (++i.band < bands_) return i;
      i.band = 0;
      if (++i.rgroup < rgroups_) return i;
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
      i.band = bands_ - 1;
      i.rgroup = rgroups_ - 1;
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
      i.band = bands_ - 1;
      --i.rgroup;
    } else {
      if (i.band > 0) {
        --i.band;
        return i;
      }
      i.band = bands_ - 1;
      if (i.rgroup > 0) {
        --i.rgroup;
        return i;
      }
      i.rgroup = rgroups_ - 1;
      --i.cblock;
    }
    return i;
  }

  // Records are computed in step order except after a jump, so the index of the step last
  // computed usually gives this one's by a carry.
  StepIndex index_for_record(std::uint64_t step) {
    last_indexed_ = last_indexed_valid_ && step == last_indexed_step_ + 1 ? next_of(last_indexed_) : index_of(step);
    last_indexed_step_ = step;
    last_indexed_valid_ = true;
    return last_indexed_;
  }

  StepRecord compute_record(std::uint64_t step) {
    const StepIndex s = index_for_record(step);
    const PassPlan& p = plan_of(s.pass);
    const bool has_prev = step > 0, has_next = step + 1 < steps_;
    const StepIndex prev = has_prev ? prev_of(s) : StepIndex{};
    const StepIndex next = has_next ? next_of(s) : StepIndex{};
    StepRecord r;
    const std::uint64_t cols = block_cols(p, s.cblock);
    const std::uint64_t out_rows = out_rows_of(s);
    const std::uint64_t im2col_rows = grid_rows_of(s) * out_rows * fm_.out_width;
    r.stream_cycles = im2col_rows * (s.chunk + 1 < p.chunks ? p.depth_tiles : p.last_depth_tiles) *
                      (s.cblock + 1 < p.col_blocks ? p.col_tiles : p.last_col_tiles);
    const bool first_visit = s.rgroup == 0 && s.band == 0;
    const RowRange rows = rows_needed(s);
    if (tiling_.input_resident) {
      if (s.cblock == 0) {
        RowRange fresh = rows;
        if (s.band > 0) {
          StepIndex above = s;
          above.band -= 1;
          fresh.lo = std::max(fresh.lo, rows_needed(above).hi + 1);
        }
        r.input_load = fresh.count() * samples_of(s) * line_bytes(s);
      }
    } else {
      // Lines of `s` that a neighbour does not hold, in bytes.
      const std::uint64_t per_line = samples_of(s) * line_bytes(s);
      const auto beyond = [&](bool has, const StepIndex& other) {
        const std::uint64_t lines = has && same_lines_owner(s, other) ? rows.minus(rows_needed(other)) : rows.count();
        return lines * per_line;
      };
      r.input_load = beyond(has_prev, prev);
      r.input_release = beyond(has_next, next);
    }
    if (tiling_.weights_resident) {
      if (first_visit) r.weight_load = weight_block_bytes(s);
    } else {
      const bool loads = !has_prev || !same_weight_block(s, prev);
      const bool releases = !has_next || !same_weight_block(s, next);
      if (loads || releases) {
        const std::uint64_t weights = weight_block_bytes(s);
        if (loads) r.weight_load = weights;
        if (releases) r.weight_release = weights;
      }
    }
    r.accumulator_bytes = im2col_rows * cols * accumulator_bytes_;
    if (s.chunk == 0) r.accumulator_alloc = r.accumulator_bytes;
    if (s.chunk + 1 == p.chunks) {
      r.writes = true;
      const std::uint64_t real_cols = p.block_diagonal ? p.groups * shape_.cols : cols;
      const std::uint64_t per_sample_rows = out_rows * fm_.out_width;
      r.write = (p.block_diagonal ? per_sample_rows * samples_of(s) : im2col_rows) * real_cols * element_bytes_;
    }
    return r;
  }

  // One request in stream order; returns its completion.
  std::uint64_t issue(std::uint64_t bytes, std::uint64_t ready) {
    const std::uint64_t slot_free = ring_[ring_pos_];
    const std::uint64_t t = std::max({last_issue_, ready, slot_free});
    const std::uint64_t start = std::max(t + latency_, bus_free_);
    const std::uint64_t done = start + npu_.data_cycles(bytes);
    last_issue_ = t;
    bus_free_ = done;
    ring_[ring_pos_] = done;
    if (++ring_pos_ == queue_depth_) ring_pos_ = 0;
    return done;
  }

  void fail(std::string reason) {
    if (ok_) reason_ = std::move(reason);
    ok_ = false;
  }

  // Completions of the loads made for a step that has not streamed yet.
  struct PendingLoads {
    std::uint64_t step = 0, input_done = 0, weight_done = 0;
  };
  PendingLoads& pending(std::uint64_t step) {
    for (auto& p : pending_)
      if (p.step == step) return p;
    pending_.push_back({step, 0, 0});
    return pending_.back();
  }

  void load(BufferState& buffer, std::uint64_t bytes, std::uint64_t step, bool input, const char* name) {
    if (bytes == 0) return;
    std::uint64_t ready = 0;
    if (!buffer.make_room(bytes, ready))
      return fail(fmt::format("{} buffer: {} bytes for step {} do not fit {} bytes once the steps before its "
                              "prefetch window have released theirs",
                              name, bytes, step, buffer.capacity));
    const std::uint64_t done = issue(bytes, ready);
    (input ? pending(step).input_done : pending(step).weight_done) = done;
    (input ? counters_.bytes.input : counters_.bytes.weight) += bytes;
  }

  // Slot s: the write of step s - 1, the weight load of step s + d_w, the input load of step
  // s + d_i (docs/memory-schedule.md §6).
  void requests_of_slot(std::int64_t slot) {
    if (slot >= 1) {
      if (last_record_.writes) {
        const std::uint64_t done = issue(last_record_.write, last_stream_end_ + pipeline_ - 1);
        output_.push(done, last_record_.accumulator_bytes);
        counters_.bytes.output += last_record_.write;
      }
    }
    const std::int64_t w = slot + static_cast<std::int64_t>(weight_prefetch_);
    if (w >= 0 && static_cast<std::uint64_t>(w) < steps_) {
      const std::uint64_t step = static_cast<std::uint64_t>(w);
      load(weight_, record(step).weight_load, step, false, "weight");
    }
    const std::int64_t i = slot + static_cast<std::int64_t>(input_prefetch_);
    if (ok_ && i >= 0 && static_cast<std::uint64_t>(i) < steps_) {
      const std::uint64_t step = static_cast<std::uint64_t>(i);
      load(input_, record(step).input_load, step, true, "input");
    }
  }

  void stream(std::uint64_t step) {
    const StepRecord r = record(step);
    std::uint64_t start = last_stream_end_;
    for (auto it = pending_.begin(); it != pending_.end(); ++it)
      if (it->step == step) {
        start = std::max({start, it->input_done, it->weight_done});
        // Order does not matter: lookups are by step and snapshot() sorts.
        *it = pending_.back();
        pending_.pop_back();
        break;
      }
    if (r.accumulator_alloc && !output_.make_room(r.accumulator_alloc, start))
      return fail(fmt::format("output buffer: {} bytes of accumulators for step {} exceed its {} bytes",
                              r.accumulator_alloc, step, output_.capacity));
    last_stream_end_ = start + r.stream_cycles;
    counters_.compute_cycles += r.stream_cycles;
    if (r.input_release) input_.push(last_stream_end_, r.input_release);
    if (r.weight_release) weight_.push(last_stream_end_, r.weight_release);
    last_record_ = r;
    last_step_ = step;
  }

  void step(std::uint64_t j) {
    ++walked_;
    requests_of_slot(static_cast<std::int64_t>(j));
    if (ok_) stream(j);
    // Every event from here on happens later, so the layer takes at least this long.
    if (ok_ && std::max(last_stream_end_, bus_free_) > give_up_above_) {
      abandoned_ = true;
      fail("abandoned: slower than the cycles allowed");
    }
  }

  // ---- Periodic stretches ----
  // The state that decides everything to come, with times relative to the last stream end and
  // values that can no longer matter clamped, so that two moments a period apart compare equal.
  // Written into `v`, whose storage is reused: snapshots are taken at every interior iteration.
  void snapshot(std::vector<std::int64_t>& v) {
    input_.absorb_until(last_issue_);
    weight_.absorb_until(last_issue_);
    output_.absorb_until(last_stream_end_);
    const auto rel = [&](std::uint64_t t) { return static_cast<std::int64_t>(t) - static_cast<std::int64_t>(last_stream_end_); };
    std::sort(pending_.begin(), pending_.end(), [](const PendingLoads& a, const PendingLoads& b) { return a.step < b.step; });
    // Sized up front and filled through a pointer: this runs at every interior iteration.
    v.resize(2 + queue_depth_ + 3 * pending_.size() + 6 + 2 * (input_.size() + weight_.size() + output_.size()));
    std::int64_t* out = v.data();
    *out++ = rel(last_issue_);
    *out++ = rel(std::max(bus_free_, last_issue_ + latency_));
    for (std::uint64_t k = ring_pos_; k < queue_depth_; ++k) *out++ = rel(std::max(ring_[k], last_issue_));
    for (std::uint64_t k = 0; k < ring_pos_; ++k) *out++ = rel(std::max(ring_[k], last_issue_));
    for (const auto& p : pending_) {
      *out++ = static_cast<std::int64_t>(p.step - last_step_);
      *out++ = rel(std::max(p.input_done, last_stream_end_));
      *out++ = rel(std::max(p.weight_done, last_stream_end_));
    }
    for (const BufferState* b : {&input_, &weight_, &output_}) {
      *out++ = static_cast<std::int64_t>(b->held);
      *out++ = static_cast<std::int64_t>(b->size());
      for (const auto& [t, bytes] : *b) {
        *out++ = rel(t);
        *out++ = static_cast<std::int64_t>(bytes);
      }
    }
  }

  // Moves the state `steps` steps and `delta` cycles on.
  void shift_all(std::uint64_t delta, std::uint64_t steps) {
    for (auto& c : ring_) c = std::max(c, last_issue_) + delta;
    for (auto& p : pending_) {
      p.step += steps;
      p.input_done = std::max(p.input_done, last_stream_end_) + delta;
      p.weight_done = std::max(p.weight_done, last_stream_end_) + delta;
    }
    bus_free_ = std::max(bus_free_, last_issue_ + latency_) + delta;
    last_issue_ += delta;
    last_stream_end_ += delta;
    last_step_ += steps;
    input_.shift(delta);
    weight_.shift(delta);
    output_.shift(delta);
  }

  // Walks `count` iterations of `stride` steps from `base`, each by `body`. Interior iterations
  // (whose neighbours within the prefetch window are interior too) are identical, so once two of
  // them leave the state equal up to a shift, the rest are jumped over.
  template <typename Body>
  void iterate(std::uint64_t base, std::uint64_t count, std::uint64_t stride, Body&& body) {
    const std::uint64_t reach = ceil_div(std::max(input_prefetch_, weight_prefetch_) + 2, stride);
    const std::uint64_t last_jumpable = count > reach + 3 ? count - reach - 3 : 0;
    // Each nesting level keeps its previous snapshot in previous_[level], reused across calls;
    // the vector is indexed afresh after `body` since inner levels may grow previous_.
    const std::size_t level = depth_++;
    if (level == previous_.size()) previous_.emplace_back();
    previous_[level].clear();
    std::uint64_t previous_end = 0;
    Counters previous_counters;
    for (std::uint64_t i = 0; i < count && ok_; ++i) {
      body(base + i * stride);
      if (!jump_ || i < 2 || i >= last_jumpable || !ok_) continue;
      snapshot(scratch_);
      std::vector<std::int64_t>& previous = previous_[level];
      if (!previous.empty() && scratch_ == previous) {
        const std::uint64_t delta = last_stream_end_ - previous_end;
        const std::uint64_t skipped = last_jumpable - i;
        shift_all(delta * skipped, stride * skipped);
        counters_.compute_cycles += skipped * (counters_.compute_cycles - previous_counters.compute_cycles);
        const TrafficBytes per{counters_.bytes.input - previous_counters.bytes.input,
                               counters_.bytes.weight - previous_counters.bytes.weight,
                               counters_.bytes.output - previous_counters.bytes.output, 0};
        counters_.bytes.input += skipped * per.input;
        counters_.bytes.weight += skipped * per.weight;
        counters_.bytes.output += skipped * per.output;
        i = last_jumpable;
        previous.clear();
        continue;
      }
      previous.swap(scratch_);
      previous_end = last_stream_end_;
      previous_counters = counters_;
    }
    --depth_;
  }

  void walk_pass(std::uint64_t base, const PassPlan& p) {
    const std::uint64_t chunk_stride = 1;
    const auto chunks = [&](std::uint64_t b) { iterate(b, p.chunks, chunk_stride, [&](std::uint64_t j) { step(j); }); };
    if (tiling_.order == LoopOrder::inputs_outer) {
      const std::uint64_t cstride = p.chunks, bstride = p.chunks * p.col_blocks, gstride = bstride * bands_;
      const auto cblocks = [&](std::uint64_t b) { iterate(b, p.col_blocks, cstride, chunks); };
      const auto bands = [&](std::uint64_t b) { iterate(b, bands_, bstride, cblocks); };
      iterate(base, rgroups_, gstride, bands);
    } else {
      const std::uint64_t bstride = p.chunks, gstride = p.chunks * bands_, cstride = gstride * rgroups_;
      const auto bands = [&](std::uint64_t b) { iterate(b, bands_, bstride, chunks); };
      const auto rgroups = [&](std::uint64_t b) { iterate(b, rgroups_, gstride, bands); };
      iterate(base, p.col_blocks, cstride, rgroups);
    }
  }

  void walk_passes() {
    iterate(0, full_passes_, plans_[0].steps, [&](std::uint64_t b) { walk_pass(b, plans_[0]); });
    if (ok_ && passes_ > full_passes_) walk_pass(full_passes_ * plans_[0].steps, plans_[1]);
  }

  const Npu& npu_;
  GemmShape shape_;
  std::uint32_t batch_;
  BatchMapping mapping_;
  Tiling tiling_;
  const StackGeometry& geometry_;
  FeatureMap fm_;
  std::uint64_t element_bytes_ = 1, accumulator_bytes_ = 4, latency_ = 0, queue_depth_ = 1, pipeline_ = 1;
  std::uint64_t grid_rows_ = 1, band_rows_ = 1, band_samples_ = 1, rgroups_ = 1, bands_ = 1;
  std::uint64_t full_passes_ = 0, passes_ = 0, steps_ = 0;
  std::array<PassPlan, 2> plans_{};
  std::uint64_t input_prefetch_ = 0, weight_prefetch_ = 0;
  bool jump_ = true;
  std::uint64_t give_up_above_ = ~std::uint64_t{0};
  bool abandoned_ = false;

  // Timing state.
  std::uint64_t last_issue_ = 0, bus_free_ = 0, last_stream_end_ = 0;
  std::uint64_t ring_pos_ = 0, last_step_ = 0, walked_ = 0;  // ring_pos_: request count mod Q
  std::vector<std::uint64_t> ring_;  // completions of the last Q requests, by request number mod Q
  std::vector<PendingLoads> pending_;
  std::vector<std::pair<bool, std::pair<std::uint64_t, StepRecord>>> records_;
  BufferState input_, weight_, output_;
  StepRecord last_record_;
  StepIndex last_indexed_;  // index of step last_indexed_step_, when last_indexed_valid_
  std::uint64_t last_indexed_step_ = 0;
  bool last_indexed_valid_ = false;
  std::size_t depth_ = 0;                             // nesting level of iterate()
  std::vector<std::vector<std::int64_t>> previous_;  // per level: see iterate()
  std::vector<std::int64_t> scratch_;
  Counters counters_;
  bool ok_ = true;
  std::string reason_;
};

}  // namespace

ScheduleResult evaluate_schedule(const Npu& npu, const GemmShape& shape, std::uint32_t batch,
                                 const BatchMapping& mapping, const Tiling& tiling,
                                 std::uint64_t give_up_above_cycles, [[maybe_unused]] const Placement& placement) {
  return ScheduleWalk(npu, shape, batch, mapping, tiling).run(true, give_up_above_cycles);
}

ScheduleResult evaluate_schedule_step_by_step(const Npu& npu, const GemmShape& shape, std::uint32_t batch,
                                              const BatchMapping& mapping, const Tiling& tiling,
                                              [[maybe_unused]] const Placement& placement) {
  return ScheduleWalk(npu, shape, batch, mapping, tiling).run(false, ~std::uint64_t{0});
}

}  // namespace npusim::npu
