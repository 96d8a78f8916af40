#pragma once
// The memory schedule of a GEMM layer on the dot-product array: on-chip im2col from a line
// buffer, a DMA engine with a queue of outstanding requests, and the mapper's tiling (loop
// order, blocks, residency, prefetch). docs/memory-schedule.md is the contract; the fast
// evaluation here and the cycle-stepped reference (memory_reference.hpp) both implement it.

#include <cstdint>
#include <string>

#include "npu_model/gemm.hpp"
#include "npu_model/npu_config.hpp"
#include "npu_model/placement.hpp"

namespace npusim::npu {

// Which operand the outer loop keeps: weights_outer walks C-blocks outside R-blocks (a weight
// block serves every R-block before the next is needed); inputs_outer walks R-blocks outside
// C-blocks (an input band serves every C-block).
enum class LoopOrder { weights_outer, inputs_outer };
std::string to_string(LoopOrder order);  // "weights_outer", "inputs_outer"

// The mapper's choice beside <B_R, B_P, k> (docs/memory-schedule.md §4).
struct Tiling {
  LoopOrder order = LoopOrder::inputs_outer;
  std::uint32_t band_rows = 1;      // output rows per R-block
  std::uint32_t band_samples = 1;   // grid rows per R-block; > 1 only with whole-sample bands
  std::uint64_t col_block = 1;      // columns per C-block
  std::uint32_t channel_chunks = 1; // input-channel chunks (P-blocks) of a plain pass
  bool input_resident = false;      // the layer's input stays once loaded
  bool weights_resident = false;    // every weight block stays once loaded
  std::uint32_t input_prefetch = 0; // steps ahead that input loads are issued
  std::uint32_t weight_prefetch = 0;
  friend bool operator==(const Tiling&, const Tiling&) = default;
};
std::string to_string(const Tiling& tiling);

// Bytes over the off-chip channel, by operand.
struct TrafficBytes {
  std::uint64_t input = 0;
  std::uint64_t weight = 0;
  std::uint64_t output = 0;
  std::uint64_t psum = 0;  // partial sums spilled and read back
  std::uint64_t epilogue = 0;  // a fused add's second operand, read from off chip
  std::uint64_t total() const { return input + weight + output + psum + epilogue; }
  friend bool operator==(const TrafficBytes&, const TrafficBytes&) = default;
};

struct ScheduleResult {
  bool feasible = false;
  std::string infeasible_reason;  // set when !feasible: which buffer, how many bytes
  std::uint64_t cycles = 0;
  std::uint64_t compute_cycles = 0;  // streaming cycles of the array
  TrafficBytes bytes;
  std::uint64_t steps = 0;           // steps of the loop nest
  std::uint64_t walked_steps = 0;    // steps evaluated one by one; the rest were jumped over
  bool abandoned = false;            // stopped early: it would take more than the cycles allowed
};

// What a tiling costs that needs no timing: its bytes per operand and its streaming cycles,
// equal to evaluate_schedule's whenever the tiling is feasible, and a floor under its cycles (the
// streaming after the first step's loads, the bus carrying every byte). A search skips the
// tilings whose floor cannot beat the best it has. Throws like evaluate_schedule.
struct ScheduleOutline {
  TrafficBytes bytes;
  std::uint64_t compute_cycles = 0;
  std::uint64_t min_cycles = 0;
};
ScheduleOutline outline_schedule(const Npu& npu, const GemmShape& shape, std::uint32_t batch,
                                 const BatchMapping& mapping, const Tiling& tiling, const Placement& placement = {});

// Evaluates `tiling` for `batch` samples of `shape` under a legal `mapping`, with its operands
// where `placement` puts them (§10). Exact: equal to the cycle-stepped reference on every
// feasible case. Throws std::invalid_argument for a
// tiling whose fields are out of range (docs/memory-schedule.md §4); an infeasible one gives
// feasible = false. A search may pass `give_up_above_cycles`: once the layer is sure to take
// more, the evaluation stops with abandoned = true (and feasible = false).
ScheduleResult evaluate_schedule(const Npu& npu, const GemmShape& shape, std::uint32_t batch,
                                 const BatchMapping& mapping, const Tiling& tiling,
                                 std::uint64_t give_up_above_cycles = ~std::uint64_t{0},
                                 const Placement& placement = {});

// The same evaluation walking every step, without jumping over periodic stretches: slow, for
// tests that check the jumps change nothing.
ScheduleResult evaluate_schedule_step_by_step(const Npu& npu, const GemmShape& shape, std::uint32_t batch,
                                              const BatchMapping& mapping, const Tiling& tiling,
                                              const Placement& placement = {});

}  // namespace npusim::npu
