#include "npu_model/systolic_memory_reference.hpp"

#include <algorithm>
#include <deque>
#include <limits>
#include <map>
#include <memory>
#include <set>
#include <stdexcept>
#include <tuple>

#include "npu_model/clocked_run.hpp"

namespace npusim::npu {
namespace {

constexpr std::uint64_t not_yet = std::numeric_limits<std::uint64_t>::max();
// docs/systolic-memory.md §3: a segment is at most this many array sides of streamed rows.
constexpr std::uint64_t rows_per_side = 16;
// A run that moves nothing for this many cycles has stopped making progress.
constexpr std::uint64_t idle_cycles_limit = 1'000'000;

Eigen::Index at(std::uint64_t v) { return static_cast<Eigen::Index>(v); }

enum class BufferName { input, weight, output };

// A buffer of `capacity` bytes and the bytes it holds.
struct Pool {
  std::uint64_t capacity = 0, held = 0;
  bool has_room(std::uint64_t bytes) const { return held + bytes <= capacity; }
};

// One streamed operand: its data per segment, where it lives, and how long it stays.
struct Stream {
  bool weights = false;          // the weight matrix (else the activations)
  bool crosses_channel = true;
  bool per_row_fold = true;      // one block per row fold (else per column fold)
  bool kept = false;
  BufferName buffer = BufferName::input;
  std::uint64_t ahead = 0;       // segments fetched ahead
};

enum class Job { write_outputs, write_partials, read_partials, load_epilogue, load_stationary, load_stream };

struct Request {
  Job job = Job::load_stream;
  std::uint64_t unit = 0;    // the segment (the fold for a stationary load)
  std::uint64_t stream = 0;  // load_stream: which stream
  std::uint64_t bytes = 0;
  std::uint64_t take = not_yet;  // read_partials: its place among the output buffer's takes
};

// A streamed row entering PE row 0 in some cycle, with the values each PE row (left edge)
// and each PE column (top edge, output-stationary) will receive.
struct RowEntry {
  bool valid = false;
  std::uint64_t row = 0;
  std::vector<std::int64_t> left, top;
};

struct Cell {
  bool valid = false;
  std::int64_t value = 0;
  std::uint64_t row = 0;
};

struct Result {
  std::uint64_t row = 0, i = 0, j = 0;  // WS, IS: streamed row and column j; OS: PE (i, j)
  std::int64_t value = 0;
};

// The PEs during one fold. Rows may enter with gaps; each value moves one PE per cycle.
class FoldDatapath {
 public:
  FoldDatapath(Dataflow dataflow, std::uint64_t h, std::uint64_t w, std::uint64_t streamed, IntMatrix stationary)
      : dataflow_(dataflow), h_(h), w_(w), streamed_(streamed), stationary_(std::move(stationary)),
        across_(h, std::vector<Cell>(w)), down_(h, std::vector<Cell>(w)),
        sums_(h, std::vector<std::int64_t>(w, 0)), products_(h, std::vector<std::uint64_t>(w, 0)) {}

  std::vector<Result> tick(RowEntry entry) {
    history_.push_front(std::move(entry));
    if (history_.size() > std::max(h_, w_)) history_.pop_back();
    std::vector<Result> results;
    auto across = std::vector<std::vector<Cell>>(h_, std::vector<Cell>(w_));
    auto down = across;
    const auto edge = [&](std::uint64_t age, bool left_edge, std::uint64_t lane) {
      if (age >= history_.size() || !history_[age].valid) return Cell{};
      const RowEntry& e = history_[age];
      return Cell{true, left_edge ? e.left[lane] : e.top[lane], e.row};
    };
    for (std::uint64_t i = 0; i < h_; ++i)
      for (std::uint64_t j = 0; j < w_; ++j) {
        const Cell in = j > 0 ? across_[i][j - 1] : edge(i, true, i);
        across[i][j] = in;
        if (dataflow_ == Dataflow::output_stationary) {
          const Cell top = i > 0 ? down_[i - 1][j] : edge(j, false, j);
          down[i][j] = top;
          if (!in.valid || !top.valid) continue;
          if (in.row != top.row) throw std::logic_error("systolic memory reference: operands out of step");
          sums_[i][j] += in.value * top.value;
          if (++products_[i][j] == streamed_) results.push_back({0, i, j, sums_[i][j]});
          continue;
        }
        if (!in.valid) continue;
        const Cell partial = i > 0 ? down_[i - 1][j] : Cell{true, 0, in.row};
        if (!partial.valid || partial.row != in.row)
          throw std::logic_error("systolic memory reference: partial sum and operand out of step");
        const Cell sum{true, partial.value + in.value * stationary_(at(i), at(j)), in.row};
        if (i + 1 == h_)
          results.push_back({sum.row, 0, j, sum.value});
        else
          down[i][j] = sum;
      }
    across_ = std::move(across);
    down_ = std::move(down);
    return results;
  }

