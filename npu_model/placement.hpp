#pragma once
// Where a layer's operands live, as the network's residency plan decides
// (docs/memory-schedule.md §10). Every layer cost model (memory schedule, systolic array,
// vector path) honours it the same way: an operand on chip crosses no channel.

#include <cstdint>

namespace npusim::npu {

// The second operand of an element-wise add fused into a layer's epilogue: shaped like the
// layer's output and added to it before the output leaves the accumulators.
enum class EpilogueOperand { none, on_chip, off_chip };

struct Placement {
  bool input_on_chip = false;   // the input tensor is already in the input buffer: no input loads
  bool output_on_chip = false;  // the output stays in the input buffer for later layers: no writes
  EpilogueOperand epilogue = EpilogueOperand::none;
  // Input-buffer bytes held through the layer by on-chip tensors other than its input (its own
  // output when output_on_chip, a skip tensor waiting for a later add): the layer's input lines
  // get the rest.
  std::uint64_t reserved_input_bytes = 0;
  friend bool operator==(const Placement&, const Placement&) = default;
};

}  // namespace npusim::npu
