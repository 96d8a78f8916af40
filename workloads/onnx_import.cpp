#include "workloads/onnx_import.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <map>
#include <numeric>
#include <optional>
#include <set>
#include <unordered_map>

#include <fmt/format.h>
#include <onnx/onnx_pb.h>

#include "npu_model/layer_lowering.hpp"
#include "traces/checked.hpp"
#include "traces/input_file.hpp"

namespace npusim::workloads {
namespace {

using Dims = std::vector<std::int64_t>;
using Strings = std::set<std::string, std::less<>>;

constexpr const char* network_input = "input";
// Shape arithmetic keeps the contents of integer constants up to this size (shapes, indices).
constexpr std::size_t max_kept_values = 1 << 16;
// Far above any real tensor dimension; keeps every product in 64 bits.
constexpr std::int64_t max_dim = std::int64_t{1} << 31;

// Activations and other per-element functions: fused into the layer that produces their input
// when they are its only reader, else one vector pass.
const Strings& unary_ops() {
  static const Strings ops{"Abs",  "Ceil",    "Celu",     "Clip", "Cos",        "Elu",  "Erf",      "Exp",
                           "Floor", "Gelu",   "HardSigmoid", "HardSwish", "ImageScaler", "LeakyRelu", "Log", "Mish", "Neg",
                           "Not",  "Reciprocal", "Relu",  "Round", "Selu",      "Sigmoid", "Sign",  "Sin",
                           "Shrink", "Softplus", "Softsign", "Sqrt", "Tanh", "ThresholdedRelu", "Trilu"};
  return ops;
}
// Element-wise over broadcast operands.
const Strings& elementwise_ops() {
  static const Strings ops{"Add", "And",  "Div", "Equal", "Greater", "GreaterOrEqual", "Less", "LessOrEqual",
                           "Max", "Mean", "Min", "Mod",   "Mul",     "Or",             "Pow",  "PRelu",
                           "Sub", "Sum",  "Where", "Xor"};
  return ops;
}
// Views of their input: no work (producers write in place, consumers read in place).
const Strings& view_ops() {
  // QuantizeLinear and DequantizeLinear too: an NPU keeps the quantized values and folds the
  // scales into the GEMMs around them.
  static const Strings ops{"Cast",    "Concat",   "DepthToSpace", "DequantizeLinear", "Dropout",   "Expand",
                           "Flatten", "Gather",   "Identity",     "Pad",              "QuantizeLinear", "Reshape",
                           "Slice",   "SpaceToDepth", "Split",    "Squeeze",          "Tile",      "Transpose",
                           "Unsqueeze"};
  return ops;
}
// Only ever constant: shape arithmetic.
const Strings& shape_ops() {
  static const Strings ops{"Constant", "ConstantOfShape", "Range", "Shape", "Size"};
  return ops;
}
const Strings& reduce_ops() {
  static const Strings ops{"ArgMax",     "ArgMin",     "ReduceL1",  "ReduceL2",        "ReduceLogSumExp", "ReduceMax",
                           "ReduceMean", "ReduceMin",  "ReduceProd", "ReduceSum",      "ReduceSumSquare"};
  return ops;
}
// One vector pass over their input.
const Strings& pass_ops() {
  static const Strings ops{"CumSum", "Hardmax", "InstanceNormalization", "LayerNormalization", "LogSoftmax", "LpNormalization", "LRN",
                           "MeanVarianceNormalization", "Softmax"};
  return ops;
}
// Data-dependent selections: one vector pass, over the input (TopK) or the output they write.
const Strings& select_ops() {
  static const Strings ops{"GatherElements", "ScatterElements", "ScatterND", "TopK"};
  return ops;
}
const Strings& other_ops() {
  static const Strings ops{"AveragePool", "BatchNormalization", "Conv", "ConvTranspose", "Gemm", "GlobalAveragePool",
                           "GlobalMaxPool", "Einsum", "GRU", "LSTM", "MatMul", "MaxPool", "Resize", "RNN", "Upsample"};
  return ops;
}
// onnxruntime's contrib ops.
const Strings& microsoft_ops() {
  static const Strings ops{"FastGelu", "FusedConv", "Gelu", "QuickGelu"};
  return ops;
}

bool is_default_domain(const std::string& domain) { return domain.empty() || domain == "ai.onnx"; }

// The H x W x C view of an ONNX tensor that npusim's layers use: NCHW as H x W x C (N folded
// into H), [N, T, D] as (N*T) x 1 x D, [M, N] as M x 1 x N, [D] as 1 x 1 x D. The element count
// is kept.
Dims hwc_of(const Dims& d) {
  switch (d.size()) {
    case 0: return {1, 1, 1};
    case 1: return {1, 1, d[0]};
    case 2: return {d[0], 1, d[1]};
    case 3: return {d[0] * d[1], 1, d[2]};
    default: {
      std::int64_t height = d[0];
      for (std::size_t i = 2; i + 1 < d.size(); ++i) height *= d[i];
      return {height, d.back(), d[1]};
    }
  }
}

std::string dims_text(const Dims& d) { return fmt::format("[{}]", fmt::join(d, ", ")); }

// A tensor as the import sees it.
struct Value {
  Dims dims;
  // The layer whose output holds these elements (its own, a fused one's, or a view's source);
  // "" for a constant, network_input for the graph input.
  std::string layer;
  std::optional<std::vector<std::int64_t>> ints;  // an integer constant's contents
  std::optional<std::vector<double>> reals;       // a small floating-point constant's contents
  // The parameter this constant is: an initializer's name, or an exporter's Identity copy of
  // one (exporters merge equal-valued weights that way; each copy is a parameter of the model).
  std::string param;
  // A Constant node's tensor: a weight only where a GEMM reads it (graphs from converters that
  // write weights as Constant nodes); elsewhere an arithmetic literal.
  bool literal = false;
  bool floating = false;
  bool constant() const { return layer.empty(); }
};

// A window that gives exactly `out` positions at stride `stride` with kernel `kernel`, padding
// as close to `total_padding` / 2 as keeps the input at least one element: the input and
// padding npusim's symmetric, dilation-free layer describes (docs/models.md, "Lowering").
struct Window {
  std::uint32_t input = 1, padding = 0;
};
Window fit_window(std::int64_t out, std::int64_t kernel, std::int64_t stride, std::int64_t total_padding) {
  const std::int64_t extent = (out - 1) * stride + kernel;
  const std::int64_t padding = std::min(total_padding / 2, (extent - 1) / 2);
  return {static_cast<std::uint32_t>(extent - 2 * padding), static_cast<std::uint32_t>(padding)};
}

std::int64_t ceil_div(std::int64_t a, std::int64_t b) { return (a + b - 1) / b; }

class Importer {
 public:
  Importer(const onnx::ModelProto& model, std::string source) : model_(model), source_(std::move(source)) {}

  OnnxBackbone run() {
    if (!model_.has_graph() || model_.graph().node_size() == 0)
      fail("not an ONNX model (no graph with nodes): allowed a model saved by torch.onnx.export or onnx.save");
    read_opsets();
    const auto& graph = model_.graph();
    for (const auto& info : graph.value_info()) record_dims(info);
    for (const auto& init : graph.initializer()) values_[init.name()] = constant_of(init);
    for (const auto& node : graph.node())
      for (const auto& name : node.input())
        if (!name.empty()) ++readers_[name];
    for (const auto& out : graph.output()) ++readers_[out.name()];
    read_input();
    for (const int i : topological_order()) import_node(graph.node(i), i);
    return finish();
  }

 private:
  // The nodes in an order where each comes after the nodes writing its inputs: ONNX requires the
  // file's order to be one, but hand-edited and merged graphs break it, and the work does not
  // depend on the order. Among nodes ready together the file's order is kept, so a sorted graph
  // imports as written. A tensor nobody writes is left for import_node to name.
  std::vector<int> topological_order() const {
    const auto& graph = model_.graph();
    std::unordered_map<std::string_view, int> writer;
    for (int i = 0; i < graph.node_size(); ++i)
      for (const auto& name : graph.node(i).output())
        if (!name.empty()) writer.emplace(name, i);
    std::vector<int> waiting(static_cast<std::size_t>(graph.node_size()), 0);
    std::vector<std::vector<int>> readers(static_cast<std::size_t>(graph.node_size()));
    for (int i = 0; i < graph.node_size(); ++i) {
      for (const auto& name : graph.node(i).input()) {
        const auto it = writer.find(name);
        if (name.empty() || it == writer.end() || values_.count(name)) continue;
        ++waiting[static_cast<std::size_t>(i)];
        readers[static_cast<std::size_t>(it->second)].push_back(i);
      }
    }
    std::set<int> ready;
    for (int i = 0; i < graph.node_size(); ++i)
      if (waiting[static_cast<std::size_t>(i)] == 0) ready.insert(i);
    std::vector<int> order;
    order.reserve(static_cast<std::size_t>(graph.node_size()));
    while (!ready.empty()) {
      const int i = *ready.begin();
      ready.erase(ready.begin());
      order.push_back(i);
      for (const int r : readers[static_cast<std::size_t>(i)])
        if (--waiting[static_cast<std::size_t>(r)] == 0) ready.insert(r);
    }
    if (order.size() != static_cast<std::size_t>(graph.node_size())) {
      for (int i = 0; i < graph.node_size(); ++i)
        if (waiting[static_cast<std::size_t>(i)] > 0)
          fail_node(graph.node(i), "its inputs depend on a cycle of nodes: allowed an acyclic graph");
    }
    return order;
  }

  [[noreturn]] void fail(const std::string& message) const {
    throw NetworkError(fmt::format("{}: {}", source_, message));
  }
  [[noreturn]] void fail_node(const onnx::NodeProto& node, const std::string& message) const {
    throw NetworkError(fmt::format("{}: node {} ({}, opset {}): {}", source_, traces::printable(node.name()),
                                   traces::printable(node.op_type()), opset_of(node), message));
  }

  void read_opsets() {
    for (const auto& set : model_.opset_import()) {
      if (is_default_domain(set.domain())) opset_ = set.version();
      else opsets_[set.domain()] = set.version();
    }
  }

  std::int64_t opset_of(const onnx::NodeProto& node) const {
    if (is_default_domain(node.domain())) return opset_;
    const auto it = opsets_.find(node.domain());
    return it == opsets_.end() ? 0 : it->second;
  }

  Value constant_of(const onnx::TensorProto& t) const {
    Value v;
    for (const auto d : t.dims()) {
      if (d < 0 || d > max_dim) fail(fmt::format("initializer {}: dimension {}: allowed 0 to {}", traces::printable(t.name()), d, max_dim));
      v.dims.push_back(d);
    }
    const std::uint64_t count = elements(v.dims, t.name());
    using T = onnx::TensorProto;
    const bool external = t.data_location() == T::EXTERNAL;
    switch (t.data_type()) {
      case T::INT64:
      case T::INT32:
        if (!external && count <= max_kept_values) v.ints = integers_of(t, count);
        break;
      case T::INT8:
      case T::UINT8:
        // A quantized model's weights (never a shape): parameters as floating-point ones are.
        v.floating = true;
        v.param = t.name();
        break;
      case T::FLOAT:
      case T::DOUBLE:
      case T::FLOAT16:
      case T::BFLOAT16:
        v.floating = true;
        v.param = t.name();
        if (!external && count <= 16) v.reals = reals_of(t, count);
        break;
      default: break;
    }
    return v;
  }

