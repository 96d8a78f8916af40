#pragma once
// The CIFAR ResNet family of He et al. (2016), depth 6n+2 (ResNet-20/32/44/56/110): the
// backbone the early-exit literature (e.g. SDN, Kaya et al. 2019) attaches exits to.
// Exits and the network graph come with the model zoo; this is the plain layer list.

#include <cstdint>
#include <vector>

#include "npu_model/layer_lowering.hpp"

namespace npusim::workloads {

// Layers in execution order for a 32x32x3 input: conv1 (3x3, 16), three stages of n basic
// blocks (two 3x3 convolutions and a residual add each; 16/32/64 channels, stride 2 on
// entering stages 2 and 3, parameter-free option-A shortcuts), global average pool and the
// `classes`-way FC. Throws std::invalid_argument unless depth = 6n + 2 with n >= 1.
std::vector<npu::LayerSpec> resnet_cifar(std::uint32_t depth, std::uint32_t classes);

}  // namespace npusim::workloads
