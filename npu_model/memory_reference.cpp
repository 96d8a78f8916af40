#include "npu_model/memory_reference.hpp"

#include <algorithm>
#include <deque>
#include <iterator>
#include <limits>
#include <stdexcept>
#include <string>
#include <tuple>
#include <unordered_map>
#include <unordered_set>

#include <fmt/format.h>

#include "npu_model/clocked_run.hpp"

namespace npusim::npu {
namespace {

constexpr std::uint64_t never = std::numeric_limits<std::uint64_t>::max();

Eigen::Index to_index(std::uint64_t value) { return static_cast<Eigen::Index>(value); }

std::uint64_t ceil_div(std::uint64_t a, std::uint64_t b) { return (a + b - 1) / b; }

// ---------------------------------------------------------------------------------------------
// The loop nest (docs/memory-schedule.md §3-§5). It says which step reads which lines, weight
// block and accumulators, and which requests exist; when anything happens is left to the clock.

struct ColumnRange {
  std::uint64_t first = 0, count = 0;
};

// A channel chunk. In a block-diagonal pass the one chunk spans all C_g channels of each group.
struct Chunk {
  std::uint64_t first_channel = 0, channels = 0;  // per group
  std::uint64_t depth = 0;                        // lanes a step of this chunk streams
};

struct Pass {
  std::uint64_t first_group = 0, groups = 0;  // G_q groups from first_group on
  bool block_diagonal = false;
  std::uint64_t cols = 0;  // n_q
  std::vector<Chunk> chunks;
  std::vector<ColumnRange> col_blocks;
};

struct RowBlock {
  std::uint64_t first_grid_row = 0, grid_rows = 0;
  std::uint64_t first_out_row = 0, out_rows = 0;
  std::uint64_t rows = 0;  // M: im2col rows
};

struct Step {
  std::uint64_t pass = 0, row_block = 0, col_block = 0, chunk = 0;
  std::vector<std::uint64_t> lines;           // needs(j), sorted line ids
  std::vector<std::uint64_t> lines_released;  // freed when its streaming ends
  std::uint64_t weight_block = 0;
  bool releases_weight_block = false;
  std::uint64_t output_block = 0;
  bool allocates = false;  // chunk 0
  bool writes = false;     // last chunk
  bool fetches_epilogue = false;  // chunk 0 of a block whose fused-add operand comes over the channel
  std::uint64_t accumulator_bytes = 0;
};

enum class RequestKind { write = 0, weight_load = 1, input_load = 2, epilogue_load = 3 };

std::string to_string(RequestKind kind) {
  switch (kind) {
    case RequestKind::write:
      return "write";
    case RequestKind::weight_load:
      return "weight load";
    case RequestKind::input_load:
      return "input load";
    case RequestKind::epilogue_load:
      return "epilogue load";
  }
  return "?";
}

struct Request {
  RequestKind kind = RequestKind::write;
  std::uint64_t step = 0;
  std::int64_t slot = 0;
  std::uint64_t bytes = 0;
  std::vector<std::uint64_t> lines;  // input load: the lines it brings
};

struct LoopNest {
  FeatureMap map;
  std::uint64_t batch = 1, groups = 1, cols_per_group = 1;
  BatchMapping mapping;
  std::uint64_t chunk_slots = 1;      // chunks of the pass with the most: line id stride
  std::uint64_t col_block_slots = 1;  // C-blocks of the pass with the most
  std::vector<Pass> passes;
  std::vector<RowBlock> row_blocks;
  std::vector<Step> steps;
  std::vector<Request> stream;  // in stream order (§6)

