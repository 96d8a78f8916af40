#pragma once
// What a control-block table is built from, as bytes: the key of a cache of tables between runs
// (sim/table_cache.hpp). ControlBlockTable::to_bytes and from_bytes are defined beside it.

#include <cstdint>
#include <string>
#include <vector>

#include "npu_model/layer_lowering.hpp"
#include "npu_model/npu_config.hpp"

namespace npusim::npu {

// Every field of the configuration and of each layer, then max_batch: two calls return equal
// bytes only when ControlBlockTable::build would be given equal inputs, so equal keys mean
// equal tables within one build of npusim. (Unequal keys may still mean equal tables: names
// that the build ignores are in the key too.)
std::string control_block_key(const NpuConfig& npu, const std::vector<LayerWork>& layers, std::uint32_t max_batch);

}  // namespace npusim::npu
