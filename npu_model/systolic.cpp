#include "npu_model/systolic.hpp"

#include <algorithm>
#include <deque>
#include <iterator>
#include <stdexcept>
#include <vector>

namespace npusim::npu {
namespace {

std::uint64_t ceil_div(std::uint64_t a, std::uint64_t b) { return (a + b - 1) / b; }

// A fold using h rows costs alpha * h + w + (T - 2) cycles: alpha = 1 for OS, 2 for WS and IS,
// whose stationary operand takes h cycles to shift in before anything streams.
std::uint64_t row_weight(Dataflow dataflow) { return dataflow == Dataflow::output_stationary ? 1 : 2; }

}  // namespace

SystolicLayout layout_of(Dataflow dataflow, const SystolicGemm& gemm) {
  switch (dataflow) {
    case Dataflow::output_stationary: return {gemm.m, gemm.n, gemm.k};
    case Dataflow::weight_stationary: return {gemm.k, gemm.n, gemm.m};
    case Dataflow::input_stationary: return {gemm.k, gemm.m, gemm.n};
  }
  return {};
}

SystolicFolds folds_of(const SystolicConfig& array, const SystolicGemm& gemm) {
  const SystolicLayout layout = layout_of(array.dataflow, gemm);
  return {ceil_div(layout.over_rows, array.rows), ceil_div(layout.over_cols, array.cols)};
}

// Summed over all folds, the used rows of the row folds add up to over_rows and the used
// columns to over_cols, so
//   sum_folds (alpha*h + w + T - 2) = col_folds*alpha*over_rows + row_folds*over_cols
//                                     + folds*(T - 2).
std::uint64_t systolic_array_cycles(const SystolicConfig& array, const SystolicGemm& gemm) {
  const SystolicLayout layout = layout_of(array.dataflow, gemm);
  const SystolicFolds folds = folds_of(array, gemm);
  return folds.col_folds * row_weight(array.dataflow) * layout.over_rows +
         folds.row_folds * layout.over_cols + folds.count() * layout.streamed - 2 * folds.count();
}

std::uint64_t scalesim_output_size(std::uint64_t in, std::uint64_t filter, std::uint64_t stride) {
  return ceil_div(in - filter + stride, stride);
}

SystolicGemm scalesim_conv_gemm(const ScaleSimConv& conv) {
  const std::uint64_t pixels = scalesim_output_size(conv.ifmap_height, conv.filter_height, conv.stride_height) *
                               scalesim_output_size(conv.ifmap_width, conv.filter_width, conv.stride_width);
  return {pixels, conv.filter_height * conv.filter_width * conv.channels, conv.filters};
}

// Every SCALE-Sim fold is padded to the full array: alpha*R + C + T - 2 demand rows, and the
// report gives the last row's cycle index.
ScaleSimComputeReport scalesim_compute_report(const SystolicConfig& array, const SystolicGemm& gemm) {
  const SystolicLayout layout = layout_of(array.dataflow, gemm);
  const SystolicFolds folds = folds_of(array, gemm);
  const std::uint64_t fold_rows =
      row_weight(array.dataflow) * array.rows + array.cols + layout.streamed - 2;
  ScaleSimComputeReport report;
  report.total_cycles = folds.count() * fold_rows - 1;
  const double pes = static_cast<double>(array.rows) * array.cols;
  const double macs = static_cast<double>(gemm.m) * static_cast<double>(gemm.n) * static_cast<double>(gemm.k);
  if (report.total_cycles > 0)
    report.overall_util_pct = macs * 100.0 / (static_cast<double>(report.total_cycles) * pes);
  report.mapping_efficiency_pct = static_cast<double>(layout.over_rows) * static_cast<double>(layout.over_cols) *
                                  100.0 / (static_cast<double>(folds.count()) * pes);
  return report;
}

}  // namespace npusim::npu

