#pragma once
// Timing of one layer on the NPU. On the dot-product array the mapper picks, for a batch
// mapping, the tiling whose memory schedule (memory_schedule.hpp, docs/memory-schedule.md) takes
// the fewest cycles; that schedule is proven equal, cycle for cycle, to the cycle-stepped
// reference (memory_reference.hpp). Systolic arrays: systolic.hpp and docs/npu-model.md §9.

#include <cstdint>
#include <stdexcept>

#include "npu_model/energy.hpp"
#include "npu_model/gemm.hpp"
#include "npu_model/memory_schedule.hpp"
#include "npu_model/npu_config.hpp"
#include "npu_model/placement.hpp"

namespace npusim::npu {

struct LayerCost {
  std::uint64_t cycles = 0;
  std::uint64_t compute_cycles = 0;  // cycles in which the array streams an input row
  std::uint64_t stall_cycles = 0;    // cycles - compute_cycles: fill, drain and transfer waits
  std::uint64_t offchip_bytes = 0;   // bytes read and written over the off-chip channel
  TrafficBytes bytes;                // the same, by operand
  std::uint64_t macs = 0;            // useful multiply-accumulates: batch * R * P * C * groups
  double mac_utilisation = 0.0;      // macs / (cycles * MACs per cycle)
  // Bytes no schedule can avoid: the weights once, the input lines some output reads once, the
  // outputs once.
  std::uint64_t compulsory_bytes = 0;
  // max(the mapping's streaming cycles with memory for free, compulsory bytes / bandwidth): no
  // schedule of this mapping is faster.
  std::uint64_t roofline_cycles = 0;
  BatchMapping mapping;
  Tiling tiling;  // the mapper's loop order, blocks, residency and prefetch (dot-product array)
  Placement placement;  // where the network's residency plan put the operands
  // An element-wise add or a global pool that runs in the epilogue of the GEMM before it
  // (directly, or through a fused add): it costs nothing here.
  bool fused_into_previous = false;
  // Buffer bytes read and written and vector operations (docs/npu-model.md, "Energy"); they
  // never change the cycles.
  OnChipAccesses on_chip;
  friend bool operator==(const LayerCost&, const LayerCost&) = default;
};

// The layer's energy: its counts priced by the NPU's energy table, with leakage over its
// cycles as the static part.
EnergyParts layer_energy(const Npu& npu, const LayerCost& cost);

// No tiling of a layer fits the NPU's buffers. what() is one line naming the buffer and the
// smallest size that works.
class NoFeasibleTiling : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

// Cost of `batch` samples of `shape` under `mapping`, with the best tiling the mapper finds.
// Throws InvalidMapping if the mapping is illegal (see mapping_violation), NoFeasibleTiling if
// no tiling fits the buffers.
LayerCost gemm_cost(const Npu& npu, const GemmShape& shape, std::uint32_t batch,
                    const BatchMapping& mapping, const Placement& placement = {});

// Same, for a mapping the caller has already checked with mapping_violation.
LayerCost gemm_cost_unchecked(const Npu& npu, const GemmShape& shape, std::uint32_t batch,
                              const BatchMapping& mapping, const Placement& placement = {});

// Cost of one given tiling (dot-product array only). Throws NoFeasibleTiling if it does not fit.
LayerCost gemm_cost_tiled(const Npu& npu, const GemmShape& shape, std::uint32_t batch,
                          const BatchMapping& mapping, const Tiling& tiling, const Placement& placement = {});

// The legal mapping with the fewest cycles; ties go to fewer off-chip bytes, then smaller k,
// then smaller b_p. <batch, 1, 1> is checked first (it fails only for an empty batch or a layer
// beyond the size limits): throws InvalidMapping then, NoFeasibleTiling when nothing fits.
LayerCost best_gemm_cost(const Npu& npu, const GemmShape& shape, std::uint32_t batch,
                         const Placement& placement = {});

}  // namespace npusim::npu
