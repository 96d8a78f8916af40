#include "npu_model/reference_array.hpp"

#include "npu_model/clocked_run.hpp"

#include <algorithm>
#include <deque>
#include <stdexcept>

namespace npusim::npu {
namespace {

// One request on the off-chip channel. A request is issued at `not_before`; its data may use
// the bus from not_before + latency on. The bus carries one request's data at a time, in queue
// order, streaming floor(j * bandwidth / clock) bytes by the request's j-th bus cycle.
struct DmaRequest {
  enum class Kind { input, weights, output } kind;
  std::uint64_t step = 0;        // input/weights: the step whose operands it loads
  std::uint64_t tile = 0;        // output: the tile it writes
  std::uint64_t elements = 0;    // elements that cross the channel
  std::uint64_t not_before = 0;  // issue cycle
  bool started = false;
  std::uint64_t bus_cycles = 0;
  std::uint64_t moved = 0;
};

// A row on its way through multiply, PE adder tree, stacking adders and accumulator.
struct RowPacket {
  std::uint64_t acc_slot = 0;
  std::uint64_t row = 0;
  bool first_step = false;  // first P step of its tile: overwrite the accumulator
  std::uint32_t stage = 0;  // 0 = products registered
  std::vector<std::vector<std::int64_t>> partials;  // [PE column][lane or partial sum]
};

std::vector<std::int64_t> halve(const std::vector<std::int64_t>& values) {
  std::vector<std::int64_t> out((values.size() + 1) / 2, 0);
  for (std::size_t i = 0; i < values.size(); ++i) out[i / 2] += values[i];
  return out;
}

class ArrayDatapath {
 public:
  // One pass: groups [first_group, first_group + packed) of every sample.
  ArrayDatapath(const Npu& npu, const std::vector<IntMatrix>& group_weights,
                const std::vector<std::vector<IntMatrix>>& inputs, const BatchMapping& mapping,
                std::size_t first_group, std::uint64_t packed)
      : npu_(npu), g_(npu.geometry(mapping.k)), mapping_(mapping), packed_(packed) {
    for (std::uint64_t j = 0; j < packed; ++j) weights_.push_back(&group_weights[first_group + j]);
    shape_ = {static_cast<std::uint64_t>(inputs.front().front().rows()),
              static_cast<std::uint64_t>(group_weights.front().rows()),
              static_cast<std::uint64_t>(group_weights.front().cols()), packed};
    const auto e = effective_gemm(shape_, mapping, packed);
    rows_e_ = e.rows;
    depth_e_ = e.depth;
    cols_e_ = e.cols;
    block_diagonal_ = e.blocks > 1;
    // Batch formation: sample b sits at grid cell (b / b_p, b % b_p); its packed groups sit side
    // by side inside the cell; empty cells stay zero.
    const auto r = static_cast<Eigen::Index>(shape_.rows), p = static_cast<Eigen::Index>(shape_.depth);
    x_eff_ = IntMatrix::Zero(static_cast<Eigen::Index>(rows_e_), static_cast<Eigen::Index>(depth_e_));
    for (std::size_t b = 0; b < inputs.size(); ++b)
      for (std::uint64_t j = 0; j < packed; ++j) {
        const auto gr = static_cast<Eigen::Index>(b / mapping.b_p);
        const auto block = static_cast<Eigen::Index>((b % mapping.b_p) * packed + j);
        x_eff_.block(gr * r, block * p, r, p) = inputs[b][first_group + j];
      }
    y_eff_ = IntMatrix::Zero(static_cast<Eigen::Index>(rows_e_), static_cast<Eigen::Index>(cols_e_));
    n_r_ = (rows_e_ + g_.tile_rows - 1) / g_.tile_rows;
    n_p_ = (depth_e_ + g_.tile_depth - 1) / g_.tile_depth;
    n_c_ = (cols_e_ + g_.tile_cols - 1) / g_.tile_cols;
    steps_ = n_r_ * n_p_ * n_c_;
    double_buffered_ = g_.double_buffered;
    resident_ = g_.weight_tile_slots >= n_p_ + (double_buffered_ ? 1 : 0);
    const std::size_t buffers = double_buffered_ ? 2 : 1;
    const std::size_t weight_slots = resident_ ? n_p_ + (double_buffered_ ? 1 : 0) : buffers;
    input_slots_.assign(buffers, IntMatrix::Zero(g_.tile_rows, g_.tile_depth));
    weight_slots_.assign(weight_slots, IntMatrix::Zero(g_.tile_depth, g_.tile_cols));
    acc_slots_.assign(buffers, IntMatrix::Zero(g_.tile_rows, g_.tile_cols));
    per_pe_levels_ = ceil_log2(npu.config().pe_width);
    stack_levels_ = ceil_log2(g_.k);
  }