// ---------------------------------------------------------------------------------------------
// The layer with its memory (docs/systolic-memory.md). The plan holds the contract's static
// decisions; the walk evaluates the schedule request by request in stream order.

namespace npusim::npu {
namespace {

// A segment streams at most this many array sides of rows (docs/systolic-memory.md §3).
constexpr std::uint64_t segment_rows_per_array_side = 16;

struct StreamPlan {
  bool loaded = false;          // crosses the channel (activations on chip do not)
  bool in_weight_buffer = false;
  bool block_is_row_fold = true;  // its block follows the row fold (else the column fold)
  bool kept = false;            // a block stays for every fold that reuses it
  std::uint64_t capacity_bytes = 0;
  std::uint64_t row_bytes_max = 0;
  std::uint64_t prefetch_segments = 0;
};

struct MemoryPlan {
  Dataflow dataflow = Dataflow::weight_stationary;
  SystolicLayout layout;
  SystolicFolds folds;
  std::uint64_t array_rows = 0, array_cols = 0;
  std::uint64_t element_bytes = 1, accumulator_bytes = 4;
  std::uint64_t groups = 1;
  std::uint64_t segment_rows = 1, segments_per_fold = 1;
  bool has_stationary = false, stationary_loaded = false, stationary_in_weight_buffer = false;
  std::uint64_t stationary_capacity_bytes = 0, stationary_depth = 1;
  StreamPlan streams[2];
  std::uint64_t stream_count = 0;
  bool spill = false;
  std::uint64_t output_capacity_bytes = 0;
  bool outputs_written = true, epilogue_loaded = false;

