#pragma once
// The FBE control-block table of a lowered network, with errors that name the network.

#include <cstdint>

#include "npu_model/fluid_batching_engine.hpp"
#include "workloads/network.hpp"

namespace npusim::workloads {

// ControlBlockTable::build over every layer of `network`, batches 1..max_batch. A layer no
// tiling fits throws npu::NoFeasibleTiling, one line naming the network, the layer, the batch
// and the buffer. `threads` as in ControlBlockTable::build.
npu::ControlBlockTable control_block_table(const npu::Npu& npu, const LoweredNetwork& network,
                                           std::uint32_t max_batch, unsigned threads = 1);

}  // namespace npusim::workloads