  std::uint64_t real_samples(std::uint64_t grid_row) const {
    return std::min<std::uint64_t>(mapping.b_p, batch - grid_row * mapping.b_p);
  }
  std::uint64_t line_id(std::uint64_t pass, std::uint64_t chunk, std::uint64_t sample,
                        std::uint64_t y) const {
    return ((pass * chunk_slots + chunk) * batch + sample) * map.height + y;
  }
  struct LineAddress {
    std::uint64_t pass, chunk, sample, y;
  };
  LineAddress line_address(std::uint64_t id) const {
    const std::uint64_t y = id % map.height;
    id /= map.height;
    const std::uint64_t sample = id % batch;
    id /= batch;
    return {id / chunk_slots, id % chunk_slots, sample, y};
  }
  std::uint64_t line_bytes(std::uint64_t id, std::uint64_t element_bytes) const {
    const LineAddress a = line_address(id);
    const Pass& p = passes[a.pass];
    return map.width * p.groups * p.chunks[a.chunk].channels * element_bytes;
  }
};

std::vector<RowBlock> row_blocks_of(const FeatureMap& map, const BatchMapping& mapping,
                                    const Tiling& tiling) {
  std::vector<RowBlock> blocks;
  if (tiling.band_samples > 1) {
    for (std::uint64_t first = 0; first < mapping.b_r; first += tiling.band_samples) {
      const std::uint64_t grid_rows = std::min<std::uint64_t>(tiling.band_samples, mapping.b_r - first);
      blocks.push_back({first, grid_rows, 0, map.out_height, grid_rows * map.out_height * map.out_width});
    }
    return blocks;
  }
  for (std::uint64_t grid_row = 0; grid_row < mapping.b_r; ++grid_row)
    for (std::uint64_t first = 0; first < map.out_height; first += tiling.band_rows) {
      const std::uint64_t out_rows = std::min<std::uint64_t>(tiling.band_rows, map.out_height - first);
      blocks.push_back({grid_row, 1, first, out_rows, out_rows * map.out_width});
    }
  return blocks;
}

// The stream slot of a request for `step` issued `distance` steps ahead (§6).
std::int64_t slot_ahead(std::uint64_t step, std::uint64_t distance) {
  return static_cast<std::int64_t>(step) - static_cast<std::int64_t>(distance);
}

// Input rows the output rows [first, first + count) read, clipped to the map: empty when they
// read only padding.
std::pair<std::int64_t, std::int64_t> input_rows_read(const FeatureMap& map, std::uint64_t first,
                                                      std::uint64_t count) {
  const auto stride = static_cast<std::int64_t>(map.stride_height);
  const auto padding = static_cast<std::int64_t>(map.padding_height);
  const auto y0 = static_cast<std::int64_t>(first), y1 = static_cast<std::int64_t>(first + count - 1);
  const std::int64_t low = std::max<std::int64_t>(0, y0 * stride - padding);
  const std::int64_t high =
      std::min<std::int64_t>(static_cast<std::int64_t>(map.height) - 1,
                             y1 * stride - padding + static_cast<std::int64_t>(map.kernel_height) - 1);
  return {low, high};
}

void require_tiling_in_range(const LoopNest& nest, const Tiling& tiling, std::uint64_t tile_cols) {
  const FeatureMap& map = nest.map;
  if (tiling.band_rows < 1 || tiling.band_rows > map.out_height)
    throw std::invalid_argument(
        fmt::format("band_rows = {} must be in [1, H' = {}]", tiling.band_rows, map.out_height));
  if (tiling.band_samples < 1 || tiling.band_samples > nest.mapping.b_r)
    throw std::invalid_argument(
        fmt::format("band_samples = {} must be in [1, B_R = {}]", tiling.band_samples, nest.mapping.b_r));
  if (tiling.band_samples > 1 && tiling.band_rows != map.out_height)
    throw std::invalid_argument(fmt::format("band_samples = {} > 1 needs band_rows = H' = {}, not {}",
                                            tiling.band_samples, map.out_height, tiling.band_rows));
  if (tiling.channel_chunks < 1 || tiling.channel_chunks > map.channels)
    throw std::invalid_argument(
        fmt::format("channel_chunks = {} must be in [1, C_g = {}]", tiling.channel_chunks, map.channels));
  const std::uint64_t chunk_channels = ceil_div(map.channels, tiling.channel_chunks);
  for (const Pass& pass : nest.passes) {
    if (pass.block_diagonal) {
      if (tiling.col_block < pass.cols)
        throw std::invalid_argument(fmt::format("col_block = {} must be >= n_q = {} in a block-diagonal pass",
                                                tiling.col_block, pass.cols));
      continue;
    }
    if (tiling.col_block == 0 || (tiling.col_block % tile_cols != 0 && tiling.col_block < pass.cols))
      throw std::invalid_argument(fmt::format("col_block = {} must be a multiple of t_c = {} or >= n_q = {}",
                                              tiling.col_block, tile_cols, pass.cols));
    if ((tiling.channel_chunks - 1) * chunk_channels >= map.channels)
      throw std::invalid_argument(
          fmt::format("channel_chunks = {} leaves an empty chunk of C_g = {} channels", tiling.channel_chunks,
                      map.channels));
  }
}

// Bytes of an output block as they leave the chip: only real samples' columns (§5). A fused
// add's operand block comes in with the same bytes (§10).
std::uint64_t output_block_bytes(const LoopNest& nest, const Step& step, std::uint64_t element_bytes) {
  const Pass& pass = nest.passes[step.pass];
  const RowBlock& rows = nest.row_blocks[step.row_block];
  const ColumnRange& cols = pass.col_blocks[step.col_block];
  std::uint64_t cells = 0;
  for (std::uint64_t r = rows.first_grid_row; r < rows.first_grid_row + rows.grid_rows; ++r)
    for (std::uint64_t c = cols.first; c < cols.first + cols.count; ++c)
      if (c / (pass.groups * nest.cols_per_group) < nest.real_samples(r)) cells += rows.out_rows * nest.map.out_width;
  return cells * element_bytes;
}

LoopNest plan_loop_nest(const Npu& npu, const GemmShape& shape, std::uint32_t batch,
                        const BatchMapping& mapping, const Tiling& tiling, const Placement& placement) {
  const StackGeometry& geometry = npu.geometry(mapping.k);
  const std::uint64_t e = npu.config().element_bytes, a = npu.config().accumulator_bytes;
  LoopNest nest;
  nest.map = feature_map_of(shape);
  nest.batch = batch;
  nest.groups = shape.groups;
  nest.cols_per_group = shape.cols;
  nest.mapping = mapping;
  const FeatureMap& map = nest.map;
  const std::uint64_t taps = map.kernel_height * map.kernel_width;

  const std::uint64_t packed = groups_per_pass(npu, shape, mapping);
  for (std::uint64_t first = 0; first < shape.groups; first += packed) {
    Pass pass;
    pass.first_group = first;
    pass.groups = std::min(packed, shape.groups - first);
    pass.block_diagonal = mapping.b_p * pass.groups > 1;
    pass.cols = mapping.b_p * pass.groups * shape.cols;
    if (pass.block_diagonal) {
      pass.chunks.push_back({0, map.channels, mapping.b_p * pass.groups * shape.depth});
    } else {
      const std::uint64_t size = ceil_div(map.channels, std::max<std::uint64_t>(1, tiling.channel_chunks));
      for (std::uint64_t c = 0; c < map.channels; c += size) {
        const std::uint64_t channels = std::min(size, map.channels - c);
        pass.chunks.push_back({c, channels, taps * channels});
      }
    }
    const std::uint64_t block = std::max<std::uint64_t>(1, tiling.col_block);
    for (std::uint64_t c = 0; c < pass.cols; c += block)
      pass.col_blocks.push_back({c, std::min(block, pass.cols - c)});
    nest.chunk_slots = std::max<std::uint64_t>(nest.chunk_slots, pass.chunks.size());
    nest.col_block_slots = std::max<std::uint64_t>(nest.col_block_slots, pass.col_blocks.size());
    nest.passes.push_back(std::move(pass));
  }
  require_tiling_in_range(nest, tiling, geometry.tile_cols);
  nest.row_blocks = row_blocks_of(map, mapping, tiling);

  // The loop nest, outermost first (§5).
  const std::uint64_t row_block_count = nest.row_blocks.size();
  for (std::uint64_t q = 0; q < nest.passes.size(); ++q) {
    const Pass& pass = nest.passes[q];
    const std::uint64_t outer =
        tiling.order == LoopOrder::weights_outer ? pass.col_blocks.size() : row_block_count;
    const std::uint64_t inner =
        tiling.order == LoopOrder::weights_outer ? row_block_count : pass.col_blocks.size();
    for (std::uint64_t o = 0; o < outer; ++o)
      for (std::uint64_t i = 0; i < inner; ++i)
        for (std::uint64_t chunk = 0; chunk < pass.chunks.size(); ++chunk) {
          Step step;
          step.pass = q;
          step.chunk = chunk;
          step.col_block = tiling.order == LoopOrder::weights_outer ? o : i;
          step.row_block = tiling.order == LoopOrder::weights_outer ? i : o;
          nest.steps.push_back(std::move(step));
        }
  }

  // What each step reads.
  for (Step& step : nest.steps) {
    const RowBlock& rows = nest.row_blocks[step.row_block];
    const auto [low, high] = input_rows_read(map, rows.first_out_row, rows.out_rows);
    for (std::uint64_t r = rows.first_grid_row; r < rows.first_grid_row + rows.grid_rows; ++r)
      for (std::uint64_t slot = 0; slot < nest.real_samples(r); ++slot)
        for (std::int64_t y = low; y <= high; ++y)
          step.lines.push_back(
              nest.line_id(step.pass, step.chunk, r * mapping.b_p + slot, static_cast<std::uint64_t>(y)));
    std::sort(step.lines.begin(), step.lines.end());
    step.weight_block = (step.pass * nest.chunk_slots + step.chunk) * nest.col_block_slots + step.col_block;
    step.output_block =
        (step.pass * row_block_count + step.row_block) * nest.col_block_slots + step.col_block;
    const Pass& pass = nest.passes[step.pass];
    step.allocates = step.chunk == 0;
    step.writes = step.chunk + 1 == pass.chunks.size();
    step.accumulator_bytes = rows.rows * pass.col_blocks[step.col_block].count * a;
  }

  // Requests (§5 operands) with their stream slots (§6).
  std::unordered_set<std::uint64_t> lines_loaded, blocks_loaded;
  const std::uint64_t n = nest.steps.size();
  for (std::uint64_t j = 0; j < n; ++j) {
    Step& step = nest.steps[j];
    const Pass& pass = nest.passes[step.pass];
    const std::vector<std::uint64_t> none;
    const std::vector<std::uint64_t>& before = j > 0 ? nest.steps[j - 1].lines : none;
    const std::vector<std::uint64_t>& after = j + 1 < n ? nest.steps[j + 1].lines : none;

    // An input already on chip is neither loaded nor released: the tiling's input residency
    // and prefetch have nothing to act on.
    if (!placement.input_on_chip) {
      Request input{RequestKind::input_load, j, slot_ahead(j, tiling.input_prefetch), 0, {}};
      if (tiling.input_resident) {
        for (std::uint64_t line : step.lines)
          if (lines_loaded.insert(line).second) input.lines.push_back(line);
      } else {
        std::set_difference(step.lines.begin(), step.lines.end(), before.begin(), before.end(),
                            std::back_inserter(input.lines));
        std::set_difference(step.lines.begin(), step.lines.end(), after.begin(), after.end(),
                            std::back_inserter(step.lines_released));
      }
      for (std::uint64_t line : input.lines) input.bytes += nest.line_bytes(line, e);
      if (input.bytes > 0) nest.stream.push_back(std::move(input));
    }

    const bool same_as_before = j > 0 && nest.steps[j - 1].weight_block == step.weight_block;
    const bool same_as_after = j + 1 < n && nest.steps[j + 1].weight_block == step.weight_block;
    const bool loads_weights =
        tiling.weights_resident ? blocks_loaded.insert(step.weight_block).second : !same_as_before;
    step.releases_weight_block = !tiling.weights_resident && !same_as_after;
    if (loads_weights) {
      const std::uint64_t distinct =
          pass.block_diagonal ? pass.groups * shape.depth * shape.cols
                              : pass.chunks[step.chunk].depth * pass.col_blocks[step.col_block].count;
      nest.stream.push_back(
          {RequestKind::weight_load, j, slot_ahead(j, tiling.weight_prefetch), distinct * e, {}});
    }

    // The fused add's operand is fetched once the block's accumulators exist, at its chunk-0 step.
    if (step.allocates && placement.epilogue == EpilogueOperand::off_chip) {
      const std::uint64_t bytes = output_block_bytes(nest, step, e);
      step.fetches_epilogue = bytes > 0;
      if (step.fetches_epilogue)
        nest.stream.push_back({RequestKind::epilogue_load, j, slot_ahead(j, 0), bytes, {}});
    }
    if (step.writes && !placement.output_on_chip)
      nest.stream.push_back({RequestKind::write, j, slot_ahead(j + 1, 0), output_block_bytes(nest, step, e), {}});
  }
  std::sort(nest.stream.begin(), nest.stream.end(), [](const Request& x, const Request& y) {
    return std::tuple(x.slot, static_cast<int>(x.kind), x.step) <
           std::tuple(y.slot, static_cast<int>(y.kind), y.step);
  });
  return nest;
}

// ---------------------------------------------------------------------------------------------
// The clocked model.

struct LineCopy {
  std::uint64_t bytes = 0;
  std::uint64_t usable_from = never;
  IntMatrix values;  // W x (line channels): column j * chunk channels + c for packed group j
};

struct WeightCopy {
  std::uint64_t bytes = 0;
  std::uint64_t usable_from = never;
  IntMatrix values;  // the tile as the array sees it: chunk depth x C-block columns
};

struct Accumulators {
  const Step* first_step = nullptr;  // the chunk-0 step: which pass, R-block and C-block
  std::uint64_t bytes = 0;
  IntMatrix values;  // M x C-block columns
  std::uint64_t rows_in_flight = 0;
  bool all_rows_issued = false;
  std::uint64_t ready_from = never;  // the cycle after the last row lands
  bool epilogue_pending = false;     // an off-chip fused-add operand has not landed yet
  IntMatrix arriving_epilogue;       // that operand while it crosses the bus