 private:
  Dataflow dataflow_;
  std::uint64_t h_, w_, streamed_;
  IntMatrix stationary_;
  std::deque<RowEntry> history_;  // [age]: the row that entered PE row 0 `age` cycles ago
  std::vector<std::vector<Cell>> across_, down_;
  std::vector<std::vector<std::int64_t>> sums_;
  std::vector<std::vector<std::uint64_t>> products_;
};

class LayerMachine {
 public:
  LayerMachine(const Npu& npu, const std::vector<IntMatrix>& activations, const std::vector<IntMatrix>& weights,
               const Placement& placement, const std::vector<IntMatrix>& epilogue, bool operands_always_on_chip)
      : npu_(npu), a_(activations), w_(weights), epilogue_(epilogue), placement_(placement),
        ideal_(operands_always_on_chip) {
    const NpuConfig& c = npu.config();
    dataflow_ = c.systolic.dataflow;
    R_ = c.systolic.rows;
    C_ = c.systolic.cols;
    e_ = c.element_bytes;
    acc_ = c.accumulator_bytes;
    groups_ = a_.size();
    m_ = static_cast<std::uint64_t>(a_[0].rows());
    k_ = static_cast<std::uint64_t>(a_[0].cols());
    n_ = static_cast<std::uint64_t>(w_[0].cols());
    switch (dataflow_) {
      case Dataflow::output_stationary: std::tie(over_rows_, over_cols_, streamed_) = std::tuple{m_, n_, k_}; break;
      case Dataflow::weight_stationary: std::tie(over_rows_, over_cols_, streamed_) = std::tuple{k_, n_, m_}; break;
      case Dataflow::input_stationary: std::tie(over_rows_, over_cols_, streamed_) = std::tuple{k_, m_, n_}; break;
    }
    row_folds_ = (over_rows_ + R_ - 1) / R_;
    col_folds_ = (over_cols_ + C_ - 1) / C_;
    folds_ = groups_ * row_folds_ * col_folds_;
    pools_[0].capacity = c.buffers.input_bytes > placement.reserved_input_bytes
                             ? c.buffers.input_bytes - placement.reserved_input_bytes
                             : 0;
    pools_[1].capacity = c.buffers.weight_bytes;
    pools_[2].capacity = c.buffers.output_bytes;
    decide_streams();
    segments_ = folds_ * per_fold_;
    results_ready_.assign(segments_, not_yet);
    segment_start_.assign(segments_, not_yet);
    allocation_take_.assign(segments_, not_yet);
    for (std::uint64_t g = 0; g < groups_; ++g) outputs_.push_back(IntMatrix::Zero(at(m_), at(n_)));
    if (!ideal_) build_program();
  }

  void tick() {
    const std::uint64_t t = cycle_;
    if (!ideal_) {
      finish_transfer(t);
      apply_releases(t);
      keep_outputs_on_chip(t);
    }
    step_array(t);
    if (!ideal_) {
      issue_requests(t);
      start_transfer(t);
    }
    ++cycle_;
    if (++idle_ > idle_cycles_limit) throw std::runtime_error("systolic memory reference: no progress");
  }

  bool finished() const {
    if (next_segment_ < segments_ || fold_ != nullptr || (!stored_on_chip_.empty() && !on_chip_done(cycle_)))
      return false;
    return head_ == program_.size() && pipe_.empty() && (transfer_ == not_yet || transfer_end_ <= cycle_);
  }

  // Delivers what completes at the very end (the last transfer, outputs kept on chip).
  void flush() {
    finish_transfer(transfer_end_);
    keep_outputs_on_chip(not_yet - 1);
  }

  std::uint64_t cycles() const { return cycle_; }
  const TrafficBytes& bytes() const { return bytes_; }
  const std::vector<IntMatrix>& outputs() const { return outputs_; }

 private:
  // ---- The contract's static decisions (docs/systolic-memory.md §2, §3, §5) ----

  std::uint64_t input_capacity() const { return pools_[0].capacity; }
  Pool& pool(BufferName b) { return pools_[static_cast<int>(b)]; }

