#include "npu_model/vector_reference.hpp"

#include <algorithm>
#include <iterator>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>
#include <tuple>
#include <unordered_map>

#include <fmt/format.h>

#include "npu_model/clocked_run.hpp"

namespace npusim::npu {
namespace {

constexpr std::uint64_t never = std::numeric_limits<std::uint64_t>::max();

Eigen::Index to_index(std::uint64_t value) { return static_cast<Eigen::Index>(value); }

// ---------------------------------------------------------------------------------------------
// The chunks and the stream (docs/vector-path.md §2-§5): which lines each chunk reads, what it
// loads and frees, and the requests in stream order. When anything happens is left to the clock.

struct Shape {
  std::uint64_t height = 1, width = 1, channels = 1, operands = 1;
  std::uint64_t kernel_height = 1, kernel_width = 1, stride_height = 1, stride_width = 1;
  std::uint64_t padding_height = 0, padding_width = 0;
  std::uint64_t out_height = 1, out_width = 1;
};

Shape shape_of(const VectorWork& work) {
  if (work.kind == VectorKind::unshaped) throw std::invalid_argument("vector reference: the work has no shape");
  Shape s;
  s.height = work.height;
  s.width = work.width;
  s.channels = work.channels;
  if (work.kind == VectorKind::add) {
    s.operands = 2;
    s.out_height = s.height;
    s.out_width = s.width;
    return s;
  }
  s.kernel_height = work.kernel_height;
  s.kernel_width = work.kernel_width;
  s.stride_height = work.stride_height;
  s.stride_width = work.stride_width;
  s.padding_height = work.padding_height;
  s.padding_width = work.padding_width;
  s.out_height = (s.height + 2 * s.padding_height - s.kernel_height) / s.stride_height + 1;
  s.out_width = (s.width + 2 * s.padding_width - s.kernel_width) / s.stride_width + 1;
  return s;
}

struct Chunk {
  std::uint64_t sample = 0, first_channel = 0, channels = 0, out_row = 0;
  std::vector<std::uint64_t> lines;           // sorted line ids it reads
  std::vector<std::uint64_t> lines_released;  // freed when it ends
};

enum class RequestKind { write = 0, load = 1 };

struct Request {
  RequestKind kind = RequestKind::write;
  std::uint64_t chunk = 0;
  std::int64_t slot = 0;
  std::uint64_t bytes = 0;
  std::vector<std::uint64_t> lines;  // a load: the lines it brings
};

struct ChunkSequence {
  Shape shape;
  std::uint64_t batch = 1, channel_block = 1, blocks = 1;
  std::vector<Chunk> chunks;
  std::vector<Request> stream;