  std::uint64_t folds_per_group() const { return folds.count(); }
};

struct FoldPosition {
  std::uint64_t group = 0, col_fold = 0, row_fold = 0, used_rows = 0, used_cols = 0;
};

FoldPosition position_of(const MemoryPlan& p, std::uint64_t fold) {
  FoldPosition f;
  f.group = fold / p.folds_per_group();
  const std::uint64_t within = fold % p.folds_per_group();
  f.col_fold = within / p.folds.row_folds;
  f.row_fold = within % p.folds.row_folds;
  f.used_rows = std::min(p.array_rows, p.layout.over_rows - f.row_fold * p.array_rows);
  f.used_cols = std::min(p.array_cols, p.layout.over_cols - f.col_fold * p.array_cols);
  return f;
}

std::uint64_t fits_count(std::uint64_t capacity, std::uint64_t unit) { return unit == 0 ? 0 : capacity / unit; }

MemoryPlan plan_memory(const Npu& npu, const SystolicGemm& gemm, std::uint64_t groups, const Placement& placement,
                       bool require_feasible) {
  const NpuConfig& c = npu.config();
  MemoryPlan p;
  p.dataflow = c.systolic.dataflow;
  p.layout = layout_of(p.dataflow, gemm);
  p.folds = folds_of(c.systolic, gemm);
  p.array_rows = c.systolic.rows;
  p.array_cols = c.systolic.cols;
  p.element_bytes = c.element_bytes;
  p.accumulator_bytes = c.accumulator_bytes;
  p.groups = groups;
  p.output_capacity_bytes = c.buffers.output_bytes;
  p.outputs_written = !placement.output_on_chip;
  p.epilogue_loaded = placement.epilogue == EpilogueOperand::off_chip;
  const std::uint64_t e = p.element_bytes, a = p.accumulator_bytes;
  const std::uint64_t input_capacity =
      c.buffers.input_bytes > placement.reserved_input_bytes ? c.buffers.input_bytes - placement.reserved_input_bytes : 0;
  const std::uint64_t weight_capacity = c.buffers.weight_bytes;
  const std::uint64_t rows_used = std::min(p.array_rows, p.layout.over_rows);
  const std::uint64_t cols_used = std::min(p.array_cols, p.layout.over_cols);
  const bool activations_loaded = !placement.input_on_chip;
  const std::uint64_t activation_bytes = gemm.m * gemm.k * e, weight_bytes = gemm.k * gemm.n * e;
  // A streamed block is kept only where a later fold reuses it and the whole operand (OS
  // weights: one column block) fits its buffer.
  const bool row_blocks_reused = p.folds.col_folds > 1, col_blocks_reused = p.folds.row_folds > 1;
  const StreamPlan activations{activations_loaded, false, true,
                               row_blocks_reused && activation_bytes <= input_capacity, input_capacity,
                               rows_used * e, 0};
  switch (p.dataflow) {
    case Dataflow::output_stationary:
      p.streams[0] = activations;
      p.streams[1] = {true,           true, false, col_blocks_reused && gemm.k * cols_used * e <= weight_capacity,
                      weight_capacity, cols_used * e, 0};
      p.stream_count = 2;
      break;
    case Dataflow::weight_stationary:
      p.has_stationary = p.stationary_loaded = p.stationary_in_weight_buffer = true;
      p.stationary_capacity_bytes = weight_capacity;
      p.streams[0] = activations;
      p.stream_count = 1;
      break;
    case Dataflow::input_stationary:
      p.has_stationary = true;
      p.stationary_loaded = activations_loaded;
      p.stationary_capacity_bytes = input_capacity;
      p.streams[0] = {true, true, true, row_blocks_reused && weight_bytes <= weight_capacity, weight_capacity,
                      rows_used * e, 0};
      p.stream_count = 1;
      break;
  }
  const std::uint64_t streamed = p.layout.streamed;
  p.spill = p.dataflow != Dataflow::output_stationary && p.folds.row_folds > 1 &&
            streamed * cols_used * a > p.output_capacity_bytes;

  std::uint64_t rows = std::min(segment_rows_per_array_side * std::max(p.array_rows, p.array_cols), streamed);
  for (std::uint64_t i = 0; i < p.stream_count; ++i)
    if (p.streams[i].loaded) rows = std::min(rows, fits_count(p.streams[i].capacity_bytes, p.streams[i].row_bytes_max));
  bool feasible = true;
  if (p.dataflow == Dataflow::output_stationary) {
    feasible = rows_used * cols_used * a <= p.output_capacity_bytes;
  } else {
    rows = std::min(rows, fits_count(p.output_capacity_bytes, (p.spill ? 2 : 1) * cols_used * a));
    if (p.stationary_loaded) feasible = rows_used * cols_used * e <= p.stationary_capacity_bytes;
  }
  if (rows == 0 || !feasible) {
    if (require_feasible)
      throw std::invalid_argument("systolic layer: a buffer cannot hold what one fold needs "
                                  "(docs/systolic-memory.md §8)");
    rows = std::max<std::uint64_t>(rows, 1);
  }
  p.segment_rows = rows;
  p.segments_per_fold = ceil_div(streamed, rows);
  for (std::uint64_t i = 0; i < p.stream_count; ++i) {
    StreamPlan& s = p.streams[i];
    s.prefetch_segments = fits_count(s.capacity_bytes, rows * s.row_bytes_max) >= 2 ? 1 : 0;
  }
  if (p.stationary_loaded)
    p.stationary_depth = std::clamp<std::uint64_t>(
        fits_count(p.stationary_capacity_bytes, rows_used * cols_used * e), 1, 2);
  return p;
}

// Bytes over the channel. They follow from the plan alone (docs/systolic-memory.md §7).
TrafficBytes traffic_of(const MemoryPlan& p, const SystolicGemm& gemm) {
  const std::uint64_t e = p.element_bytes;
  const std::uint64_t activations = gemm.m * gemm.k * e, weights = gemm.k * gemm.n * e, outputs = gemm.m * gemm.n * e;
  TrafficBytes t;
  const bool activations_loaded = p.dataflow == Dataflow::input_stationary ? p.stationary_loaded : p.streams[0].loaded;
  switch (p.dataflow) {
    case Dataflow::output_stationary:
      t.input = activations_loaded ? activations * (p.streams[0].kept ? 1 : p.folds.col_folds) : 0;
      t.weight = weights * (p.streams[1].kept ? 1 : p.folds.row_folds);
      break;
    case Dataflow::weight_stationary:
      t.weight = weights;
      t.input = activations_loaded ? activations * (p.streams[0].kept ? 1 : p.folds.col_folds) : 0;
      break;
    case Dataflow::input_stationary:
      t.input = activations_loaded ? activations : 0;
      t.weight = weights * (p.streams[0].kept ? 1 : p.folds.col_folds);
      break;
  }
  t.output = p.outputs_written ? outputs : 0;
  t.epilogue = p.epilogue_loaded ? outputs : 0;
  t.psum = p.spill ? 2 * (p.folds.row_folds - 1) * gemm.m * gemm.n * p.accumulator_bytes : 0;
  t.input *= p.groups;
  t.weight *= p.groups;
  t.output *= p.groups;
  t.epilogue *= p.groups;
  t.psum *= p.groups;
  return t;
}

// The array alone, operands always on time: WS and IS shift each stationary block into the
// shadow registers while the fold before streams (docs/systolic-memory.md §4).
std::uint64_t compute_cycles_of(const MemoryPlan& p) {
  const std::uint64_t folds = p.groups * p.folds_per_group(), streamed = p.layout.streamed;
  std::uint64_t fold_end = 0, stream_start = 0;
  for (std::uint64_t f = 0; f < folds; ++f) {
    const FoldPosition pos = position_of(p, f);
    if (p.has_stationary)
      stream_start = f == 0 ? pos.used_rows : std::max(fold_end, stream_start + pos.used_rows);
    else
      stream_start = fold_end;
    fold_end = stream_start + streamed + pos.used_rows + pos.used_cols - 2;
  }
  return fold_end;
}

// One buffer's bytes: taken by loads and allocations in time order, freed by releases whose
// times become known as the walk proceeds.
class ByteBuffer {
 public:
  explicit ByteBuffer(std::uint64_t capacity_bytes) : capacity_bytes_(capacity_bytes) {}