  void decide_streams() {
    const std::uint64_t used_rows = std::min(R_, over_rows_), used_cols = std::min(C_, over_cols_);
    const bool activations_cross = !placement_.input_on_chip;
    const std::uint64_t weight_capacity = pools_[1].capacity, output_capacity = pools_[2].capacity;
    std::vector<std::uint64_t> row_bytes;
    // Kept only where reused: a row-fold block by the other column folds, a column block by the
    // other row folds.
    const bool row_reuse = col_folds_ > 1, col_reuse = row_folds_ > 1;
    if (dataflow_ == Dataflow::output_stationary) {
      streams_.push_back(
          {false, activations_cross, true, row_reuse && m_ * k_ * e_ <= input_capacity(), BufferName::input, 0});
      row_bytes.push_back(used_rows * e_);
      streams_.push_back({true, true, false, col_reuse && k_ * used_cols * e_ <= weight_capacity, BufferName::weight, 0});
      row_bytes.push_back(used_cols * e_);
    } else if (dataflow_ == Dataflow::weight_stationary) {
      streams_.push_back(
          {false, activations_cross, true, row_reuse && m_ * k_ * e_ <= input_capacity(), BufferName::input, 0});
      row_bytes.push_back(used_rows * e_);
      stationary_buffer_ = BufferName::weight;
      stationary_crosses_ = true;
    } else {
      streams_.push_back({true, true, true, row_reuse && k_ * n_ * e_ <= weight_capacity, BufferName::weight, 0});
      row_bytes.push_back(used_rows * e_);
      stationary_buffer_ = BufferName::input;
      stationary_crosses_ = activations_cross;
    }
    has_stationary_ = dataflow_ != Dataflow::output_stationary;
    spill_ = has_stationary_ && row_folds_ > 1 && streamed_ * used_cols * acc_ > output_capacity;
    std::uint64_t rows = std::min(rows_per_side * std::max(R_, C_), streamed_);
    for (std::size_t i = 0; i < streams_.size(); ++i)
      if (streams_[i].crosses_channel) rows = std::min(rows, pool(streams_[i].buffer).capacity / row_bytes[i]);
    if (has_stationary_) rows = std::min(rows, output_capacity / ((spill_ ? 2 : 1) * used_cols * acc_));
    if (ideal_) rows = std::max<std::uint64_t>(rows, 1);
    if (rows == 0) throw std::invalid_argument("systolic memory reference: a segment does not fit");
    L_ = rows;
    per_fold_ = (streamed_ + L_ - 1) / L_;
    for (std::size_t i = 0; i < streams_.size(); ++i) {
      const std::uint64_t segments_held = pool(streams_[i].buffer).capacity / (L_ * row_bytes[i]);
      streams_[i].ahead = segments_held > 1 ? 1 : 0;
    }
    if (has_stationary_) {
      const std::uint64_t blocks_held = pool(stationary_buffer_).capacity / (used_rows * used_cols * e_);
      stationary_ahead_ = std::clamp<std::uint64_t>(blocks_held, 1, 2);
    }
  }

  struct Where {
    std::uint64_t group, col_fold, row_fold, h, w, row0, col0, piece, first_row, rows;
  };
  Where where(std::uint64_t segment) const {
    Where x{};
    const std::uint64_t fold = segment / per_fold_, in_group = fold % (row_folds_ * col_folds_);
    x.group = fold / (row_folds_ * col_folds_);
    x.col_fold = in_group / row_folds_;
    x.row_fold = in_group % row_folds_;
    x.row0 = x.row_fold * R_;
    x.col0 = x.col_fold * C_;
    x.h = std::min(R_, over_rows_ - x.row0);
    x.w = std::min(C_, over_cols_ - x.col0);
    x.piece = segment % per_fold_;
    x.first_row = x.piece * L_;
    x.rows = std::min(L_, streamed_ - x.first_row);
    return x;
  }
  std::uint64_t fold_segment(std::uint64_t group, std::uint64_t col_fold, std::uint64_t row_fold,
                             std::uint64_t piece) const {
    return ((group * col_folds_ + col_fold) * row_folds_ + row_fold) * per_fold_ + piece;
  }
  // The segment whose load brought the data `segment` streams.
  std::uint64_t source_segment(const Stream& s, std::uint64_t segment) const {
    const Where x = where(segment);
    if (!s.kept) return segment;
    return s.per_row_fold ? fold_segment(x.group, 0, x.row_fold, x.piece) : fold_segment(x.group, x.col_fold, 0, x.piece);
  }
  bool final_use(const Stream& s, std::uint64_t segment) const {
    const Where x = where(segment);
    if (!s.kept) return true;
    return s.per_row_fold ? x.col_fold + 1 == col_folds_ : x.row_fold + 1 == row_folds_;
  }
  std::uint64_t stream_row_bytes(const Stream& s, const Where& x) const { return (s.per_row_fold ? x.h : x.w) * e_; }
  // Accumulators: one set per output segment (WS, IS) or per fold (OS).
  std::uint64_t accumulator_key(std::uint64_t segment) const {
    const Where x = where(segment);
    if (!has_stationary_) return segment / per_fold_;
    return (x.group * col_folds_ + x.col_fold) * per_fold_ + x.piece;
  }
  // Bytes of the accumulator set `segment` writes from.
  std::uint64_t accumulator_bytes(std::uint64_t segment) const {
    const Where x = where(segment);
    return (has_stationary_ ? x.rows : x.h) * x.w * acc_;
  }
  std::uint64_t allocates(std::uint64_t segment) const {
    const Where x = where(segment);
    if (!has_stationary_) return x.piece == 0 ? x.h * x.w * acc_ : 0;
    return x.row_fold == 0 ? x.rows * x.w * acc_ : 0;
  }

