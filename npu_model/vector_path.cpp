#include "npu_model/vector_path.hpp"

#include <algorithm>
#include <stdexcept>
#include <vector>

#include <fmt/format.h>

#include "npu_model/energy.hpp"

namespace npusim::npu {
namespace {

std::uint64_t ceil_div(std::uint64_t a, std::uint64_t b) { return (a + b - 1) / b; }

// The layer's shape as the chunked schedule sees it (docs/vector-path.md §1-§2).
struct VectorGeometry {
  std::int64_t height = 1, width = 1, channels = 1;
  std::int64_t kernel_height = 1, stride_height = 1, padding_height = 0;
  std::uint64_t out_height = 1, out_width = 1;
  std::uint64_t taps = 1;      // ops per output element
  std::uint64_t operands = 1;  // input tensors
  std::uint64_t element_bytes = 1;

  // Input rows output row y reads, clipped to the map: empty (last < first) when only padding.
  std::int64_t first_row(std::uint64_t y) const {
    return std::max<std::int64_t>(0, static_cast<std::int64_t>(y) * stride_height - padding_height);
  }
  std::int64_t last_row(std::uint64_t y) const {
    return std::min<std::int64_t>(height - 1, static_cast<std::int64_t>(y) * stride_height - padding_height +
                                                  kernel_height - 1);
  }
  std::uint64_t rows_needed(std::uint64_t y) const {
    return static_cast<std::uint64_t>(std::max<std::int64_t>(0, last_row(y) - first_row(y) + 1));
  }
  // Rows output rows y and y + 1 both read.
  std::uint64_t rows_shared(std::uint64_t y) const {
    if (rows_needed(y) == 0 || rows_needed(y + 1) == 0) return 0;
    return static_cast<std::uint64_t>(std::max<std::int64_t>(0, last_row(y) - first_row(y + 1) + 1));
  }
  // Rows the chunk of output row y loads: those the previous row of its run did not read.
  std::uint64_t rows_loaded(std::uint64_t y) const {
    return y == 0 ? rows_needed(0) : rows_needed(y) - rows_shared(y - 1);
  }
  // Rows the chunk of output row y frees when it ends: those the next row of its run does not read.
  std::uint64_t rows_released(std::uint64_t y) const {
    return y + 1 == out_height ? rows_needed(y) : rows_needed(y) - rows_shared(y);
  }
  std::uint64_t line_bytes(std::uint64_t channels_in_block) const {
    return operands * static_cast<std::uint64_t>(width) * channels_in_block * element_bytes;
  }
  std::uint64_t result_bytes(std::uint64_t channels_in_block) const {
    return out_width * channels_in_block * element_bytes;
  }
};

std::uint64_t output_extent(std::uint64_t in, std::uint64_t kernel, std::uint64_t stride, std::uint64_t padding,
                            const char* axis) {
  if (kernel == 0 || stride == 0 || kernel > in + 2 * padding)
    throw std::invalid_argument(fmt::format("vector work: kernel {} = {} with stride {} does not fit the padded {} {}",
                                            axis, kernel, stride, axis, in + 2 * padding));
  return (in + 2 * padding - kernel) / stride + 1;
}

VectorGeometry geometry_of(const Npu& npu, const VectorWork& work) {
  if (work.kind == VectorKind::unshaped)
    throw std::invalid_argument("vector work with elements needs a kind and a shape (docs/vector-path.md §1)");
  if (work.height == 0 || work.width == 0 || work.channels == 0)
    throw std::invalid_argument(fmt::format("vector work: H, W, C = {}, {}, {} must be at least 1", work.height,
                                            work.width, work.channels));
  VectorGeometry g;
  g.height = work.height;
  g.width = work.width;
  g.channels = work.channels;
  g.element_bytes = npu.config().element_bytes;
  if (work.kind == VectorKind::add) {
    g.operands = 2;
    g.out_height = work.height;
    g.out_width = work.width;
    return g;
  }
  g.kernel_height = work.kernel_height;
  g.stride_height = work.stride_height;
  g.padding_height = work.padding_height;
  g.out_height = output_extent(work.height, work.kernel_height, work.stride_height, work.padding_height, "height");
  g.out_width = output_extent(work.width, work.kernel_width, work.stride_width, work.padding_width, "width");
  g.taps = std::uint64_t{work.kernel_height} * work.kernel_width;
  return g;
}

// Capacities and the chunk sequence of one (work, batch, placement, channel block).
struct ChunkPlan {
  VectorGeometry geometry;
  std::uint64_t batch = 1;
  std::uint64_t channel_block = 1, last_block = 1, blocks = 1;
  std::uint64_t per_sample = 1;  // S = blocks * H'
  std::uint64_t chunks = 1;
  std::uint64_t input_capacity = 0;  // I - rho
  std::uint64_t output_capacity = 0;
  bool input_on_chip = false, output_on_chip = false;

