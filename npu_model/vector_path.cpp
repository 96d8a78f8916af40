#include "npu_model/vector_path.hpp"

#include <algorithm>

namespace npusim::npu {

LayerCost vector_cost(const Npu& npu, const VectorWork& work, std::uint32_t batch, const Placement& placement) {
  if (work.input_elements == 0 && work.output_elements == 0 && work.operations == 0)
    return LayerCost{.mapping = {batch, 1, 1}};  // e.g. a concatenation: nothing moves
  const std::uint64_t lanes = npu.config().vector_lanes;
  const std::uint64_t element_bytes = npu.config().element_bytes;
  const std::uint64_t ops = work.operations * batch;
  const std::uint64_t read_bytes = placement.input_on_chip ? 0 : work.input_elements * batch * element_bytes;
  const std::uint64_t write_bytes = placement.output_on_chip ? 0 : work.output_elements * batch * element_bytes;
  LayerCost cost;
  cost.mapping = {batch, 1, 1};
  cost.compute_cycles = (ops + lanes - 1) / lanes;
  const std::uint64_t bus = npu.data_cycles(read_bytes) + npu.data_cycles(write_bytes);
  const std::uint64_t transfer = read_bytes + write_bytes == 0 ? 0 : npu.latency_cycles() + bus;
  cost.cycles = std::max(cost.compute_cycles, transfer);
  cost.bytes.input = read_bytes;
  cost.bytes.output = write_bytes;
  cost.offchip_bytes = read_bytes + write_bytes;
  cost.compulsory_bytes = cost.offchip_bytes;
  cost.roofline_cycles = std::max(cost.compute_cycles, npu.data_cycles(cost.offchip_bytes));
  cost.stall_cycles = cost.cycles - cost.compute_cycles;
  return cost;
}

}  // namespace npusim::npu