  // ---- The stream order (docs/systolic-memory.md §6) ----

  void build_program() {
    struct Placed {
      std::int64_t slot;
      int order;
      std::uint64_t index;
      bool marker;  // a segment start (its allocation's place among the takes), not a request
      Request request;
    };
    std::vector<Placed> items;
    const auto signed_of = [](std::uint64_t v) { return static_cast<std::int64_t>(v); };
    const bool epilogue_off_chip = placement_.epilogue == EpilogueOperand::off_chip;
    for (std::uint64_t g = 0; g < segments_; ++g) {
      const Where x = where(g);
      const bool last_row_fold = x.row_fold + 1 == row_folds_, last_piece = x.piece + 1 == per_fold_;
      const std::int64_t sg = signed_of(g);
      const bool writes_outputs = has_stationary_ ? last_row_fold : last_piece;
      if (writes_outputs && !placement_.output_on_chip) {
        const std::uint64_t values = has_stationary_ ? x.rows * x.w : x.h * x.w;
        items.push_back({sg + 1, 0, g, false, {Job::write_outputs, g, 0, values * e_}});
      } else if (has_stationary_ && !last_row_fold && spill_) {
        items.push_back({sg + 1, 0, g, false, {Job::write_partials, g, 0, x.rows * x.w * acc_}});
      }
      if (spill_ && x.row_fold > 0) {
        const Request read{Job::read_partials, g, 0, x.rows * x.w * acc_};
        if (per_fold_ == 1)
          items.push_back({sg, 1, g, false, read});
        else
          items.push_back({sg - 1, 3, g, false, read});
      }
      if (allocates(g) > 0) items.push_back({sg, 2, g, true, {}});
      if (epilogue_off_chip && (has_stationary_ ? last_row_fold : x.piece == 0)) {
        const std::uint64_t values = has_stationary_ ? x.rows * x.w : x.h * x.w;
        items.push_back({sg, 4, g, false, {Job::load_epilogue, g, 0, values * e_}});
      }
      for (std::uint64_t i = 0; i < streams_.size(); ++i) {
        const Stream& s = streams_[i];
        if (!s.crosses_channel || source_segment(s, g) != g) continue;
        std::int64_t slot = sg - 1 - signed_of(s.ahead);
        if (s.kept) {
          const std::uint64_t period_start =
              s.per_row_fold ? fold_segment(x.group, 0, 0, 0) : fold_segment(x.group, x.col_fold, 0, 0);
          slot = std::max(slot, signed_of(period_start) - 1);
        }
        items.push_back({std::max<std::int64_t>(slot, -1), s.weights ? 6 : 7, g, false,
                         {Job::load_stream, g, i, x.rows * stream_row_bytes(s, x)}});
      }
    }
    if (has_stationary_ && stationary_crosses_)
      for (std::uint64_t f = 0; f < folds_; ++f) {
        const Where x = where(f * per_fold_);
        const std::int64_t slot =
            f < stationary_ahead_ ? -1 : signed_of((f - stationary_ahead_) * per_fold_) - 1;
        items.push_back({slot, 5, f, false, {Job::load_stationary, f, 0, x.h * x.w * e_}});
      }
    std::stable_sort(items.begin(), items.end(), [](const Placed& p, const Placed& q) {
      return std::tie(p.slot, p.order, p.index) < std::tie(q.slot, q.order, q.index);
    });
    std::uint64_t takes = 0;
    for (Placed& item : items) {
      if (item.marker) {
        allocation_take_[item.index] = takes++;
        continue;
      }
      if (item.request.job == Job::read_partials) item.request.take = takes++;
      program_.push_back(item.request);
    }
  }

  // ---- The DMA engine and the channel ----

  bool ready(const Request& r, std::uint64_t t) const {
    switch (r.job) {
      case Job::load_stream: return pools_[static_cast<int>(streams_[r.stream].buffer)].has_room(r.bytes);
      case Job::load_stationary: return pools_[static_cast<int>(stationary_buffer_)].has_room(r.bytes);
      case Job::read_partials:
        return partials_in_dram_.count(accumulator_key(r.unit)) > 0 && next_take_ == r.take &&
               pools_[2].has_room(r.bytes);
      case Job::load_epilogue: return segment_start_[r.unit] <= t;
      case Job::write_partials: return results_ready_[r.unit] <= t;
      case Job::write_outputs:
        return results_ready_[r.unit] <= t &&
               (placement_.epilogue != EpilogueOperand::off_chip || epilogue_in_.count(accumulator_key(r.unit)) > 0);
    }
    return false;
  }