  std::uint64_t block_channels(std::uint64_t chunk) const {
    return (chunk % per_sample) / geometry.out_height + 1 == blocks ? last_block : channel_block;
  }
  std::uint64_t row_of(std::uint64_t chunk) const { return chunk % geometry.out_height; }
  std::uint64_t needed_bytes(std::uint64_t chunk) const {
    return geometry.rows_needed(row_of(chunk)) * geometry.line_bytes(block_channels(chunk));
  }
  std::uint64_t load_bytes(std::uint64_t chunk) const {
    if (input_on_chip) return 0;
    return geometry.rows_loaded(row_of(chunk)) * geometry.line_bytes(block_channels(chunk));
  }
  std::uint64_t release_bytes(std::uint64_t chunk) const {
    if (input_on_chip) return 0;
    return geometry.rows_released(row_of(chunk)) * geometry.line_bytes(block_channels(chunk));
  }
  std::uint64_t result_bytes(std::uint64_t chunk) const { return geometry.result_bytes(block_channels(chunk)); }
};

std::uint64_t input_capacity(const Npu& npu, const Placement& placement) {
  const std::uint64_t input = npu.config().buffers.input_bytes;
  return input > placement.reserved_input_bytes ? input - placement.reserved_input_bytes : 0;
}

// Rows of the largest union of two consecutive chunks' needs: neighbours in a run, or the last
// row of one run followed by the first of the next.
std::uint64_t rows_of_two_chunks(const VectorGeometry& g) {
  std::uint64_t most = g.rows_needed(g.out_height - 1) + g.rows_needed(0);
  for (std::uint64_t y = 0; y + 1 < g.out_height; ++y)
    most = std::max(most, g.rows_needed(y) + g.rows_needed(y + 1) - g.rows_shared(y));
  return most;
}

std::uint64_t rows_of_one_chunk(const VectorGeometry& g) {
  std::uint64_t most = 0;
  for (std::uint64_t y = 0; y < g.out_height; ++y) most = std::max(most, g.rows_needed(y));
  return most;
}

// Largest channel count whose `per_channel` bytes fit `capacity` (all of them when free).
std::uint64_t channels_fitting(std::uint64_t capacity, std::uint64_t per_channel, std::uint64_t channels) {
  return per_channel == 0 ? channels : std::min(channels, capacity / per_channel);
}

// Throws NoFeasibleTiling when not even a one-channel chunk (or the on-chip input) fits.
void require_one_channel_fits(const Npu& npu, const VectorGeometry& g, std::uint32_t batch,
                              const Placement& placement) {
  const auto& buffers = npu.config().buffers;
  const std::uint64_t reserved = placement.reserved_input_bytes;
  if (g.result_bytes(1) > buffers.output_bytes)
    throw NoFeasibleTiling(fmt::format(
        "vector path: the output buffer of {} B holds no chunk; one output row of one channel needs {} B, so the "
        "output buffer must have at least {} B",
        buffers.output_bytes, g.result_bytes(1), g.result_bytes(1)));
  if (placement.input_on_chip) {
    const std::uint64_t tensor = batch * static_cast<std::uint64_t>(g.height) * g.line_bytes(static_cast<std::uint64_t>(g.channels));
    if (tensor > input_capacity(npu, placement))
      throw NoFeasibleTiling(fmt::format(
          "vector path: the input buffer of {} B ({} B reserved) cannot hold the on-chip input of {} B; it must "
          "have at least {} B",
          buffers.input_bytes, reserved, tensor, tensor + reserved));
    return;
  }
  const std::uint64_t one_chunk = rows_of_one_chunk(g) * g.line_bytes(1);
  if (one_chunk > input_capacity(npu, placement))
    throw NoFeasibleTiling(fmt::format(
        "vector path: the input buffer of {} B ({} B reserved) holds no chunk; the input rows of one output row "
        "of one channel take {} B, so the input buffer must have at least {} B",
        buffers.input_bytes, reserved, one_chunk, one_chunk + reserved));
}

ChunkPlan plan_chunks(const Npu& npu, const VectorGeometry& g, std::uint32_t batch, const Placement& placement,
                      std::uint64_t channel_block) {
  require_one_channel_fits(npu, g, batch, placement);
  const auto channels = static_cast<std::uint64_t>(g.channels);
  if (channel_block < 1 || channel_block > channels)
    throw std::invalid_argument(fmt::format("vector path: channel_block = {} must be in [1, C = {}]", channel_block, channels));
  ChunkPlan plan;
  plan.geometry = g;
  plan.batch = batch;
  plan.channel_block = channel_block;
  plan.blocks = ceil_div(channels, channel_block);
  plan.last_block = channels - (plan.blocks - 1) * channel_block;
  plan.per_sample = plan.blocks * g.out_height;
  plan.chunks = plan.per_sample * batch;
  plan.input_capacity = input_capacity(npu, placement);
  plan.output_capacity = npu.config().buffers.output_bytes;
  plan.input_on_chip = placement.input_on_chip;
  plan.output_on_chip = placement.output_on_chip;
  const bool input_fits = placement.input_on_chip || rows_of_one_chunk(g) * g.line_bytes(channel_block) <= plan.input_capacity;
  if (!input_fits || g.result_bytes(channel_block) > plan.output_capacity)
    throw NoFeasibleTiling(fmt::format("vector path: a chunk of {} channels does not fit the {} buffer", channel_block,
                                       input_fits ? "output" : "input"));
  return plan;
}

// Rule 1 of docs/vector-path.md §4, by two pointers over the chunks: for each chunk j the
// earliest i such that the lines of chunks i..j fit; the windows repeat every S chunks, so
// chunks up to cap + S decide.
std::uint64_t largest_prefetch(const ChunkPlan& plan, std::uint64_t queue_depth) {
  if (plan.input_on_chip || plan.chunks == 1) return 0;
  const std::uint64_t cap = std::min(std::max(plan.per_sample, queue_depth), plan.chunks - 1);
  const std::uint64_t scan = std::min(plan.chunks, cap + plan.per_sample);
  std::uint64_t best = cap, first = 0, loaded_after_first = 0;
  for (std::uint64_t j = 0; j < scan; ++j) {
    if (j > first) loaded_after_first += plan.load_bytes(j);
    while (first < j && plan.needed_bytes(first) + loaded_after_first > plan.input_capacity) {
      ++first;
      loaded_after_first -= plan.load_bytes(first);
    }
    if (first > 0) best = std::min(best, j - first);
  }
  return best;
}

// A buffer whose bytes are freed in the order they were taken, at nondecreasing cycles.
class ReleaseQueue {
 public:
  std::uint64_t held = 0;
  void take(std::uint64_t bytes) { held += bytes; }
  void release_at(std::uint64_t cycle, std::uint64_t bytes) {
    if (bytes > 0) pending_.push_back({cycle, bytes});
  }
  // The first cycle at which `bytes` more fit `capacity`, counting releases at or before it
  // (0 if they fit now). Releases it had to count are absorbed. Returns false if even every
  // release leaves too little room.
  bool room_for(std::uint64_t bytes, std::uint64_t capacity, std::uint64_t& cycle) {
    cycle = 0;
    while (held + bytes > capacity) {
      if (head_ == pending_.size()) return false;
      cycle = pending_[head_].cycle;
      held -= pending_[head_].bytes;
      ++head_;
    }
    compact();
    return true;
  }
  // Releases at or before `cycle` can no longer delay anything: absorb them.
  void absorb_until(std::uint64_t cycle) {
    while (head_ < pending_.size() && pending_[head_].cycle <= cycle) {
      held -= pending_[head_].bytes;
      ++head_;
    }
    compact();
  }
  void shift(std::uint64_t delta) {
    for (std::size_t i = head_; i < pending_.size(); ++i) pending_[i].cycle += delta;
  }
  void append_state(std::vector<std::int64_t>& out, std::uint64_t anchor) const {
    out.push_back(static_cast<std::int64_t>(held));
    out.push_back(static_cast<std::int64_t>(pending_.size() - head_));
    for (std::size_t i = head_; i < pending_.size(); ++i) {
      out.push_back(static_cast<std::int64_t>(pending_[i].cycle) - static_cast<std::int64_t>(anchor));
      out.push_back(static_cast<std::int64_t>(pending_[i].bytes));
    }
  }

