#include "npu_model/tiling_mapper.hpp"

#include <algorithm>
#include <vector>

namespace npusim::npu {
namespace {

std::uint64_t ceil_div(std::uint64_t a, std::uint64_t b) { return (a + b - 1) / b; }

// Input rows that some output row's window reads.
std::uint64_t rows_read(const FeatureMap& f) {
  const auto covered = [&](std::uint64_t y) {
    const std::int64_t top = static_cast<std::int64_t>(y * f.stride_height) - static_cast<std::int64_t>(f.padding_height);
    const std::int64_t lo = std::max<std::int64_t>(0, top);
    const std::int64_t hi = std::min<std::int64_t>(static_cast<std::int64_t>(f.height) - 1,
                                                   top + static_cast<std::int64_t>(f.kernel_height) - 1);
    return std::pair{lo, hi};
  };
  if (f.kernel_height >= f.stride_height) {
    // Windows overlap or touch: every row from the first window's top to the last one's bottom.
    const std::int64_t lo = covered(0).first, hi = covered(f.out_height - 1).second;
    return hi < lo ? 0 : static_cast<std::uint64_t>(hi - lo + 1);
  }
  std::uint64_t rows = 0;  // windows do not overlap
  for (std::uint64_t y = 0; y < f.out_height; ++y) {
    const auto [lo, hi] = covered(y);
    if (hi >= lo) rows += static_cast<std::uint64_t>(hi - lo + 1);
  }
  return rows;
}

bool better(const ScheduleResult& a, const ScheduleResult& b) {
  if (a.cycles != b.cycles) return a.cycles < b.cycles;
  return a.bytes.total() < b.bytes.total();
}

}  // namespace

TrafficBytes compulsory_traffic(const Npu& npu, const GemmShape& shape, std::uint32_t batch, const Placement& placement) {
  const FeatureMap f = feature_map_of(shape);
  const std::uint64_t e = npu.config().element_bytes;
  TrafficBytes t;
  t.weight = shape.groups * shape.depth * shape.cols * e;
  t.input = batch * rows_read(f) * f.width * f.channels * shape.groups * e;
  t.output = batch * shape.rows * shape.cols * shape.groups * e;
  return placed_once(t, placement);
}

TrafficBytes placed_once(TrafficBytes operands, const Placement& placement) {
  if (placement.epilogue == EpilogueOperand::off_chip) operands.epilogue = operands.output;
  if (placement.input_on_chip) operands.input = 0;
  if (placement.output_on_chip) operands.output = 0;
  return operands;
}


// Exhaustive over a candidate set that depends on the layer and mapping only, never on the
// buffer sizes or the bandwidth: with more buffer every candidate is as fast or faster and more
// of them fit, and with more bandwidth every candidate is as fast or faster, so the choice can
// only get better (the monotonicity tests rely on this).
MapperChoice choose_tiling(const Npu& npu, const GemmShape& shape, std::uint32_t batch, const BatchMapping& mapping,
                           std::uint64_t give_up_above, const Placement& placement) {
  const FeatureMap f = feature_map_of(shape);
  const auto& geometry = npu.geometry(mapping.k);
  const auto& c = npu.config();
  const std::uint64_t packed = groups_per_pass(npu, shape, mapping);
  const bool block_diagonal = mapping.b_p * packed > 1;
  const std::uint64_t cols = mapping.b_p * packed * shape.cols;
  const TrafficBytes whole = compulsory_traffic(npu, shape, batch, placement);
  // Other tensors held on chip take their share of the input buffer (docs/memory-schedule.md §10).
  const std::uint64_t input_room =
      c.buffers.input_bytes > placement.reserved_input_bytes ? c.buffers.input_bytes - placement.reserved_input_bytes : 0;
  if (placement.input_on_chip &&
      std::uint64_t{batch} * f.height * f.width * f.channels * shape.groups * c.element_bytes > input_room)
    return {};
  // An input already on chip is never loaded: keeping it resident or prefetching it means nothing.
  const bool input_fits = !placement.input_on_chip && whole.input <= input_room;
  const bool weights_fit = whole.weight <= c.buffers.weight_bytes;

  // Bands of 1 and 4 output rows, whole samples, and whole grids.
  std::vector<std::pair<std::uint32_t, std::uint32_t>> bands;  // (band_rows, band_samples)
  for (std::uint64_t rows = 1; rows < f.out_height && rows <= 4; rows *= 4)
    bands.emplace_back(static_cast<std::uint32_t>(rows), 1);
  bands.emplace_back(static_cast<std::uint32_t>(f.out_height), 1);
  if (mapping.b_r > 1) bands.emplace_back(static_cast<std::uint32_t>(f.out_height), mapping.b_r);
  // One column tile at a time, or every column at once.
  std::vector<std::uint64_t> col_blocks{cols};
  if (!block_diagonal)
    for (std::uint64_t tiles = 4; tiles >= 1; tiles /= 2)
      if (tiles * geometry.tile_cols < cols) col_blocks.insert(col_blocks.begin(), tiles * geometry.tile_cols);

  MapperChoice best;
  const std::uint64_t max_chunks = block_diagonal ? 1 : f.channels;
  // Chunk counts from 1 up, stopping at the first where some tiling fits. Whether one fits is
  // decided without timing (an abandoned candidate says nothing about fitting), so the stopping
  // point does not move with the bandwidth.
  bool fits = false;
  for (std::uint64_t chunks = 1; chunks <= max_chunks && !fits; chunks = chunks < max_chunks ? std::min(max_chunks, chunks * 2) : chunks + 1) {
    const std::uint64_t per = ceil_div(f.channels, chunks);
    if ((chunks - 1) * per >= f.channels) continue;
    bool abandoned_any = false;
    for (const LoopOrder order : {LoopOrder::inputs_outer, LoopOrder::weights_outer}) {
      for (const auto& [band_rows, band_samples] : bands) {
        for (const std::uint64_t col_block : col_blocks) {
          Tiling t;
          t.order = order;
          t.band_rows = band_rows;
          t.band_samples = band_samples;
          t.col_block = col_block;
          t.channel_chunks = static_cast<std::uint32_t>(chunks);
          const std::uint64_t r_blocks = ceil_div(mapping.b_r, band_samples) * ceil_div(f.out_height, band_rows);
          const std::uint64_t c_blocks = ceil_div(cols, col_block);
          const std::uint64_t input_sharing =
              placement.input_on_chip ? 0 : order == LoopOrder::inputs_outer && chunks == 1 ? c_blocks : 1;
          const std::uint64_t weight_sharing = order == LoopOrder::weights_outer && chunks == 1 ? r_blocks : 1;
          // An operand that fits stays resident: its loads are then a subset of the streamed
          // variant's and never wait for room, so the streamed variant cannot be faster; it is
          // tried only when the resident one turns out not to fit.
          for (const std::uint64_t level : {3u, 0u}) {
            t.input_prefetch = static_cast<std::uint32_t>(std::min<std::uint64_t>(64, level * input_sharing));
            t.weight_prefetch = static_cast<std::uint32_t>(std::min<std::uint64_t>(64, level * weight_sharing));
            for (int variant = 0; variant < 2; ++variant) {
              t.input_resident = variant == 0 && input_fits;
              t.weights_resident = variant == 0 && weights_fit;
              if (variant == 1 && !input_fits && !weights_fit) break;
              // A candidate that cannot beat the best so far is abandoned as soon as that is sure:
              // before walking it when its floor says so (fewest cycles win, then fewest bytes).
              if (best.found) {
                const ScheduleOutline o = outline_schedule(npu, shape, batch, mapping, t, placement);
                if (o.min_cycles > best.result.cycles ||
                    (o.min_cycles == best.result.cycles && o.bytes.total() >= best.result.bytes.total())) {
                  abandoned_any = true;
                  break;
                }
              }
              const ScheduleResult r =
                  evaluate_schedule(npu, shape, batch, mapping, t, best.found ? best.result.cycles : give_up_above, placement);
              if (r.feasible && (!best.found || better(r, best.result))) {
                best.result = r;
                best.tiling = t;
                best.found = true;
              }
              fits = fits || r.feasible;
              abandoned_any = abandoned_any || r.abandoned;
              if (r.feasible || r.abandoned) break;
            }
          }
        }
      }
    }
    if (!fits && abandoned_any) {
      // The most frugal tiling of this chunk count fits whenever any does.
      Tiling frugal;
      frugal.band_rows = 1;
      frugal.col_block = col_blocks.front();
      frugal.channel_chunks = static_cast<std::uint32_t>(chunks);
      fits = evaluate_schedule(npu, shape, batch, mapping, frugal, ~std::uint64_t{0}, placement).feasible;
    }
  }
  return best;
}

}  // namespace npusim::npu