  void issue_requests(std::uint64_t t) {
    const std::uint64_t queue_depth = npu_.config().offchip.queue_depth;
    while (head_ < program_.size() && issued_ - completed_ < queue_depth && ready(program_[head_], t)) {
      Request& r = program_[head_];
      switch (r.job) {
        case Job::load_stream:
          pool(streams_[r.stream].buffer).held += r.bytes;
          (streams_[r.stream].weights ? bytes_.weight : bytes_.input) += r.bytes;
          break;
        case Job::load_stationary:
          pool(stationary_buffer_).held += r.bytes;
          (stationary_buffer_ == BufferName::weight ? bytes_.weight : bytes_.input) += r.bytes;
          break;
        case Job::read_partials:
          pools_[2].held += r.bytes;
          ++next_take_;
          in_flight_data_[head_] = partials_in_dram_.at(accumulator_key(r.unit));
          partials_in_dram_.erase(accumulator_key(r.unit));
          bytes_.psum += r.bytes;
          break;
        case Job::write_partials:
          in_flight_data_[head_] = accumulators_.at(accumulator_key(r.unit));
          accumulators_.erase(accumulator_key(r.unit));
          bytes_.psum += r.bytes;
          break;
        case Job::write_outputs:
          in_flight_data_[head_] = finished_values(r.unit);
          bytes_.output += r.bytes;
          break;
        case Job::load_epilogue: bytes_.epilogue += r.bytes; break;
      }
      pipe_.push_back({t, head_});
      ++issued_;
      ++head_;
      idle_ = 0;
    }
  }

  void start_transfer(std::uint64_t t) {
    if (transfer_ != not_yet || pipe_.empty() || pipe_.front().first + npu_.latency_cycles() > t) return;
    transfer_ = pipe_.front().second;
    pipe_.pop_front();
    transfer_end_ = t + npu_.data_cycles(program_[transfer_].bytes);
    idle_ = 0;
  }

  void finish_transfer(std::uint64_t t) {
    if (transfer_ == not_yet || transfer_end_ > t) return;
    const Request& r = program_[transfer_];
    switch (r.job) {
      case Job::load_stream: stream_data_[r.stream][r.unit] = streamed_slice(streams_[r.stream], r.unit); break;
      case Job::load_stationary: stationary_data_[r.unit] = stationary_block(r.unit); break;
      case Job::read_partials:
        accumulators_[accumulator_key(r.unit)] = std::move(in_flight_data_.at(transfer_));
        partials_back_.insert(r.unit);
        break;
      case Job::load_epilogue: epilogue_in_[accumulator_key(r.unit)] = epilogue_slice(r.unit); break;
      case Job::write_partials:
        partials_in_dram_[accumulator_key(r.unit)] = std::move(in_flight_data_.at(transfer_));
        pools_[2].held -= r.bytes;
        break;
      case Job::write_outputs:
        store_outputs(r.unit, in_flight_data_.at(transfer_));
        pools_[2].held -= accumulator_bytes(r.unit);
        break;
    }
    in_flight_data_.erase(transfer_);
    transfer_ = not_yet;
    ++completed_;
    idle_ = 0;
  }

  void apply_releases(std::uint64_t t) {
    while (!releases_.empty() && releases_.begin()->first <= t) {
      pool(releases_.begin()->second.first).held -= releases_.begin()->second.second;
      releases_.erase(releases_.begin());
    }
  }

  // Outputs that stay on chip: their accumulators free once the write would have been ready.
  bool on_chip_ready(std::uint64_t segment, std::uint64_t t) const {
    return results_ready_[segment] <= t &&
           (placement_.epilogue != EpilogueOperand::off_chip || epilogue_in_.count(accumulator_key(segment)) > 0);
  }
  bool on_chip_done(std::uint64_t t) const {
    for (std::uint64_t g : stored_on_chip_)
      if (results_ready_[g] > t) return false;
    return true;
  }
  void keep_outputs_on_chip(std::uint64_t t) {
    while (!stored_on_chip_.empty() && on_chip_ready(stored_on_chip_.front(), t)) {
      const std::uint64_t g = stored_on_chip_.front();
      store_outputs(g, finished_values(g));
      if (!ideal_) pools_[2].held -= accumulator_bytes(g);
      stored_on_chip_.pop_front();
    }
  }

  // ---- Data: what each request carries, read from "DRAM" ----