 private:
  struct Release {
    std::uint64_t cycle, bytes;
  };
  void compact() {
    if (head_ > 64 && head_ * 2 > pending_.size()) {
      pending_.erase(pending_.begin(), pending_.begin() + static_cast<std::ptrdiff_t>(head_));
      head_ = 0;
    }
  }
  std::vector<Release> pending_;
  std::size_t head_ = 0;
};

// The stream of docs/vector-path.md §5-§6 walked slot by slot: at slot σ chunk σ - 1 computes,
// then its write issues, then the load of chunk σ + d. Every sample repeats the same slots, so
// once two sample boundaries leave the same state up to a shift in time, the samples up to the
// end's boundary effects are jumped over.
class VectorWalk {
 public:
  VectorWalk(const Npu& npu, const ChunkPlan& plan, std::uint64_t prefetch)
      : npu_(npu),
        plan_(plan),
        prefetch_(prefetch),
        lanes_(npu.config().vector_lanes),
        latency_(npu.latency_cycles()),
        ring_(npu.config().offchip.queue_depth, 0),
        load_done_(prefetch + 2, 0) {}

  std::uint64_t run() {
    const std::uint64_t chunks = plan_.chunks, period = plan_.per_sample;
    std::vector<std::int64_t> previous, current;
    std::uint64_t previous_anchor = 0;
    const auto d = static_cast<std::int64_t>(prefetch_);
    for (std::int64_t slot = -d; slot <= static_cast<std::int64_t>(chunks); ++slot) {
      const auto s = static_cast<std::uint64_t>(std::max<std::int64_t>(slot, 0));
      if (slot > 0 && s % period == 0 && s / period >= 1 && s + period + prefetch_ <= chunks) {
        snapshot(current);
        if (!previous.empty() && current == previous) {
          const std::uint64_t samples = (chunks - prefetch_) / period - s / period;
          shift(samples * (last_end_ - previous_anchor));
          slot += static_cast<std::int64_t>(samples * period);
          previous.clear();
        } else {
          previous.swap(current);
          previous_anchor = last_end_;
        }
      }
      run_slot(slot);
    }
    return std::max(last_end_, bus_free_);
  }