  // The first cycle from which `bytes` more fit, counting the releases known so far.
  std::uint64_t room_from(std::uint64_t bytes) const {
    std::uint64_t held = held_bytes_;
    if (held + bytes <= capacity_bytes_) return 0;
    for (const auto& [time, freed] : releases_) {
      held -= freed;
      if (held + bytes <= capacity_bytes_) return time;
    }
    throw std::logic_error("systolic memory schedule: a take waits for a release not yet known");
  }
  void take(std::uint64_t bytes, std::uint64_t at) {
    while (!releases_.empty() && releases_.front().first <= at) {
      held_bytes_ -= releases_.front().second;
      releases_.pop_front();
    }
    held_bytes_ += bytes;
  }
  void release_at(std::uint64_t time, std::uint64_t bytes) {
    auto it = releases_.end();
    while (it != releases_.begin() && std::prev(it)->first > time) --it;
    releases_.insert(it, {time, bytes});
  }

 private:
  std::uint64_t capacity_bytes_ = 0, held_bytes_ = 0;
  std::deque<std::pair<std::uint64_t, std::uint64_t>> releases_;
};

// The DMA engine and channel of docs/memory-schedule.md §6.
class Channel {
 public:
  explicit Channel(const Npu& npu)
      : npu_(npu), latency_cycles_(npu.latency_cycles()), completions_(npu.config().offchip.queue_depth, 0) {}

  struct Issued {
    std::uint64_t issue = 0, completion = 0;
  };
  Issued issue(std::uint64_t ready, std::uint64_t bytes) {
    std::uint64_t& slot = completions_[next_ % completions_.size()];
    const std::uint64_t t = std::max({last_issue_, ready, slot});
    const std::uint64_t completion = std::max(t + latency_cycles_, bus_free_) + npu_.data_cycles(bytes);
    last_issue_ = t;
    bus_free_ = completion;
    slot = completion;
    ++next_;
    return {t, completion};
  }
  std::uint64_t last_completion() const { return bus_free_; }