  IntMatrix streamed_slice(const Stream& s, std::uint64_t segment) const {
    const Where x = where(segment);
    const std::uint64_t width = s.per_row_fold ? x.h : x.w;
    IntMatrix slice(at(x.rows), at(width));
    for (std::uint64_t r = 0; r < x.rows; ++r)
      for (std::uint64_t lane = 0; lane < width; ++lane) slice(at(r), at(lane)) = source_value(s, x, x.first_row + r, lane);
    return slice;
  }
  // Streamed row `row` (the streamed index) at lane `lane` of the PE rows (or columns).
  std::int64_t source_value(const Stream& s, const Where& x, std::uint64_t row, std::uint64_t lane) const {
    const IntMatrix& a = a_[x.group];
    const IntMatrix& w = w_[x.group];
    switch (dataflow_) {
      case Dataflow::output_stationary:
        return s.weights ? w(at(row), at(x.col0 + lane)) : a(at(x.row0 + lane), at(row));
      case Dataflow::weight_stationary: return a(at(row), at(x.row0 + lane));
      case Dataflow::input_stationary: return w(at(x.row0 + lane), at(row));
    }
    return 0;
  }
  IntMatrix stationary_block(std::uint64_t fold) const {
    const Where x = where(fold * per_fold_);
    IntMatrix block(at(x.h), at(x.w));
    for (std::uint64_t i = 0; i < x.h; ++i)
      for (std::uint64_t j = 0; j < x.w; ++j)
        block(at(i), at(j)) = dataflow_ == Dataflow::weight_stationary ? w_[x.group](at(x.row0 + i), at(x.col0 + j))
                                                                       : a_[x.group](at(x.col0 + j), at(x.row0 + i));
    return block;
  }
  // Output (m, n) of accumulator cell (r, c) of `segment`'s set.
  std::pair<std::uint64_t, std::uint64_t> output_index(const Where& x, std::uint64_t r, std::uint64_t c) const {
    switch (dataflow_) {
      case Dataflow::output_stationary: return {x.row0 + r, x.col0 + c};
      case Dataflow::weight_stationary: return {x.first_row + r, x.col0 + c};
      case Dataflow::input_stationary: return {x.col0 + c, x.first_row + r};
    }
    return {0, 0};
  }
  IntMatrix epilogue_slice(std::uint64_t segment) const {
    const Where x = where(segment);
    const std::uint64_t rows = has_stationary_ ? x.rows : x.h;
    IntMatrix slice(at(rows), at(x.w));
    for (std::uint64_t r = 0; r < rows; ++r)
      for (std::uint64_t c = 0; c < x.w; ++c) {
        const auto [mi, ni] = output_index(x, r, c);
        slice(at(r), at(c)) = epilogue_[x.group](at(mi), at(ni));
      }
    return slice;
  }
  IntMatrix finished_values(std::uint64_t segment) const {
    IntMatrix values = accumulators_.at(accumulator_key(segment));
    if (placement_.epilogue == EpilogueOperand::off_chip) values += epilogue_in_.at(accumulator_key(segment));
    if (placement_.epilogue == EpilogueOperand::on_chip) values += epilogue_slice(segment);
    return values;
  }
  void store_outputs(std::uint64_t segment, const IntMatrix& values) {
    const Where x = where(segment);
    for (Eigen::Index r = 0; r < values.rows(); ++r)
      for (Eigen::Index c = 0; c < values.cols(); ++c) {
        const auto [mi, ni] = output_index(x, static_cast<std::uint64_t>(r), static_cast<std::uint64_t>(c));
        outputs_[x.group](at(mi), at(ni)) = values(r, c);
      }
    accumulators_.erase(accumulator_key(segment));
    epilogue_in_.erase(accumulator_key(segment));
  }

  // ---- The array ----

  bool stream_present(std::uint64_t segment) const {
    if (ideal_) return true;
    for (std::size_t i = 0; i < streams_.size(); ++i)
      if (streams_[i].crosses_channel && stream_data_[i].count(source_segment(streams_[i], segment)) == 0) return false;
    return true;
  }