  // The block holds its final values: every row has landed and the fused add's operand with them.
  bool complete_by(std::uint64_t cycle) const { return ready_from <= cycle && !epilogue_pending; }
};

// A row's partial sums on their way down the adder tree to the accumulators.
struct RowInFlight {
  std::uint64_t lands_at = 0;
  Accumulators* target = nullptr;
  Eigen::Index row = 0, first_col = 0;
  std::vector<std::int64_t> sums;
};

struct ByteBuffer {
  std::uint64_t capacity = 0;
  std::uint64_t held = 0;
  bool has_room_for(std::uint64_t bytes) const { return held + bytes <= capacity; }
};

class MemoryReferenceModel {
 public:
  MemoryReferenceModel(const Npu& npu, LoopNest nest, const std::vector<IntMatrix>& feature_maps,
                       const std::vector<IntMatrix>& group_weights, const Placement& placement,
                       const std::vector<std::vector<IntMatrix>>& epilogue_operand)
      : npu_(npu),
        nest_(std::move(nest)),
        feature_maps_(feature_maps),
        group_weights_(group_weights),
        placement_(placement),
        epilogue_operand_(epilogue_operand),
        geometry_(npu.geometry(nest_.mapping.k)),
        queue_depth_(npu.config().offchip.queue_depth),
        latency_(npu.latency_cycles()),
        element_bytes_(npu.config().element_bytes) {
    // The caller checked that the reservation fits the buffer.
    input_.capacity = npu.config().buffers.input_bytes - placement.reserved_input_bytes;
    weights_.capacity = npu.config().buffers.weight_bytes;
    output_.capacity = npu.config().buffers.output_bytes;
    issued_at_.assign(nest_.stream.size(), never);
    completes_at_.assign(nest_.stream.size(), never);
    copies_of_request_.resize(nest_.stream.size());
    weight_copy_of_request_.assign(nest_.stream.size(), nullptr);
    lines_of_step_.assign(nest_.batch * nest_.map.height, nullptr);
    outputs_.assign(nest_.batch, std::vector<IntMatrix>(nest_.groups));
    for (auto& sample : outputs_)
      for (auto& out : sample)
        out = IntMatrix::Zero(to_index(nest_.map.out_height * nest_.map.out_width),
                              to_index(nest_.cols_per_group));
    // No legitimate wait outlasts a latency, the longest transfer and a pipeline drain.
    std::uint64_t longest_transfer = 0;
    for (const Request& r : nest_.stream)
      longest_transfer = std::max(longest_transfer, npu.data_cycles(r.bytes));
    stall_limit_ = latency_ + longest_transfer + geometry_.pipeline_depth_cycles + 2;
    if (placement.input_on_chip) place_input_on_chip();
  }