 private:
  const Npu& npu_;
  std::uint64_t latency_cycles_ = 0, last_issue_ = 0, bus_free_ = 0, next_ = 0;
  std::vector<std::uint64_t> completions_;  // of the last Q requests, by request number mod Q
};

class LayerWalk {
 public:
  LayerWalk(const Npu& npu, const MemoryPlan& plan)
      : p_(plan),
        channel_(npu),
        input_(0),
        weight_(npu.config().buffers.weight_bytes),
        output_(plan.output_capacity_bytes),
        folds_(plan.groups * plan.folds_per_group()),
        segments_(folds_ * plan.segments_per_fold) {
    const std::uint64_t input_capacity = p_.streams[0].in_weight_buffer ? p_.stationary_capacity_bytes
                                                                         : p_.streams[0].capacity_bytes;
    input_ = ByteBuffer(input_capacity);
    for (std::uint64_t i = 0; i < p_.stream_count; ++i) stream_done_[i].assign(segments_, 0);
    if (p_.spill) {
      psum_write_done_.assign(segments_, 0);
      psum_read_done_.assign(segments_, 0);
    }
    if (p_.has_stationary) {
      stationary_done_.assign(folds_, 0);
      shift_end_.assign(folds_, 0);
    }
  }

  std::uint64_t run() {
    const std::uint64_t n = p_.segments_per_fold;
    const auto signed_n = static_cast<std::int64_t>(n);
    std::uint64_t next_stationary = 0, next_load[2] = {0, 0};
    for (std::int64_t s = -1; s <= static_cast<std::int64_t>(segments_); ++s) {
      if (s >= 1) write(static_cast<std::uint64_t>(s - 1));
      const bool in_range = s >= 0 && s < static_cast<std::int64_t>(segments_);
      if (p_.spill && n == 1 && in_range && reads_partial_sums(static_cast<std::uint64_t>(s)))
        read_partial_sums(static_cast<std::uint64_t>(s));
      if (in_range) compute(static_cast<std::uint64_t>(s));
      if (p_.spill && n >= 2 && s + 1 < static_cast<std::int64_t>(segments_) &&
          reads_partial_sums(static_cast<std::uint64_t>(s + 1)))
        read_partial_sums(static_cast<std::uint64_t>(s + 1));
      if (in_range) load_epilogue(static_cast<std::uint64_t>(s));
      if (p_.has_stationary) {
        const auto depth = static_cast<std::int64_t>(p_.stationary_depth);
        while (next_stationary < folds_ &&
               (static_cast<std::int64_t>(next_stationary) < depth ||
                (static_cast<std::int64_t>(next_stationary) - depth) * signed_n - 1 <= s))
          load_stationary(next_stationary++);
      }
      // Weights before activations within a slot.
      for (int pass = 0; pass < 2; ++pass)
        for (std::uint64_t i = 0; i < p_.stream_count; ++i) {
          if (p_.streams[i].in_weight_buffer != (pass == 0)) continue;
          while (next_load[i] < segments_ && load_slot(i, next_load[i]) <= s) load_stream(i, next_load[i]++);
        }
    }
    return std::max(fold_end_, channel_.last_completion());
  }

  TrafficBytes bytes;

 private:
  std::uint64_t rows_of(std::uint64_t segment) const {
    const std::uint64_t c = segment % p_.segments_per_fold;
    return c + 1 < p_.segments_per_fold ? p_.segment_rows : p_.layout.streamed - c * p_.segment_rows;
  }
  // The walk asks about the same few folds again and again: remember the last two.
  FoldPosition fold_of(std::uint64_t segment) const { return fold_at(segment / p_.segments_per_fold); }
  FoldPosition fold_at(std::uint64_t fold) const {
    for (const auto& [index, position] : recent_folds_)
      if (index == fold) return position;
    recent_folds_[next_recent_] = {fold, position_of(p_, fold)};
    next_recent_ ^= 1;
    return recent_folds_[next_recent_ ^ 1].second;
  }
  ByteBuffer& buffer_of(const StreamPlan& s) { return s.in_weight_buffer ? weight_ : input_; }
  ByteBuffer& stationary_buffer() { return p_.stationary_in_weight_buffer ? weight_ : input_; }

