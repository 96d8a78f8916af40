#pragma once
// Cycle-stepped reference of the PE array, its buffers and the off-chip channel, as a SystemC
// clocked model. It moves real data every cycle and exists only to validate the closed-form
// cost model (cost_model.hpp) and the data layout of each batch mapping. Never use it in the
// serving model: it ticks every cycle.

#include <cstdint>
#include <vector>

#include <Eigen/Dense>

#include "npu_model/gemm.hpp"
#include "npu_model/npu_config.hpp"

namespace npusim::npu {

using IntMatrix = Eigen::Matrix<std::int64_t, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

struct ReferenceRun {
  std::uint64_t cycles = 0;          // clock edges from the first request to the last write
  std::uint64_t compute_cycles = 0;  // cycles in which an input row entered the array
  std::uint64_t offchip_bytes = 0;
  std::uint64_t clock_period_ps = 0; // the clock period as SystemC resolved it
  std::uint64_t simulated_ps = 0;    // SystemC time summed over passes: cycles * clock period
  std::uint64_t passes = 0;          // SystemC runs, one per pass of packed groups
  // outputs[sample][group]: the R x C result read back from "DRAM".
  std::vector<std::vector<IntMatrix>> outputs;
};

// Runs a grouped layer: group_weights[g] is P x C, inputs[b][g] is sample b's R x P input of
// group g. Groups are packed groups_per_pass() to a pass, and each pass is its own SystemC
// run, back to back. Requires a legal mapping (throws InvalidMapping otherwise) and consistent
// shapes (std::invalid_argument). Builds and tears down its own SystemC contexts, so calls may
// follow each other in one process.
ReferenceRun run_reference_array(const Npu& npu, const std::vector<IntMatrix>& group_weights,
                                 const std::vector<std::vector<IntMatrix>>& inputs,
                                 const BatchMapping& mapping);

// The same for a plain (one-group) layer: inputs[b] is R x P, weights P x C.
ReferenceRun run_reference_array(const Npu& npu, const IntMatrix& weights,
                                 const std::vector<IntMatrix>& inputs, const BatchMapping& mapping);

}  // namespace npusim::npu