  // Sample b's result for packed group j.
  IntMatrix output(std::size_t b, std::uint64_t j) const {
    const auto r = static_cast<Eigen::Index>(shape_.rows), c = static_cast<Eigen::Index>(shape_.cols);
    const auto gr = static_cast<Eigen::Index>(b / mapping_.b_p);
    const auto block = static_cast<Eigen::Index>((b % mapping_.b_p) * packed_ + j);
    return y_eff_.block(gr * r, block * c, r, c);
  }

  bool finished() const { return finished_; }
  std::uint64_t cycles() const { return cycle_; }
  std::uint64_t compute_cycles() const { return compute_cycles_; }
  std::uint64_t offchip_bytes() const { return offchip_bytes_; }

  // One clock cycle of every component.
  void tick() {
    if (!phase_active_) start_next_phase();
    advance_pipeline();
    issue_row();
    run_channel();
    if (phase_rows_left_ == 0 && queue_.empty()) {
      phase_active_ = false;
      if (phase_ == last_phase()) finished_ = true;
    }
    ++cycle_;
  }

 private:
  struct StepIndex {
    std::uint64_t c, r, p, tile;
  };
  StepIndex decode(std::uint64_t step) const {
    const std::uint64_t p = step % n_p_;
    const std::uint64_t tile = step / n_p_;
    return {tile / n_r_, tile % n_r_, p, tile};
  }
  std::uint64_t rows_of(std::uint64_t r) const {
    return std::min<std::uint64_t>(g_.tile_rows, rows_e_ - r * g_.tile_rows);
  }
  std::uint64_t depth_of(std::uint64_t p) const {
    return std::min<std::uint64_t>(g_.tile_depth, depth_e_ - p * g_.tile_depth);
  }
  std::uint64_t cols_of(std::uint64_t c) const {
    return std::min<std::uint64_t>(g_.tile_cols, cols_e_ - c * g_.tile_cols);
  }
  std::uint64_t input_slot(std::uint64_t step) const { return double_buffered_ ? step % 2 : 0; }
  std::uint64_t acc_slot(std::uint64_t tile) const { return double_buffered_ ? tile % 2 : 0; }
  std::uint64_t weight_slot(std::uint64_t step) const {
    const auto s = decode(step);
    if (resident_)
      return double_buffered_ ? (s.c * n_p_ + s.p) % (n_p_ + 1) : s.p;
    return double_buffered_ ? step % 2 : 0;
  }
  bool loads_weights(std::uint64_t step) const { return !resident_ || decode(step).r == 0; }
  std::uint64_t distinct_weight_cols(std::uint64_t c) const {
    return std::min<std::uint64_t>(cols_of(c), packed_ * shape_.cols);
  }
  std::uint64_t distinct_weight_depth(std::uint64_t p) const {
    return block_diagonal_ ? shape_.depth : depth_of(p);
  }

  // Phases: -1 loads the first step; 0..steps-1 stream one step each; a double-buffered run
  // ends with one more phase that writes the last tile.
  std::int64_t last_phase() const {
    return double_buffered_ ? static_cast<std::int64_t>(steps_) : static_cast<std::int64_t>(steps_) - 1;
  }