  std::uint64_t stream_bytes(const StreamPlan& s, std::uint64_t segment) const {
    const FoldPosition f = fold_of(segment);
    return rows_of(segment) * (s.block_is_row_fold ? f.used_rows : f.used_cols) * p_.element_bytes;
  }
  // The segment that loads the data `segment` streams: itself, or for a kept block the same
  // segment of the block's first fold.
  std::uint64_t loading_segment(const StreamPlan& s, std::uint64_t segment) const {
    if (!s.kept) return segment;
    const FoldPosition f = fold_of(segment);
    const std::uint64_t fold_in_group = s.block_is_row_fold ? f.row_fold : f.col_fold * p_.folds.row_folds;
    return (f.group * p_.folds_per_group() + fold_in_group) * p_.segments_per_fold +
           segment % p_.segments_per_fold;
  }
  bool last_use(const StreamPlan& s, std::uint64_t segment) const {
    if (!s.kept) return true;
    const FoldPosition f = fold_of(segment);
    return s.block_is_row_fold ? f.col_fold + 1 == p_.folds.col_folds : f.row_fold + 1 == p_.folds.row_folds;
  }
  std::int64_t load_slot(std::uint64_t i, std::uint64_t segment) const {
    const StreamPlan& s = p_.streams[i];
    if (!s.loaded || loading_segment(s, segment) != segment) return -1;  // no request
    std::int64_t slot = static_cast<std::int64_t>(segment) - 1 - static_cast<std::int64_t>(s.prefetch_segments);
    if (s.kept) {
      const FoldPosition f = fold_of(segment);
      const std::uint64_t period_first_fold =
          f.group * p_.folds_per_group() + (s.block_is_row_fold ? 0 : f.col_fold * p_.folds.row_folds);
      slot = std::max(slot, static_cast<std::int64_t>(period_first_fold * p_.segments_per_fold) - 1);
    }
    return std::max<std::int64_t>(slot, -1);
  }

  void load_stream(std::uint64_t i, std::uint64_t segment) {
    const StreamPlan& s = p_.streams[i];
    if (!s.loaded || loading_segment(s, segment) != segment) return;
    const std::uint64_t n = stream_bytes(s, segment);
    ByteBuffer& buffer = buffer_of(s);
    const Channel::Issued r = channel_.issue(buffer.room_from(n), n);
    buffer.take(n, r.issue);
    stream_done_[i][segment] = r.completion;
    (s.in_weight_buffer ? bytes.weight : bytes.input) += n;
  }

  std::uint64_t stationary_bytes(std::uint64_t fold) const {
    const FoldPosition f = fold_at(fold);
    return f.used_rows * f.used_cols * p_.element_bytes;
  }
  void load_stationary(std::uint64_t fold) {
    if (p_.stationary_loaded) {
      const std::uint64_t n = stationary_bytes(fold);
      const Channel::Issued r = channel_.issue(stationary_buffer().room_from(n), n);
      stationary_buffer().take(n, r.issue);
      stationary_done_[fold] = r.completion;
      (p_.stationary_in_weight_buffer ? bytes.weight : bytes.input) += n;
    }
    if (fold == 0) schedule_shift(0, 0);
  }
  // The block of `fold` shifts into the shadow registers once it is on chip and the shadow is
  // free (the fold before has begun streaming at `shadow_free`); the buffer frees it then.
  void schedule_shift(std::uint64_t fold, std::uint64_t shadow_free) {
    shift_end_[fold] = std::max(stationary_done_[fold], shadow_free) + fold_at(fold).used_rows;
    if (p_.stationary_loaded) stationary_buffer().release_at(shift_end_[fold], stationary_bytes(fold));
  }