  // `count` values of type Stored from little-endian raw_data, else from the typed field;
  // nullopt when they do not hold `count` values.
  template <typename Stored, typename Out, typename Field>
  static std::optional<std::vector<Out>> contents(const onnx::TensorProto& t, std::uint64_t count, const Field& field) {
    std::vector<Out> out;
    if (!t.raw_data().empty()) {
      if (t.raw_data().size() != count * sizeof(Stored)) return std::nullopt;
      for (std::size_t i = 0; i < count; ++i) {
        Stored x{};
        std::memcpy(&x, t.raw_data().data() + i * sizeof(Stored), sizeof(Stored));
        out.push_back(static_cast<Out>(x));
      }
    } else {
      out.assign(field.begin(), field.end());
    }
    if (out.size() != count) return std::nullopt;
    return out;
  }

  static std::optional<std::vector<std::int64_t>> integers_of(const onnx::TensorProto& t, std::uint64_t count) {
    if (t.data_type() == onnx::TensorProto::INT64) return contents<std::int64_t, std::int64_t>(t, count, t.int64_data());
    return contents<std::int32_t, std::int64_t>(t, count, t.int32_data());
  }

  static std::optional<std::vector<double>> reals_of(const onnx::TensorProto& t, std::uint64_t count) {
    if (t.data_type() == onnx::TensorProto::FLOAT) return contents<float, double>(t, count, t.float_data());
    if (t.data_type() == onnx::TensorProto::DOUBLE) return contents<double, double>(t, count, t.double_data());
    return std::nullopt;
  }

  std::uint64_t elements(const Dims& dims, const std::string& what) const {
    std::uint64_t n = 1;
    for (const auto d : dims) {
      const auto product = traces::checked_mul<std::uint64_t>(n, static_cast<std::uint64_t>(d));
      if (!product || *product > (std::uint64_t{1} << 40))
        fail(fmt::format("tensor {} {}: allowed at most 2^40 elements", traces::printable(what), dims_text(dims)));
      n = *product;
    }
    return n;
  }

  // Shapes the exporter wrote down (value_info), when every dimension is fixed.
  void record_dims(const onnx::ValueInfoProto& info) {
    if (!info.type().has_tensor_type() || !info.type().tensor_type().has_shape()) return;
    Dims dims;
    for (const auto& d : info.type().tensor_type().shape().dim()) {
      if (!d.has_dim_value() || d.dim_value() < 0 || d.dim_value() > max_dim) return;
      dims.push_back(d.dim_value());
    }
    recorded_dims_[info.name()] = std::move(dims);
  }

  // Tensors that only ever stand in weight positions: a convolution's or GEMM's weights and bias,
  // a normalisation's scale, bias and statistics.
  Strings weight_inputs() const {
    static const std::map<std::string, int, std::less<>> first_weight{
        {"BatchNormalization", 1}, {"Conv", 1}, {"ConvTranspose", 1}, {"Gemm", 1},
        {"InstanceNormalization", 1}, {"LayerNormalization", 1}};
    Strings weights, elsewhere;
    // An exporter's Identity copy of a weight (equal weights merged) is a weight wherever the
    // copy is: a chain of copies is resolved from its end, hence the reverse walk.
    std::vector<std::pair<std::string, std::string>> copies;
    for (const auto& node : model_.graph().node()) {
      const auto it = is_default_domain(node.domain()) ? first_weight.find(node.op_type()) : first_weight.end();
      if (node.op_type() == "Identity" && node.input_size() == 1 && node.output_size() == 1) {
        copies.emplace_back(node.input(0), node.output(0));
        continue;
      }
      for (int i = 0; i < node.input_size(); ++i)
        (it != first_weight.end() && i >= it->second ? weights : elsewhere).insert(node.input(i));
    }
    for (const auto& out : model_.graph().output()) elsewhere.insert(out.name());
    for (auto it = copies.rbegin(); it != copies.rend(); ++it)
      (weights.count(it->second) && !elsewhere.count(it->second) ? weights : elsewhere).insert(it->first);
    for (const auto& name : elsewhere) weights.erase(name);
    return weights;
  }

  // A weight declared as a graph input with no initializer: its shape is known, its values not
  // needed.
  Value weight_without_values(const onnx::ValueInfoProto& in) const {
    Value v;
    v.floating = true;
    v.param = in.name();
    const auto& dims = in.type().tensor_type().shape().dim();
    if (!in.type().has_tensor_type() || !in.type().tensor_type().has_shape()) dims_missing(in);
    for (const auto& d : dims) {
      if (!d.has_dim_value() || d.dim_value() < 0 || d.dim_value() > max_dim) dims_missing(in);
      v.dims.push_back(d.dim_value());
    }
    elements(v.dims, in.name());
    return v;
  }
  [[noreturn]] void dims_missing(const onnx::ValueInfoProto& in) const {
    fail(fmt::format("input {}, read as a weight with no initializer, has no fixed shape: allowed a weight input with its "
                     "dimensions, or an initializer", traces::printable(in.name())));
  }

  // An input's dimensions as declared, named ones by their names.
  static std::string declared_dims(const onnx::ValueInfoProto& in) {
    std::vector<std::string> dims;
    for (const auto& d : in.type().tensor_type().shape().dim())
      dims.push_back(d.has_dim_value() ? std::to_string(d.dim_value()) : d.has_dim_param() ? traces::printable(d.dim_param()) : "?");
    return fmt::format("[{}]", fmt::join(dims, ", "));
  }

  void read_input() {
    const auto& graph = model_.graph();
    std::vector<const onnx::ValueInfoProto*> inputs;
    for (const auto& in : graph.input())
      if (!values_.count(in.name())) inputs.push_back(&in);
    // Of several, an input no node reads (an argument the exported function ignored) is no data,
    // and one read only where weights go is a weight the file leaves out (export_params=False).
    if (inputs.size() > 1) {
      const auto weights = weight_inputs();
      inputs.erase(std::remove_if(inputs.begin(), inputs.end(),
                                  [&](const auto* in) {
                                    if (!readers_.count(in->name())) return true;
                                    if (!weights.count(in->name())) return false;
                                    values_[in->name()] = weight_without_values(*in);
                                    return true;
                                  }),
                   inputs.end());
    }
    if (inputs.size() != 1) {
      std::vector<std::string> names;
      for (const auto* in : inputs) names.push_back(traces::printable(in->name()));
      fail(fmt::format("the graph has {} data inputs ({}): allowed one (the image or sequence a sample is)", inputs.size(),
                       fmt::join(names, ", ")));
    }
    const auto& in = *inputs.front();
    input_name_ = in.name();
    if (!in.type().has_tensor_type() || !in.type().tensor_type().has_shape())
      fail(fmt::format("input {} has no tensor shape: allowed an input with its dimensions", traces::printable(in.name())));
    Value v;
    v.layer = network_input;
    const auto& dims = in.type().tensor_type().shape().dim();
    for (int i = 0; i < dims.size(); ++i) {
      const auto& d = dims[i];
      if (d.has_dim_value() && d.dim_value() > 0 && d.dim_value() <= max_dim) {
        if (i == 0 && dims.size() > 1 && d.dim_value() != 1)
          fail(fmt::format("input {} {}: dimension 0, the batch, is {}: allowed 1 or dynamic (npusim counts one sample's "
                           "work; export one sample with its batch dimension, an image as 1 x C x H x W)",
                           traces::printable(in.name()), declared_dims(in), d.dim_value()));
        v.dims.push_back(d.dim_value());
      } else if (i == 0 && dims.size() > 1) {
        v.dims.push_back(1);  // a dynamic batch: one sample
      } else {
        fail(fmt::format("input {} {}: dimension {} is {}: allowed a fixed size (only the batch, dimension 0, may be dynamic: "
                         "export without dynamic_axes on the others)",
                         traces::printable(in.name()), declared_dims(in), i,
                         d.has_dim_param() ? fmt::format("dynamic ({})", traces::printable(d.dim_param()))
                                           : fmt::format("{}", d.dim_value())));
      }
    }
    elements(v.dims, in.name());
    values_[in.name()] = v;
  }

  // ---- attributes and inputs ----

  static const onnx::AttributeProto* attribute(const onnx::NodeProto& node, std::string_view name) {
    for (const auto& a : node.attribute())
      if (a.name() == name) return &a;
    return nullptr;
  }
  static std::int64_t int_attr(const onnx::NodeProto& node, std::string_view name, std::int64_t fallback) {
    const auto* a = attribute(node, name);
    return a ? a->i() : fallback;
  }
  static std::optional<Dims> ints_attr(const onnx::NodeProto& node, std::string_view name) {
    const auto* a = attribute(node, name);
    if (!a) return std::nullopt;
    return Dims(a->ints().begin(), a->ints().end());
  }
  static std::string string_attr(const onnx::NodeProto& node, std::string_view name, std::string fallback) {
    const auto* a = attribute(node, name);
    return a ? a->s() : fallback;
  }

  bool has_input(const onnx::NodeProto& node, int i) const { return node.input_size() > i && !node.input(i).empty(); }

  const Value& input(const onnx::NodeProto& node, int i) const {
    if (!has_input(node, i)) fail_node(node, fmt::format("input {} is missing", i));
    const auto it = values_.find(node.input(i));
    if (it == values_.end())
      fail_node(node, fmt::format("reads {}, which is no initializer, graph input or node output: allowed a graph "
                                  "whose tensors are all written", traces::printable(node.input(i))));
    return it->second;
  }

  // An input that must be a constant of integers (a shape, axes, pads).
  std::vector<std::int64_t> ints_input(const onnx::NodeProto& node, int i) const {
    const Value& v = input(node, i);
    if (!v.ints)
      fail_node(node, fmt::format("input {} ({}) must be an integer constant: allowed shapes computable at import",
                                  i, traces::printable(node.input(i))));
    return *v.ints;
  }

  // Axes from the attribute (older opsets) or the input (newer), negative ones normalised.
  std::optional<Dims> axes_of(const onnx::NodeProto& node, int input_index, std::size_t rank) const {
    std::optional<Dims> axes = ints_attr(node, "axes");
    if (!axes && has_input(node, input_index)) axes = ints_input(node, input_index);
    if (axes)
      for (auto& a : *axes) a = normal_axis(node, a, rank);
    return axes;
  }

  std::int64_t normal_axis(const onnx::NodeProto& node, std::int64_t axis, std::size_t rank) const {
    const auto r = static_cast<std::int64_t>(rank);
    if (axis < -r || axis >= r) fail_node(node, fmt::format("axis {} of a rank-{} tensor", axis, rank));
    return axis < 0 ? axis + r : axis;
  }

  Dims broadcast(const onnx::NodeProto& node, const Dims& a, const Dims& b) const {
    Dims out(std::max(a.size(), b.size()), 1);
    for (std::size_t i = 0; i < out.size(); ++i) {
      const std::int64_t x = i < out.size() - a.size() ? 1 : a[i - (out.size() - a.size())];
      const std::int64_t y = i < out.size() - b.size() ? 1 : b[i - (out.size() - b.size())];
      if (x != y && x != 1 && y != 1)
        fail_node(node, fmt::format("operands {} and {} do not broadcast", dims_text(a), dims_text(b)));
      out[i] = x == 1 ? y : x;
    }
    return out;
  }

  // ---- layers ----

  std::string layer_name(const onnx::NodeProto& node, int index) {
    std::string name = node.name();
    if (!traces::is_valid_name(name) || name == network_input || layer_index_.count(name))
      name = fmt::format("{}_{}", node.op_type(), index);
    while (layer_index_.count(name)) name += "_";
    return name;
  }

