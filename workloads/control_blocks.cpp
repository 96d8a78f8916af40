#include "workloads/control_blocks.hpp"

#include <fmt/format.h>

namespace npusim::workloads {

npu::ControlBlockTable control_block_table(const npu::Npu& npu, const LoweredNetwork& network,
                                           std::uint32_t max_batch) {
  try {
    return npu::ControlBlockTable::build(npu, layer_works(network), max_batch);
  } catch (const npu::NoFeasibleTiling& e) {
    throw npu::NoFeasibleTiling(fmt::format("network {}: {}", network.name, e.what()));
  }
}

}  // namespace npusim::workloads
