#pragma once
// Early-exit networks: the description a file gives (NetworkDef), its validation as a
// Boost.Graph of layers, and the lowered form the NPU runs (LoweredNetwork).

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "npu_model/layer_lowering.hpp"
#include "traces/input_file.hpp"

namespace npusim::workloads {

// The first seven are what a network file may write. The rest only importers make, with their
// work already computed (LayerDef::work): matmul (a GEMM from ONNX Gemm/MatMul), vector (other
// vector-path work: activations, element-wise arithmetic, softmax, normalisation) and resample
// (an implicit step joining SCALE-Sim rows that do not chain).
enum class LayerType { conv, fc, maxpool, avgpool, global_avgpool, add, concat, matmul, vector, resample };

// conv, fc, maxpool, avgpool, global_avgpool, add, concat, matmul, vector, resample.
std::string to_string(LayerType type);
const std::vector<std::string>& layer_type_names();
// The types a network file may write (the first seven).
const std::vector<std::string>& file_layer_type_names();

struct TensorShape {
  std::uint32_t height = 1, width = 1, channels = 1;
  friend bool operator==(const TensorShape&, const TensorShape&) = default;
};
std::string to_string(const TensorShape& shape);  // "HxWxC"

// One layer as written. `inputs` empty means "the previous layer of the same list" (the network
// input for the first backbone layer, the attach point for the first classifier layer).
struct LayerDef {
  std::string name;
  LayerType type = LayerType::conv;
  std::vector<std::string> inputs;
  std::uint32_t out_channels = 0;  // conv: filters; fc: outputs
  std::uint32_t kernel_height = 1, kernel_width = 1;
  std::uint32_t stride_height = 1, stride_width = 1;
  std::uint32_t padding_height = 0, padding_width = 0;
  std::uint32_t groups = 1;
  bool bias = false;                 // counts C_out bias parameters
  std::uint32_t expected_in_channels = 0;  // conv/fc: 0 = not declared; else checked
  std::string origin;                // where it was written ("file:line"), for messages
  // Set by importers that compute the work themselves (shapes, windows, GEMM): lowering takes it
  // as it is, and `params` as the layer's exact parameter count.
  std::optional<npu::LayerWork> work;
  std::uint64_t params = 0;
  bool implicit = false;  // not in the source: a step the importer added (docs/models.md)
  std::string op;         // the source's operator (an ONNX op type), for reports
};

// An exit: a classifier hanging off backbone layer `after`. The final exit sits on the last
// backbone layer and has no classifier of its own (the backbone's head is its classifier).
struct ExitDef {
  std::string name;
  std::string after;
  double probability = 0.0;  // share of all samples that leave here
  std::vector<LayerDef> classifier;
  std::string origin;
};

struct NetworkDef {
  std::string name;
  std::string description;
  std::string source;  // file or zoo name, for messages
  TensorShape input;
  std::vector<LayerDef> layers;  // the backbone
  std::vector<ExitDef> exits;    // in any order; validation sorts them by depth
};

// A network that breaks a rule. what() is one line naming the source and the layer or exit.
class NetworkError : public std::invalid_argument {
 public:
  explicit NetworkError(const std::string& message) : std::invalid_argument(traces::one_line(message)) {}
};

struct LoweredLayer {
  std::string name;
  LayerType type = LayerType::conv;
  TensorShape input, output;  // input: of the first input for add/concat
  npu::LayerWork work;
  std::uint64_t macs = 0;    // per sample
  std::uint64_t params = 0;  // weights (+ biases)
  int exit_index = -1;       // -1: backbone; else the classifier of exits[exit_index]
  bool implicit = false;     // added by an importer, not in the source (LayerDef::implicit)
  std::string op;            // the source's operator, if an importer recorded one
  // Activation elements per sample still needed at the boundary before this layer: every
  // tensor produced earlier and read here or later (skip connections included). What a batch
  // suspended here must keep.
  std::uint64_t live_elements_before = 0;
};

struct LoweredExit {
  std::string name;
  std::size_t after_layer = 0;  // index into LoweredNetwork::layers
  std::vector<std::size_t> classifier_layers;
  double probability = 0.0;
  std::uint64_t macs_to_exit = 0;  // per sample that leaves here: backbone so far + every
                                   // classifier it ran, its own included
  // The layer after which a sample leaves here: the exit's last classifier layer, or the
  // backbone layer it hangs off when it has none.
  std::size_t decided_after() const { return classifier_layers.empty() ? after_layer : classifier_layers.back(); }
};

// Execution order: backbone segments in topological order, each exit's classifier layers
// right after the layer they hang off. Exits are ordered by depth; the last is the final exit.
struct LoweredNetwork {
  std::string name;
  std::string description;
  TensorShape input;
  std::vector<LoweredLayer> layers;
  std::vector<LoweredExit> exits;
  std::uint64_t total_macs = 0;    // every layer once, classifiers included
  std::uint64_t total_params = 0;
  std::uint64_t backbone_macs = 0;    // without the early exits' classifiers
  std::uint64_t backbone_params = 0;
  std::vector<double> exit_probabilities() const;
};

// The layers' work in execution order, as the NPU's cost model and FBE table take it.
std::vector<npu::LayerWork> layer_works(const LoweredNetwork& network);

// Validates (names unique, inputs exist, no cycles, shapes match, exits on backbone layers,
// probabilities in [0, 1] summing to 1 within 1e-6, exactly one final exit) and lowers.
// Throws NetworkError.
LoweredNetwork lower_network(const NetworkDef& network);

}  // namespace npusim::workloads