  bool reads_partial_sums(std::uint64_t segment) const { return fold_of(segment).row_fold > 0; }
  std::uint64_t partial_sum_bytes(std::uint64_t segment) const {
    return rows_of(segment) * fold_of(segment).used_cols * p_.accumulator_bytes;
  }
  void read_partial_sums(std::uint64_t segment) {
    const std::uint64_t n = partial_sum_bytes(segment);
    const std::uint64_t ready =
        std::max({psum_write_done_[segment - p_.segments_per_fold], last_output_take_, output_.room_from(n)});
    const Channel::Issued r = channel_.issue(ready, n);
    output_.take(n, r.issue);
    last_output_take_ = r.issue;
    psum_read_done_[segment] = r.completion;
    bytes.psum += n;
  }

  // Accumulator bytes a segment allocates when it starts (0: it allocates nothing).
  std::uint64_t allocation_bytes(std::uint64_t segment) const {
    const FoldPosition f = fold_of(segment);
    const std::uint64_t c = segment % p_.segments_per_fold;
    if (p_.dataflow == Dataflow::output_stationary)
      return c == 0 ? f.used_rows * f.used_cols * p_.accumulator_bytes : 0;
    return f.row_fold == 0 ? rows_of(segment) * f.used_cols * p_.accumulator_bytes : 0;
  }

  void compute(std::uint64_t segment) {
    const std::uint64_t fold = segment / p_.segments_per_fold, c = segment % p_.segments_per_fold;
    const FoldPosition f = fold_at(fold);
    std::uint64_t start = c == 0 ? fold_end_ : segment_end_;
    if (c == 0 && p_.has_stationary) start = std::max(start, shift_end_[fold]);
    for (std::uint64_t i = 0; i < p_.stream_count; ++i)
      if (p_.streams[i].loaded) start = std::max(start, stream_done_[i][loading_segment(p_.streams[i], segment)]);
    if (p_.spill && f.row_fold > 0) start = std::max(start, psum_read_done_[segment]);
    if (const std::uint64_t n = allocation_bytes(segment); n > 0) {
      start = std::max({start, last_output_take_, output_.room_from(n)});
      output_.take(n, start);
      last_output_take_ = start;
    }
    segment_start_ = start;
    segment_end_ = start + rows_of(segment);
    for (std::uint64_t i = 0; i < p_.stream_count; ++i) {
      const StreamPlan& s = p_.streams[i];
      if (s.loaded && last_use(s, segment)) buffer_of(s).release_at(segment_end_, stream_bytes(s, segment));
    }
    if (c == 0 && p_.has_stationary && fold + 1 < folds_) schedule_shift(fold + 1, start);
    results_ready_ = segment_end_ + f.used_rows + f.used_cols - 2;
    if (c + 1 == p_.segments_per_fold) fold_end_ = results_ready_;
    // With a fused add the release also waits for the operand, whose load is known once issued.
    if (!p_.epilogue_loaded || (p_.dataflow == Dataflow::output_stationary && c > 0)) keep_outputs_on_chip(segment);
  }

  bool writes_final_outputs(std::uint64_t segment) const {
    const FoldPosition f = fold_of(segment);
    if (p_.dataflow == Dataflow::output_stationary)
      return segment % p_.segments_per_fold + 1 == p_.segments_per_fold;
    return f.row_fold + 1 == p_.folds.row_folds;
  }
  // Outputs that stay on chip free their accumulators when their write would have been ready.
  // The release is known now, before any later take asks for room.
  void keep_outputs_on_chip(std::uint64_t segment) {
    if (p_.outputs_written || !writes_final_outputs(segment)) return;
    const FoldPosition f = fold_of(segment);
    const std::uint64_t values = p_.dataflow == Dataflow::output_stationary ? f.used_rows * f.used_cols
                                                                             : rows_of(segment) * f.used_cols;
    output_.release_at(std::max(results_ready_, epilogue_done_), values * p_.accumulator_bytes);
  }

