#include "workloads/control_blocks.hpp"

#include <fmt/format.h>

namespace npusim::workloads {

npu::ControlBlockTable control_block_table(const npu::Npu& npu, const LoweredNetwork& network,
                                           std::uint32_t max_batch, unsigned threads) {
  try {
    return npu::ControlBlockTable::build(npu, layer_works(network), max_batch, threads);
  } catch (const npu::NoFeasibleTiling& e) {
    throw npu::NoFeasibleTiling(fmt::format("network {}: {}", network.name, e.what()));
  } catch (const npu::InvalidMapping& e) {
    // The table's own message names no layer: find the one too large to model at the batch.
    for (const auto& layer : network.layers) {
      if (layer.work.on_vector_path) continue;
      const std::string reason = npu::mapping_violation(npu, layer.work.gemm, max_batch, {max_batch, 1, 1});
      if (reason.find("too large") != std::string::npos)
        throw npu::InvalidMapping(fmt::format("network {}: layer {} at batch {}: {}",
                                              network.name, layer.name, max_batch, reason));
    }
    throw npu::InvalidMapping(fmt::format("network {}: {}", network.name, e.what()));
  }
}

}  // namespace npusim::workloads
