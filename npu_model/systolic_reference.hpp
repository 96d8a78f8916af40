#pragma once
// Cycle-stepped reference of an R x C systolic array as a SystemC clocked model. Every cycle
// each operand and partial sum moves one PE; the skew of the inputs is explicit. It exists only
// to validate the closed-form fold arithmetic (systolic.hpp) and the data movement of each
// dataflow. Never use it in the serving model: it ticks every cycle and every PE.

#include <cstdint>

#include "npu_model/int_matrix.hpp"
#include "npu_model/npu_config.hpp"

namespace npusim::npu {

struct SystolicReferenceRun {
  std::uint64_t cycles = 0;           // clock edges from the first operand in to the last result out
  std::uint64_t macs = 0;             // PE-cycles that multiplied two valid operands
  std::uint64_t folds = 0;
  std::uint64_t clock_period_ps = 0;
  std::uint64_t simulated_ps = 0;     // SystemC time of the run: cycles * clock period
  IntMatrix output;                   // activations * weights, read back from the array
};

// Runs activations (m x k) times weights (k x n) on the systolic array of `npu`, folds back
// to back. Throws std::invalid_argument if the NPU is not systolic or the shapes disagree.
SystolicReferenceRun run_systolic_reference(const Npu& npu, const IntMatrix& activations,
                                            const IntMatrix& weights);

}  // namespace npusim::npu
