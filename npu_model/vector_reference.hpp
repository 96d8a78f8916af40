#pragma once
// Cycle-stepped reference of the vector path (docs/vector-path.md): a SystemC clocked model that
// walks the chunks on byte-sized input and output buffers with their capacities enforced, keeps
// the input rows of a line buffer, computes the pooling or the add lane by lane from the data it
// holds, and issues DMA requests into a modelled channel (queue depth, latency, bandwidth).
// Timing and traffic emerge from what it moves; it never consults vector_path.cpp's timing. For
// validation only: it ticks every cycle.

#include <cstdint>
#include <vector>

#include "npu_model/int_matrix.hpp"
#include "npu_model/memory_schedule.hpp"
#include "npu_model/placement.hpp"
#include "npu_model/vector_path.hpp"

namespace npusim::npu {

// What a pooling window yields: its largest element, or its sum divided by K_h * K_w (padding
// counts as 0, the quotient truncates toward zero). A max window of padding only yields 0.
enum class PoolFunction { max, average };

struct VectorReferenceRun {
  std::uint64_t cycles = 0;
  std::uint64_t compute_cycles = 0;  // cycles in which the vector unit performed an op
  TrafficBytes bytes;                // input and output only
  std::uint64_t clock_period_ps = 0;
  std::uint64_t simulated_ps = 0;
  // Per sample: (H' * W') x C, row y' * W' + x': what was written to DRAM, or with the output on
  // chip, what stayed there.
  std::vector<IntMatrix> outputs;
};

// operands[sample][tensor]: (H * W) x C, row y * W + x; one tensor for pooling, two for add.
// Requires shaped work and a feasible tiling (vector_cost_tiled accepts it). Throws
// std::invalid_argument for operands of the wrong shape or an on-chip input that does not fit,
// std::runtime_error if the run stops making progress. Builds its own SystemC context.
VectorReferenceRun run_vector_reference(const Npu& npu, const VectorWork& work, std::uint32_t batch,
                                        const Placement& placement, const VectorTiling& tiling,
                                        PoolFunction function,
                                        const std::vector<std::vector<IntMatrix>>& operands);

}  // namespace npusim::npu
