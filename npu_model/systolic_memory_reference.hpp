#pragma once
// Cycle-stepped reference of a layer on the systolic array with its memory
// (docs/systolic-memory.md): a SystemC clocked model in which a DMA engine issues the
// requests of the stream order into a modelled channel (queue depth, latency, bandwidth),
// byte-capacity buffers hold the data that arrives, the stationary block shifts row by row
// into shadow registers, and a PE-level array injects a streamed row only when its data sits in
// a buffer. Cycles and traffic emerge from what it moves; it never consults systolic.hpp's
// timing. For validation only: it ticks every cycle and every PE.

#include <cstdint>
#include <vector>

#include "npu_model/int_matrix.hpp"
#include "npu_model/memory_schedule.hpp"
#include "npu_model/npu_config.hpp"
#include "npu_model/placement.hpp"

namespace npusim::npu {

struct SystolicMemoryReferenceRun {
  std::uint64_t cycles = 0;
  // The same machine with every operand on chip from cycle 0 and unbounded buffers.
  std::uint64_t compute_cycles = 0;
  TrafficBytes bytes;
  std::uint64_t clock_period_ps = 0;
  std::uint64_t simulated_ps = 0;   // SystemC time of the memory run: cycles * period
  std::vector<IntMatrix> outputs;   // per group, m x n: what the writes carried (or, with the
                                    // outputs on chip, what the accumulators held)
};

// activations[g] (m x k) times weights[g] (k x n) for each group g, one group after another,
// on the systolic array of `npu` (stall_free is ignored: memory always counts here). With
// placement.epilogue != none, epilogue_operand[g] (m x n) is added to the outputs. Throws
// std::invalid_argument on mismatched shapes or a non-systolic NPU, std::runtime_error if the
// run stops making progress.
SystolicMemoryReferenceRun run_systolic_memory_reference(const Npu& npu, const std::vector<IntMatrix>& activations,
                                                         const std::vector<IntMatrix>& weights,
                                                         const Placement& placement = {},
                                                         const std::vector<IntMatrix>& epilogue_operand = {});

}  // namespace npusim::npu