  void tick() {
    progressed_ = false;
    complete_transfers();
    land_rows();
    release_kept_outputs();
    run_array();
    issue_requests();
    start_transfer();
    if (all_done()) {
      settle_at_end();
      return;
    }
    if (progressed_) {
      last_progress_ = now_;
    } else if (now_ - last_progress_ > stall_limit_) {
      failure_ = describe_stall();
    }
    ++now_;
  }

  bool finished() const { return done_ || !failure_.empty() || !internal_error_.empty(); }
  const std::string& failure() const { return failure_; }
  const std::string& internal_error() const { return internal_error_; }
  std::uint64_t cycles() const { return cycles_; }
  std::uint64_t compute_cycles() const { return compute_cycles_; }
  const TrafficBytes& bytes() const { return bytes_; }
  std::vector<std::vector<IntMatrix>> take_outputs() { return std::move(outputs_); }

 private:
  // The layer ends at T = now_ + 1. What takes effect at T itself (the last completions, the
  // release of the last blocks kept on chip) is settled without another edge of the clock.
  void settle_at_end() {
    cycles_ = now_ + 1;
    done_ = true;
    now_ = cycles_;
    complete_transfers();
    release_kept_outputs();
    if (!accumulators_.empty())
      internal_error_ = fmt::format("{} output blocks still held at the end, cycle {}", accumulators_.size(), now_);
  }

  // --- placement -----------------------------------------------------------------------------

  // input_on_chip: every line of the tensor (each pass's groups, each chunk's channels, every
  // real sample and row) sits in the input buffer from cycle 0 to the end.
  void place_input_on_chip() {
    for (std::uint64_t pass = 0; pass < nest_.passes.size(); ++pass)
      for (std::uint64_t chunk = 0; chunk < nest_.passes[pass].chunks.size(); ++chunk)
        for (std::uint64_t sample = 0; sample < nest_.batch; ++sample)
          for (std::uint64_t y = 0; y < nest_.map.height; ++y) {
            const std::uint64_t id = nest_.line_id(pass, chunk, sample, y);
            const std::uint64_t bytes = nest_.line_bytes(id, element_bytes_);
            if (!input_.has_room_for(bytes))
              throw std::runtime_error(fmt::format(
                  "the input tensor does not fit the input buffer: {} B placed, the next line of {} B "
                  "would exceed the {} B left beside {} B reserved",
                  input_.held, bytes, input_.capacity, placement_.reserved_input_bytes));
            input_.held += bytes;
            line_copies_[id].push_back({bytes, 0, read_line(id)});
          }
  }

  // output_on_chip: a finished block stays on chip as part of the layer's output tensor (its
  // room is in the reservation), so its accumulators are free from the cycle its write would
  // have been ready.
  void release_kept_outputs() {
    if (!placement_.output_on_chip) return;
    for (auto it = accumulators_.begin(); it != accumulators_.end();) {
      if (!it->second.complete_by(now_)) {
        ++it;
        continue;
      }
      deliver_outputs(*it->second.first_step, it->second.values);
      output_.held -= it->second.bytes;
      it = accumulators_.erase(it);
      progressed_ = true;
    }
  }

