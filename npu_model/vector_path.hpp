#pragma once
// The vector path: pooling and element-wise layers that do not run in a GEMM's epilogue
// (docs/vector-path.md).

#include <cstdint>

#include "npu_model/cost_model.hpp"
#include "npu_model/placement.hpp"

namespace npusim::npu {

// Work for the vector path (pooling, element-wise, activation), per sample.
struct VectorWork {
  std::uint64_t input_elements = 0;
  std::uint64_t output_elements = 0;
  std::uint64_t operations = 0;  // one op = one element-wise add/max/compare
};

// Vector path: `vector_lanes` ops per cycle, operands streamed over the off-chip channel as
// one read and one write request issued together. cycles = max(compute, latency + read bus
// cycles + write bus cycles): the vector unit streams, so compute overlaps the transfers.
// An operand on chip (placement) crosses no channel. Mapping reported as <batch, 1, 1>. Work
// with no elements and no ops costs nothing.
LayerCost vector_cost(const Npu& npu, const VectorWork& work, std::uint32_t batch,
                      const Placement& placement = {});

}  // namespace npusim::npu