 private:
  void run_slot(std::int64_t slot) {
    if (slot >= 1) {
      const auto chunk = static_cast<std::uint64_t>(slot - 1);
      const std::uint64_t end = compute(chunk);
      if (!plan_.output_on_chip) output_.release_at(request(end, plan_.result_bytes(chunk)), plan_.result_bytes(chunk));
    }
    const std::int64_t load = slot + static_cast<std::int64_t>(prefetch_);
    if (load >= 0 && load < static_cast<std::int64_t>(plan_.chunks)) push_load(static_cast<std::uint64_t>(load));
  }

  std::uint64_t compute(std::uint64_t chunk) {
    const std::uint64_t result = plan_.result_bytes(chunk);
    std::uint64_t room = 0;
    output_.room_for(result, plan_.output_capacity, room);
    const std::uint64_t start = std::max({last_end_, pop_load_done(), room});
    const std::uint64_t channels = plan_.block_channels(chunk);
    last_end_ = start + ceil_div(plan_.geometry.out_width * channels * plan_.geometry.taps, lanes_);
    output_.take(result);
    if (plan_.output_on_chip) output_.release_at(last_end_, result);
    input_.release_at(last_end_, plan_.release_bytes(chunk));
    return last_end_;
  }

  void push_load(std::uint64_t chunk) {
    const std::uint64_t bytes = plan_.load_bytes(chunk);
    std::uint64_t done = 0;
    if (bytes > 0) {
      std::uint64_t room = 0;
      if (!input_.room_for(bytes, plan_.input_capacity, room))
        throw std::logic_error(fmt::format("vector path: the load of chunk {} never finds room", chunk));
      input_.take(bytes);
      done = request(room, bytes);
    }
    load_done_[(load_head_ + load_count_) % load_done_.size()] = done;
    ++load_count_;
  }