  void enqueue_load(std::uint64_t step, std::uint64_t not_before) {
    const auto s = decode(step);
    queue_.push_back({DmaRequest::Kind::input, step, 0, rows_of(s.r) * depth_of(s.p), not_before});
    if (loads_weights(step))
      queue_.push_back({DmaRequest::Kind::weights, step, 0,
                        distinct_weight_depth(s.p) * distinct_weight_cols(s.c), not_before});
  }
  void enqueue_write(std::uint64_t tile, std::uint64_t not_before) {
    const std::uint64_t r = tile % n_r_, c = tile / n_r_;
    queue_.push_back({DmaRequest::Kind::output, 0, tile, rows_of(r) * cols_of(c), not_before});
  }

  void start_next_phase() {
    ++phase_;
    phase_active_ = true;
    const std::uint64_t start = cycle_;
    const std::uint64_t drain = g_.pipeline_depth_cycles;
    if (phase_ == -1) {
      phase_rows_left_ = 0;
      enqueue_load(0, start);
      return;
    }
    const auto step = static_cast<std::uint64_t>(phase_);
    if (step == steps_) {  // double-buffered tail
      phase_rows_left_ = 0;
      enqueue_write(steps_ / n_p_ - 1, start + drain);
      return;
    }
    const auto s = decode(step);
    phase_step_ = step;
    phase_rows_left_ = rows_of(s.r);
    next_row_ = 0;
    if (double_buffered_) {
      if (step + 1 < steps_) enqueue_load(step + 1, start);
      if (s.p == 0 && s.tile > 0) enqueue_write(s.tile - 1, start + drain);
    } else {
      const std::uint64_t compute_end = start + phase_rows_left_;
      if (step + 1 < steps_) enqueue_load(step + 1, compute_end);
      if (s.p + 1 == n_p_) enqueue_write(s.tile, compute_end + drain);
    }
  }

  void issue_row() {
    if (phase_rows_left_ == 0) return;
    const auto s = decode(phase_step_);
    const IntMatrix& in = input_slots_[input_slot(phase_step_)];
    const IntMatrix& w = weight_slots_[weight_slot(phase_step_)];
    const std::uint64_t depth = depth_of(s.p);
    RowPacket packet;
    packet.acc_slot = acc_slot(s.tile);
    packet.row = next_row_;
    packet.first_step = s.p == 0;
    packet.partials.assign(cols_of(s.c), std::vector<std::int64_t>(g_.tile_depth, 0));
    for (std::size_t j = 0; j < packet.partials.size(); ++j)
      for (std::uint64_t lane = 0; lane < depth; ++lane)
        packet.partials[j][lane] = in(static_cast<Eigen::Index>(next_row_), static_cast<Eigen::Index>(lane)) *
                                   w(static_cast<Eigen::Index>(lane), static_cast<Eigen::Index>(j));
    pipeline_.push_back(std::move(packet));
    ++next_row_;
    --phase_rows_left_;
    ++compute_cycles_;
  }

  void advance_pipeline() {
    const std::uint32_t accumulate_stage = 1 + per_pe_levels_ + stack_levels_;
    for (auto& packet : pipeline_) {
      ++packet.stage;
      if (packet.stage <= per_pe_levels_) {
        // One adder level inside each of the k stacked PEs (lanes [u*T_P, (u+1)*T_P)).
        for (auto& column : packet.partials) {
          const std::size_t sub_width = column.size() / g_.k;
          std::vector<std::int64_t> next;
          for (std::uint32_t u = 0; u < g_.k; ++u) {
            std::vector<std::int64_t> part(column.begin() + static_cast<std::ptrdiff_t>(u * sub_width),
                                           column.begin() + static_cast<std::ptrdiff_t>((u + 1) * sub_width));
            auto reduced = halve(part);
            next.insert(next.end(), reduced.begin(), reduced.end());
          }
          column = std::move(next);
        }
      } else if (packet.stage < accumulate_stage) {
        for (auto& column : packet.partials) column = halve(column);  // stacking adders
      }
    }
    while (!pipeline_.empty() && pipeline_.front().stage == accumulate_stage) {
      RowPacket& packet = pipeline_.front();
      IntMatrix& acc = acc_slots_[packet.acc_slot];
      for (std::size_t j = 0; j < packet.partials.size(); ++j) {
        auto& cell = acc(static_cast<Eigen::Index>(packet.row), static_cast<Eigen::Index>(j));
        cell = (packet.first_step ? 0 : cell) + packet.partials[j].front();
      }
      pipeline_.pop_front();
    }
  }