  // The fused add's operand for an output block, laid out like its accumulators; the cells of
  // empty grid positions stay 0.
  IntMatrix epilogue_block(const Step& step) const {
    const Pass& pass = nest_.passes[step.pass];
    IntMatrix block = IntMatrix::Zero(to_index(nest_.row_blocks[step.row_block].rows),
                                      to_index(pass.col_blocks[step.col_block].count));
    for_each_real_output_cell(step, [&](Eigen::Index m, Eigen::Index i, const OutputCell& cell) {
      block(m, i) = epilogue_operand_[cell.sample][cell.group](cell.pixel, cell.column);
    });
    return block;
  }

  // --- channel -------------------------------------------------------------------------------

  void complete_transfers() {
    while (first_incomplete_ < next_transfer_ && completes_at_[first_incomplete_] <= now_) {
      const Request& request = nest_.stream[first_incomplete_];
      const std::uint64_t block = nest_.steps[request.step].output_block;
      if (request.kind == RequestKind::write) {
        output_.held -= accumulators_.at(block).bytes;
        accumulators_.erase(block);
      } else if (request.kind == RequestKind::epilogue_load) {
        Accumulators& acc = accumulators_.at(block);
        acc.values += acc.arriving_epilogue;
        acc.arriving_epilogue = IntMatrix();
        acc.epilogue_pending = false;
      }
      ++first_incomplete_;
      progressed_ = true;
    }
  }

  bool request_ready(const Request& request) const {
    const auto accumulators = accumulators_.find(nest_.steps[request.step].output_block);
    switch (request.kind) {
      case RequestKind::write:
        return accumulators != accumulators_.end() && accumulators->second.complete_by(now_);
      case RequestKind::weight_load:
        return weights_.has_room_for(request.bytes);
      case RequestKind::input_load:
        return input_.has_room_for(request.bytes);
      case RequestKind::epilogue_load:
        return accumulators != accumulators_.end();
    }
    return false;
  }

  void issue_requests() {
    while (next_issue_ < nest_.stream.size() && next_issue_ - first_incomplete_ < queue_depth_ &&
           request_ready(nest_.stream[next_issue_])) {
      const Request& request = nest_.stream[next_issue_];
      switch (request.kind) {
        case RequestKind::write:
          bytes_.output += request.bytes;
          break;
        case RequestKind::epilogue_load:
          bytes_.epilogue += request.bytes;
          break;
        case RequestKind::weight_load: {
          weights_.held += request.bytes;
          bytes_.weight += request.bytes;
          auto& copies = weight_copies_[nest_.steps[request.step].weight_block];
          copies.push_back({request.bytes, never, {}});
          weight_copy_of_request_[next_issue_] = &copies.back();
          break;
        }
        case RequestKind::input_load: {
          input_.held += request.bytes;
          bytes_.input += request.bytes;
          for (std::uint64_t line : request.lines) {
            auto& copies = line_copies_[line];
            copies.push_back({nest_.line_bytes(line, element_bytes_), never, {}});
            copies_of_request_[next_issue_].push_back(&copies.back());
          }
          break;
        }
      }
      issued_at_[next_issue_] = now_;
      ++next_issue_;
      progressed_ = true;
    }
  }

  // The data bus carries one request at a time, in issue order, from its issue + latency on.
  void start_transfer() {
    if (next_transfer_ >= next_issue_ || bus_free_at_ > now_ || issued_at_[next_transfer_] + latency_ > now_)
      return;
    const Request& request = nest_.stream[next_transfer_];
    const std::uint64_t completes = now_ + npu_.data_cycles(request.bytes);
    switch (request.kind) {
      case RequestKind::write: {
        const Step& step = nest_.steps[request.step];
        deliver_outputs(step, accumulators_.at(step.output_block).values);
        break;
      }
      case RequestKind::epilogue_load: {
        const Step& step = nest_.steps[request.step];
        accumulators_.at(step.output_block).arriving_epilogue = epilogue_block(step);
        break;
      }
      case RequestKind::weight_load: {
        WeightCopy& copy = *weight_copy_of_request_[next_transfer_];
        copy.values = weight_tile(nest_.steps[request.step]);
        copy.usable_from = completes;
        break;
      }
      case RequestKind::input_load: {
        const auto& copies = copies_of_request_[next_transfer_];
        for (std::size_t i = 0; i < copies.size(); ++i) {
          copies[i]->values = read_line(request.lines[i]);
          copies[i]->usable_from = completes;
        }
        copies_of_request_[next_transfer_].clear();
        break;
      }
    }
    completes_at_[next_transfer_] = completes;
    bus_free_at_ = completes;
    ++next_transfer_;
    progressed_ = true;
  }

  // A line as the feature map holds it: in DRAM, or already on chip with input_on_chip.
  IntMatrix read_line(std::uint64_t id) const {
    const auto address = nest_.line_address(id);
    const Pass& pass = nest_.passes[address.pass];
    const Chunk& chunk = pass.chunks[address.chunk];
    const FeatureMap& map = nest_.map;
    IntMatrix line(to_index(map.width), to_index(pass.groups * chunk.channels));
    const IntMatrix& fm = feature_maps_[address.sample];
    for (std::uint64_t x = 0; x < map.width; ++x)
      for (std::uint64_t j = 0; j < pass.groups; ++j)
        for (std::uint64_t c = 0; c < chunk.channels; ++c)
          line(to_index(x), to_index(j * chunk.channels + c)) =
              fm(to_index(address.y * map.width + x),
                 to_index((pass.first_group + j) * map.channels + chunk.first_channel + c));
    return line;
  }

  // Lane l of a chunk: diagonal block l / (taps * channels) = sample slot * G_q + group, then
  // tap and channel. Column n of a pass: block n / C, output channel n mod C.
  struct Lane {
    std::uint64_t block, tap, channel;
  };
  Lane lane_of(const Chunk& chunk, std::uint64_t lane) const {
    const std::uint64_t per_block = nest_.map.kernel_height * nest_.map.kernel_width * chunk.channels;
    const std::uint64_t within = lane % per_block;
    return {lane / per_block, within / chunk.channels, within % chunk.channels};
  }