  // A line: one input row of one sample's channel block, every operand side by side.
  std::uint64_t line_id(std::uint64_t sample, std::uint64_t block, std::uint64_t row) const {
    return (sample * blocks + block) * shape.height + row;
  }
  struct LineAddress {
    std::uint64_t sample, block, row;
  };
  LineAddress line_address(std::uint64_t id) const {
    return {id / shape.height / blocks, id / shape.height % blocks, id % shape.height};
  }
  std::uint64_t block_channels(std::uint64_t block) const {
    return std::min(channel_block, shape.channels - block * channel_block);
  }
};

ChunkSequence plan_sequence(const Shape& shape, std::uint64_t batch, const VectorTiling& tiling,
                            const Placement& placement, std::uint64_t element_bytes) {
  ChunkSequence seq;
  seq.shape = shape;
  seq.batch = batch;
  seq.channel_block = tiling.channel_block;
  seq.blocks = (shape.channels + tiling.channel_block - 1) / tiling.channel_block;
  for (std::uint64_t b = 0; b < batch; ++b)
    for (std::uint64_t q = 0; q < seq.blocks; ++q)
      for (std::uint64_t y = 0; y < shape.out_height; ++y) {
        Chunk chunk{b, q * tiling.channel_block, seq.block_channels(q), y, {}, {}};
        // The rows its windows touch, tap by tap.
        for (std::uint64_t tap = 0; tap < shape.kernel_height; ++tap) {
          const auto row = static_cast<std::int64_t>(y * shape.stride_height + tap) -
                           static_cast<std::int64_t>(shape.padding_height);
          if (row >= 0 && row < static_cast<std::int64_t>(shape.height))
            chunk.lines.push_back(seq.line_id(b, q, static_cast<std::uint64_t>(row)));
        }
        std::sort(chunk.lines.begin(), chunk.lines.end());
        chunk.lines.erase(std::unique(chunk.lines.begin(), chunk.lines.end()), chunk.lines.end());
        seq.chunks.push_back(std::move(chunk));
      }

  const std::uint64_t n = seq.chunks.size();
  const std::vector<std::uint64_t> none;
  for (std::uint64_t j = 0; j < n; ++j) {
    Chunk& chunk = seq.chunks[j];
    const std::vector<std::uint64_t>& before = j > 0 ? seq.chunks[j - 1].lines : none;
    const std::vector<std::uint64_t>& after = j + 1 < n ? seq.chunks[j + 1].lines : none;
    if (!placement.input_on_chip) {
      std::set_difference(chunk.lines.begin(), chunk.lines.end(), after.begin(), after.end(),
                          std::back_inserter(chunk.lines_released));
      Request load{RequestKind::load, j, static_cast<std::int64_t>(j) - static_cast<std::int64_t>(tiling.prefetch_chunks),
                   0, {}};
      std::set_difference(chunk.lines.begin(), chunk.lines.end(), before.begin(), before.end(),
                          std::back_inserter(load.lines));
      load.bytes = load.lines.size() * shape.operands * shape.width * chunk.channels * element_bytes;
      if (load.bytes > 0) seq.stream.push_back(std::move(load));
    }
    if (!placement.output_on_chip)
      seq.stream.push_back({RequestKind::write, j, static_cast<std::int64_t>(j) + 1,
                            shape.out_width * chunk.channels * element_bytes, {}});
  }
  std::sort(seq.stream.begin(), seq.stream.end(), [](const Request& x, const Request& y) {
    return std::tuple(x.slot, static_cast<int>(x.kind), x.chunk) < std::tuple(y.slot, static_cast<int>(y.kind), y.chunk);
  });
  return seq;
}

// ---------------------------------------------------------------------------------------------
// The clocked model.

struct ByteBuffer {
  std::uint64_t capacity = 0;
  std::uint64_t held = 0;
  bool has_room_for(std::uint64_t bytes) const { return held + bytes <= capacity; }
};

struct LineCopy {
  std::uint64_t bytes = 0;
  std::uint64_t usable_from = never;
  IntMatrix values;  // W x (operands * block channels): column operand * channels + c
};

struct Results {
  std::uint64_t bytes = 0;
  IntMatrix values;  // W' x block channels
  std::uint64_t ready_from = never;
};

class VectorReferenceModel {
 public:
  VectorReferenceModel(const Npu& npu, ChunkSequence seq, const Placement& placement, PoolFunction function,
                       const std::vector<std::vector<IntMatrix>>& operands)
      : npu_(npu),
        seq_(std::move(seq)),
        function_(function),
        operands_(operands),
        output_on_chip_(placement.output_on_chip),
        queue_depth_(npu.config().offchip.queue_depth),
        latency_(npu.latency_cycles()),
        lanes_(npu.config().vector_lanes),
        element_bytes_(npu.config().element_bytes) {
    const std::uint64_t input = npu.config().buffers.input_bytes;
    input_.capacity = input > placement.reserved_input_bytes ? input - placement.reserved_input_bytes : 0;
    output_.capacity = npu.config().buffers.output_bytes;
    issued_at_.assign(seq_.stream.size(), never);
    completes_at_.assign(seq_.stream.size(), never);
    results_.resize(seq_.chunks.size());
    const Shape& s = seq_.shape;
    outputs_.assign(seq_.batch, IntMatrix::Zero(to_index(s.out_height * s.out_width), to_index(s.channels)));
    if (placement.input_on_chip) place_input_on_chip();
    std::uint64_t longest_transfer = 0;
    for (const Request& r : seq_.stream) longest_transfer = std::max(longest_transfer, npu.data_cycles(r.bytes));
    stall_limit_ = latency_ + longest_transfer + 2;
  }

  void tick() {
    progressed_ = false;
    complete_transfers();
    run_unit();
    issue_requests();
    start_transfer();
    if (all_done()) {
      cycles_ = now_ + 1;
      done_ = true;
    } else if (progressed_) {
      last_progress_ = now_;
    } else if (now_ - last_progress_ > stall_limit_) {
      failure_ = describe_stall();
    }
    ++now_;
  }

