#include "workloads/resnet_cifar.hpp"

#include <stdexcept>

#include <fmt/format.h>

namespace npusim::workloads {

std::vector<npu::LayerSpec> resnet_cifar(std::uint32_t depth, std::uint32_t classes) {
  if (depth < 8 || (depth - 2) % 6 != 0)
    throw std::invalid_argument(fmt::format(
        "CIFAR ResNet depth {} is not 6n+2 with n >= 1 (20, 32, 44, 56, 110, ...)", depth));
  if (classes == 0) throw std::invalid_argument("CIFAR ResNet needs at least one class");
  const std::uint32_t blocks = (depth - 2) / 6;
  std::vector<npu::LayerSpec> layers;
  const auto conv = [&layers](std::string name, std::uint32_t size, std::uint32_t in,
                              std::uint32_t out, std::uint32_t stride) {
    npu::LayerSpec layer;
    layer.name = std::move(name);
    layer.kind = npu::LayerKind::convolution;
    layer.in_height = layer.in_width = size;
    layer.in_channels = in;
    layer.out_channels = out;
    layer.kernel_height = layer.kernel_width = 3;
    layer.stride_height = layer.stride_width = stride;
    layer.padding_height = layer.padding_width = 1;
    layers.push_back(layer);
  };
  conv("conv1", 32, 3, 16, 1);
  std::uint32_t size = 32, channels = 16;
  for (std::uint32_t stage = 1; stage <= 3; ++stage) {
    const std::uint32_t width = 16u << (stage - 1);
    for (std::uint32_t block = 1; block <= blocks; ++block) {
      const std::uint32_t stride = (stage > 1 && block == 1) ? 2 : 1;
      const std::string prefix = fmt::format("stage{}.block{}", stage, block);
      conv(prefix + ".conv1", size, channels, width, stride);
      size /= stride;
      channels = width;
      conv(prefix + ".conv2", size, channels, width, 1);
      npu::LayerSpec add;
      add.name = prefix + ".add";
      add.kind = npu::LayerKind::elementwise;
      add.in_height = add.in_width = size;
      add.in_channels = add.out_channels = channels;
      layers.push_back(add);
    }
  }
  npu::LayerSpec pool;
  pool.name = "avgpool";
  pool.kind = npu::LayerKind::pooling;
  pool.in_height = pool.in_width = size;
  pool.in_channels = pool.out_channels = channels;
  pool.kernel_height = pool.kernel_width = size;
  pool.stride_height = pool.stride_width = size;
  layers.push_back(pool);
  npu::LayerSpec fc;
  fc.name = "fc";
  fc.kind = npu::LayerKind::fully_connected;
  fc.in_channels = channels;
  fc.out_channels = classes;
  layers.push_back(fc);
  return layers;
}

}  // namespace npusim::workloads