  // The distinct layers (graph input included) the activation inputs of `node` come from.
  std::vector<std::string> source_layers(const onnx::NodeProto& node) const {
    std::vector<std::string> layers;
    for (int i = 0; i < node.input_size(); ++i) {
      if (node.input(i).empty()) continue;
      const Value& v = input(node, i);
      if (!v.constant() && std::find(layers.begin(), layers.end(), v.layer) == layers.end()) layers.push_back(v.layer);
    }
    return layers;
  }

  // Parameters this node reads (docs/models.md, "Parameters"): each parameter once; a one-element
  // constant counts only as an input of a GEMM (elsewhere it is an arithmetic literal).
  std::uint64_t new_params(const onnx::NodeProto& node, const std::set<int>& skip = {}) {
    const bool gemm = node.op_type() == "Conv" || node.op_type() == "FusedConv" || node.op_type() == "ConvTranspose" ||
                      node.op_type() == "Gemm" || node.op_type() == "MatMul" || node.op_type() == "Einsum" ||
                      node.op_type() == "LSTM" || node.op_type() == "GRU" || node.op_type() == "RNN";
    std::uint64_t count = 0;
    for (int i = 0; i < node.input_size(); ++i) {
      if (node.input(i).empty() || skip.count(i)) continue;
      const Value& v = input(node, i);
      if (v.param.empty() || !v.floating || (v.literal && !gemm)) continue;
      const std::uint64_t n = elements(v.dims, node.input(i));
      if (n <= 1 && !gemm) continue;
      if (counted_.insert(v.param).second) count += n;
    }
    return count;
  }

  std::string add_layer(const onnx::NodeProto& node, int index, LayerType type, npu::LayerWork work,
                        std::uint64_t params, bool has_bias = false) {
    LayerDef def;
    def.name = layer_name(node, index);
    def.type = type;
    def.inputs = source_layers(node);
    def.op = node.op_type();
    def.origin = source_;
    work.name = def.name;
    def.work = std::move(work);
    def.params = params + pending_params_;
    pending_params_ = 0;
    layer_index_[def.name] = layers_.size();
    layers_.push_back(std::move(def));
    has_bias_.push_back(has_bias);
    return layers_.back().name;
  }

  // Writes `node`'s output `i` as a tensor of `dims` held by `layer`.
  void set_output(const onnx::NodeProto& node, int i, Value v) {
    if (node.output_size() <= i || node.output(i).empty()) return;
    for (const auto d : v.dims)
      if (d < 0 || d > max_dim) fail_node(node, fmt::format("output {} would be {}: allowed dimensions 0 to {}", i, dims_text(v.dims), max_dim));
    elements(v.dims, node.output(i));
    if (!v.constant()) layer_of_[node.output(i)] = v.layer == network_input ? "" : v.layer;
    values_[node.output(i)] = std::move(v);
  }
  void set_activation(const onnx::NodeProto& node, int i, const Dims& dims, const std::string& layer) {
    Value v;
    v.dims = dims;
    v.layer = layer;
    set_output(node, i, std::move(v));
  }

  npu::LayerWork lower_spec(const onnx::NodeProto& node, npu::LayerSpec spec) const {
    spec.name = node.name();
    try {
      return npu::lower(spec);
    } catch (const npu::InvalidLayer& e) {
      fail_node(node, e.what());
    }
  }

  std::uint32_t u32(const onnx::NodeProto& node, std::int64_t x) const {
    if (x < 1 || x > std::numeric_limits<std::uint32_t>::max()) fail_node(node, fmt::format("size {}: allowed 1 to 2^32 - 1", x));
    return static_cast<std::uint32_t>(x);
  }

  // A vector-path pass over `dims` seen as H x W x C: `kind` pooling with a 1 x 1 window reads
  // and writes every element once; elementwise combines two operands into one.
  npu::LayerWork pass_over(const onnx::NodeProto& node, const Dims& dims, npu::LayerKind kind) const {
    const Dims hwc = hwc_of(dims);
    npu::LayerSpec spec;
    spec.kind = kind;
    spec.in_height = u32(node, hwc[0]);
    spec.in_width = u32(node, hwc[1]);
    spec.in_channels = spec.out_channels = u32(node, hwc[2]);
    return lower_spec(node, spec);
  }
  npu::LayerWork vector_pass(const onnx::NodeProto& node, const Dims& dims) const {
    return pass_over(node, dims, npu::LayerKind::pooling);
  }
  npu::LayerWork elementwise_pass(const onnx::NodeProto& node, const Dims& dims) const {
    return pass_over(node, dims, npu::LayerKind::elementwise);
  }

  // Fuses a per-element op on `from` into the layer that computes it when this node is its only
  // reader (as the NPU's epilogue does); otherwise the op becomes a vector pass of its own.
  void unary(const onnx::NodeProto& node, int index, const Value& from, const Dims& out_dims) {
    const std::uint64_t params = new_params(node);
    const bool fusable = from.layer != network_input && readers_[node.input(first_activation(node))] == 1;
    if (fusable) {
      auto& def = layers_[layer_index_.at(from.layer)];
      def.params += params;
      set_activation(node, 0, out_dims, from.layer);
      return;
    }
    set_activation(node, 0, out_dims, add_layer(node, index, LayerType::vector, vector_pass(node, out_dims), params));
  }

  int first_activation(const onnx::NodeProto& node) const {
    for (int i = 0; i < node.input_size(); ++i)
      if (!node.input(i).empty() && !input(node, i).constant()) return i;
    return 0;
  }

  // ---- constants ----

  // A node whose inputs are all constants: its output is a constant too (shape arithmetic, a
  // weight transposed). Integer contents are computed where later shapes need them.
  void constant_node(const onnx::NodeProto& node) {
    const std::string& op = node.op_type();
    Value out;
    if (op == "Constant") {
      out = constant_attribute(node);
    } else if (op == "Identity" || op == "Cast" || op == "Dropout") {
      out = input(node, 0);
      // An exporter's copy of a weight under another name is a parameter of its own.
      if (op == "Identity" && !out.param.empty()) out.param = node.output(0);
      if (op == "Cast") {
        // A half-precision weight cast up is still a weight; a cast to integers is not.
        using T = onnx::TensorProto;
        const auto to = int_attr(node, "to", T::FLOAT);
        out.floating = to == T::FLOAT || to == T::FLOAT16 || to == T::DOUBLE || to == T::BFLOAT16;
        // Older exporters (opset 8 and before) do shape arithmetic in doubles cast to integers.
        if (!out.floating && !out.ints && out.reals) {
          out.ints.emplace();
          for (const double x : *out.reals) out.ints->push_back(static_cast<std::int64_t>(std::trunc(x)));
        }
      }
    } else {
      out.dims = output_dims(node, input(node, 0).dims);
      out.ints = constant_ints(node, out.dims);
      // A view of one weight (transposed, reshaped, expanded) is that weight; anything combining
      // several constants is a derived constant, not a parameter.
      if (node.input_size() == 1 || (view_ops().count(op) && op != "Concat" && op != "Gather")) {
        out.param = input(node, 0).param;  // the same weight, viewed differently
        out.literal = input(node, 0).literal;
        out.floating = input(node, 0).floating;
      }
      // A quantized bias is stored as 32-bit integers; dequantized, it is the layer's bias.
      if (op == "DequantizeLinear" && !input(node, 0).literal) {
        out.floating = true;
        if (out.param.empty()) out.param = node.input(0);
      }
    }
    for (int i = 0; i < node.output_size(); ++i) {
      Value v = out;
      if (op == "Split") v.dims = split_dims(node, input(node, 0).dims)[static_cast<std::size_t>(i)];
      set_output(node, i, std::move(v));
    }
  }

  Value constant_attribute(const onnx::NodeProto& node) const {
    Value v;
    for (const auto& a : node.attribute()) {
      if (a.name() == "value" || a.name() == "sparse_value") {
        if (a.name() == "sparse_value") fail_node(node, "a sparse constant: allowed dense tensors");
        v = constant_of(a.t());
        v.param = node.output(0);
        v.literal = true;
      } else if (a.name() == "value_int") {
        v.ints = std::vector<std::int64_t>{a.i()};
      } else if (a.name() == "value_ints") {
        v.ints = std::vector<std::int64_t>(a.ints().begin(), a.ints().end());
        v.dims = {static_cast<std::int64_t>(v.ints->size())};
      } else if (a.name() == "value_float") {
        v.reals = std::vector<double>{a.f()};
        v.floating = true;
      } else if (a.name() == "value_floats") {
        v.reals = std::vector<double>(a.floats().begin(), a.floats().end());
        v.dims = {static_cast<std::int64_t>(v.reals->size())};
        v.floating = true;
      }
    }
    return v;
  }