  void run_channel() {
    if (queue_.empty()) return;
    DmaRequest& req = queue_.front();
    if (cycle_ < req.not_before + npu_.latency_cycles()) return;
    if (!req.started) {
      req.started = true;
      offchip_bytes_ += req.elements * npu_.config().element_bytes;
      if (req.kind == DmaRequest::Kind::weights && block_diagonal_)
        weight_slots_[weight_slot(req.step)].setZero();  // block-diagonal zeros are generated
    }
    ++req.bus_cycles;
    const std::uint64_t bytes = req.bus_cycles * npu_.bandwidth_mbps() / npu_.config().clock_mhz;
    const std::uint64_t deliverable = std::min(req.elements, bytes / npu_.config().element_bytes);
    while (req.moved < deliverable) move_element(req, req.moved++);
    if (req.moved == req.elements) queue_.pop_front();  // the next request streams next cycle
  }

  void move_element(const DmaRequest& req, std::uint64_t index) {
    switch (req.kind) {
      case DmaRequest::Kind::input: {
        const auto s = decode(req.step);
        const std::uint64_t depth = depth_of(s.p);
        const std::uint64_t i = index / depth, l = index % depth;
        input_slots_[input_slot(req.step)](static_cast<Eigen::Index>(i), static_cast<Eigen::Index>(l)) =
            x_eff_(static_cast<Eigen::Index>(s.r * g_.tile_rows + i),
                   static_cast<Eigen::Index>(s.p * g_.tile_depth + l));
        break;
      }
      case DmaRequest::Kind::weights: {
        const auto s = decode(req.step);
        IntMatrix& slot = weight_slots_[weight_slot(req.step)];
        const std::uint64_t c0 = s.c * g_.tile_cols;
        if (!block_diagonal_) {
          const std::uint64_t cols = cols_of(s.c);
          const std::uint64_t l = index / cols, j = index % cols;
          slot(static_cast<Eigen::Index>(l), static_cast<Eigen::Index>(j)) =
              (*weights_.front())(static_cast<Eigen::Index>(s.p * g_.tile_depth + l), static_cast<Eigen::Index>(c0 + j));
          break;
        }
        // Block-diagonal: one fetched weight lands in every copy inside the tile (columns repeat
        // with period packed * C: the sample slots share each group's weights).
        const std::uint64_t distinct = distinct_weight_cols(s.c);
        const std::uint64_t period = packed_ * shape_.cols;
        const std::uint64_t l = index / distinct, q0 = index % distinct;
        const std::uint64_t column = c0 + q0;
        const IntMatrix& w = *weights_[(column / shape_.cols) % packed_];
        const std::int64_t value = w(static_cast<Eigen::Index>(l), static_cast<Eigen::Index>(column % shape_.cols));
        for (std::uint64_t q = q0; q < cols_of(s.c); q += period) {
          const std::uint64_t block = (c0 + q) / shape_.cols;
          slot(static_cast<Eigen::Index>(block * shape_.depth + l), static_cast<Eigen::Index>(q)) = value;
        }
        break;
      }
      case DmaRequest::Kind::output: {
        const std::uint64_t r = req.tile % n_r_, c = req.tile / n_r_;
        const std::uint64_t cols = cols_of(c);
        const std::uint64_t i = index / cols, j = index % cols;
        y_eff_(static_cast<Eigen::Index>(r * g_.tile_rows + i), static_cast<Eigen::Index>(c * g_.tile_cols + j)) =
            acc_slots_[acc_slot(req.tile)](static_cast<Eigen::Index>(i), static_cast<Eigen::Index>(j));
        break;
      }
    }
  }