  // Only the distinct weights come over the channel; the buffer logic writes the copies and
  // the zeros of a block-diagonal tile.
  IntMatrix weight_tile(const Step& step) const {
    const Pass& pass = nest_.passes[step.pass];
    const Chunk& chunk = pass.chunks[step.chunk];
    const ColumnRange& cols = pass.col_blocks[step.col_block];
    const std::uint64_t c_per_group = nest_.cols_per_group;
    IntMatrix tile = IntMatrix::Zero(to_index(chunk.depth), to_index(cols.count));
    for (std::uint64_t l = 0; l < chunk.depth; ++l) {
      const Lane lane = lane_of(chunk, l);
      for (std::uint64_t i = 0; i < cols.count; ++i) {
        const std::uint64_t column = cols.first + i;
        if (column / c_per_group != lane.block) continue;
        const IntMatrix& w = group_weights_[pass.first_group + lane.block % pass.groups];
        tile(to_index(l), to_index(i)) =
            w(to_index(lane.tap * nest_.map.channels + chunk.first_channel + lane.channel),
              to_index(column % c_per_group));
      }
    }
    return tile;
  }

  // Where accumulator (m, i) of an output block belongs in the layer's output.
  struct OutputCell {
    std::uint64_t sample, group;
    Eigen::Index pixel, column;  // row y'*W' + x' and output channel of that group's R x C output
  };

  // Visits the cells of the block of `step` that belong to real samples: only they leave the
  // chip or receive a fused add's operand.
  template <typename Visit>
  void for_each_real_output_cell(const Step& step, Visit&& visit) const {
    const Pass& pass = nest_.passes[step.pass];
    const RowBlock& rows = nest_.row_blocks[step.row_block];
    const ColumnRange& cols = pass.col_blocks[step.col_block];
    const std::uint64_t c_per_group = nest_.cols_per_group, out_width = nest_.map.out_width;
    const std::uint64_t per_grid_row = rows.out_rows * out_width;
    for (std::uint64_t m = 0; m < rows.rows; ++m) {
      const std::uint64_t grid_row = rows.first_grid_row + m / per_grid_row;
      const std::uint64_t pixel =
          (rows.first_out_row + m % per_grid_row / out_width) * out_width + m % out_width;
      for (std::uint64_t i = 0; i < cols.count; ++i) {
        const std::uint64_t block = (cols.first + i) / c_per_group;
        const std::uint64_t sample = grid_row * nest_.mapping.b_p + block / pass.groups;
        if (sample >= nest_.batch) continue;
        visit(to_index(m), to_index(i),
              OutputCell{sample, pass.first_group + block % pass.groups, to_index(pixel),
                         to_index((cols.first + i) % c_per_group)});
      }
    }
  }

  // The block's final values reach the layer's output: DRAM over the channel, or the on-chip
  // tensor with output_on_chip.
  void deliver_outputs(const Step& step, const IntMatrix& values) {
    for_each_real_output_cell(step, [&](Eigen::Index m, Eigen::Index i, const OutputCell& cell) {
      outputs_[cell.sample][cell.group](cell.pixel, cell.column) = values(m, i);
    });
  }

  // --- array ---------------------------------------------------------------------------------

  void land_rows() {
    while (!in_flight_.empty() && in_flight_.front().lands_at <= now_) {
      RowInFlight& row = in_flight_.front();
      for (std::size_t i = 0; i < row.sums.size(); ++i)
        row.target->values(row.row, row.first_col + to_index(i)) += row.sums[i];
      if (--row.target->rows_in_flight == 0 && row.target->all_rows_issued) row.target->ready_from = now_ + 1;
      in_flight_.pop_front();
      progressed_ = true;
    }
  }

  void run_array() {
    if (streaming_ && cursor_done_) end_step();
    if (!streaming_ && next_step_ < nest_.steps.size()) try_start_step();
    if (streaming_) stream_row();
  }

  // A step starts once its lines and weights have arrived and, for chunk 0, its accumulators
  // fit; the oldest copy of a line or block is the one of the current run.
  void try_start_step() {
    const Step& step = nest_.steps[next_step_];
    while (lines_checked_ < step.lines.size()) {
      const std::uint64_t id = step.lines[lines_checked_];
      const auto it = line_copies_.find(id);
      if (it == line_copies_.end() || it->second.front().usable_from > now_) return;
      const auto address = nest_.line_address(id);
      lines_of_step_[address.sample * nest_.map.height + address.y] = &it->second.front().values;
      ++lines_checked_;
    }
    const auto weights = weight_copies_.find(step.weight_block);
    if (weights == weight_copies_.end() || weights->second.front().usable_from > now_) return;
    if (step.allocates) {
      if (!output_.has_room_for(step.accumulator_bytes)) return;
      output_.held += step.accumulator_bytes;
      const Pass& pass = nest_.passes[step.pass];
      Accumulators& acc = accumulators_[step.output_block];
      acc.first_step = &step;
      acc.bytes = step.accumulator_bytes;
      acc.values = IntMatrix::Zero(to_index(nest_.row_blocks[step.row_block].rows),
                                   to_index(pass.col_blocks[step.col_block].count));
      // An on-chip operand of a fused add is read from the input buffer as the block is
      // allocated: it costs no request and no wait.
      if (placement_.epilogue == EpilogueOperand::on_chip) acc.values = epilogue_block(step);
      acc.epilogue_pending = step.fetches_epilogue;
    }
    weight_tile_ = &weights->second.front().values;
    accumulators_of_step_ = &accumulators_.at(step.output_block);
    streaming_ = true;
    cursor_done_ = false;
    cursor_col_tile_ = cursor_depth_tile_ = cursor_row_ = 0;
    lines_checked_ = 0;
    progressed_ = true;
  }

  void end_step() {
    const Step& step = nest_.steps[next_step_];
    for (std::uint64_t id : step.lines_released) {
      auto it = line_copies_.find(id);
      input_.held -= it->second.front().bytes;
      it->second.pop_front();
      if (it->second.empty()) line_copies_.erase(it);
    }
    if (step.releases_weight_block) {
      auto it = weight_copies_.find(step.weight_block);
      weights_.held -= it->second.front().bytes;
      it->second.pop_front();
      if (it->second.empty()) weight_copies_.erase(it);
    }
    std::fill(lines_of_step_.begin(), lines_of_step_.end(), nullptr);
    streaming_ = false;
    ++next_step_;
  }