  // Integer contents of a constant node's output, when its inputs have theirs.
  std::optional<std::vector<std::int64_t>> constant_ints(const onnx::NodeProto& node, const Dims& out_dims) const {
    const std::string& op = node.op_type();
    const auto ints_of = [&](int i) -> const std::optional<std::vector<std::int64_t>>& { return input(node, i).ints; };
    const std::uint64_t count = elements(out_dims, node.output(0));
    if (count > max_kept_values) return std::nullopt;
    if (op == "Shape") {
      Dims d = input(node, 0).dims;
      const auto r = static_cast<std::int64_t>(d.size());
      std::int64_t start = int_attr(node, "start", 0), end = int_attr(node, "end", r);
      start = std::clamp(start < 0 ? start + r : start, std::int64_t{0}, r);
      end = std::clamp(end < 0 ? end + r : end, std::int64_t{0}, r);
      return std::vector<std::int64_t>(d.begin() + start, d.begin() + std::max(start, end));
    }
    if (op == "Size") return std::vector<std::int64_t>{static_cast<std::int64_t>(elements(input(node, 0).dims, node.input(0)))};
    if (op == "ConstantOfShape") {
      const auto* a = attribute(node, "value");
      if (a && (a->t().data_type() == onnx::TensorProto::FLOAT || a->t().data_type() == onnx::TensorProto::DOUBLE)) return std::nullopt;
      std::int64_t fill = 0;
      if (a) {
        const auto v = integers_of(a->t(), 1);
        if (v) fill = v->front();
      }
      return std::vector<std::int64_t>(count, fill);
    }
    if (op == "Range") {
      if (!ints_of(0) || !ints_of(1) || !ints_of(2)) return std::nullopt;
      std::vector<std::int64_t> out;
      for (std::int64_t x = ints_of(0)->front(), i = 0; i < static_cast<std::int64_t>(count); ++i, x += ints_of(2)->front())
        out.push_back(x);
      return out;
    }
    if (op == "Reshape" || op == "Flatten" || op == "Squeeze" || op == "Unsqueeze" || op == "Identity" || op == "Expand") {
      if (!ints_of(0)) return std::nullopt;
      if (op != "Expand") return ints_of(0);
      return broadcast_values(input(node, 0).dims, *ints_of(0), out_dims);
    }
    if (op == "Concat") {
      std::vector<std::int64_t> out;
      if (out_dims.size() != 1) return std::nullopt;
      for (int i = 0; i < node.input_size(); ++i) {
        if (!ints_of(i)) return std::nullopt;
        out.insert(out.end(), ints_of(i)->begin(), ints_of(i)->end());
      }
      return out;
    }
    if (op == "Gather") {
      const Value& data = input(node, 0);
      if (!data.ints || !ints_of(1) || data.dims.size() > 1) return std::nullopt;
      std::vector<std::int64_t> out;
      const auto n = static_cast<std::int64_t>(data.ints->size());
      for (auto i : *ints_of(1)) {
        if (i < 0) i += n;
        if (i < 0 || i >= n) fail_node(node, fmt::format("index {} outside a {}-element constant", i, n));
        out.push_back((*data.ints)[static_cast<std::size_t>(i)]);
      }
      return out;
    }
    if (op == "Slice" || op == "Transpose") {
      const Value& data = input(node, 0);
      if (!data.ints) return std::nullopt;
      // Each output element's source index, axis by axis: a slice starts and steps, a transpose
      // permutes.
      const std::size_t rank = data.dims.size();
      Dims start(rank, 0), step(rank, 1), perm(rank);
      std::iota(perm.begin(), perm.end(), 0);
      if (op == "Slice") {
        const auto a = slice_arguments(node, rank);
        for (std::size_t k = 0; k < a.axes.size(); ++k) {
          const auto axis = static_cast<std::size_t>(a.axes[k]);
          const std::int64_t n = data.dims[axis];
          const std::int64_t s = a.starts[k] < 0 ? a.starts[k] + n : a.starts[k];
          start[axis] = a.steps[k] > 0 ? std::clamp<std::int64_t>(s, 0, n) : std::clamp<std::int64_t>(s, 0, n - 1);
          step[axis] = a.steps[k];
        }
      } else if (const auto given = ints_attr(node, "perm"); given && given->size() == rank) {
        perm = *given;
      } else {
        std::reverse(perm.begin(), perm.end());
      }
      std::vector<std::int64_t> out;
      out.reserve(count);
      Dims index(rank, 0);
      for (std::uint64_t n = 0; n < count; ++n) {
        std::int64_t flat = 0;
        for (std::size_t axis = 0; axis < rank; ++axis) {
          // Output axis k reads input axis perm[k].
          std::int64_t at = 0;
          for (std::size_t k = 0; k < rank; ++k)
            if (static_cast<std::size_t>(perm[k]) == axis) at = start[axis] + index[k] * step[axis];
          flat = flat * data.dims[axis] + at;
        }
        if (flat < 0 || static_cast<std::size_t>(flat) >= data.ints->size()) return std::nullopt;
        out.push_back((*data.ints)[static_cast<std::size_t>(flat)]);
        for (std::size_t k = rank; k-- > 0;) {
          if (++index[k] < out_dims[k]) break;
          index[k] = 0;
        }
      }
      return out;
    }
    if (op == "Cast" || op == "Floor" || op == "Ceil" || op == "Round") return ints_of(0);
    if ((op == "Neg" || op == "Abs") && ints_of(0)) {
      std::vector<std::int64_t> out = *ints_of(0);
      for (auto& x : out) x = op == "Neg" ? -x : std::abs(x);
      return out;
    }
    if (elementwise_ops().count(op) && node.input_size() >= 2) {
      for (int i = 0; i < node.input_size(); ++i)
        if (!ints_of(i)) return std::nullopt;
      if (op == "Where") {
        const auto c = broadcast_values(input(node, 0).dims, *ints_of(0), out_dims);
        const auto a = broadcast_values(input(node, 1).dims, *ints_of(1), out_dims);
        const auto b = broadcast_values(input(node, 2).dims, *ints_of(2), out_dims);
        std::vector<std::int64_t> out(count);
        for (std::size_t i = 0; i < count; ++i) out[i] = c[i] ? a[i] : b[i];
        return out;
      }
      const auto a = broadcast_values(input(node, 0).dims, *ints_of(0), out_dims);
      const auto b = broadcast_values(input(node, 1).dims, *ints_of(1), out_dims);
      std::vector<std::int64_t> out(count);
      for (std::size_t i = 0; i < count; ++i) {
        const std::int64_t x = a[i], y = b[i];
        if (op == "Add") out[i] = x + y;
        else if (op == "Sub") out[i] = x - y;
        else if (op == "Mul") out[i] = x * y;
        else if (op == "Div") out[i] = y == 0 ? 0 : x / y;
        else if (op == "Mod") out[i] = y == 0 ? 0 : ((x % y) + y) % y;  // the divisor's sign, as Python's
        else if (op == "Equal") out[i] = x == y;
        else if (op == "Max") out[i] = std::max(x, y);
        else if (op == "Min") out[i] = std::min(x, y);
        else if (op == "Less") out[i] = x < y;
        else if (op == "Greater") out[i] = x > y;
        else return std::nullopt;
      }
      return out;
    }
    return std::nullopt;
  }

  static std::vector<std::int64_t> broadcast_values(const Dims& from, const std::vector<std::int64_t>& values, const Dims& to) {
    std::vector<std::int64_t> out;
    std::uint64_t total = 1;
    for (const auto d : to) total *= static_cast<std::uint64_t>(d);
    out.reserve(total);
    std::vector<std::int64_t> index(to.size(), 0);
    for (std::uint64_t n = 0; n < total; ++n) {
      std::size_t flat = 0;
      for (std::size_t k = 0; k < from.size(); ++k) {
        const std::size_t axis = to.size() - from.size() + k;
        flat = flat * static_cast<std::size_t>(from[k]) + static_cast<std::size_t>(from[k] == 1 ? 0 : index[axis]);
      }
      out.push_back(values.empty() ? 0 : values[std::min(flat, values.size() - 1)]);
      for (std::size_t k = to.size(); k-- > 0;) {
        if (++index[k] < to[k]) break;
        index[k] = 0;
      }
    }
    return out;
  }

  // ---- shapes of views and constants ----

  struct SliceArguments {
    Dims starts, ends, axes, steps;
  };
  SliceArguments slice_arguments(const onnx::NodeProto& node, std::size_t rank) const {
    SliceArguments a;
    if (opset_of(node) < 10) {
      a.starts = ints_attr(node, "starts").value_or(Dims{});
      a.ends = ints_attr(node, "ends").value_or(Dims{});
      a.axes = ints_attr(node, "axes").value_or(Dims{});
    } else {
      a.starts = ints_input(node, 1);
      a.ends = ints_input(node, 2);
      if (has_input(node, 3)) a.axes = ints_input(node, 3);
      if (has_input(node, 4)) a.steps = ints_input(node, 4);
    }
    if (a.axes.empty())
      for (std::size_t i = 0; i < a.starts.size(); ++i) a.axes.push_back(static_cast<std::int64_t>(i));
    if (a.steps.empty()) a.steps.assign(a.starts.size(), 1);
    if (a.ends.size() != a.starts.size() || a.axes.size() != a.starts.size() || a.steps.size() != a.starts.size())
      fail_node(node, "starts, ends, axes and steps differ in length");
    for (auto& axis : a.axes) axis = normal_axis(node, axis, rank);
    for (const auto step : a.steps)
      if (step == 0) fail_node(node, "a slice step of 0");
    return a;
  }

  std::vector<Dims> split_dims(const onnx::NodeProto& node, const Dims& in) const {
    const std::int64_t axis = normal_axis(node, int_attr(node, "axis", 0), in.size());
    Dims sizes;
    if (const auto split = ints_attr(node, "split")) sizes = *split;
    else if (has_input(node, 1)) sizes = ints_input(node, 1);
    const auto parts = static_cast<std::int64_t>(node.output_size());
    if (sizes.empty()) {
      const std::int64_t each = ceil_div(in[static_cast<std::size_t>(axis)], parts);
      for (std::int64_t i = 0; i < parts; ++i) sizes.push_back(std::min(each, in[static_cast<std::size_t>(axis)] - i * each));
    }
    if (static_cast<std::int64_t>(sizes.size()) != parts ||
        std::accumulate(sizes.begin(), sizes.end(), std::int64_t{0}) != in[static_cast<std::size_t>(axis)])
      fail_node(node, fmt::format("split sizes {} do not cut axis {} of {} into {} outputs", dims_text(sizes), axis, dims_text(in), parts));
    std::vector<Dims> out;
    for (const auto s : sizes) {
      Dims d = in;
      d[static_cast<std::size_t>(axis)] = s;
      out.push_back(d);
    }
    return out;
  }