  bool try_start_segment(std::uint64_t t) {
    const std::uint64_t g = next_segment_;
    const Where x = where(g);
    const std::uint64_t fold = g / per_fold_;
    if (x.piece == 0 && (fold_ != nullptr || (has_stationary_ && shadow_fold_ != fold))) return false;
    if (!stream_present(g)) return false;
    if (!ideal_ && spill_ && x.row_fold > 0 && partials_back_.count(g) == 0) return false;
    if (const std::uint64_t bytes = allocates(g); bytes > 0) {
      if (!ideal_ && (next_take_ != allocation_take_[g] || !pools_[2].has_room(bytes))) return false;
      if (!ideal_) {
        pools_[2].held += bytes;
        ++next_take_;
      }
      accumulators_[accumulator_key(g)] =
          IntMatrix::Zero(at(has_stationary_ ? x.rows : x.h), at(x.w));
    }
    segment_start_[g] = t;
    if (x.piece == 0) {
      fold_ = std::make_unique<FoldDatapath>(dataflow_, x.h, x.w, streamed_,
                                             has_stationary_ ? shadow_ : IntMatrix());
      shadow_fold_ = not_yet;
      results_left_.assign(per_fold_, 0);
      for (std::uint64_t p = 0; p < per_fold_; ++p)
        results_left_[p] = has_stationary_ ? where(fold * per_fold_ + p).rows * x.w : (p == 0 ? x.h * x.w : 0);
    }
    rows_entered_ = 0;
    streaming_ = true;
    return true;
  }

  RowEntry next_row(std::uint64_t t) {
    const std::uint64_t g = next_segment_;
    const Where x = where(g);
    RowEntry entry{true, x.first_row + rows_entered_, {}, {}};
    for (std::size_t i = 0; i < streams_.size(); ++i) {
      const Stream& s = streams_[i];
      std::vector<std::int64_t>& lanes = s.per_row_fold ? entry.left : entry.top;
      const std::uint64_t width = s.per_row_fold ? x.h : x.w;
      for (std::uint64_t lane = 0; lane < width; ++lane)
        lanes.push_back(ideal_ || !s.crosses_channel
                            ? source_value(s, x, entry.row, lane)
                            : stream_data_[i].at(source_segment(s, g))(at(rows_entered_), at(lane)));
    }
    if (++rows_entered_ == x.rows) {
      streaming_ = false;
      for (std::size_t i = 0; i < streams_.size(); ++i) {
        const Stream& s = streams_[i];
        if (ideal_ || !s.crosses_channel || !final_use(s, g)) continue;
        stream_data_[i].erase(source_segment(s, g));
        releases_.insert({t + 1, {s.buffer, x.rows * stream_row_bytes(s, x)}});
      }
      ++next_segment_;
    }
    return entry;
  }

  void shift_stationary(std::uint64_t t) {
    if (!has_stationary_) return;
    if (shift_row_ == not_yet) {
      if (shadow_fold_ != not_yet || next_shift_ >= folds_) return;
      const bool on_chip = ideal_ || !stationary_crosses_;
      if (!on_chip && stationary_data_.count(next_shift_) == 0) return;
      const Where x = where(next_shift_ * per_fold_);
      shift_block_ = on_chip ? stationary_block(next_shift_) : stationary_data_.at(next_shift_);
      shifting_ = IntMatrix::Zero(at(x.h), at(x.w));
      shift_row_ = 0;
    }
    // Last row first, one row a cycle down the shadow registers.
    const Eigen::Index h = shifting_.rows();
    for (Eigen::Index i = h - 1; i > 0; --i) shifting_.row(i) = shifting_.row(i - 1);
    shifting_.row(0) = shift_block_.row(h - 1 - static_cast<Eigen::Index>(shift_row_));
    idle_ = 0;
    if (++shift_row_ < static_cast<std::uint64_t>(h)) return;
    shadow_ = shifting_;
    shadow_fold_ = next_shift_;
    if (!ideal_ && stationary_crosses_) {
      stationary_data_.erase(next_shift_);
      releases_.insert({t + 1, {stationary_buffer_, shift_block_.size() * e_}});
    }
    ++next_shift_;
    shift_row_ = not_yet;
  }

  void step_array(std::uint64_t t) {
    if (!streaming_ && next_segment_ < segments_) try_start_segment(t);
    shift_stationary(t);
    if (fold_ == nullptr) return;
    const std::uint64_t fold = (streaming_ ? next_segment_ : next_segment_ - 1) / per_fold_;
    RowEntry entry;
    if (streaming_) {
      entry = next_row(t);
      idle_ = 0;
    }
    for (const Result& r : fold_->tick(std::move(entry))) {
      idle_ = 0;
      const std::uint64_t piece = has_stationary_ ? r.row / L_ : 0;
      const std::uint64_t g = fold * per_fold_ + piece;
      IntMatrix& sums = accumulators_.at(accumulator_key(g));
      if (has_stationary_)
        sums(at(r.row - piece * L_), at(r.j)) += r.value;
      else
        sums(at(r.i), at(r.j)) = r.value;
      if (--results_left_[piece] > 0) continue;
      const std::uint64_t finished = has_stationary_ ? g : fold * per_fold_ + per_fold_ - 1;
      results_ready_[finished] = t + 1;
      const Where x = where(finished);
      const bool outputs_final = has_stationary_ ? x.row_fold + 1 == row_folds_ : true;
      if (outputs_final && (placement_.output_on_chip || ideal_)) stored_on_chip_.push_back(finished);
      if (std::all_of(results_left_.begin(), results_left_.end(), [](std::uint64_t left) { return left == 0; }))
        fold_.reset();
    }
    if (ideal_) keep_outputs_on_chip(not_yet - 1);
  }

