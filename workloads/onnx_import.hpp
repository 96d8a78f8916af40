#pragma once
// Importer for ONNX models (docs/models.md, "ONNX models"). It infers every tensor's shape from
// the graph input's dimensions and the initializers, and lowers the nodes to the layers the NPU
// runs: Conv, Gemm and MatMul become GEMMs; pooling, element-wise arithmetic, activations that
// cannot run in their producer's epilogue, softmax and normalisation become vector work;
// reshapes, transposes, slices and shape arithmetic cost nothing.

#include <map>
#include <string>
#include <vector>

#include "workloads/network.hpp"

namespace npusim::workloads {

// An ONNX graph as a backbone, with where each of its node and tensor names ended up, so that
// an overlay's `after:` may name either.
struct OnnxBackbone {
  NetworkDef net;  // name, source, input and layers; no exits
  // Node or tensor name -> the layer that computes it (its own, or the one it was fused into or
  // is a view of). Names of constants and of the graph input map to "".
  std::map<std::string, std::string> layer_of;
  std::string last_layer;  // the layer that writes the graph's output
};

// The ONNX op types the importer takes, sorted (the error for any other names them all).
const std::vector<std::string>& onnx_supported_ops();

// `bytes` is an ONNX model file's content, `source` its name for messages. A dynamic batch
// dimension of the graph input is taken as 1; any other dimension must be fixed. Throws
// NetworkError, one line naming `source`: a file that is not an ONNX model (malformed or
// truncated), an unsupported op (naming the node, the op type, the opset and the supported
// list), a graph with other than one data input or one output, or shapes that do not agree.
OnnxBackbone import_onnx(const std::string& bytes, const std::string& source);

}  // namespace npusim::workloads
