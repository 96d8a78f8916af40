#pragma once
// Human and JSON renderings of a lowered network (`npusim model`).

#include <string>

#include "workloads/network.hpp"

namespace npusim::sim {

std::string model_text(const workloads::LoweredNetwork& net);
// One JSON object: name, description, input, layers (name, kind, exit, output, r, p, c, groups,
// macs, params, implicit, op), exits (name, after_layer, after_index, probability, macs_to_exit), total_macs,
// total_params, backbone_macs, backbone_params. Vector-path layers have r = p = c = 0.
std::string model_json(const workloads::LoweredNetwork& net);

}  // namespace npusim::sim
