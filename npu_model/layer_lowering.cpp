#include "npu_model/layer_lowering.hpp"

#include <fmt/format.h>

namespace npusim::npu {
namespace {

std::uint32_t output_extent(const LayerSpec& layer, const char* axis, std::uint32_t in,
                            std::uint32_t kernel, std::uint32_t stride, std::uint32_t padding) {
  const std::uint64_t padded = std::uint64_t{in} + 2ull * padding;
  if (kernel == 0 || kernel > padded)
    throw InvalidLayer(fmt::format("layer {}: kernel {} = {} does not fit the padded {} {}",
                                   layer.name, axis, kernel, axis, padded));
  return static_cast<std::uint32_t>((padded - kernel) / stride + 1);
}

void set_output_extent(const LayerSpec& layer, LayerWork& work) {
  work.out_height = output_extent(layer, "height", layer.in_height, layer.kernel_height,
                                  layer.stride_height, layer.padding_height);
  work.out_width = output_extent(layer, "width", layer.in_width, layer.kernel_width,
                                 layer.stride_width, layer.padding_width);
}

void require_positive(const LayerSpec& layer, const char* field, std::uint32_t value) {
  if (value == 0) throw InvalidLayer(fmt::format("layer {}: {} must be at least 1", layer.name, field));
}

}  // namespace

LayerWork lower(const LayerSpec& layer) {
  require_positive(layer, "in_height", layer.in_height);
  require_positive(layer, "in_width", layer.in_width);
  require_positive(layer, "in_channels", layer.in_channels);
  require_positive(layer, "out_channels", layer.out_channels);
  require_positive(layer, "stride_height", layer.stride_height);
  require_positive(layer, "stride_width", layer.stride_width);
  require_positive(layer, "groups", layer.groups);
  LayerWork work;
  work.name = layer.name;
  work.kind = layer.kind;
  const std::uint64_t in_elements =
      std::uint64_t{layer.in_height} * layer.in_width * layer.in_channels;
  work.input_elements = in_elements;
  switch (layer.kind) {
    case LayerKind::convolution: {
      if (layer.in_channels % layer.groups != 0 || layer.out_channels % layer.groups != 0)
        throw InvalidLayer(fmt::format("layer {}: groups = {} must divide in_channels = {} and out_channels = {}",
                                       layer.name, layer.groups, layer.in_channels, layer.out_channels));
      set_output_extent(layer, work);
      work.out_channels = layer.out_channels;
      work.gemm.rows = std::uint64_t{work.out_height} * work.out_width;
      work.gemm.depth =
          std::uint64_t{layer.kernel_height} * layer.kernel_width * (layer.in_channels / layer.groups);
      work.gemm.cols = layer.out_channels / layer.groups;
      work.gemm.groups = layer.groups;
      work.gemm.window = {layer.in_height, layer.in_width, layer.kernel_height, layer.kernel_width,
                          layer.stride_height, layer.stride_width, layer.padding_height, layer.padding_width};
      return work;
    }
    case LayerKind::fully_connected:
      work.gemm = {1, in_elements, layer.out_channels, 1};
      work.out_channels = layer.out_channels;
      return work;
    case LayerKind::pooling: {
      if (layer.out_channels != layer.in_channels)
        throw InvalidLayer(fmt::format("layer {}: pooling keeps channels, out_channels = {} must equal in_channels = {}",
                                       layer.name, layer.out_channels, layer.in_channels));
      work.on_vector_path = true;
      set_output_extent(layer, work);
      work.out_channels = layer.in_channels;
      const std::uint64_t out = std::uint64_t{work.out_height} * work.out_width * work.out_channels;
      work.vector = {in_elements, out, out * layer.kernel_height * layer.kernel_width};
      work.vector.kind = VectorKind::pooling;
      work.vector.height = layer.in_height;
      work.vector.width = layer.in_width;
      work.vector.channels = layer.in_channels;
      work.vector.kernel_height = layer.kernel_height;
      work.vector.kernel_width = layer.kernel_width;
      work.vector.stride_height = layer.stride_height;
      work.vector.stride_width = layer.stride_width;
      work.vector.padding_height = layer.padding_height;
      work.vector.padding_width = layer.padding_width;
      return work;
    }
    case LayerKind::elementwise:
      if (layer.out_channels != layer.in_channels)
        throw InvalidLayer(fmt::format("layer {}: element-wise keeps channels, out_channels = {} must equal in_channels = {}",
                                       layer.name, layer.out_channels, layer.in_channels));
      work.on_vector_path = true;
      work.out_height = layer.in_height;
      work.out_width = layer.in_width;
      work.out_channels = layer.in_channels;
      work.vector = {2 * in_elements, in_elements, in_elements};
      work.vector.kind = VectorKind::add;
      work.vector.height = layer.in_height;
      work.vector.width = layer.in_width;
      work.vector.channels = layer.in_channels;
      return work;
    case LayerKind::concatenation:
      work.on_vector_path = true;
      work.out_height = layer.in_height;
      work.out_width = layer.in_width;
      work.out_channels = layer.out_channels;
      return work;
  }
  throw InvalidLayer(fmt::format("layer {}: unknown kind", layer.name));
}

std::uint64_t output_elements(const LayerWork& work) {
  return std::uint64_t{work.out_height} * work.out_width * work.out_channels;
}

LayerCost best_layer_cost(const Npu& npu, const LayerWork& work, std::uint32_t batch, const Placement& placement) {
  if (!work.on_vector_path) return best_gemm_cost(npu, work.gemm, batch, placement);
  LayerCost cost = vector_cost(npu, work.vector, batch, placement);
  cost.placement = placement;
  return cost;
}

}  // namespace npusim::npu