  // The output dimensions of a view or shape op (its first output), from its first input's.
  Dims output_dims(const onnx::NodeProto& node, const Dims& in) const {
    const std::string& op = node.op_type();
    if (op == "Identity" || op == "Dropout" || op == "Cast" || op == "QuantizeLinear" || op == "DequantizeLinear") return in;
    if (op == "Shape") {
      const auto values = constant_ints(node, {static_cast<std::int64_t>(in.size())});
      return {static_cast<std::int64_t>(values ? values->size() : in.size())};
    }
    if (op == "Size") return {};
    if (op == "ConstantOfShape") return ints_input(node, 0);
    if (op == "Range") {
      const auto start = ints_input(node, 0), limit = ints_input(node, 1), delta = ints_input(node, 2);
      if (start.size() != 1 || limit.size() != 1 || delta.size() != 1 || delta[0] == 0) fail_node(node, "start, limit and delta must be scalars, delta not 0");
      return {std::max<std::int64_t>(0, ceil_div(limit[0] - start[0], delta[0]))};
    }
    if (op == "Reshape") {
      const auto shape = ints_input(node, 1);
      const bool allow_zero = int_attr(node, "allowzero", 0) != 0;
      Dims out;
      std::int64_t known = 1;
      int infer = -1;
      for (std::size_t i = 0; i < shape.size(); ++i) {
        std::int64_t d = shape[i];
        if (d == 0 && !allow_zero) {
          if (i >= in.size()) fail_node(node, fmt::format("shape {} copies dimension {} of {}", dims_text(shape), i, dims_text(in)));
          d = in[i];
        }
        if (d == -1) {
          if (infer >= 0) fail_node(node, fmt::format("shape {} has two -1", dims_text(shape)));
          infer = static_cast<int>(i);
        } else if (d < 0) {
          fail_node(node, fmt::format("shape {}: allowed sizes >= -1", dims_text(shape)));
        } else {
          known *= d;
        }
        out.push_back(d);
      }
      const auto total = static_cast<std::int64_t>(elements(in, node.input(0)));
      if (infer >= 0) {
        if (known == 0 || total % known != 0) fail_node(node, fmt::format("cannot reshape {} to {}", dims_text(in), dims_text(shape)));
        out[static_cast<std::size_t>(infer)] = total / known;
      } else if (known != total) {
        fail_node(node, fmt::format("cannot reshape {} ({} elements) to {}", dims_text(in), total, dims_text(out)));
      }
      return out;
    }
    if (op == "Flatten") {
      const auto axis = normal_axis(node, int_attr(node, "axis", 1), in.size() + 1);
      std::int64_t outer = 1, inner = 1;
      for (std::size_t i = 0; i < in.size(); ++i) (static_cast<std::int64_t>(i) < axis ? outer : inner) *= in[i];
      return {outer, inner};
    }
    if (op == "Transpose") {
      Dims perm = ints_attr(node, "perm").value_or(Dims{});
      if (perm.empty())
        for (std::size_t i = in.size(); i-- > 0;) perm.push_back(static_cast<std::int64_t>(i));
      if (perm.size() != in.size()) fail_node(node, fmt::format("perm {} for a rank-{} tensor", dims_text(perm), in.size()));
      Dims out;
      for (const auto p : perm) out.push_back(in[static_cast<std::size_t>(normal_axis(node, p, in.size()))]);
      return out;
    }
    if (op == "Squeeze") {
      const auto axes = axes_of(node, 1, in.size());
      Dims out;
      for (std::size_t i = 0; i < in.size(); ++i) {
        const bool named = axes && std::find(axes->begin(), axes->end(), static_cast<std::int64_t>(i)) != axes->end();
        if (named && in[i] != 1) fail_node(node, fmt::format("squeezes axis {} of {}, which is not 1", i, dims_text(in)));
        if (!(named || (!axes && in[i] == 1))) out.push_back(in[i]);
      }
      return out;
    }
    if (op == "Unsqueeze") {
      Dims axes = ints_attr(node, "axes").value_or(Dims{});
      if (axes.empty()) axes = ints_input(node, 1);
      const std::size_t rank = in.size() + axes.size();
      for (auto& a : axes) a = normal_axis(node, a, rank);
      std::sort(axes.begin(), axes.end());
      Dims out;
      std::size_t next = 0;
      for (std::size_t i = 0; i < rank; ++i) {
        if (std::binary_search(axes.begin(), axes.end(), static_cast<std::int64_t>(i))) out.push_back(1);
        else if (next < in.size()) out.push_back(in[next++]);
        else fail_node(node, fmt::format("axes {} for a rank-{} tensor", dims_text(axes), in.size()));
      }
      return out;
    }
    if (op == "Concat") {
      const auto axis = normal_axis(node, int_attr(node, "axis", 0), in.size());
      Dims out = in;
      out[static_cast<std::size_t>(axis)] = 0;
      for (int i = 0; i < node.input_size(); ++i) {
        const Dims& d = input(node, i).dims;
        if (d.size() != in.size()) fail_node(node, fmt::format("concatenates {} with {}", dims_text(in), dims_text(d)));
        for (std::size_t k = 0; k < d.size(); ++k)
          if (static_cast<std::int64_t>(k) != axis && d[k] != in[k])
            fail_node(node, fmt::format("concatenates {} with {} along axis {}", dims_text(in), dims_text(d), axis));
        out[static_cast<std::size_t>(axis)] += d[static_cast<std::size_t>(axis)];
      }
      return out;
    }
    if (op == "Gather") {
      const auto axis = normal_axis(node, int_attr(node, "axis", 0), in.size());
      const Dims& indices = input(node, 1).dims;
      Dims out(in.begin(), in.begin() + axis);
      out.insert(out.end(), indices.begin(), indices.end());
      out.insert(out.end(), in.begin() + axis + 1, in.end());
      return out;
    }
    if (op == "Slice") {
      const auto a = slice_arguments(node, in.size());
      Dims out = in;
      for (std::size_t k = 0; k < a.axes.size(); ++k) {
        const auto axis = static_cast<std::size_t>(a.axes[k]);
        const std::int64_t n = in[axis];
        std::int64_t start = a.starts[k] < 0 ? a.starts[k] + n : a.starts[k];
        std::int64_t end = a.ends[k] < 0 ? a.ends[k] + n : a.ends[k];
        if (a.steps[k] > 0) {
          start = std::clamp<std::int64_t>(start, 0, n);
          end = std::clamp<std::int64_t>(end, 0, n);
          out[axis] = std::max<std::int64_t>(0, ceil_div(end - start, a.steps[k]));
        } else {
          start = std::clamp<std::int64_t>(start, 0, n - 1);
          end = std::clamp<std::int64_t>(end, -1, n - 1);
          out[axis] = std::max<std::int64_t>(0, ceil_div(start - end, -a.steps[k]));
        }
      }
      return out;
    }
    if (op == "Split") return split_dims(node, in).front();
    if (op == "DepthToSpace" || op == "SpaceToDepth") {
      // PixelShuffle and its inverse: channels traded for a block x block patch of positions.
      const std::int64_t block = int_attr(node, "blocksize", 0);
      const bool to_space = op == "DepthToSpace";
      if (in.size() != 4 || block < 1 || block > (1 << 16) || (to_space ? in[1] % (block * block) : in[2] % block + in[3] % block) != 0)
        fail_node(node, fmt::format("blocksize {} for input {}: allowed N x C x H x W with {} divisible by it{}", block,
                                    dims_text(in), to_space ? "C" : "H and W", to_space ? " squared" : ""));
      if (to_space) return {in[0], in[1] / (block * block), in[2] * block, in[3] * block};
      return {in[0], in[1] * block * block, in[2] / block, in[3] / block};
    }
    if (op == "Expand") {
      const auto shape = ints_input(node, 1);
      return broadcast(node, in, shape);
    }
    if (op == "Tile") {
      const auto repeats = ints_input(node, 1);
      if (repeats.size() != in.size()) fail_node(node, fmt::format("repeats {} for {}", dims_text(repeats), dims_text(in)));
      Dims out = in;
      for (std::size_t i = 0; i < in.size(); ++i) out[i] *= repeats[i];
      return out;
    }
    if (op == "Pad") {
      Dims pads = ints_attr(node, "pads").value_or(Dims{});
      if (pads.empty()) pads = ints_input(node, 1);
      Dims out = in;
      if (has_input(node, 3)) {
        const auto axes = ints_input(node, 3);
        if (pads.size() != 2 * axes.size()) fail_node(node, "pads and axes differ in length");
        for (std::size_t k = 0; k < axes.size(); ++k)
          out[static_cast<std::size_t>(normal_axis(node, axes[k], in.size()))] += pads[k] + pads[k + axes.size()];
        return out;
      }
      if (pads.size() != 2 * in.size()) fail_node(node, fmt::format("pads {} for a rank-{} tensor", dims_text(pads), in.size()));
      for (std::size_t i = 0; i < in.size(); ++i) out[i] += pads[i] + pads[i + in.size()];
      return out;
    }
    if (elementwise_ops().count(op)) {
      Dims out = in;
      for (int i = 1; i < node.input_size(); ++i)
        if (!node.input(i).empty()) out = broadcast(node, out, input(node, i).dims);
      return out;
    }
    if (unary_ops().count(op)) return in;
    // Another op on constants: the shape the exporter recorded, else its first input's (the
    // scatters and cumulative ops that build masks keep it).
    if (const auto recorded = recorded_dims_.find(node.output(0)); recorded != recorded_dims_.end()) return recorded->second;
    return in;
  }

  // ---- the nodes ----

  void check_supported(const onnx::NodeProto& node) const {
    const std::string& op = node.op_type();
    const bool known = is_default_domain(node.domain())
                           ? unary_ops().count(op) || elementwise_ops().count(op) || view_ops().count(op) ||
                                 shape_ops().count(op) || reduce_ops().count(op) || pass_ops().count(op) || other_ops().count(op) ||
                                 select_ops().count(op)
                           : node.domain() == "com.microsoft" && microsoft_ops().count(op);
    if (!known)
      throw NetworkError(fmt::format("{}: node {}: op {}{} (opset {}) is not supported: allowed {}", source_,
                                     traces::printable(node.name()), traces::printable(op),
                                     is_default_domain(node.domain()) ? "" : fmt::format(" of domain {}", traces::printable(node.domain())),
                                     opset_of(node), fmt::join(onnx_supported_ops(), ", ")));
  }

  void import_node(const onnx::NodeProto& node, int index) {
    const std::string& op = node.op_type();
    if (node.output_size() == 0 || node.output(0).empty()) fail_node(node, "has no output: allowed nodes that write a tensor");
    bool all_constant = true;
    for (int i = 0; i < node.input_size(); ++i)
      if (!node.input(i).empty()) all_constant = all_constant && input(node, i).constant();
    // A node of constants costs nothing whatever its op (a Swin attention mask built with
    // ScatterND): only its output's shape matters.
    if (!all_constant) check_supported(node);
    if (all_constant || shape_ops().count(op)) return constant_node(node);
    if (op == "Conv" || op == "FusedConv") return conv(node, index);
    if (op == "ConvTranspose") return conv_transpose(node, index);
    if (op == "Gemm" || op == "MatMul") return matmul(node, index);
    if (op == "Einsum") return einsum(node, index);
    if (op == "LSTM" || op == "GRU" || op == "RNN") return recurrent(node, index);
    if (op == "BatchNormalization") return batch_norm(node, index);
    if (op == "MaxPool" || op == "AveragePool") return pool(node, index);
    if (op == "GlobalAveragePool" || op == "GlobalMaxPool") return global_pool(node, index);
    if (reduce_ops().count(op)) return reduce(node, index);
    if (op == "Resize" || op == "Upsample") return resize(node, index);
    if (select_ops().count(op)) return selection(node, index);
    if (pass_ops().count(op)) {
      const Value& x = input(node, 0);
      return set_activation(node, 0, x.dims, add_layer(node, index, LayerType::vector, vector_pass(node, x.dims), new_params(node)));
    }
    if (unary_ops().count(op) || microsoft_ops().count(op)) return unary(node, index, input(node, 0), input(node, 0).dims);
    if (elementwise_ops().count(op)) return elementwise(node, index);
    return view(node, index);
  }

  void view(const onnx::NodeProto& node, int index) {
    const std::string& op = node.op_type();
    const int source = first_activation(node);
    const Value& x = input(node, source);
    if (op == "Gather" && source == 1) {
      // A lookup into a constant table (an embedding): one pass writing what it reads.
      const Dims out = output_dims(node, input(node, 0).dims);
      return set_activation(node, 0, out, add_layer(node, index, LayerType::vector, vector_pass(node, out), new_params(node)));
    }
    const auto layers = source_layers(node);
    if (op == "Concat" && layers.size() > 1) {
      const Dims out = output_dims(node, input(node, 0).dims);
      npu::LayerWork work;
      work.kind = npu::LayerKind::concatenation;
      work.on_vector_path = true;
      const Dims hwc = hwc_of(out);
      work.out_height = u32(node, hwc[0]);
      work.out_width = u32(node, hwc[1]);
      work.out_channels = u32(node, hwc[2]);
      return set_activation(node, 0, out, add_layer(node, index, LayerType::concat, work, new_params(node)));
    }
    // Constants a view reads (a class token concatenated, a table expanded) belong to the layer
    // it views, or to the next layer when it views the graph input.
    const std::uint64_t params = new_params(node);
    if (x.layer == network_input) pending_params_ += params;
    else layers_[layer_index_.at(x.layer)].params += params;
    if (op == "Split") {
      const auto parts = split_dims(node, x.dims);
      for (int i = 0; i < node.output_size(); ++i) set_activation(node, i, parts[static_cast<std::size_t>(i)], x.layer);
      return;
    }
    set_activation(node, 0, output_dims(node, op == "Concat" ? input(node, 0).dims : x.dims), x.layer);
  }

  void elementwise(const onnx::NodeProto& node, int index) {
    Dims out;
    for (int i = 0; i < node.input_size(); ++i)
      if (!node.input(i).empty()) out = out.empty() && i == 0 ? input(node, i).dims : broadcast(node, out, input(node, i).dims);
    const auto layers = source_layers(node);
    if (layers.size() == 1) return unary(node, index, input(node, first_activation(node)), out);
    bool same = true;
    for (int i = 0; i < node.input_size(); ++i) same = same && has_input(node, i) && input(node, i).dims == out;
    const LayerType type = node.op_type() == "Add" && same ? LayerType::add : LayerType::vector;
    set_activation(node, 0, out, add_layer(node, index, type, elementwise_pass(node, out), new_params(node)));
  }

