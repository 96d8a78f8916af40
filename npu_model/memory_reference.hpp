#pragma once
// Cycle-stepped reference of the memory schedule (docs/memory-schedule.md): a SystemC clocked
// model that executes the tiling's loop nest on byte-sized input, weight and output buffers
// with their capacities enforced, forms im2col rows from the feature-map lines it holds, issues
// DMA requests into a modelled channel (queue depth, latency, bandwidth) and stalls when an
// operand has not arrived or a buffer is full. Timing and traffic emerge from what it moves;
// it never consults memory_schedule.hpp. For validation only: it ticks every cycle.

#include <cstdint>
#include <vector>

#include "npu_model/int_matrix.hpp"
#include "npu_model/memory_schedule.hpp"

namespace npusim::npu {

struct MemoryReferenceRun {
  std::uint64_t cycles = 0;
  std::uint64_t compute_cycles = 0;  // cycles in which an im2col row entered the array
  TrafficBytes bytes;
  std::uint64_t clock_period_ps = 0;
  std::uint64_t simulated_ps = 0;    // SystemC time of the run: cycles * period
  // outputs[sample][group]: R x C (row y'*W' + x'), as written to "DRAM" or kept on chip.
  std::vector<std::vector<IntMatrix>> outputs;
};

// feature_maps[sample]: the input as (H*W) x (C_g*groups), row y*W + x, column
// group*C_g + c. group_weights[group]: P x C, row (k_h*K_w + k_w)*C_g + c. Requires a legal
// mapping and a feasible tiling under `placement` (docs/memory-schedule.md §10): reserved bytes
// shrink the input buffer, an input on chip is placed in it at cycle 0, an output on chip never
// crosses the channel (outputs still holds it). With a fused add (placement.epilogue != none),
// epilogue_operand[sample][group] is its second operand, shaped like the outputs, and the
// outputs are the sums; without one it must be empty. Throws std::invalid_argument for
// operands or fields that do not fit the layer, std::runtime_error for an infeasible tiling (a
// reservation or an input on chip that does not fit, or a run that stops making progress).
// Builds its own SystemC context, so runs may follow each other in one process.
MemoryReferenceRun run_memory_reference(const Npu& npu, const GemmShape& shape, std::uint32_t batch,
                                        const BatchMapping& mapping, const Tiling& tiling,
                                        const std::vector<IntMatrix>& feature_maps,
                                        const std::vector<IntMatrix>& group_weights,
                                        const Placement& placement = {},
                                        const std::vector<std::vector<IntMatrix>>& epilogue_operand = {});

}  // namespace npusim::npu