  // One im2col row against one t_p x t_c tile of the step: C tiles outermost, then depth tiles,
  // then the M rows, so a weight tile stays in the PEs for M cycles.
  void stream_row() {
    const Step& step = nest_.steps[next_step_];
    const Pass& pass = nest_.passes[step.pass];
    const Chunk& chunk = pass.chunks[step.chunk];
    const RowBlock& rows = nest_.row_blocks[step.row_block];
    const std::uint64_t cols = pass.col_blocks[step.col_block].count;
    const FeatureMap& map = nest_.map;

    const std::uint64_t per_grid_row = rows.out_rows * map.out_width;
    const std::uint64_t grid_row = rows.first_grid_row + cursor_row_ / per_grid_row;
    const auto out_y =
        static_cast<std::int64_t>(rows.first_out_row + cursor_row_ % per_grid_row / map.out_width);
    const auto out_x = static_cast<std::int64_t>(cursor_row_ % map.out_width);

    const std::uint64_t lane_begin = cursor_depth_tile_ * geometry_.tile_depth;
    const std::uint64_t lane_end = std::min<std::uint64_t>(chunk.depth, lane_begin + geometry_.tile_depth);
    row_values_.assign(lane_end - lane_begin, 0);
    for (std::uint64_t l = lane_begin; l < lane_end; ++l) {
      const Lane lane = lane_of(chunk, l);
      const std::uint64_t sample = grid_row * nest_.mapping.b_p + lane.block / pass.groups;
      if (sample >= nest_.batch) continue;  // an empty grid cell streams zeros
      const std::int64_t y = out_y * static_cast<std::int64_t>(map.stride_height) -
                             static_cast<std::int64_t>(map.padding_height) +
                             static_cast<std::int64_t>(lane.tap / map.kernel_width);
      const std::int64_t x = out_x * static_cast<std::int64_t>(map.stride_width) -
                             static_cast<std::int64_t>(map.padding_width) +
                             static_cast<std::int64_t>(lane.tap % map.kernel_width);
      if (y < 0 || x < 0 || y >= static_cast<std::int64_t>(map.height) ||
          x >= static_cast<std::int64_t>(map.width))
        continue;  // zero padding is synthesized, never loaded
      const IntMatrix* line = lines_of_step_[sample * map.height + static_cast<std::uint64_t>(y)];
      if (line == nullptr) {
        internal_error_ = fmt::format("step {} reads input row {} of sample {}, which it does not hold",
                                      next_step_, y, sample);
        return;
      }
      row_values_[l - lane_begin] =
          (*line)(x, to_index(lane.block % pass.groups * chunk.channels + lane.channel));
    }

    const std::uint64_t col_begin = cursor_col_tile_ * geometry_.tile_cols;
    const std::uint64_t col_end = std::min<std::uint64_t>(cols, col_begin + geometry_.tile_cols);
    RowInFlight row{now_ + geometry_.pipeline_depth_cycles - 1, accumulators_of_step_, to_index(cursor_row_),
                    to_index(col_begin), std::vector<std::int64_t>(col_end - col_begin, 0)};
    for (std::uint64_t i = col_begin; i < col_end; ++i) {
      std::int64_t sum = 0;
      for (std::uint64_t l = lane_begin; l < lane_end; ++l)
        sum += row_values_[l - lane_begin] * (*weight_tile_)(to_index(l), to_index(i));
      row.sums[i - col_begin] = sum;
    }
    in_flight_.push_back(std::move(row));
    ++accumulators_of_step_->rows_in_flight;
    ++compute_cycles_;
    progressed_ = true;

    if (++cursor_row_ < rows.rows) return;
    cursor_row_ = 0;
    if (++cursor_depth_tile_ < ceil_div(chunk.depth, geometry_.tile_depth)) return;
    cursor_depth_tile_ = 0;
    if (++cursor_col_tile_ < ceil_div(cols, geometry_.tile_cols)) return;
    cursor_done_ = true;
    ++steps_streamed_;
    if (step.writes) accumulators_of_step_->all_rows_issued = true;
  }

  bool all_done() const {
    return steps_streamed_ == nest_.steps.size() && in_flight_.empty() &&
           next_transfer_ == nest_.stream.size() && bus_free_at_ <= now_ + 1;
  }

  std::string describe_stall() const {
    std::string what = fmt::format("no progress for {} cycles at cycle {}: ", now_ - last_progress_, now_);
    if (next_step_ < nest_.steps.size() && !streaming_) {
      const Step& step = nest_.steps[next_step_];
      what += fmt::format("step {} of {} waits (lines present {}/{}, output buffer {}/{} B, needs {} B); ",
                          next_step_, nest_.steps.size(), lines_checked_, step.lines.size(), output_.held,
                          output_.capacity, step.allocates ? step.accumulator_bytes : 0);
    }
    if (next_issue_ < nest_.stream.size()) {
      const Request& request = nest_.stream[next_issue_];
      what += fmt::format(
          "request {} ({} of step {}, {} B) waits; input buffer {}/{} B, weight buffer {}/{} B, "
          "{} of {} queue slots taken",
          next_issue_, to_string(request.kind), request.step, request.bytes, input_.held, input_.capacity,
          weights_.held, weights_.capacity, next_issue_ - first_incomplete_, queue_depth_);
    }
    return what + " (infeasible tiling?)";
  }

  const Npu& npu_;
  LoopNest nest_;
  const std::vector<IntMatrix>& feature_maps_;
  const std::vector<IntMatrix>& group_weights_;
  Placement placement_;
  const std::vector<std::vector<IntMatrix>>& epilogue_operand_;
  const StackGeometry& geometry_;
  std::uint64_t queue_depth_, latency_, element_bytes_;
  std::uint64_t stall_limit_ = 0;

