#pragma once
// Closed-form, tile-level timing of one layer on the NPU. The schedule it prices is the one
// the cycle-stepped ReferenceArray executes (docs/npu-model.md); tests prove the two agree to
// the cycle.

#include <cstdint>

#include "npu_model/gemm.hpp"
#include "npu_model/npu_config.hpp"

namespace npusim::npu {

struct LayerCost {
  std::uint64_t cycles = 0;
  std::uint64_t compute_cycles = 0;  // cycles in which the array streams an input row
  std::uint64_t stall_cycles = 0;    // cycles - compute_cycles: fill, drain and transfer waits
  std::uint64_t offchip_bytes = 0;   // bytes read and written over the off-chip channel
  std::uint64_t macs = 0;            // useful multiply-accumulates: batch * R * P * C * groups
  double mac_utilisation = 0.0;      // macs / (cycles * T_C * T_P)
  BatchMapping mapping;
};

// Cost of `batch` samples of `shape` under `mapping`. Throws InvalidMapping if the mapping is
// illegal (see mapping_violation).
LayerCost gemm_cost(const Npu& npu, const GemmShape& shape, std::uint32_t batch,
                    const BatchMapping& mapping);

// Same, for a mapping the caller has already checked with mapping_violation. O(1): it does not
// walk the tiles.
LayerCost gemm_cost_unchecked(const Npu& npu, const GemmShape& shape, std::uint32_t batch,
                              const BatchMapping& mapping);

// The legal mapping with the fewest cycles; ties go to fewer off-chip bytes, then smaller k,
// then smaller b_p. Exists whenever <batch, 1, 1> is legal, which is checked first (it fails
// only for an empty batch or a layer beyond the size limits): throws InvalidMapping then.
LayerCost best_gemm_cost(const Npu& npu, const GemmShape& shape, std::uint32_t batch);

// Work for the vector path (pooling, element-wise, activation), per sample.
struct VectorWork {
  std::uint64_t input_elements = 0;
  std::uint64_t output_elements = 0;
  std::uint64_t operations = 0;  // one op = one element-wise add/max/compare
};

// Vector path: `vector_lanes` ops per cycle, operands streamed over the off-chip channel as
// one read and one write request issued together. cycles = max(compute, latency + read bus
// cycles + write bus cycles): the vector unit streams, so compute overlaps the transfers.
// Mapping reported as <batch, 1, 1>. Work with no elements and no ops costs nothing.
LayerCost vector_cost(const Npu& npu, const VectorWork& work, std::uint32_t batch);

}  // namespace npusim::npu