  // Conv and FusedConv: a GEMM of R = output positions, P = kernel area x input channels per
  // group, C = output channels per group (docs/models.md, "Lowering").
  void conv(const onnx::NodeProto& node, int index) {
    const Value& x = input(node, 0);
    const Value& w = input(node, 1);
    if (!w.constant()) fail_node(node, "the weights must be an initializer: allowed convolutions with constant weights");
    if (x.dims.size() < 3 || x.dims.size() > 5)
      fail_node(node, fmt::format("input {}: allowed 1-D, 2-D or 3-D convolutions (rank 3, 4 or 5)", dims_text(x.dims)));
    if (w.dims.size() != x.dims.size()) fail_node(node, fmt::format("weights {} for input {}", dims_text(w.dims), dims_text(x.dims)));
    const std::size_t spatial = x.dims.size() - 2;
    const std::int64_t groups = int_attr(node, "group", 1);
    const std::int64_t channels = x.dims[1], filters = w.dims[0];
    if (groups < 1 || channels % groups != 0 || filters % groups != 0 || w.dims[1] * groups != channels)
      fail_node(node, fmt::format("group {} with input {} and weights {}", groups, dims_text(x.dims), dims_text(w.dims)));
    Dims kernel(w.dims.begin() + 2, w.dims.end());
    const auto geometry = window_geometry(node, Dims(x.dims.begin() + 2, x.dims.end()), kernel, false);
    Dims out{x.dims[0], filters};
    out.insert(out.end(), geometry.out.begin(), geometry.out.end());
    if (spatial == 3) return conv_as_gemm(node, index, x, out, kernel, groups);
    npu::LayerSpec spec;
    spec.kind = npu::LayerKind::convolution;
    spec.in_channels = u32(node, channels);
    spec.out_channels = u32(node, filters);
    spec.groups = u32(node, groups);
    set_window(node, spec, kernel, geometry);
    npu::LayerWork work = lower_spec(node, spec);
    if (work.out_height != geometry.out[0] || (spatial == 2 && work.out_width != geometry.out[1]))
      fail_node(node, "the lowered window does not give the output size");
    // Several images in one tensor (a reshape made windows or frames a batch): one GEMM each,
    // with the same weights.
    work.gemm.groups *= static_cast<std::uint64_t>(x.dims[0]);
    const Dims hwc = hwc_of(out);
    work.out_height = u32(node, hwc[0]);
    work.out_width = u32(node, hwc[1]);
    set_activation(node, 0, out, add_layer(node, index, LayerType::conv, work, new_params(node), has_input(node, 2)));
  }

  // A 3-D convolution, which npusim's 2-D layer does not describe, as the GEMM its im2col gives:
  // R = output positions, P = kernel volume x input channels per group, C = output channels per
  // group. Its MACs are exact; the input is read once (no window reuse is modelled).
  void conv_as_gemm(const onnx::NodeProto& node, int index, const Value& x, const Dims& out, const Dims& kernel,
                    std::int64_t groups) {
    std::int64_t positions = 1, volume = 1;
    for (std::size_t i = 2; i < out.size(); ++i) positions *= out[i];
    for (const auto k : kernel) volume *= k;
    npu::LayerWork work;
    work.kind = npu::LayerKind::fully_connected;
    work.gemm = {static_cast<std::uint64_t>(positions * x.dims[0]), static_cast<std::uint64_t>(volume * x.dims[1] / groups),
                 static_cast<std::uint64_t>(out[1] / groups), static_cast<std::uint64_t>(groups)};
    add_gemm_conv(node, index, x, out, work);
  }

  // A convolution priced as a plain GEMM (`work.gemm` set): the layer writing `out` from `x`.
  void add_gemm_conv(const onnx::NodeProto& node, int index, const Value& x, const Dims& out, npu::LayerWork work) {
    work.input_elements = elements(x.dims, node.input(0));
    const Dims hwc = hwc_of(out);
    work.out_height = u32(node, hwc[0]);
    work.out_width = u32(node, hwc[1]);
    work.out_channels = u32(node, hwc[2]);
    set_activation(node, 0, out, add_layer(node, index, LayerType::conv, work, new_params(node), has_input(node, 2)));
  }

  // ConvTranspose: every input position times the weights gives a kernel-sized patch of every
  // output channel, a GEMM of R = input positions, P = input channels per group, C = output
  // channels per group x kernel area (the patches' overlapping sums are the output's writes).
  void conv_transpose(const onnx::NodeProto& node, int index) {
    const Value& x = input(node, 0);
    const Value& w = input(node, 1);
    if (!w.constant()) fail_node(node, "the weights must be an initializer: allowed convolutions with constant weights");
    if (x.dims.size() < 3 || x.dims.size() > 5 || w.dims.size() != x.dims.size())
      fail_node(node, fmt::format("input {} and weights {}: allowed 1-D, 2-D or 3-D convolutions", dims_text(x.dims), dims_text(w.dims)));
    const std::size_t n = x.dims.size() - 2;
    const std::int64_t groups = int_attr(node, "group", 1);
    if (groups < 1 || x.dims[1] != w.dims[0] || x.dims[1] % groups != 0)
      fail_node(node, fmt::format("group {} with input {} and weights {}", groups, dims_text(x.dims), dims_text(w.dims)));
    const Dims strides = ints_attr(node, "strides").value_or(Dims(n, 1));
    const Dims dilations = ints_attr(node, "dilations").value_or(Dims(n, 1));
    const Dims pads = ints_attr(node, "pads").value_or(Dims(2 * n, 0));
    const Dims extra = ints_attr(node, "output_padding").value_or(Dims(n, 0));
    const auto shape = ints_attr(node, "output_shape");
    if (strides.size() != n || dilations.size() != n || pads.size() != 2 * n || extra.size() != n)
      fail_node(node, "strides, dilations, pads or output_padding do not match the kernel's rank");
    Dims out{x.dims[0], w.dims[1] * groups};
    std::int64_t positions = 1, kernel_area = 1;
    for (std::size_t i = 0; i < n; ++i) {
      const std::int64_t k = w.dims[2 + i], in = x.dims[2 + i];
      std::int64_t size = shape && shape->size() == n ? (*shape)[i]
                                                    : (in - 1) * strides[i] - pads[i] - pads[i + n] + dilations[i] * (k - 1) + extra[i] + 1;
      if (size < 1) fail_node(node, fmt::format("output size {} along dimension {}", size, i));
      out.push_back(size);
      positions *= in;
      kernel_area *= k;
    }
    npu::LayerWork work;
    work.kind = npu::LayerKind::fully_connected;
    work.gemm = {static_cast<std::uint64_t>(positions * x.dims[0]), static_cast<std::uint64_t>(x.dims[1] / groups),
                 static_cast<std::uint64_t>(w.dims[1] * kernel_area), static_cast<std::uint64_t>(groups)};
    add_gemm_conv(node, index, x, out, work);
  }

  struct Geometry {
    Dims out;
    std::vector<std::uint32_t> strides;
    std::vector<Window> windows;
  };

  // Output size per spatial dimension under ONNX's rules (pads, strides, dilations, auto_pad,
  // ceil_mode), and the symmetric, dilation-free window npusim prices that gives it.
  Geometry window_geometry(const onnx::NodeProto& node, const Dims& in, const Dims& kernel, bool pooling) const {
    const std::size_t n = in.size();
    if (kernel.size() != n) fail_node(node, fmt::format("kernel {} for a {}-D input", dims_text(kernel), n));
    const Dims strides = ints_attr(node, "strides").value_or(Dims(n, 1));
    const Dims dilations = ints_attr(node, "dilations").value_or(Dims(n, 1));
    Dims pads = ints_attr(node, "pads").value_or(Dims(2 * n, 0));
    const std::string auto_pad = string_attr(node, "auto_pad", "NOTSET");
    const bool ceil_mode = pooling && int_attr(node, "ceil_mode", 0) != 0;
    if (strides.size() != n || dilations.size() != n || pads.size() != 2 * n)
      fail_node(node, "strides, dilations or pads do not match the kernel's rank");
    Geometry g;
    for (std::size_t i = 0; i < n; ++i) {
      const std::int64_t k = kernel[i], s = strides[i], d = dilations[i];
      if (k < 1 || s < 1 || d < 1 || pads[i] < 0 || pads[i + n] < 0)
        fail_node(node, fmt::format("kernel {}, stride {}, dilation {}, pads {}: allowed positive sizes and pads >= 0", k, s, d,
                                    dims_text(pads)));
      const std::int64_t extent = d * (k - 1) + 1;
      std::int64_t out = 0, total_pad = pads[i] + pads[i + n];
      if (auto_pad == "SAME_UPPER" || auto_pad == "SAME_LOWER") {
        out = ceil_div(in[i], s);
        total_pad = std::max<std::int64_t>(0, (out - 1) * s + extent - in[i]);
      } else if (auto_pad == "VALID") {
        out = in[i] >= extent ? (in[i] - extent) / s + 1 : 0;
        total_pad = 0;
      } else if (auto_pad == "NOTSET" || auto_pad.empty()) {
        const std::int64_t span = in[i] + total_pad - extent;
        out = span < 0 ? 0 : (ceil_mode ? ceil_div(span, s) : span / s) + 1;
        // PyTorch's rule, which ONNX follows: the last window must start inside the input or
        // its leading padding.
        if (ceil_mode && out > 0 && (out - 1) * s >= in[i] + pads[i]) --out;
      } else {
        fail_node(node, fmt::format("auto_pad = {}: allowed NOTSET, SAME_UPPER, SAME_LOWER, VALID", traces::printable(auto_pad)));
      }
      if (out < 1) fail_node(node, fmt::format("kernel {} (dilation {}) does not fit the input {}", k, d, dims_text(in)));
      g.out.push_back(out);
      g.strides.push_back(u32(node, s));
      g.windows.push_back(fit_window(out, k, s, total_pad));
    }
    return g;
  }

  // The window of a 1-D (height only) or 2-D layer.
  void set_window(const onnx::NodeProto& node, npu::LayerSpec& spec, const Dims& kernel, const Geometry& g) const {
    const bool two_d = kernel.size() == 2;
    spec.kernel_height = u32(node, kernel[0]);
    spec.kernel_width = two_d ? u32(node, kernel[1]) : 1;
    spec.stride_height = g.strides[0];
    spec.stride_width = two_d ? g.strides[1] : 1;
    spec.in_height = g.windows[0].input;
    spec.padding_height = g.windows[0].padding;
    spec.in_width = two_d ? g.windows[1].input : 1;
    spec.padding_width = two_d ? g.windows[1].padding : 0;
  }

  // Gemm and MatMul: GEMMs, batched MatMul as groups (docs/models.md, "Lowering").
  void matmul(const onnx::NodeProto& node, int index) {
    const bool gemm = node.op_type() == "Gemm";
    Dims a = input(node, 0).dims, b = input(node, 1).dims;
    if (gemm) {
      if (a.size() != 2 || b.size() != 2) fail_node(node, fmt::format("operands {} and {}: Gemm takes matrices", dims_text(a), dims_text(b)));
      if (int_attr(node, "transA", 0)) std::swap(a[0], a[1]);
      if (int_attr(node, "transB", 0)) std::swap(b[0], b[1]);
    }
    if (a.empty() || b.empty()) fail_node(node, "an operand is a scalar");
    const bool vector_a = a.size() == 1, vector_b = b.size() == 1;
    if (vector_a) a.insert(a.begin(), 1);
    if (vector_b) b.push_back(1);
    const std::int64_t m = a[a.size() - 2], k = a.back(), n = b.back();
    if (b[b.size() - 2] != k) fail_node(node, fmt::format("operands {} and {} do not multiply", dims_text(input(node, 0).dims), dims_text(input(node, 1).dims)));
    const Dims batch = broadcast(node, Dims(a.begin(), a.end() - 2), Dims(b.begin(), b.end() - 2));
    std::int64_t batches = 1, batch_a = 1, batch_b = 1;
    for (const auto d : batch) batches *= d;
    for (std::size_t i = 0; i + 2 < a.size(); ++i) batch_a *= a[i];
    for (std::size_t i = 0; i + 2 < b.size(); ++i) batch_b *= b[i];
    Dims out = batch;
    if (!vector_a) out.push_back(m);
    if (!vector_b) out.push_back(n);
    npu::LayerWork work;
    work.kind = npu::LayerKind::fully_connected;
    const bool constant_b = input(node, 1).constant(), constant_a = input(node, 0).constant();
    // One weight matrix for every batch row: the batch stacks along R. A constant left operand
    // (W x) is the same GEMM transposed.
    if (constant_b && batch_b == 1) work.gemm = {static_cast<std::uint64_t>(batches * m), static_cast<std::uint64_t>(k), static_cast<std::uint64_t>(n), 1};
    else if (constant_a && batch_a == 1) work.gemm = {static_cast<std::uint64_t>(batches * n), static_cast<std::uint64_t>(k), static_cast<std::uint64_t>(m), 1};
    else work.gemm = {static_cast<std::uint64_t>(m), static_cast<std::uint64_t>(k), static_cast<std::uint64_t>(n), static_cast<std::uint64_t>(batches)};
    work.input_elements = elements(input(node, constant_a ? 1 : 0).dims, node.input(0));
    const Dims hwc = hwc_of(out);
    work.out_height = u32(node, hwc[0]);
    work.out_width = u32(node, hwc[1]);
    work.out_channels = u32(node, hwc[2]);
    set_activation(node, 0, out, add_layer(node, index, LayerType::matmul, work, new_params(node), gemm && has_input(node, 2)));
  }