  const Npu& npu_;
  const StackGeometry& g_;
  BatchMapping mapping_;
  std::uint64_t packed_ = 1;
  bool block_diagonal_ = false;
  std::vector<const IntMatrix*> weights_;  // one per packed group
  GemmShape shape_;
  std::uint64_t rows_e_ = 0, depth_e_ = 0, cols_e_ = 0;
  std::uint64_t n_r_ = 0, n_p_ = 0, n_c_ = 0, steps_ = 0;
  bool double_buffered_ = false, resident_ = false;
  std::uint32_t per_pe_levels_ = 0, stack_levels_ = 0;
  IntMatrix x_eff_, y_eff_;
  std::vector<IntMatrix> input_slots_, weight_slots_, acc_slots_;
  std::deque<DmaRequest> queue_;
  std::deque<RowPacket> pipeline_;
  std::int64_t phase_ = -2;
  bool phase_active_ = false;
  std::uint64_t phase_step_ = 0, phase_rows_left_ = 0, next_row_ = 0;
  std::uint64_t cycle_ = 0, compute_cycles_ = 0, offchip_bytes_ = 0;
  bool finished_ = false;
};

}  // namespace

ReferenceRun run_reference_array(const Npu& npu, const std::vector<IntMatrix>& group_weights,
                                 const std::vector<std::vector<IntMatrix>>& inputs,
                                 const BatchMapping& mapping) {
  if (inputs.empty() || group_weights.empty())
    throw std::invalid_argument("reference run needs at least one sample and one group");
  const IntMatrix& w0 = group_weights.front();
  for (const auto& w : group_weights)
    if (w.rows() != w0.rows() || w.cols() != w0.cols())
      throw std::invalid_argument("every group's weights must be P x C");
  for (const auto& sample : inputs) {
    if (sample.size() != group_weights.size())
      throw std::invalid_argument("every sample needs one input per group");
    for (const auto& x : sample)
      if (x.cols() != w0.rows() || x.rows() != inputs.front().front().rows())
        throw std::invalid_argument("every input must be R x P with P = weights.rows()");
  }
  const GemmShape shape{static_cast<std::uint64_t>(inputs.front().front().rows()),
                        static_cast<std::uint64_t>(w0.rows()), static_cast<std::uint64_t>(w0.cols()),
                        group_weights.size()};
  require_legal(npu, shape, static_cast<std::uint32_t>(inputs.size()), mapping);

  ReferenceRun run;
  run.outputs.assign(inputs.size(), std::vector<IntMatrix>(group_weights.size()));
  const std::uint64_t packed = groups_per_pass(npu, shape, mapping);
  for (std::size_t first = 0; first < group_weights.size(); first += packed) {
    const std::uint64_t in_pass = std::min<std::uint64_t>(packed, group_weights.size() - first);
    ArrayDatapath datapath(npu, group_weights, inputs, mapping, first, in_pass);
    const ClockedRun clocked = run_clocked(
        npu.config().clock_mhz, [&] { datapath.tick(); }, [&] { return datapath.finished(); });
    run.clock_period_ps = clocked.period_ps;
    run.simulated_ps += clocked.simulated_ps;
    if (!datapath.finished()) throw std::logic_error("reference array stopped before finishing");
    run.cycles += datapath.cycles();
    run.compute_cycles += datapath.compute_cycles();
    run.offchip_bytes += datapath.offchip_bytes();
    ++run.passes;
    for (std::size_t b = 0; b < inputs.size(); ++b)
      for (std::uint64_t j = 0; j < in_pass; ++j) run.outputs[b][first + j] = datapath.output(b, j);
  }
  return run;
}

ReferenceRun run_reference_array(const Npu& npu, const IntMatrix& weights,
                                 const std::vector<IntMatrix>& inputs, const BatchMapping& mapping) {
  std::vector<std::vector<IntMatrix>> grouped;
  for (const auto& x : inputs) grouped.push_back({x});
  return run_reference_array(npu, std::vector<IntMatrix>{weights}, grouped, mapping);
}

}  // namespace npusim::npu