  ByteBuffer input_, weights_, output_;
  // Several copies of one line or block can be held at once: a prefetched load for a later run
  // of steps may arrive before the current run releases its copy.
  std::unordered_map<std::uint64_t, std::deque<LineCopy>> line_copies_;
  std::unordered_map<std::uint64_t, std::deque<WeightCopy>> weight_copies_;
  std::unordered_map<std::uint64_t, Accumulators> accumulators_;

  std::vector<std::uint64_t> issued_at_, completes_at_;
  std::vector<std::vector<LineCopy*>> copies_of_request_;
  std::vector<WeightCopy*> weight_copy_of_request_;
  std::size_t next_issue_ = 0, next_transfer_ = 0, first_incomplete_ = 0;
  std::uint64_t bus_free_at_ = 0;

  std::size_t next_step_ = 0, steps_streamed_ = 0, lines_checked_ = 0;
  bool streaming_ = false, cursor_done_ = false;
  std::uint64_t cursor_col_tile_ = 0, cursor_depth_tile_ = 0, cursor_row_ = 0;
  std::vector<const IntMatrix*> lines_of_step_;  // [sample * H + y]
  const IntMatrix* weight_tile_ = nullptr;
  Accumulators* accumulators_of_step_ = nullptr;
  std::vector<std::int64_t> row_values_;
  std::deque<RowInFlight> in_flight_;

  std::vector<std::vector<IntMatrix>> outputs_;
  std::uint64_t now_ = 0, last_progress_ = 0, cycles_ = 0, compute_cycles_ = 0;
  TrafficBytes bytes_;
  bool progressed_ = false, done_ = false;
  std::string failure_, internal_error_;
};

void require_operands(const FeatureMap& map, const GemmShape& shape, std::uint32_t batch,
                      const std::vector<IntMatrix>& feature_maps,
                      const std::vector<IntMatrix>& group_weights) {
  if (feature_maps.size() != batch)
    throw std::invalid_argument(fmt::format("{} feature maps for a batch of {}", feature_maps.size(), batch));
  for (const IntMatrix& fm : feature_maps)
    if (static_cast<std::uint64_t>(fm.rows()) != map.height * map.width ||
        static_cast<std::uint64_t>(fm.cols()) != map.channels * shape.groups)
      throw std::invalid_argument(fmt::format("a feature map is {}x{}, not (H*W) x (C_g*groups) = {}x{}",
                                              fm.rows(), fm.cols(), map.height * map.width,
                                              map.channels * shape.groups));
  if (group_weights.size() != shape.groups)
    throw std::invalid_argument(
        fmt::format("{} weight matrices for {} groups", group_weights.size(), shape.groups));
  for (const IntMatrix& w : group_weights)
    if (static_cast<std::uint64_t>(w.rows()) != shape.depth ||
        static_cast<std::uint64_t>(w.cols()) != shape.cols)
      throw std::invalid_argument(fmt::format("a group's weights are {}x{}, not P x C = {}x{}", w.rows(),
                                              w.cols(), shape.depth, shape.cols));
}

// A fused add's operand is shaped like the outputs; without a fused add there is none.
void require_epilogue_operand(const FeatureMap& map, const GemmShape& shape, std::uint32_t batch,
                              const Placement& placement, const std::vector<std::vector<IntMatrix>>& operand) {
  if (placement.epilogue == EpilogueOperand::none) {
    if (!operand.empty()) throw std::invalid_argument("an epilogue operand for a layer without a fused add");
    return;
  }
  if (operand.size() != batch)
    throw std::invalid_argument(fmt::format("{} epilogue operands for a batch of {}", operand.size(), batch));
  for (const auto& sample : operand) {
    if (sample.size() != shape.groups)
      throw std::invalid_argument(
          fmt::format("an epilogue operand has {} groups, not {}", sample.size(), shape.groups));
    for (const IntMatrix& m : sample)
      if (static_cast<std::uint64_t>(m.rows()) != map.out_height * map.out_width ||
          static_cast<std::uint64_t>(m.cols()) != shape.cols)
        throw std::invalid_argument(fmt::format("an epilogue operand is {}x{}, not R x C = {}x{}", m.rows(),
                                                m.cols(), map.out_height * map.out_width, shape.cols));
  }
}

}  // namespace

MemoryReferenceRun run_memory_reference(const Npu& npu, const GemmShape& shape, std::uint32_t batch,
                                        const BatchMapping& mapping, const Tiling& tiling,
                                        const std::vector<IntMatrix>& feature_maps,
                                        const std::vector<IntMatrix>& group_weights,
                                        const Placement& placement,
                                        const std::vector<std::vector<IntMatrix>>& epilogue_operand) {
  if (npu.is_systolic()) throw std::invalid_argument("the memory reference models the dot-product array");
  require_legal(npu, shape, batch, mapping);
  LoopNest nest = plan_loop_nest(npu, shape, batch, mapping, tiling, placement);
  require_operands(nest.map, shape, batch, feature_maps, group_weights);
  require_epilogue_operand(nest.map, shape, batch, placement, epilogue_operand);
  if (placement.reserved_input_bytes > npu.config().buffers.input_bytes)
    throw std::runtime_error(fmt::format("{} B reserved in an input buffer of {} B",
                                         placement.reserved_input_bytes, npu.config().buffers.input_bytes));

  MemoryReferenceModel model(npu, std::move(nest), feature_maps, group_weights, placement, epilogue_operand);
  const ClockedRun clocked = run_clocked(
      npu.config().clock_mhz, [&] { model.tick(); }, [&] { return model.finished(); });
  if (!model.internal_error().empty()) throw std::logic_error("memory reference: " + model.internal_error());
  if (!model.failure().empty()) throw std::runtime_error("memory reference deadlocked: " + model.failure());

  MemoryReferenceRun run;
  run.cycles = model.cycles();
  run.compute_cycles = model.compute_cycles();
  run.bytes = model.bytes();
  run.clock_period_ps = clocked.period_ps;
  run.simulated_ps = clocked.simulated_ps;
  run.outputs = model.take_outputs();
  return run;
}

}  // namespace npusim::npu