  bool finished() const { return done_ || !failure_.empty(); }
  const std::string& failure() const { return failure_; }
  std::uint64_t cycles() const { return cycles_; }
  std::uint64_t compute_cycles() const { return compute_cycles_; }
  const TrafficBytes& bytes() const { return bytes_; }
  std::vector<IntMatrix> take_outputs() { return std::move(outputs_); }

 private:
  // Every line of every sample sits in the input buffer from cycle 0 and never leaves.
  void place_input_on_chip() {
    for (std::uint64_t b = 0; b < seq_.batch; ++b)
      for (std::uint64_t q = 0; q < seq_.blocks; ++q)
        for (std::uint64_t row = 0; row < seq_.shape.height; ++row) {
          const std::uint64_t id = seq_.line_id(b, q, row);
          LineCopy copy{0, 0, line_from_dram(id)};
          copy.bytes = static_cast<std::uint64_t>(copy.values.size()) * element_bytes_;
          input_.held += copy.bytes;
          lines_.emplace(id, std::move(copy));
        }
    if (input_.held > input_.capacity)
      throw std::invalid_argument(fmt::format("vector reference: the on-chip input of {} B exceeds the {} B of input buffer",
                                              input_.held, input_.capacity));
  }

  // --- channel -------------------------------------------------------------------------------

  void complete_transfers() {
    while (first_incomplete_ < next_transfer_ && completes_at_[first_incomplete_] <= now_) {
      const Request& request = seq_.stream[first_incomplete_];
      if (request.kind == RequestKind::write) {
        output_.held -= results_[request.chunk].bytes;
        results_[request.chunk] = {};
      }
      ++first_incomplete_;
      progressed_ = true;
    }
  }

  bool request_ready(const Request& request) const {
    if (request.kind == RequestKind::write) return results_[request.chunk].ready_from <= now_;
    return input_.has_room_for(request.bytes);
  }

  void issue_requests() {
    while (next_issue_ < seq_.stream.size() && next_issue_ - first_incomplete_ < queue_depth_ &&
           request_ready(seq_.stream[next_issue_])) {
      const Request& request = seq_.stream[next_issue_];
      if (request.kind == RequestKind::write) {
        bytes_.output += request.bytes;
      } else {
        input_.held += request.bytes;
        bytes_.input += request.bytes;
        for (std::uint64_t line : request.lines) lines_[line] = {};
      }
      issued_at_[next_issue_] = now_;
      ++next_issue_;
      progressed_ = true;
    }
  }

  // The data bus carries one request at a time, in issue order, from its issue + latency on.
  void start_transfer() {
    if (next_transfer_ >= next_issue_ || bus_free_at_ > now_ || issued_at_[next_transfer_] + latency_ > now_) return;
    const Request& request = seq_.stream[next_transfer_];
    const std::uint64_t completes = now_ + npu_.data_cycles(request.bytes);
    if (request.kind == RequestKind::write) {
      write_to_dram(request.chunk);
    } else {
      for (std::uint64_t line : request.lines) {
        LineCopy& copy = lines_.at(line);
        copy.values = line_from_dram(line);
        copy.bytes = static_cast<std::uint64_t>(copy.values.size()) * element_bytes_;
        copy.usable_from = completes;
      }
    }
    completes_at_[next_transfer_] = completes;
    bus_free_at_ = completes;
    ++next_transfer_;
    progressed_ = true;
  }

  IntMatrix line_from_dram(std::uint64_t id) const {
    const auto address = seq_.line_address(id);
    const std::uint64_t channels = seq_.block_channels(address.block);
    const std::uint64_t first = address.block * seq_.channel_block;
    IntMatrix line(to_index(seq_.shape.width), to_index(seq_.shape.operands * channels));
    for (std::uint64_t t = 0; t < seq_.shape.operands; ++t)
      line.middleCols(to_index(t * channels), to_index(channels)) =
          operands_[address.sample][t].block(to_index(address.row * seq_.shape.width), to_index(first),
                                             to_index(seq_.shape.width), to_index(channels));
    return line;
  }

  void write_to_dram(std::uint64_t j) {
    const Chunk& chunk = seq_.chunks[j];
    const std::uint64_t out_width = seq_.shape.out_width;
    outputs_[chunk.sample].block(to_index(chunk.out_row * out_width), to_index(chunk.first_channel),
                                 to_index(out_width), to_index(chunk.channels)) = results_[j].values;
  }

