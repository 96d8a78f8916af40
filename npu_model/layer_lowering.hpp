#pragma once
// Lowering of DNN layers to the work the NPU runs: a GEMM on the PE array, or a job on the
// vector path (pooling, element-wise).

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "npu_model/cost_model.hpp"
#include "npu_model/vector_path.hpp"
#include "npu_model/gemm.hpp"

namespace npusim::npu {

enum class LayerKind { convolution, fully_connected, pooling, elementwise, concatenation };

// One layer of one sample. Convolution: in_* and out_channels, kernel, stride, padding,
// groups (groups == in_channels == out_channels is depthwise). Fully connected:
// in_height * in_width * in_channels inputs to out_channels outputs. Pooling: kernel, stride,
// padding over each channel; out_channels must equal in_channels. Element-wise: two tensors
// of the input shape combined into one. Concatenation: no work (producers write in place);
// out_channels is the concatenated width.
struct LayerSpec {
  std::string name;
  LayerKind kind = LayerKind::convolution;
  std::uint32_t in_height = 1, in_width = 1, in_channels = 1;
  std::uint32_t out_channels = 1;
  std::uint32_t kernel_height = 1, kernel_width = 1;
  std::uint32_t stride_height = 1, stride_width = 1;
  std::uint32_t padding_height = 0, padding_width = 0;
  std::uint32_t groups = 1;
};

class InvalidLayer : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

struct LayerWork {
  std::string name;
  LayerKind kind = LayerKind::convolution;
  // Positions, in execution order, of the layers whose outputs this one reads (-1: the network
  // input), first input first. Set by the network's lowering; a layer costed on its own has
  // none, and then no residency plan applies to it.
  std::vector<std::int64_t> inputs;
  std::uint64_t input_elements = 0;  // per sample, of the first input
  bool on_vector_path = false;
  GemmShape gemm;     // valid when !on_vector_path
  VectorWork vector;  // valid when on_vector_path
  std::uint32_t out_height = 1, out_width = 1, out_channels = 1;
};

// Throws InvalidLayer naming the layer and the bad field.
LayerWork lower(const LayerSpec& layer);

// Elements per sample of the layer's output.
std::uint64_t output_elements(const LayerWork& work);

// Cost of a lowered layer for `batch` samples with its operands where `placement` puts them:
// the best legal mapping for a GEMM, the vector path otherwise.
LayerCost best_layer_cost(const Npu& npu, const LayerWork& work, std::uint32_t batch,
                          const Placement& placement = {});

}  // namespace npusim::npu