  std::uint64_t pop_load_done() {
    const std::uint64_t done = load_done_[load_head_];
    load_head_ = (load_head_ + 1) % load_done_.size();
    --load_count_;
    return done;
  }

  // One request through the queue and the bus (docs/memory-schedule.md §6): its completion.
  std::uint64_t request(std::uint64_t ready, std::uint64_t bytes) {
    const std::uint64_t issue = std::max({last_issue_, ready, ring_[ring_head_]});
    const std::uint64_t complete = std::max(issue + latency_, bus_free_) + npu_.data_cycles(bytes);
    ring_[ring_head_] = complete;
    ring_head_ = (ring_head_ + 1) % ring_.size();
    last_issue_ = issue;
    bus_free_ = complete;
    ++requests_;
    return complete;
  }

  // The state that decides what follows, relative to the last chunk's end, with values that can
  // no longer matter clamped so that two boundaries a sample apart compare equal.
  void snapshot(std::vector<std::int64_t>& out) {
    out.clear();
    const auto rel = [&](std::uint64_t t) { return static_cast<std::int64_t>(t) - static_cast<std::int64_t>(last_end_); };
    if (requests_ > 0) {
      input_.absorb_until(last_issue_);
      out.push_back(rel(last_issue_));
      out.push_back(rel(std::max(bus_free_, last_issue_ + latency_)));
      for (std::size_t k = 0; k < ring_.size(); ++k)
        out.push_back(rel(std::max(ring_[(ring_head_ + k) % ring_.size()], last_issue_)));
    }
    output_.absorb_until(last_end_);
    for (std::uint64_t k = 0; k < load_count_; ++k)
      out.push_back(rel(std::max(load_done_[(load_head_ + k) % load_done_.size()], last_end_)));
    input_.append_state(out, last_end_);
    output_.append_state(out, last_end_);
  }

  void shift(std::uint64_t delta) {
    if (requests_ > 0) {
      for (auto& c : ring_) c = std::max(c, last_issue_) + delta;
      bus_free_ = std::max(bus_free_, last_issue_ + latency_) + delta;
      last_issue_ += delta;
    }
    for (auto& done : load_done_) done = std::max(done, last_end_) + delta;
    input_.shift(delta);
    output_.shift(delta);
    last_end_ += delta;
  }