  // --- vector unit -------------------------------------------------------------------------

  void run_unit() {
    if (active_ && cursor_ == ops_of_chunk_) end_chunk();
    if (!active_ && next_chunk_ < seq_.chunks.size()) try_start_chunk();
    if (active_) perform_ops();
  }

  // A chunk starts once its lines have arrived and its results fit the output buffer.
  void try_start_chunk() {
    const Chunk& chunk = seq_.chunks[next_chunk_];
    for (std::uint64_t id : chunk.lines) {
      const auto it = lines_.find(id);
      if (it == lines_.end() || it->second.usable_from > now_) return;
    }
    const std::uint64_t bytes = seq_.shape.out_width * chunk.channels * element_bytes_;
    if (!output_.has_room_for(bytes)) return;
    output_.held += bytes;
    Results& results = results_[next_chunk_];
    results.bytes = bytes;
    results.values = IntMatrix::Zero(to_index(seq_.shape.out_width), to_index(chunk.channels));
    active_ = true;
    cursor_ = 0;
    ops_of_chunk_ = seq_.shape.out_width * chunk.channels * seq_.shape.kernel_height * seq_.shape.kernel_width;
    progressed_ = true;
  }

  void end_chunk() {
    const Chunk& chunk = seq_.chunks[next_chunk_];
    for (std::uint64_t id : chunk.lines_released) {
      const auto it = lines_.find(id);
      input_.held -= it->second.bytes;
      lines_.erase(it);
    }
    Results& results = results_[next_chunk_];
    results.ready_from = now_;
    if (output_on_chip_) {
      output_.held -= results.bytes;
      results = {};
    }
    active_ = false;
    ++next_chunk_;
    progressed_ = true;
  }

  // Up to `lanes` ops this cycle. Op o of a chunk: output column x' = o / (c * taps), channel
  // (o / taps) mod c, tap o mod taps; the window's running max or sum lives in a register and
  // reaches the results at its last tap.
  void perform_ops() {
    const Chunk& chunk = seq_.chunks[next_chunk_];
    const Shape& s = seq_.shape;
    const std::uint64_t taps = s.kernel_height * s.kernel_width;
    const std::uint64_t end = std::min(ops_of_chunk_, cursor_ + lanes_);
    for (; cursor_ < end; ++cursor_) {
      const std::uint64_t x_out = cursor_ / (chunk.channels * taps);
      const std::uint64_t c = cursor_ / taps % chunk.channels;
      const std::uint64_t tap = cursor_ % taps;
      if (tap == 0) window_.reset();
      const auto y = static_cast<std::int64_t>(chunk.out_row * s.stride_height + tap / s.kernel_width) -
                     static_cast<std::int64_t>(s.padding_height);
      const auto x = static_cast<std::int64_t>(x_out * s.stride_width + tap % s.kernel_width) -
                     static_cast<std::int64_t>(s.padding_width);
      if (y >= 0 && x >= 0 && y < static_cast<std::int64_t>(s.height) && x < static_cast<std::int64_t>(s.width)) {
        const IntMatrix& line =
            lines_.at(seq_.line_id(chunk.sample, chunk.first_channel / seq_.channel_block, static_cast<std::uint64_t>(y)))
                .values;
        const std::int64_t a = line(x, to_index(c));
        if (s.operands == 2) {
          window_ = a + line(x, to_index(chunk.channels + c));
        } else if (function_ == PoolFunction::max) {
          window_ = window_ ? std::max(*window_, a) : a;
        } else {
          window_ = window_.value_or(0) + a;
        }
      }
      if (tap + 1 == taps) {
        std::int64_t value = window_.value_or(0);
        if (s.operands == 1 && function_ == PoolFunction::average) value /= static_cast<std::int64_t>(taps);
        results_[next_chunk_].values(to_index(x_out), to_index(c)) = value;
      }
    }
    ++compute_cycles_;
    progressed_ = true;
    // Results that stay on chip never cross the channel: recorded so the run reports them.
    if (output_on_chip_ && cursor_ == ops_of_chunk_) write_to_dram(next_chunk_);
  }

  bool all_done() const {
    const std::size_t chunks_done = next_chunk_ + (active_ && cursor_ == ops_of_chunk_ ? 1 : 0);
    return chunks_done == seq_.chunks.size() && next_transfer_ == seq_.stream.size() && bus_free_at_ <= now_ + 1;
  }