  void load_epilogue(std::uint64_t segment) {
    if (!p_.epilogue_loaded) return;
    const FoldPosition f = fold_of(segment);
    std::uint64_t n = 0;
    if (p_.dataflow == Dataflow::output_stationary) {
      if (segment % p_.segments_per_fold != 0) return;  // one per fold, at its first segment
      n = f.used_rows * f.used_cols * p_.element_bytes;
    } else {
      if (f.row_fold + 1 != p_.folds.row_folds) return;
      n = rows_of(segment) * f.used_cols * p_.element_bytes;
    }
    epilogue_done_ = channel_.issue(segment_start_, n).completion;
    bytes.epilogue += n;
    keep_outputs_on_chip(segment);
  }

  void write(std::uint64_t segment) {
    const FoldPosition f = fold_of(segment);
    const std::uint64_t c = segment % p_.segments_per_fold;
    const std::uint64_t e = p_.element_bytes, a = p_.accumulator_bytes;
    if (p_.dataflow == Dataflow::output_stationary) {
      if (c + 1 == p_.segments_per_fold) write_outputs(f.used_rows * f.used_cols, e, a);
      return;
    }
    if (f.row_fold + 1 == p_.folds.row_folds) {
      write_outputs(rows_of(segment) * f.used_cols, e, a);
    } else if (p_.spill) {
      const std::uint64_t n = partial_sum_bytes(segment);
      const std::uint64_t done = channel_.issue(results_ready_, n).completion;
      psum_write_done_[segment] = done;
      output_.release_at(done, n);
      bytes.psum += n;
    }
  }
  void write_outputs(std::uint64_t values, std::uint64_t element_bytes, std::uint64_t accumulator_bytes) {
    if (!p_.outputs_written) return;
    const std::uint64_t done = channel_.issue(std::max(results_ready_, epilogue_done_), values * element_bytes).completion;
    bytes.output += values * element_bytes;
    output_.release_at(done, values * accumulator_bytes);
  }

  const MemoryPlan& p_;
  Channel channel_;
  ByteBuffer input_, weight_, output_;
  std::uint64_t folds_ = 0, segments_ = 0;
  std::vector<std::uint64_t> stream_done_[2], psum_write_done_, psum_read_done_, stationary_done_, shift_end_;
  std::uint64_t fold_end_ = 0, segment_start_ = 0, segment_end_ = 0, results_ready_ = 0, epilogue_done_ = 0;
  std::uint64_t last_output_take_ = 0;
  mutable std::pair<std::uint64_t, FoldPosition> recent_folds_[2] = {{~std::uint64_t{0}, {}}, {~std::uint64_t{0}, {}}};
  mutable int next_recent_ = 0;
};

}  // namespace

SystolicLayerTiming systolic_layer_timing(const Npu& npu, const SystolicGemm& gemm, std::uint64_t groups,
                                          const Placement& placement) {
  if (!npu.is_systolic()) throw std::invalid_argument("systolic_layer_timing needs a systolic NPU");
  SystolicLayerTiming timing;
  if (groups == 0) return timing;
  const bool stall_free = npu.config().systolic.stall_free;
  const MemoryPlan plan = plan_memory(npu, gemm, groups, placement, !stall_free);
  if (stall_free) {
    timing.cycles = timing.compute_cycles = groups * systolic_array_cycles(npu.config().systolic, gemm);
    timing.bytes = traffic_of(plan, gemm);
    return timing;
  }
  LayerWalk walk(npu, plan);
  timing.cycles = walk.run();
  timing.compute_cycles = compute_cycles_of(plan);
  timing.bytes = walk.bytes;
  return timing;
}

}  // namespace npusim::npu