  const Npu& npu_;
  const std::vector<IntMatrix>& a_;
  const std::vector<IntMatrix>& w_;
  const std::vector<IntMatrix>& epilogue_;
  Placement placement_;
  bool ideal_ = false;
  Dataflow dataflow_ = Dataflow::weight_stationary;
  std::uint64_t R_ = 1, C_ = 1, e_ = 1, acc_ = 4, groups_ = 1, m_ = 1, k_ = 1, n_ = 1;
  std::uint64_t over_rows_ = 1, over_cols_ = 1, streamed_ = 1, row_folds_ = 1, col_folds_ = 1, folds_ = 1;
  std::uint64_t L_ = 1, per_fold_ = 1, segments_ = 0, stationary_ahead_ = 1;
  bool has_stationary_ = false, stationary_crosses_ = false, spill_ = false;
  BufferName stationary_buffer_ = BufferName::weight;
  std::vector<Stream> streams_;
  Pool pools_[3];

  std::vector<Request> program_;
  std::size_t head_ = 0;
  std::uint64_t issued_ = 0, completed_ = 0, next_take_ = 0;
  std::deque<std::pair<std::uint64_t, std::size_t>> pipe_;  // (issue cycle, request) waiting for the bus
  std::size_t transfer_ = not_yet;
  std::uint64_t transfer_end_ = 0;
  std::map<std::size_t, IntMatrix> in_flight_data_;
  std::multimap<std::uint64_t, std::pair<BufferName, std::uint64_t>> releases_;

  std::map<std::uint64_t, IntMatrix> stream_data_[2], stationary_data_, accumulators_, epilogue_in_, partials_in_dram_;
  std::vector<IntMatrix> outputs_;
  std::deque<std::uint64_t> stored_on_chip_;
  std::set<std::uint64_t> partials_back_;  // segments whose partial sums have been read back

  std::vector<std::uint64_t> results_ready_, segment_start_, allocation_take_, results_left_;
  std::uint64_t next_segment_ = 0, rows_entered_ = 0, next_shift_ = 0, shift_row_ = not_yet, shadow_fold_ = not_yet;
  bool streaming_ = false;
  std::unique_ptr<FoldDatapath> fold_;
  IntMatrix shadow_, shifting_, shift_block_;
  std::uint64_t cycle_ = 0, idle_ = 0;
  TrafficBytes bytes_;
};

}  // namespace

SystolicMemoryReferenceRun run_systolic_memory_reference(const Npu& npu, const std::vector<IntMatrix>& activations,
                                                         const std::vector<IntMatrix>& weights,
                                                         const Placement& placement,
                                                         const std::vector<IntMatrix>& epilogue_operand) {
  if (!npu.is_systolic()) throw std::invalid_argument("the systolic memory reference needs a systolic NPU");
  if (activations.empty() || activations.size() != weights.size())
    throw std::invalid_argument("one activation and one weight matrix per group, at least one group");
  for (std::size_t g = 0; g < activations.size(); ++g)
    if (activations[g].cols() != weights[g].rows() || activations[g].size() == 0 || weights[g].size() == 0 ||
        activations[g].rows() != activations[0].rows() || activations[g].cols() != activations[0].cols() ||
        weights[g].cols() != weights[0].cols())
      throw std::invalid_argument("every group must be the same m x k times k x n, all at least 1");
  if (placement.epilogue != EpilogueOperand::none &&
      (epilogue_operand.size() != activations.size() ||
       epilogue_operand[0].rows() != activations[0].rows() || epilogue_operand[0].cols() != weights[0].cols()))
    throw std::invalid_argument("a fused add needs an m x n operand per group");

  SystolicMemoryReferenceRun run;
  LayerMachine ideal(npu, activations, weights, placement, epilogue_operand, true);
  run_clocked(npu.config().clock_mhz, [&] { ideal.tick(); }, [&] { return ideal.finished(); });
  run.compute_cycles = ideal.cycles();

  LayerMachine machine(npu, activations, weights, placement, epilogue_operand, false);
  const ClockedRun clocked =
      run_clocked(npu.config().clock_mhz, [&] { machine.tick(); }, [&] { return machine.finished(); });
  machine.flush();
  run.cycles = machine.cycles();
  run.bytes = machine.bytes();
  run.outputs = machine.outputs();
  run.clock_period_ps = clocked.period_ps;
  run.simulated_ps = clocked.simulated_ps;
  return run;
}

}  // namespace npusim::npu