  std::string describe_stall() const {
    std::string what = fmt::format("no progress for {} cycles at cycle {}: ", now_ - last_progress_, now_);
    if (next_chunk_ < seq_.chunks.size() && !active_)
      what += fmt::format("chunk {} of {} waits (output buffer {}/{} B); ", next_chunk_, seq_.chunks.size(),
                          output_.held, output_.capacity);
    if (next_issue_ < seq_.stream.size()) {
      const Request& request = seq_.stream[next_issue_];
      what += fmt::format("request {} ({} of chunk {}, {} B) waits; input buffer {}/{} B, {} of {} queue slots taken",
                          next_issue_, request.kind == RequestKind::write ? "write" : "load", request.chunk,
                          request.bytes, input_.held, input_.capacity, next_issue_ - first_incomplete_, queue_depth_);
    }
    return what + " (infeasible tiling?)";
  }

  const Npu& npu_;
  ChunkSequence seq_;
  PoolFunction function_;
  const std::vector<std::vector<IntMatrix>>& operands_;
  bool output_on_chip_;
  std::uint64_t queue_depth_, latency_, lanes_, element_bytes_;
  std::uint64_t stall_limit_ = 0;

  ByteBuffer input_, output_;
  std::unordered_map<std::uint64_t, LineCopy> lines_;
  std::vector<Results> results_;  // per chunk, while it holds output-buffer room

  std::vector<std::uint64_t> issued_at_, completes_at_;
  std::size_t next_issue_ = 0, next_transfer_ = 0, first_incomplete_ = 0;
  std::uint64_t bus_free_at_ = 0;

  std::size_t next_chunk_ = 0;
  bool active_ = false;
  std::uint64_t cursor_ = 0, ops_of_chunk_ = 0;
  std::optional<std::int64_t> window_;

  std::vector<IntMatrix> outputs_;
  std::uint64_t now_ = 0, last_progress_ = 0, cycles_ = 0, compute_cycles_ = 0;
  TrafficBytes bytes_;
  bool progressed_ = false, done_ = false;
  std::string failure_;
};

void require_operands(const Shape& shape, std::uint32_t batch, const std::vector<std::vector<IntMatrix>>& operands) {
  if (operands.size() != batch)
    throw std::invalid_argument(fmt::format("vector reference: operands for {} samples, batch {}", operands.size(), batch));
  for (const auto& sample : operands) {
    if (sample.size() != shape.operands)
      throw std::invalid_argument(
          fmt::format("vector reference: {} tensors per sample, the work reads {}", sample.size(), shape.operands));
    for (const IntMatrix& m : sample)
      if (static_cast<std::uint64_t>(m.rows()) != shape.height * shape.width ||
          static_cast<std::uint64_t>(m.cols()) != shape.channels)
        throw std::invalid_argument(fmt::format("vector reference: a tensor is {}x{}, not (H*W) x C = {}x{}", m.rows(),
                                                m.cols(), shape.height * shape.width, shape.channels));
  }
}

}  // namespace

VectorReferenceRun run_vector_reference(const Npu& npu, const VectorWork& work, std::uint32_t batch,
                                        const Placement& placement, const VectorTiling& tiling,
                                        PoolFunction function,
                                        const std::vector<std::vector<IntMatrix>>& operands) {
  const Shape shape = shape_of(work);
  if (tiling.channel_block < 1 || tiling.channel_block > shape.channels)
    throw std::invalid_argument(fmt::format("vector reference: channel_block = {} must be in [1, C = {}]",
                                            tiling.channel_block, shape.channels));
  require_operands(shape, batch, operands);
  VectorReferenceModel model(npu, plan_sequence(shape, batch, tiling, placement, npu.config().element_bytes),
                             placement, function, operands);
  const ClockedRun clocked =
      run_clocked(npu.config().clock_mhz, [&] { model.tick(); }, [&] { return model.finished(); });
  if (!model.failure().empty()) throw std::runtime_error("vector reference deadlocked: " + model.failure());

  VectorReferenceRun run;
  run.cycles = model.cycles();
  run.compute_cycles = model.compute_cycles();
  run.bytes = model.bytes();
  run.clock_period_ps = clocked.period_ps;
  run.simulated_ps = clocked.simulated_ps;
  run.outputs = model.take_outputs();
  return run;
}

}  // namespace npusim::npu