  // Einsum's equation with each operand's ellipsis spelled out as digits (the broadcast axes,
  // right-aligned as numpy aligns them) and the output made explicit.
  struct Equation {
    std::vector<std::string> terms;
    std::string output;
    std::map<char, std::int64_t> sizes;
  };
  Equation einsum_equation(const onnx::NodeProto& node) const {
    std::string text;
    for (const char c : string_attr(node, "equation", "")) if (c != ' ') text += c;
    const auto bad = [&](const std::string& why) {
      fail_node(node, fmt::format("equation {}: {}: allowed letters, commas, one ... per term and ->",
                                  traces::printable(text), why));
    };
    const auto arrow = text.find("->");
    std::string inputs = text.substr(0, arrow);
    Equation eq;
    for (std::size_t start = 0;;) {
      const auto comma = inputs.find(',', start);
      eq.terms.push_back(inputs.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
      if (comma == std::string::npos) break;
      start = comma + 1;
    }
    if (static_cast<int>(eq.terms.size()) != node.input_size()) bad(fmt::format("{} terms for {} operands", eq.terms.size(), node.input_size()));
    std::size_t ellipsis = 0;  // the most axes any operand's ellipsis stands for
    std::vector<std::size_t> spans;
    for (int i = 0; i < node.input_size(); ++i) {
      std::string& term = eq.terms[static_cast<std::size_t>(i)];
      const Dims& dims = input(node, i).dims;
      const auto dots = term.find("...");
      const std::size_t letters = term.size() - (dots == std::string::npos ? 0 : 3);
      if ((dots == std::string::npos && letters != dims.size()) || letters > dims.size())
        bad(fmt::format("term {} for operand {}", term, dims_text(dims)));
      const std::size_t span = dims.size() - letters;
      spans.push_back(span);
      ellipsis = std::max(ellipsis, span);
      if (dots != std::string::npos) {
        std::string digits;
        for (std::size_t k = 0; k < span; ++k) digits += static_cast<char>('0' + (ellipsis - span + k) % 10);
        term.replace(dots, 3, digits);
      }
    }
    if (ellipsis > 10) bad("an ellipsis of more than 10 axes");
    // Digits were assigned before the widest ellipsis was known: renumber right-aligned.
    for (std::size_t i = 0; i < eq.terms.size(); ++i) {
      std::string& term = eq.terms[i];
      std::size_t k = 0;
      for (char& c : term)
        if (std::isdigit(static_cast<unsigned char>(c))) c = static_cast<char>('0' + ellipsis - spans[i] + k++);
    }
    std::string all_digits;
    for (std::size_t k = 0; k < ellipsis; ++k) all_digits += static_cast<char>('0' + k);
    for (std::size_t i = 0; i < eq.terms.size(); ++i) {
      const Dims& dims = input(node, static_cast<int>(i)).dims;
      for (std::size_t k = 0; k < eq.terms[i].size(); ++k) {
        const char c = eq.terms[i][k];
        if (!std::isalnum(static_cast<unsigned char>(c))) bad(fmt::format("character {}", c));
        auto [it, added] = eq.sizes.emplace(c, dims[k]);
        if (!added && it->second != dims[k]) {
          if (it->second != 1 && dims[k] != 1) bad(fmt::format("axis {} is {} and {}", c, it->second, dims[k]));
          it->second = std::max(it->second, dims[k]);
        }
      }
    }
    if (arrow != std::string::npos) {
      eq.output = text.substr(arrow + 2);
      if (const auto dots = eq.output.find("..."); dots != std::string::npos) eq.output.replace(dots, 3, all_digits);
    } else {
      // Implicit output: the broadcast axes, then the letters used once, in alphabetical order.
      eq.output = all_digits;
      for (const auto& [c, size] : eq.sizes) {
        std::size_t uses = 0;
        for (const auto& term : eq.terms) uses += static_cast<std::size_t>(std::count(term.begin(), term.end(), c));
        if (std::isalpha(static_cast<unsigned char>(c)) && uses == 1) eq.output += c;
      }
    }
    for (const char c : eq.output)
      if (!eq.sizes.count(c) || std::count(eq.output.begin(), eq.output.end(), c) != 1)
        bad(fmt::format("output axis {} is not an operand's or is repeated", c));
    return eq;
  }

  // Einsum of one operand (a transpose or a reduction: one vector pass, or free when it only
  // reorders) or two (a GEMM as MatMul's: axes in both operands and the output are the batch,
  // axes of one operand and the output are R or C, the rest are summed, P).
  void einsum(const onnx::NodeProto& node, int index) {
    if (node.input_size() < 1 || node.input_size() > 2)
      fail_node(node, fmt::format("{} operands: allowed one or two", node.input_size()));
    const Equation eq = einsum_equation(node);
    Dims out;
    for (const char c : eq.output) out.push_back(eq.sizes.at(c));
    const auto in = [&](std::size_t i, char c) { return i < eq.terms.size() && eq.terms[i].find(c) != std::string::npos; };
    if (node.input_size() == 1) {
      const Value& x = input(node, 0);
      if (eq.terms[0].size() == eq.output.size()) return set_activation(node, 0, out, x.layer);  // a transpose
      return set_activation(node, 0, out, add_layer(node, index, LayerType::vector, vector_pass(node, x.dims), new_params(node)));
    }
    std::uint64_t batches = 1, rows = 1, columns = 1, depth = 1, macs = 1;
    for (const auto& [c, size] : eq.sizes) {
      const auto n = static_cast<std::uint64_t>(size);
      // Two operands of up to 2^40 elements each: their product can wrap 64 bits.
      const auto product = traces::checked_mul<std::uint64_t>(macs, n);
      if (!product || *product > (std::uint64_t{1} << 62))
        fail_node(node, fmt::format("equation {} over {} and {}: more than 2^62 multiplications: allowed fewer",
                                    traces::printable(string_attr(node, "equation", "")), dims_text(input(node, 0).dims),
                                    dims_text(input(node, 1).dims)));
      macs = *product;
      const bool a = in(0, c), b = in(1, c), kept = eq.output.find(c) != std::string::npos;
      (a && b && kept ? batches : a && kept ? rows : b && kept ? columns : depth) *= n;
    }
    const bool constant_a = input(node, 0).constant() && !input(node, 1).constant();
    npu::LayerWork work;
    work.kind = npu::LayerKind::fully_connected;
    // A weight on the left (W x) is the same GEMM transposed; axes a weight shares with the
    // activation and the output are per-entry weights, so groups.
    work.gemm = constant_a ? npu::GemmShape{columns, depth, rows, batches} : npu::GemmShape{rows, depth, columns, batches};
    work.input_elements = elements(input(node, constant_a ? 1 : 0).dims, node.input(0));
    const Dims hwc = hwc_of(out);
    work.out_height = u32(node, hwc[0]);
    work.out_width = u32(node, hwc[1]);
    work.out_channels = u32(node, hwc[2]);
    set_activation(node, 0, out, add_layer(node, index, LayerType::matmul, work, new_params(node)));
  }

  // TopK reads its input once and writes k values and their indices along the axis; a gather or
  // scatter of elements writes its output (the indices' shape, or the data's) once.
  void selection(const onnx::NodeProto& node, int index) {
    const std::string& op = node.op_type();
    const Value& x = input(node, 0);
    Dims out = op == "GatherElements" ? input(node, 1).dims : x.dims;
    if (op == "TopK") {
      const auto axis = static_cast<std::size_t>(normal_axis(node, int_attr(node, "axis", -1), x.dims.size()));
      const auto k = opset_of(node) < 10 ? Dims{int_attr(node, "k", 0)} : ints_input(node, 1);
      if (k.size() != 1 || k[0] < 1 || k[0] > x.dims[axis])
        fail_node(node, fmt::format("k {} along axis {} of {}: allowed 1 to the axis' size", dims_text(k), axis, dims_text(x.dims)));
      out[axis] = k[0];
    }
    const std::string layer =
        add_layer(node, index, LayerType::vector, vector_pass(node, op == "TopK" ? x.dims : out), new_params(node));
    for (int i = 0; i < node.output_size(); ++i) set_activation(node, i, out, layer);
  }

  // LSTM, GRU and RNN: every step multiplies the step's input and the previous hidden state by
  // the gates' weights, so the whole sequence is one GEMM of R = steps x batch, P = input + hidden
  // size, C = gates x hidden size, one group per direction. The steps' dependence on each other
  // is not modelled (the GEMM's rows are taken as independent).
  void recurrent(const onnx::NodeProto& node, int index) {
    const Value& x = input(node, 0);
    const Value& w = input(node, 1);
    const std::int64_t gates = node.op_type() == "LSTM" ? 4 : node.op_type() == "GRU" ? 3 : 1;
    const bool batch_first = int_attr(node, "layout", 0) != 0;
    if (x.dims.size() != 3 || w.dims.size() != 3 || w.dims[2] != x.dims[2] || w.dims[1] % gates != 0 || !w.constant())
      fail_node(node, fmt::format("input {} and weights {}: allowed a sequence [steps, batch, features] (layout 1: [batch, "
                                  "steps, features]) and constant weights [directions, {} x hidden, features]",
                                  dims_text(x.dims), dims_text(w.dims), gates));
    const std::int64_t steps = x.dims[batch_first ? 1 : 0], batch = x.dims[batch_first ? 0 : 1];
    const std::int64_t directions = w.dims[0], hidden = w.dims[1] / gates;
    npu::LayerWork work;
    work.kind = npu::LayerKind::fully_connected;
    work.gemm = {static_cast<std::uint64_t>(steps * batch), static_cast<std::uint64_t>(x.dims[2] + hidden),
                 static_cast<std::uint64_t>(gates * hidden), static_cast<std::uint64_t>(directions)};
    work.input_elements = elements(x.dims, node.input(0));
    const Dims all = batch_first ? Dims{batch, steps, directions, hidden} : Dims{steps, directions, batch, hidden};
    const Dims hwc = hwc_of(all);
    work.out_height = u32(node, hwc[0]);
    work.out_width = u32(node, hwc[1]);
    work.out_channels = u32(node, hwc[2]);
    // The sequence lengths and the initial hidden and cell states (inputs 4 to 6) are data, not
    // parameters.
    const std::string layer = add_layer(node, index, LayerType::matmul, work, new_params(node, {4, 5, 6}));
    // Y (every step's hidden state), then Y_h and, for an LSTM, Y_c (the last step's).
    const Dims last = batch_first ? Dims{batch, directions, hidden} : Dims{directions, batch, hidden};
    for (int i = 0; i < node.output_size(); ++i) set_activation(node, i, i == 0 ? all : last, layer);
  }

  // Folded into the GEMM that produces its input when it is that GEMM's only reader: the folded
  // layer gains a bias (C parameters) if it had none. Otherwise a vector pass with its scale and
  // bias (2 C parameters). The mean and variance are statistics, not parameters.
  void batch_norm(const onnx::NodeProto& node, int index) {
    const Value& x = input(node, 0);
    if (x.dims.size() < 2) fail_node(node, fmt::format("input {}: allowed N x C x ...", dims_text(x.dims)));
    for (int i = 1; i < 5; ++i) input(node, i);
    const auto channels = static_cast<std::uint64_t>(x.dims[1]);
    for (int i = 1; i < 5; ++i)
      if (!input(node, i).param.empty()) counted_.insert(input(node, i).param);
    if (x.layer != network_input && readers_[node.input(0)] == 1) {
      const std::size_t at = layer_index_.at(x.layer);
      const LayerType type = layers_[at].type;
      if (type == LayerType::conv || type == LayerType::matmul) {
        if (!has_bias_[at]) layers_[at].params += channels;
        has_bias_[at] = true;
        return set_activation(node, 0, x.dims, x.layer);
      }
    }
    set_activation(node, 0, x.dims, add_layer(node, index, LayerType::vector, vector_pass(node, x.dims), 2 * channels));
  }

  void pool(const onnx::NodeProto& node, int index) {
    const Value& x = input(node, 0);
    if (x.dims.size() < 3 || x.dims.size() > 5) fail_node(node, fmt::format("input {}: allowed rank 3, 4 or 5", dims_text(x.dims)));
    const Dims kernel = ints_attr(node, "kernel_shape").value_or(Dims{});
    const auto g = window_geometry(node, Dims(x.dims.begin() + 2, x.dims.end()), kernel, true);
    const LayerType type = node.op_type() == "MaxPool" ? LayerType::maxpool : LayerType::avgpool;
    Dims out{x.dims[0], x.dims[1]};
    out.insert(out.end(), g.out.begin(), g.out.end());
    // A 3-D window, which npusim's 2-D pool does not describe: one vector pass writing the output.
    if (x.dims.size() == 5) return set_activation(node, 0, out, add_layer(node, index, type, vector_pass(node, out), new_params(node)));
    npu::LayerSpec spec;
    spec.kind = npu::LayerKind::pooling;
    spec.in_channels = spec.out_channels = u32(node, x.dims[1] * x.dims[0]);
    set_window(node, spec, kernel, g);
    set_activation(node, 0, out, add_layer(node, index, type, lower_spec(node, spec), new_params(node)));
  }

  // A pool over the whole map: what the NPU can run in the epilogue of the GEMM before it.
  void global_pool(const onnx::NodeProto& node, int index, const Dims& out_dims = {}) {
    const Value& x = input(node, 0);
    if (x.dims.size() < 3) fail_node(node, fmt::format("input {}: allowed N x C x spatial", dims_text(x.dims)));
    std::int64_t area = 1;
    for (std::size_t i = 2; i + 1 < x.dims.size(); ++i) area *= x.dims[i];
    npu::LayerSpec spec;
    spec.kind = npu::LayerKind::pooling;
    spec.in_channels = spec.out_channels = u32(node, x.dims[1] * x.dims[0]);
    spec.in_height = spec.kernel_height = u32(node, area);
    spec.in_width = spec.kernel_width = u32(node, x.dims.back());
    Dims out = out_dims;
    if (out.empty()) {
      out = {x.dims[0], x.dims[1]};
      out.resize(x.dims.size(), 1);
    }
    set_activation(node, 0, out, add_layer(node, index, LayerType::global_avgpool, lower_spec(node, spec), new_params(node)));
  }

  // A reduction over a contiguous run of axes: one pass reading every element and writing one
  // per group (H = the axes before, W = the reduced ones, C = the axes after, a 1 x W window).
  void reduce(const onnx::NodeProto& node, int index) {
    const Value& x = input(node, 0);
    const std::size_t rank = x.dims.size();
    Dims axes;
    if (node.op_type() == "ArgMax" || node.op_type() == "ArgMin") axes = {normal_axis(node, int_attr(node, "axis", 0), rank)};
    else if (const auto given = axes_of(node, 1, rank)) axes = *given;
    if (axes.empty() && !(int_attr(node, "noop_with_empty_axes", 0) && !ints_attr(node, "axes")))
      for (std::size_t i = 0; i < rank; ++i) axes.push_back(static_cast<std::int64_t>(i));
    std::sort(axes.begin(), axes.end());
    const bool keep = int_attr(node, "keepdims", 1) != 0;
    Dims out;
    for (std::size_t i = 0; i < rank; ++i) {
      const bool reduced = std::binary_search(axes.begin(), axes.end(), static_cast<std::int64_t>(i));
      if (!reduced) out.push_back(x.dims[i]);
      else if (keep) out.push_back(1);
    }
    if (axes.empty()) return unary(node, index, x, x.dims);
    // ReduceMean over a feature map's spatial axes is a global average pool.
    if (node.op_type() == "ReduceMean" && rank == 4 && axes == Dims{2, 3}) return global_pool(node, index, out);
    std::int64_t outer = 1, inner = 1, rest = 1;
    for (std::size_t i = 0; i < rank; ++i) {
      const auto axis = static_cast<std::int64_t>(i);
      (axis < axes.front() ? outer : axis <= axes.back() ? inner : rest) *= x.dims[i];
    }
    npu::LayerSpec spec;
    spec.kind = npu::LayerKind::pooling;
    spec.in_height = u32(node, outer);
    spec.in_width = spec.kernel_width = u32(node, inner);
    spec.in_channels = spec.out_channels = u32(node, rest);
    set_activation(node, 0, out, add_layer(node, index, LayerType::vector, lower_spec(node, spec), new_params(node)));
  }

  // Resize and Upsample: one pass writing the resized map (sizes, or scales, must be constants).
  void resize(const onnx::NodeProto& node, int index) {
    const Value& x = input(node, 0);
    Dims out;
    const int sizes_at = node.op_type() == "Resize" ? 3 : -1;
    // Resize takes (X, scales) in opset 10 and (X, roi, scales, sizes) from opset 11.
    const int scales_at = node.op_type() == "Resize" && opset_of(node) >= 11 ? 2 : 1;
    if (sizes_at > 0 && has_input(node, sizes_at)) {
      out = ints_input(node, sizes_at);
    } else {
      std::vector<double> scales;
      if (const auto* a = attribute(node, "scales")) scales.assign(a->floats().begin(), a->floats().end());
      else if (has_input(node, scales_at) && input(node, scales_at).reals) scales = *input(node, scales_at).reals;
      if (scales.size() != x.dims.size()) fail_node(node, "scales or sizes must be constants, one per dimension");
      for (std::size_t i = 0; i < scales.size(); ++i)
        out.push_back(static_cast<std::int64_t>(std::floor(static_cast<double>(x.dims[i]) * scales[i])));
    }
    if (out.size() != x.dims.size()) fail_node(node, fmt::format("output size {} for input {}", dims_text(out), dims_text(x.dims)));
    set_activation(node, 0, out, add_layer(node, index, LayerType::vector, vector_pass(node, out), new_params(node)));
  }

  // ---- the network ----

  OnnxBackbone finish() {
    const auto& graph = model_.graph();
    // Every output computed from the input is kept (a model returning its logits and features,
    // or two heads); the final exit follows the last layer any of them needs. Outputs that are
    // constants or the input itself cost nothing.
    std::set<std::string> needed;
    std::optional<std::size_t> last;
    for (const auto& o : graph.output()) {
      const auto it = values_.find(o.name());
      if (it == values_.end() || it->second.constant() || it->second.layer == network_input) continue;
      needed.insert(it->second.layer);
      last = std::max(last.value_or(0), layer_index_.at(it->second.layer));
    }
    if (!last) {
      std::vector<std::string> names;
      for (const auto& o : graph.output()) names.push_back(traces::printable(o.name()));
      fail(fmt::format("no output ({}) is computed from the input: allowed a graph whose output depends on its input",
                       fmt::join(names, ", ")));
    }
    OnnxBackbone out;
    out.last_layer = layers_[*last].name;
    // Layers no output depends on (a branch whose result is dropped) are left out.
    for (std::size_t i = layers_.size(); i-- > 0;)
      if (needed.count(layers_[i].name))
        for (const auto& from : layers_[i].inputs) needed.insert(from);
    for (auto& def : layers_)
      if (needed.count(def.name)) out.net.layers.push_back(std::move(def));
    out.net.source = source_;
    out.net.name = traces::is_valid_name(graph.name()) ? graph.name() : "onnx";
    out.net.description = fmt::format("ONNX model {} (opset {}{})", traces::printable(source_), opset_,
                                      model_.producer_name().empty()
                                          ? ""
                                          : fmt::format(", from {} {}", traces::printable(model_.producer_name()),
                                                        traces::printable(model_.producer_version())));
    const Dims hwc = hwc_of(values_.at(input_name_).dims);
    for (const auto d : hwc)
      if (d < 1 || d > std::numeric_limits<std::uint32_t>::max())
        fail(fmt::format("input {}: allowed sizes from 1 to 2^32 - 1", dims_text(values_.at(input_name_).dims)));
    out.net.input = {static_cast<std::uint32_t>(hwc[0]), static_cast<std::uint32_t>(hwc[1]), static_cast<std::uint32_t>(hwc[2])};
    for (const auto& node : graph.node()) {
      for (const auto& name : node.output()) {
        const auto found = layer_of_.find(name);
        const std::string layer = found != layer_of_.end() && needed.count(found->second) ? found->second : "";
        out.layer_of[name] = layer;
        if (!node.name().empty() && !out.layer_of.count(node.name())) out.layer_of[node.name()] = layer;
      }
    }
    out.layer_of[input_name_] = "";
    return out;
  }

  const onnx::ModelProto& model_;
  std::string source_;
  std::int64_t opset_ = 0;
  std::map<std::string, std::int64_t> opsets_;
  std::unordered_map<std::string, Value> values_;
  std::unordered_map<std::string, std::size_t> readers_;
  std::unordered_map<std::string, std::string> layer_of_;
  std::unordered_map<std::string, Dims> recorded_dims_;
  std::string input_name_;
  std::vector<LayerDef> layers_;
  std::vector<bool> has_bias_;
  std::unordered_map<std::string, std::size_t> layer_index_;
  std::set<std::string> counted_;
  std::uint64_t pending_params_ = 0;
};

}  // namespace

const std::vector<std::string>& onnx_supported_ops() {
  static const std::vector<std::string> ops = [] {
    std::vector<std::string> all;
    for (const auto* set : {&unary_ops(), &elementwise_ops(), &view_ops(), &shape_ops(), &reduce_ops(), &pass_ops(), &other_ops(),
                            &select_ops()})
      all.insert(all.end(), set->begin(), set->end());
    for (const auto& op : microsoft_ops()) all.push_back("com.microsoft." + op);
    std::sort(all.begin(), all.end());
    return all;
  }();
  return ops;
}

OnnxBackbone import_onnx(const std::string& bytes, const std::string& source) {
  onnx::ModelProto model;
  if (bytes.size() > static_cast<std::size_t>(std::numeric_limits<int>::max()) ||
      !model.ParseFromArray(bytes.data(), static_cast<int>(bytes.size())))
    throw NetworkError(fmt::format("{}: not an ONNX model (the protobuf does not parse: malformed or truncated): allowed a "
                                   "model saved by torch.onnx.export or onnx.save",
                                   source));
  return Importer(model, source).run();
}

}  // namespace npusim::workloads