  const Npu& npu_;
  const ChunkPlan& plan_;
  std::uint64_t prefetch_, lanes_, latency_;
  std::vector<std::uint64_t> ring_;  // completions of the last Q requests, oldest at ring_head_
  std::size_t ring_head_ = 0;
  std::uint64_t last_issue_ = 0, bus_free_ = 0, last_end_ = 0, requests_ = 0;
  std::vector<std::uint64_t> load_done_;  // completion of the loads of the chunks not yet computed
  std::uint64_t load_head_ = 0, load_count_ = 0;
  ReleaseQueue input_, output_;
};

LayerCost nothing(std::uint32_t batch) { return LayerCost{.mapping = {batch, 1, 1}}; }

bool is_empty(const VectorWork& work) {
  return work.input_elements == 0 && work.output_elements == 0 && work.operations == 0;
}

}  // namespace

std::uint64_t max_prefetch_chunks(const Npu& npu, const VectorWork& work, std::uint32_t batch,
                                  const Placement& placement, std::uint64_t channel_block) {
  const ChunkPlan plan = plan_chunks(npu, geometry_of(npu, work), batch, placement, channel_block);
  return largest_prefetch(plan, npu.config().offchip.queue_depth);
}

VectorTiling choose_vector_tiling(const Npu& npu, const VectorWork& work, std::uint32_t batch,
                                  const Placement& placement) {
  const VectorGeometry g = geometry_of(npu, work);
  require_one_channel_fits(npu, g, batch, placement);
  const auto channels = static_cast<std::uint64_t>(g.channels);
  const std::uint64_t in = input_capacity(npu, placement), out = npu.config().buffers.output_bytes;
  const auto input_limit = [&](std::uint64_t rows) {
    return placement.input_on_chip ? channels : channels_fitting(in, rows * g.line_bytes(1), channels);
  };
  const std::uint64_t double_buffered =
      std::min(input_limit(rows_of_two_chunks(g)), channels_fitting(out, 2 * g.result_bytes(1), channels));
  const std::uint64_t single =
      std::min(input_limit(rows_of_one_chunk(g)), channels_fitting(out, g.result_bytes(1), channels));
  VectorTiling tiling;
  tiling.channel_block = double_buffered >= 1 ? double_buffered : single;
  tiling.prefetch_chunks = max_prefetch_chunks(npu, work, batch, placement, tiling.channel_block);
  return tiling;
}

LayerCost vector_cost_tiled(const Npu& npu, const VectorWork& work, std::uint32_t batch, const Placement& placement,
                            const VectorTiling& tiling) {
  if (is_empty(work)) return nothing(batch);
  const ChunkPlan plan = plan_chunks(npu, geometry_of(npu, work), batch, placement, tiling.channel_block);
  const std::uint64_t largest = largest_prefetch(plan, npu.config().offchip.queue_depth);
  if (tiling.prefetch_chunks > largest)
    throw NoFeasibleTiling(fmt::format("vector path: prefetch of {} chunks exceeds the {} the input buffer allows",
                                       tiling.prefetch_chunks, largest));

  // Traffic and compute of one sample, by chunk; every sample is alike.
  const VectorGeometry& g = plan.geometry;
  const std::uint64_t lanes = npu.config().vector_lanes;
  std::uint64_t loads = 0, writes = 0, compute = 0;
  for (std::uint64_t chunk = 0; chunk < plan.per_sample; ++chunk) {
    loads += plan.load_bytes(chunk);
    if (!plan.output_on_chip) writes += plan.result_bytes(chunk);
    compute += ceil_div(g.out_width * plan.block_channels(chunk) * g.taps, lanes);
  }
  LayerCost cost;
  cost.mapping = {batch, 1, 1};
  cost.cycles = VectorWalk(npu, plan, tiling.prefetch_chunks).run();
  cost.compute_cycles = compute * batch;
  cost.stall_cycles = cost.cycles - cost.compute_cycles;
  cost.bytes.input = loads * batch;
  cost.bytes.output = writes * batch;
  cost.offchip_bytes = cost.bytes.total();
  // Every input row some window reads, once, and every output, once.
  std::uint64_t rows_read = 0;
  for (std::uint64_t y = 0; y < g.out_height; ++y) rows_read += g.rows_loaded(y);
  const std::uint64_t compulsory_input =
      plan.input_on_chip ? 0 : batch * rows_read * g.line_bytes(static_cast<std::uint64_t>(g.channels));
  cost.compulsory_bytes = compulsory_input + cost.bytes.output;
  const std::uint64_t operations =
      batch * g.out_height * g.out_width * static_cast<std::uint64_t>(g.channels) * g.taps;
  cost.roofline_cycles = std::max(ceil_div(operations, lanes), npu.data_cycles(cost.compulsory_bytes));
  cost.on_chip = vector_accesses(npu, batch * work.input_elements, batch * work.output_elements,
                                 batch * work.operations, cost.bytes);
  return cost;
}

LayerCost vector_cost(const Npu& npu, const VectorWork& work, std::uint32_t batch, const Placement& placement) {
  if (is_empty(work)) return nothing(batch);
  return vector_cost_tiled(npu, work, batch, placement, choose_vector_tiling(npu, work, batch, placement));
}

}  // namespace npusim::npu
