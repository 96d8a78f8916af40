// ONNX import: real torchvision exports against an independent count made from the PyTorch
// modules (tests/onnx/export_models.py), serving with an exit overlay, the lowering rules on
// small graphs built here, and the one-line errors.

#include <sys/wait.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <random>
#include <sstream>

#include <gtest/gtest.h>
#include <onnx/onnx_pb.h>

#include "sim/network_yaml.hpp"
#include "sim/scenario_yaml.hpp"
#include "workloads/onnx_import.hpp"

namespace npusim {
namespace {

const std::filesystem::path models_dir{NPUSIM_ONNX_MODELS_DIR};

std::string slurp(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// The exported model NAME, or a skip when torch is genuinely absent (the export step, the
// onnx_export test, exits 77 then and writes nothing). With torch present, a missing export is
// a failure.
bool exported(const std::string& name) {
  if (std::filesystem::exists(models_dir / (name + ".json"))) return true;
  if (std::system("/usr/bin/python3 -c 'import torch, torchvision' >/dev/null 2>&1") != 0) return false;
  ADD_FAILURE() << "torch is installed but " << (models_dir / (name + ".json")) << " is missing: the onnx_export test "
                << "(tests/onnx/export_models.py) should have written it";
  return false;
}

// A number out of the one-line JSON export_models.py writes.
std::uint64_t json_number(const std::string& json, const std::string& key) {
  const auto at = json.find("\"" + key + "\": ");
  if (at == std::string::npos) return 0;
  return std::stoull(json.substr(at + key.size() + 4));
}

class OnnxExports : public ::testing::TestWithParam<const char*> {};

TEST_P(OnnxExports, MacsWithinOnePercentOfPyTorchAndParametersExact) {
  const std::string name = GetParam();
  if (!exported(name)) GTEST_SKIP() << "torch and torchvision are not installed (scripts/setup.sh installs them)";
  const std::string counts = slurp(models_dir / (name + ".json"));
  const std::uint64_t macs = json_number(counts, "macs"), params = json_number(counts, "params");
  ASSERT_GT(macs, 0u) << counts;
  const auto net = sim::load_model((models_dir / (name + ".onnx")).string());
  std::cout << name << ": MACs npusim " << net.total_macs << " PyTorch " << macs << ", parameters npusim "
            << net.total_params << " PyTorch " << params << "\n";
  EXPECT_LE(std::fabs(static_cast<double>(net.total_macs) - static_cast<double>(macs)), 0.01 * static_cast<double>(macs));
  EXPECT_EQ(net.total_params, params);
  ASSERT_EQ(net.exits.size(), 1u);
  EXPECT_EQ(net.exits[0].after_layer, net.layers.size() - 1);
}

struct CliResult {
  int status = -1;
  std::string out, err;
};

CliResult run_cli(const std::string& args, const std::filesystem::path& dir) {
  const auto out = dir / "stdout", err = dir / "stderr";
  const std::string command = NPUSIM_CLI_PATH " " + args + " >" + out.string() + " 2>" + err.string();
  const int raw = std::system(command.c_str());
  return {WIFEXITED(raw) ? WEXITSTATUS(raw) : -1, slurp(out), slurp(err)};
}

class OnnxOverlay : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string test = ::testing::UnitTest::GetInstance()->current_test_info()->name();
    for (auto& ch : test) ch = ch == '/' ? '_' : ch;
    dir_ = std::filesystem::temp_directory_path() / ("npusim_onnx_" + std::to_string(::getpid()) + "_" + test);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::filesystem::path write(const std::string& name, const std::string& text) {
    std::ofstream(dir_ / name, std::ios::binary) << text;
    return dir_ / name;
  }
  std::filesystem::path dir_;
};

class OnnxServing : public OnnxOverlay, public ::testing::WithParamInterface<const char*> {};

// An early exit after the backbone layer where half the MACs are done, with the default
// classifier (global average pool + FC), and the final exit left to the overlay's default; then
// a short serving run in which samples leave at both.
TEST_P(OnnxServing, AnExitOverlayServes) {
  const std::string name = GetParam();
  if (!exported(name)) GTEST_SKIP() << "torch and torchvision are not installed (scripts/setup.sh installs them)";
  const auto model = models_dir / (name + ".onnx");
  const auto bare = sim::load_model(model.string());
  std::uint64_t done = 0;
  std::string middle;
  for (const auto& layer : bare.layers) {
    done += layer.macs;
    if (2 * done >= bare.total_macs && layer.macs > 0) {
      middle = layer.name;
      break;
    }
  }
  ASSERT_FALSE(middle.empty());
  write("overlay.yaml", "network:\n  name: " + name + "-ee\n  backbone: " + model.string() +
                            "\n  exits:\n    - {name: e1, after: \"" + middle + "\", probability: 0.5, classes: 10}\n");
  const auto net = sim::load_model((dir_ / "overlay.yaml").string());
  ASSERT_EQ(net.exits.size(), 2u);
  EXPECT_EQ(net.exits[0].name, "e1");
  EXPECT_EQ(net.layers[net.exits[0].after_layer].name, middle);
  EXPECT_EQ(net.exits[1].name, "final");
  EXPECT_DOUBLE_EQ(net.exits[1].probability, 0.5);
  ASSERT_EQ(net.exits[0].classifier_layers.size(), 2u);
  EXPECT_LT(net.exits[0].macs_to_exit, net.exits[1].macs_to_exit);
  EXPECT_EQ(net.backbone_macs, bare.total_macs);

  write("scenario.yaml",
        "name: onnx\ndevices:\n  - {name: cam, model: overlay.yaml, arrival: {process: poisson, rate_hz: 20}, slo_factor: 5}\n"
        "scheduler: {policy: exit_aware}\nsimulation: {seed: 3, samples: 200}\n");
  const auto r = run_cli("run " + (dir_ / "scenario.yaml").string(), dir_);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("200 arrived, 200 completed, 0 dropped"), std::string::npos) << r.out;
  const auto exits = r.out.find("exits ");
  ASSERT_NE(exits, std::string::npos) << r.out;
  EXPECT_EQ(r.out.find(" e1 0 ", exits), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find(" final 0\n", exits), std::string::npos) << r.out;
}

INSTANTIATE_TEST_SUITE_P(Torchvision, OnnxExports,
                         ::testing::Values("resnet18", "resnet50", "mobilenet_v2", "mobilenet_v3_small", "efficientnet_b0", "densenet121",
                                           "vit_small"));
INSTANTIATE_TEST_SUITE_P(Torchvision, OnnxServing,
                         ::testing::Values("resnet18", "resnet50", "mobilenet_v2", "mobilenet_v3_small", "efficientnet_b0", "densenet121",
                                           "vit_small"));

// ---- small graphs built here ----

struct Graph {
  onnx::ModelProto model;
  onnx::GraphProto* graph = model.mutable_graph();

  explicit Graph(std::vector<std::int64_t> input, std::int64_t opset = 17) {
    model.set_ir_version(8);
    auto* set = model.add_opset_import();
    set->set_domain("");
    set->set_version(opset);
    graph->set_name("g");
    auto* in = graph->add_input();
    in->set_name("x");
    auto* type = in->mutable_type()->mutable_tensor_type();
    type->set_elem_type(onnx::TensorProto::FLOAT);
    for (const auto d : input) type->mutable_shape()->add_dim()->set_dim_value(d);
  }
  static void fill(onnx::TensorProto* t, const std::vector<std::int64_t>& dims) {
    t->set_data_type(onnx::TensorProto::FLOAT);
    std::int64_t n = 1;
    for (const auto d : dims) {
      t->add_dims(d);
      n *= d;
    }
    for (std::int64_t i = 0; i < n; ++i) t->add_float_data(0.5f);
  }
  void weight(const std::string& name, const std::vector<std::int64_t>& dims) {
    auto* t = graph->add_initializer();
    t->set_name(name);
    fill(t, dims);
  }
  // The same tensor written as a Constant node, as some converters write weights.
  void constant(const std::string& name, const std::vector<std::int64_t>& dims) {
    auto* a = node("Constant", name + "_node", {}, name)->add_attribute();
    a->set_name("value");
    a->set_type(onnx::AttributeProto::TENSOR);
    fill(a->mutable_t(), dims);
  }
  void ints(const std::string& name, const std::vector<std::int64_t>& values) {
    auto* t = graph->add_initializer();
    t->set_name(name);
    t->set_data_type(onnx::TensorProto::INT64);
    t->add_dims(static_cast<std::int64_t>(values.size()));
    for (const auto v : values) t->add_int64_data(v);
  }
  onnx::NodeProto* node(const std::string& op, const std::string& name, const std::vector<std::string>& inputs,
                        const std::string& output) {
    auto* n = graph->add_node();
    n->set_op_type(op);
    n->set_name(name);
    for (const auto& i : inputs) n->add_input(i);
    n->add_output(output);
    return n;
  }
  static void attribute(onnx::NodeProto* n, const std::string& name, const std::vector<std::int64_t>& values) {
    auto* a = n->add_attribute();
    a->set_name(name);
    a->set_type(onnx::AttributeProto::INTS);
    for (const auto v : values) a->add_ints(v);
  }
  static void attribute(onnx::NodeProto* n, const std::string& name, std::int64_t value) {
    auto* a = n->add_attribute();
    a->set_name(name);
    a->set_type(onnx::AttributeProto::INT);
    a->set_i(value);
  }
  std::string bytes(const std::string& output) {
    graph->add_output()->set_name(output);
    return model.SerializeAsString();
  }
};

workloads::LoweredNetwork lower(const std::string& bytes) {
  auto backbone = workloads::import_onnx(bytes, "t.onnx");
  backbone.net.exits.push_back({"final", backbone.last_layer, 1.0, {}, ""});
  return workloads::lower_network(backbone.net);
}

std::string import_error(const std::string& bytes) {
  try {
    workloads::import_onnx(bytes, "t.onnx");
  } catch (const workloads::NetworkError& e) {
    return e.what();
  }
  return "";
}

// A dilated, strided convolution with asymmetric pads: out = floor((20 + 1 + 2 - 5) / 2) + 1 = 10
// per side (kernel 3 dilated by 2 spans 5), so 10 x 10 positions x 16 filters x 8 x 3 x 3.
// Then a ceil-mode max pool: ceil((10 - 3) / 2) + 1 = 5 (4 with the floor rule), and a
// batched MatMul of the 4 heads: [1, 4, 25, 4] x [1, 4, 4, 25].
TEST(OnnxLowering, WindowsAndBatchedMatMulKeepOnnxShapesAndMacs) {
  Graph g({1, 8, 20, 20});
  g.weight("w", {16, 8, 3, 3});
  auto* conv = g.node("Conv", "conv", {"x", "w"}, "c");
  Graph::attribute(conv, "dilations", {2, 2});
  Graph::attribute(conv, "strides", {2, 2});
  Graph::attribute(conv, "pads", {1, 1, 2, 2});
  g.node("Relu", "relu", {"c"}, "r");
  auto* pool = g.node("MaxPool", "pool", {"r"}, "p");
  Graph::attribute(pool, "kernel_shape", {3, 3});
  Graph::attribute(pool, "strides", {2, 2});
  Graph::attribute(pool, "ceil_mode", 1);
  g.ints("shape", {1, 4, 25, 4});
  g.node("Reshape", "heads", {"p", "shape"}, "h");
  auto* t = g.node("Transpose", "keys", {"h"}, "k");
  Graph::attribute(t, "perm", {0, 1, 3, 2});
  g.node("MatMul", "scores", {"h", "k"}, "s");
  g.node("Softmax", "softmax", {"s"}, "y");
  const auto net = lower(g.bytes("y"));
  ASSERT_EQ(net.layers.size(), 4u);  // conv (relu fused), pool, scores, softmax
  EXPECT_EQ(net.layers[0].name, "conv");
  EXPECT_EQ(net.layers[0].output, (workloads::TensorShape{10, 10, 16}));
  EXPECT_EQ(net.layers[0].macs, 10u * 10 * 16 * 8 * 9);
  EXPECT_EQ(net.layers[0].params, 16u * 8 * 9);
  EXPECT_EQ(net.layers[1].output, (workloads::TensorShape{5, 5, 16}));
  EXPECT_TRUE(net.layers[1].work.on_vector_path);
  EXPECT_EQ(net.layers[2].type, workloads::LayerType::matmul);
  EXPECT_EQ(net.layers[2].work.gemm.groups, 4u);
  EXPECT_EQ(net.layers[2].macs, 4u * 25 * 4 * 25);
  EXPECT_EQ(net.layers[2].params, 0u);  // two activations: no weights
  EXPECT_EQ(net.layers[3].type, workloads::LayerType::vector);
  EXPECT_EQ(net.total_macs, 10u * 10 * 16 * 8 * 9 + 4u * 25 * 4 * 25);
}

// Batch norm folds into the convolution before it (which gains a bias); on its own it is a
// vector pass with scale and bias as parameters. A dynamic batch dimension is one sample.
TEST(OnnxLowering, BatchNormFoldsAndADynamicBatchIsOneSample) {
  Graph g({1, 4, 6, 6});
  g.graph->mutable_input(0)->mutable_type()->mutable_tensor_type()->mutable_shape()->mutable_dim(0)->set_dim_param("N");
  g.weight("w", {8, 4, 1, 1});
  for (const char* p : {"s", "b", "m", "v"}) g.weight(p, {8});
  for (const char* p : {"s2", "b2", "m2", "v2"}) g.weight(p, {8});
  g.node("Conv", "conv", {"x", "w"}, "c");
  g.node("BatchNormalization", "bn", {"c", "s", "b", "m", "v"}, "n");
  g.node("Relu", "relu", {"n"}, "r");
  g.node("Add", "double", {"r", "n"}, "a");
  g.node("BatchNormalization", "bn2", {"a", "s2", "b2", "m2", "v2"}, "y");
  const auto net = lower(g.bytes("y"));
  ASSERT_EQ(net.layers.size(), 4u);  // conv+bn, relu (n has two readers), add, bn2
  EXPECT_EQ(net.layers[0].params, 8u * 4 + 8);
  EXPECT_EQ(net.layers[1].name, "relu");
  EXPECT_EQ(net.layers[2].type, workloads::LayerType::add);
  EXPECT_EQ(net.layers[3].params, 16u);
  EXPECT_EQ(net.total_params, 8u * 4 + 8 + 16);
  EXPECT_EQ(net.input, (workloads::TensorShape{6, 6, 4}));
}

// onnxruntime's FusedConv is a convolution with its activation fused; a constant subgraph of
// any op (here a ScatterND building a mask) costs nothing.
TEST(OnnxLowering, FusedConvAndConstantSubgraphs) {
  Graph g({1, 3, 8, 8});
  auto* microsoft = g.model.add_opset_import();
  microsoft->set_domain("com.microsoft");
  microsoft->set_version(1);
  g.weight("w", {4, 3, 3, 3});
  g.weight("b", {4});
  auto* fused = g.node("FusedConv", "fused", {"x", "w", "b"}, "c");
  fused->set_domain("com.microsoft");
  Graph::attribute(fused, "pads", {1, 1, 1, 1});
  g.weight("zeros", {1, 4, 8, 8});
  g.ints("where", {0, 0, 0, 0});
  g.weight("update", {1});
  g.node("ScatterND", "mask", {"zeros", "where", "update"}, "m");
  g.node("Add", "masked", {"c", "m"}, "y");
  const auto net = lower(g.bytes("y"));
  ASSERT_EQ(net.layers.size(), 1u);  // the masked add runs in the convolution's epilogue
  EXPECT_EQ(net.layers[0].op, "FusedConv");
  EXPECT_EQ(net.layers[0].macs, 8u * 8 * 4 * 27);
  EXPECT_EQ(net.layers[0].params, 4u * 27 + 4);  // a constant computed from several is no parameter
}

// Half-precision weights cast up before use are still the layer's parameters.
TEST(OnnxLowering, WeightsCastFromHalfPrecisionCount) {
  Graph g({1, 3, 4, 4});
  auto* half = g.graph->add_initializer();
  half->set_name("w16");
  half->set_data_type(onnx::TensorProto::FLOAT16);
  for (const std::int64_t d : {2, 3, 1, 1}) half->add_dims(d);
  for (int i = 0; i < 6; ++i) half->add_int32_data(0x3C00);  // 1.0 in IEEE half precision
  auto* cast = g.node("Cast", "to_float", {"w16"}, "w");
  Graph::attribute(cast, "to", onnx::TensorProto::FLOAT);
  g.node("Conv", "conv", {"x", "w"}, "y");
  const auto net = lower(g.bytes("y"));
  ASSERT_EQ(net.layers.size(), 1u);
  EXPECT_EQ(net.total_params, 6u);
}

// A transposed convolution: each of the 4 x 4 input positions times 8 input channels gives a
// 3 x 3 patch of 2 output channels; output (4 - 1) * 2 - 1 - 1 + 3 + 1 = 8 per side.
TEST(OnnxLowering, ConvTransposeIsAGemmOverInputPositions) {
  Graph g({1, 8, 4, 4});
  g.weight("w", {8, 2, 3, 3});
  auto* up = g.node("ConvTranspose", "up", {"x", "w"}, "y");
  Graph::attribute(up, "strides", {2, 2});
  Graph::attribute(up, "pads", {1, 1, 1, 1});
  Graph::attribute(up, "output_padding", {1, 1});
  const auto net = lower(g.bytes("y"));
  ASSERT_EQ(net.layers.size(), 1u);
  EXPECT_EQ(net.layers[0].macs, 4u * 4 * 8 * 2 * 9);
  EXPECT_EQ(net.layers[0].output, (workloads::TensorShape{8, 8, 2}));
  EXPECT_EQ(net.layers[0].params, 8u * 2 * 9);
}

// A convolution over a tensor that a reshape made a batch of 4 images runs 4 GEMMs.
TEST(OnnxLowering, AConvolutionOverSeveralImagesCountsEach) {
  Graph g({1, 8, 6, 6});
  g.ints("shape", {4, 2, 6, 6});
  g.node("Reshape", "frames", {"x", "shape"}, "f");
  g.weight("w", {3, 2, 3, 3});
  g.node("Conv", "conv", {"f", "w"}, "y");
  const auto net = lower(g.bytes("y"));
  ASSERT_EQ(net.layers.size(), 1u);
  EXPECT_EQ(net.layers[0].macs, 4u * 4 * 4 * 3 * 2 * 9);
  EXPECT_EQ(net.layers[0].output, (workloads::TensorShape{16, 4, 3}));
}

// Graphs as converters and hand edits leave them: nodes out of order (sorted before import), an
// input no node reads (ignored), and weights written as Constant nodes rather than initializers
// (parameters where a GEMM reads them; a Constant scale for a Mul stays a literal).
TEST(OnnxLowering, UnsortedNodesUnusedInputsAndConstantWeights) {
  Graph g({1, 6});
  auto* unused = g.graph->add_input();
  unused->set_name("ignored");
  unused->mutable_type()->mutable_tensor_type()->set_elem_type(onnx::TensorProto::FLOAT);
  unused->mutable_type()->mutable_tensor_type()->mutable_shape()->add_dim()->set_dim_value(3);
  g.node("Mul", "scale", {"h", "two"}, "y");
  g.node("MatMul", "fc", {"x", "w"}, "h");
  g.constant("w", {6, 4});
  g.constant("two", {4});
  const auto net = lower(g.bytes("y"));
  ASSERT_EQ(net.layers.size(), 1u);  // the scale runs in the MatMul's epilogue
  EXPECT_EQ(net.layers[0].name, "fc");
  EXPECT_EQ(net.total_macs, 6u * 4);
  EXPECT_EQ(net.total_params, 6u * 4);

  Graph loop({1, 4});
  loop.node("Relu", "a", {"b_out"}, "a_out");
  loop.node("Add", "b", {"x", "a_out"}, "b_out");
  EXPECT_EQ(import_error(loop.bytes("b_out")), "t.onnx: node a (Relu, opset 17): its inputs depend on a cycle of nodes: allowed an acyclic graph");
  Graph missing({1, 4});
  missing.node("MatMul", "fc", {"x", "w"}, "y");
  EXPECT_EQ(import_error(missing.bytes("y")),
            "t.onnx: node fc (MatMul, opset 17): reads w, which is no initializer, graph input or node output: allowed a graph whose "
            "tensors are all written");
}

// torch.onnx.export(..., export_params=False) declares the weights as graph inputs with no
// initializer: inputs read only where weights go (directly or through an exporter's Identity
// copy) are weights, counted from their shapes; a second data input is still refused.
TEST(OnnxLowering, WeightsDeclaredAsInputsWithoutValues) {
  const auto declare = [](Graph& g, const std::string& name, const std::vector<std::int64_t>& dims) {
    auto* in = g.graph->add_input();
    in->set_name(name);
    in->mutable_type()->mutable_tensor_type()->set_elem_type(onnx::TensorProto::FLOAT);
    for (const auto d : dims) in->mutable_type()->mutable_tensor_type()->mutable_shape()->add_dim()->set_dim_value(d);
  };
  Graph g({1, 3, 8, 8});
  declare(g, "w", {4, 3, 3, 3});
  declare(g, "b", {4});
  g.node("Identity", "copy", {"b"}, "b2");
  g.node("Conv", "conv", {"x", "w", "b"}, "c");
  g.weight("w2", {4, 4, 1, 1});
  g.node("Conv", "conv2", {"c", "w2", "b2"}, "y");
  const auto net = lower(g.bytes("y"));
  ASSERT_EQ(net.layers.size(), 2u);
  EXPECT_EQ(net.total_macs, 6u * 6 * 4 * 27 + 6u * 6 * 4 * 4);  // unpadded: 6 x 6 positions
  EXPECT_EQ(net.total_params, 4u * 27 + 4 + 16 + 4);

  Graph two({1, 4});
  declare(two, "other", {1, 4});
  two.node("Add", "sum", {"x", "other"}, "y");
  EXPECT_EQ(import_error(two.bytes("y")), "t.onnx: the graph has 2 data inputs (x, other): allowed one (the image or sequence a sample is)");
}

// Older opsets as torch.onnx.export writes them: Resize of opset 10 takes its scales as input 1
// (roi came in at 11), and opset 8 computes a reshape's shape in doubles cast to integers.
TEST(OnnxLowering, OpsetTenResizeAndShapesInDoubles) {
  Graph g({1, 2, 5, 5}, 10);
  auto* scales = g.graph->add_initializer();
  scales->set_name("scales");
  scales->set_data_type(onnx::TensorProto::FLOAT);
  scales->add_dims(4);
  for (const float f : {1.0f, 1.0f, 2.0f, 2.0f}) scales->add_float_data(f);
  g.node("Resize", "up", {"x", "scales"}, "u");
  auto* heads = g.graph->add_initializer();
  heads->set_name("heads");
  heads->set_data_type(onnx::TensorProto::DOUBLE);
  heads->add_dims(3);
  for (const double d : {1.0, 4.0, 50.0}) heads->add_double_data(d);
  auto* cast = g.node("Cast", "to_int", {"heads"}, "shape");
  Graph::attribute(cast, "to", onnx::TensorProto::INT64);
  g.node("Reshape", "split_heads", {"u", "shape"}, "r");
  g.node("Softmax", "softmax", {"r"}, "y");
  const auto net = lower(g.bytes("y"));
  ASSERT_EQ(net.layers.size(), 2u);
  EXPECT_EQ(net.layers[0].output, (workloads::TensorShape{10, 10, 2}));  // [1, 2, 10, 10]
  EXPECT_EQ(net.layers[1].output, (workloads::TensorShape{4, 1, 50}));   // [1, 4, 50]
}

// A quantized (QDQ) graph as onnxruntime's quantizer writes it: the Quantize/Dequantize pairs
// are free, and the 8-bit weights and 32-bit bias behind them are the convolution's parameters.
TEST(OnnxLowering, QuantizeDequantizePairsAreFreeAndKeepTheirWeights) {
  Graph g({1, 3, 8, 8}, 13);
  const auto tensor = [&](const std::string& name, onnx::TensorProto::DataType type, const std::vector<std::int64_t>& dims) {
    auto* t = g.graph->add_initializer();
    t->set_name(name);
    t->set_data_type(type);
    std::int64_t n = 1;
    for (const auto d : dims) {
      t->add_dims(d);
      n *= d;
    }
    t->set_raw_data(std::string(static_cast<std::size_t>(n) * (type == onnx::TensorProto::INT32 ? 4 : 1), '\1'));
  };
  g.weight("scale", {});
  tensor("zero", onnx::TensorProto::UINT8, {});
  tensor("w8", onnx::TensorProto::INT8, {4, 3, 3, 3});
  tensor("b32", onnx::TensorProto::INT32, {4});
  g.node("QuantizeLinear", "q", {"x", "scale", "zero"}, "xq");
  g.node("DequantizeLinear", "dq", {"xq", "scale", "zero"}, "xd");
  g.node("DequantizeLinear", "dq_w", {"w8", "scale"}, "w");
  g.node("DequantizeLinear", "dq_b", {"b32", "scale"}, "b");
  auto* conv = g.node("Conv", "conv", {"xd", "w", "b"}, "y");
  Graph::attribute(conv, "pads", {1, 1, 1, 1});
  const auto net = lower(g.bytes("y"));
  ASSERT_EQ(net.layers.size(), 1u);
  EXPECT_EQ(net.layers[0].macs, 8u * 8 * 4 * 27);
  EXPECT_EQ(net.total_params, 4u * 27 + 4);
}

// A bidirectional LSTM over 5 steps is one GEMM of 5 rows x (8 inputs + 6 hidden) x 4 gates of
// 6, per direction; its initial state is data, not a parameter.
TEST(OnnxLowering, AnLstmIsOneGemmOverItsSteps) {
  Graph g({1, 5, 8});  // batch first, transposed to steps first as torch.onnx.export writes it
  auto* steps_first = g.node("Transpose", "steps_first", {"x"}, "xt");
  Graph::attribute(steps_first, "perm", {1, 0, 2});
  g.weight("w", {2, 24, 8});
  g.weight("r", {2, 24, 6});
  g.weight("b", {2, 48});
  g.weight("h0", {2, 1, 6});
  auto* lstm = g.graph->add_node();
  lstm->set_op_type("LSTM");
  lstm->set_name("lstm");
  for (const char* in : {"xt", "w", "r", "b", "", "h0"}) lstm->add_input(in);
  for (const char* out : {"all", "last"}) lstm->add_output(out);
  Graph::attribute(lstm, "hidden_size", 6);
  g.node("Relu", "relu", {"last"}, "y");
  const auto net = lower(g.bytes("y"));
  ASSERT_EQ(net.layers.size(), 1u);  // the relu runs in the epilogue
  EXPECT_EQ(net.layers[0].work.gemm.groups, 2u);
  EXPECT_EQ(net.total_macs, 5u * (8 + 6) * 24 * 2);
  EXPECT_EQ(net.total_params, 2u * 24 * 8 + 2 * 24 * 6 + 2 * 48);
}

// A model returning its features and its logits: the exit follows the logits, the last layer
// any output needs (two heads in parallel end the backbone in two layers, which is refused).
TEST(OnnxLowering, SeveralOutputsKeepEveryHead) {
  Graph g({1, 8});
  g.weight("w1", {8, 4});
  g.weight("w2", {4, 3});
  g.graph->add_output()->set_name("f");
  g.node("MatMul", "features", {"x", "w1"}, "f");
  g.node("MatMul", "logits", {"f", "w2"}, "l");
  const auto net = lower(g.bytes("l"));
  ASSERT_EQ(net.layers.size(), 2u);
  EXPECT_EQ(net.layers[1].name, "logits");
  EXPECT_EQ(net.total_macs, 8u * 4 + 4 * 3);

  Graph constant({1, 8});
  constant.node("Shape", "shape", {"x"}, "s");
  EXPECT_EQ(import_error(constant.bytes("s")),
            "t.onnx: no output (s) is computed from the input: allowed a graph whose output depends on its input");
}

// A classifier's top-3 and the ops of a causal mask on activations: TopK reads its input once
// and writes k values and indices; CumSum and GatherElements are vector passes; Trilu fuses.
TEST(OnnxLowering, TopKCumSumAndGatherElementsAreVectorWork) {
  Graph g({1, 16});
  g.weight("w", {16, 10});
  g.node("MatMul", "fc", {"x", "w"}, "l");
  g.ints("k", {3});
  auto* top = g.graph->add_node();
  top->set_op_type("TopK");
  top->set_name("top3");
  for (const char* in : {"l", "k"}) top->add_input(in);
  for (const char* out : {"values", "indices"}) top->add_output(out);
  g.ints("axis", {1});
  g.node("CumSum", "running", {"values", "axis"}, "c");
  g.node("GatherElements", "pick", {"c", "indices"}, "p");
  g.node("Trilu", "upper", {"p"}, "y");
  const auto net = lower(g.bytes("y"));
  ASSERT_EQ(net.layers.size(), 4u);  // fc, top3, running, pick (the Trilu in its epilogue)
  EXPECT_EQ(net.layers[1].name, "top3");
  EXPECT_EQ(net.layers[1].output, (workloads::TensorShape{1, 1, 10}));  // the pass reads all 10
  EXPECT_EQ(net.layers[3].output, (workloads::TensorShape{1, 1, 3}));
  EXPECT_EQ(net.total_macs, 160u);
}

// PixelShuffle (DepthToSpace) and its inverse are views; a 3-D convolution is the GEMM its
// im2col gives, with exact MACs: 4 x 8 x 8 positions x 6 filters x 2 x 3 x 3 x 3; a 3-D pool is
// a vector pass.
TEST(OnnxLowering, DepthToSpaceIsAViewAndConv3dAGemm) {
  Graph g({1, 32, 4, 4});
  auto* shuffle = g.node("DepthToSpace", "shuffle", {"x"}, "s");
  Graph::attribute(shuffle, "blocksize", 2);
  g.ints("shape", {1, 2, 4, 8, 8});
  g.node("Reshape", "volume", {"s", "shape"}, "v");
  g.weight("w", {6, 2, 3, 3, 3});
  auto* conv = g.node("Conv", "conv3d", {"v", "w"}, "c");
  Graph::attribute(conv, "pads", {1, 1, 1, 1, 1, 1});
  auto* back = g.node("SpaceToDepth", "unshuffle", {"x"}, "u");
  Graph::attribute(back, "blocksize", 4);
  auto* pool = g.node("MaxPool", "pool3d", {"c"}, "p");
  Graph::attribute(pool, "kernel_shape", {1, 3, 3});
  Graph::attribute(pool, "strides", {1, 2, 2});
  Graph::attribute(pool, "pads", {0, 1, 1, 0, 1, 1});
  // And back up: each of the 4 x 4 x 4 pooled positions times 6 channels gives a 2 x 2 x 2 patch
  // of 3 output channels.
  g.weight("up_w", {6, 3, 2, 2, 2});
  auto* up = g.node("ConvTranspose", "up3d", {"p", "up_w"}, "u3");
  Graph::attribute(up, "strides", {2, 2, 2});
  g.node("GlobalAveragePool", "pool", {"u3"}, "y");
  const auto net = lower(g.bytes("y"));
  ASSERT_EQ(net.layers.size(), 4u);
  EXPECT_EQ(net.layers[2].macs, 64u * 6 * 3 * 8);
  EXPECT_EQ(net.layers[2].output, (workloads::TensorShape{64, 8, 3}));  // [1, 3, 8, 8, 8]
  EXPECT_EQ(net.layers[1].output, (workloads::TensorShape{16, 4, 6}));  // [1, 6, 4, 4, 4]
  EXPECT_EQ(net.layers[0].name, "conv3d");
  EXPECT_EQ(net.layers[0].macs, 4u * 8 * 8 * 6 * 2 * 27);
  EXPECT_EQ(net.layers[0].params, 6u * 2 * 27);
  EXPECT_EQ(net.layers[0].output, (workloads::TensorShape{32, 8, 6}));

  Graph odd({1, 6, 4, 4});
  auto* bad = odd.node("DepthToSpace", "shuffle", {"x"}, "y");
  Graph::attribute(bad, "blocksize", 2);
  EXPECT_EQ(import_error(odd.bytes("y")),
            "t.onnx: node shuffle (DepthToSpace, opset 17): blocksize 2 for input [1, 6, 4, 4]: allowed N x C x H x W with C divisible by "
            "it squared");
}

// Einsum as MaxViT writes attention: Q.K^T over 2 windows x 4 heads of 16 tokens x 8 is a
// batched GEMM of two activations; a weight einsum stacks the batch along R and counts its
// weight; a one-operand einsum that only reorders is free.
TEST(OnnxLowering, EinsumIsAGemm) {
  Graph g({1, 2, 4, 16, 8});
  const auto equation = [](onnx::NodeProto* n, const std::string& text) {
    auto* a = n->add_attribute();
    a->set_name("equation");
    a->set_type(onnx::AttributeProto::STRING);
    a->set_s(text);
  };
  equation(g.node("Einsum", "scores", {"x", "x"}, "s"), "B G H I D, B G H J D -> B G H I J");
  // Implicit output, as numpy: the broadcast axes, then the letters used once, sorted (...di).
  equation(g.node("Einsum", "mix", {"s", "x"}, "m"), "...ij,...jd");
  equation(g.node("Einsum", "swap", {"m"}, "t"), "bghdi->bghid");
  g.weight("w", {8, 5});
  equation(g.node("Einsum", "proj", {"t", "w"}, "y"), "bghid,de->bghie");
  const auto net = lower(g.bytes("y"));
  ASSERT_EQ(net.layers.size(), 3u);
  EXPECT_EQ(net.layers[0].work.gemm.groups, 8u);
  EXPECT_EQ(net.layers[0].macs, 8u * 16 * 16 * 8);
  EXPECT_EQ(net.layers[1].macs, 8u * 16 * 16 * 8);
  EXPECT_EQ(net.layers[1].output, (workloads::TensorShape{32, 16, 2}));  // [1, 2, 4, 8, 16]
  EXPECT_EQ(net.layers[2].work.gemm.groups, 1u);
  EXPECT_EQ(net.layers[2].macs, 128u * 8 * 5);
  EXPECT_EQ(net.total_params, 8u * 5);

  Graph bad({1, 4});
  equation(bad.node("Einsum", "e", {"x"}, "y"), "ijk->i");
  EXPECT_EQ(import_error(bad.bytes("y")),
            "t.onnx: node e (Einsum, opset 17): equation ijk->i: term ijk for operand [1, 4]: allowed letters, commas, one ... per term and ->");
}

TEST(OnnxErrors, UnsupportedOpsMalformedAndTruncatedFilesGetOneLine) {
  Graph g({1, 4, 6, 6});
  g.node("Relu", "relu", {"x"}, "r");
  g.node("NonZero", "nonzero", {"r"}, "y");
  const std::string unsupported = import_error(g.bytes("y"));
  EXPECT_EQ(unsupported.rfind("t.onnx: node nonzero: op NonZero (opset 17) is not supported: allowed Abs, Add, And, ArgMax", 0),
            0u)
      << unsupported;
  EXPECT_NE(unsupported.find("com.microsoft.FusedConv"), std::string::npos);
  EXPECT_EQ(unsupported.find('\n'), std::string::npos);

  Graph good({1, 4, 6, 6});
  good.weight("w", {8, 4, 3, 3});
  good.node("Conv", "conv", {"x", "w"}, "y");
  const std::string bytes = good.bytes("y");
  std::mt19937 random(7);
  std::string noise(4096, '\0');
  for (auto& ch : noise) ch = static_cast<char>(random());
  for (const std::string& bad : {bytes.substr(0, bytes.size() / 2), bytes.substr(0, bytes.size() - 3), noise, std::string()}) {
    const std::string error = import_error(bad);
    EXPECT_EQ(error.rfind("t.onnx: ", 0), 0u) << error;
    EXPECT_EQ(error.find('\n'), std::string::npos) << error;
  }
  // Found by the fuzzer: a Concat of scalars, and a node that writes nothing.
  Graph scalars({1, 4});
  scalars.ints("a", {});
  scalars.graph->mutable_initializer(0)->clear_dims();
  scalars.graph->mutable_initializer(0)->add_int64_data(3);
  scalars.node("Concat", "joined", {"a", "a"}, "j");
  EXPECT_EQ(import_error(scalars.bytes("j")), "t.onnx: node joined (Concat, opset 17): axis 0 of a rank-0 tensor");
  Graph silent({1, 4});
  silent.node("Relu", "relu", {"x"}, "r");
  silent.graph->mutable_node(0)->clear_output();
  EXPECT_EQ(import_error(silent.bytes("r")), "t.onnx: node relu (Relu, opset 17): has no output: allowed nodes that write a tensor");

  // A dynamic height or width, and an input without a batch dimension (a detection model's list
  // of C x H x W images), are named with the input's declared dimensions.
  Graph spatial({1, 3, 8, 8});
  spatial.graph->mutable_input(0)->mutable_type()->mutable_tensor_type()->mutable_shape()->mutable_dim(2)->set_dim_param("h");
  spatial.node("Relu", "relu", {"x"}, "y");
  EXPECT_EQ(import_error(spatial.bytes("y")),
            "t.onnx: input x [1, 3, h, 8]: dimension 2 is dynamic (h): allowed a fixed size (only the batch, dimension 0, may be "
            "dynamic: export without dynamic_axes on the others)");
  Graph images({3, 32, 32});
  images.node("Relu", "relu", {"x"}, "y");
  EXPECT_EQ(import_error(images.bytes("y")),
            "t.onnx: input x [3, 32, 32]: dimension 0, the batch, is 3: allowed 1 or dynamic (npusim counts one sample's work; "
            "export one sample with its batch dimension, an image as 1 x C x H x W)");

  EXPECT_EQ(import_error(noise),
            "t.onnx: not an ONNX model (the protobuf does not parse: malformed or truncated): allowed a model saved by "
            "torch.onnx.export or onnx.save");
}

// `after:` naming nothing gets the closest names; unknown keys are errors.
TEST_F(OnnxOverlay, MistakesAreNamedAndAClassifierMayBeAnOnnxFile) {
  Graph g({1, 4, 6, 6});
  g.weight("w", {8, 4, 3, 3});
  g.node("Conv", "stem_conv", {"x", "w"}, "c");
  g.node("Relu", "stem_relu", {"c"}, "r");
  g.node("GlobalAveragePool", "pool", {"r"}, "p");
  g.node("Flatten", "flat", {"p"}, "f");
  g.weight("fc_w", {10, 8});
  auto* fc = g.node("Gemm", "fc", {"f", "fc_w"}, "y");
  Graph::attribute(fc, "transB", 1);
  write("net.onnx", g.bytes("y"));
  const auto error = [&](const std::string& exits) {
    write("overlay.yaml", "network:\n  name: t\n  backbone: net.onnx\n  exits:\n" + exits);
    try {
      sim::load_model((dir_ / "overlay.yaml").string());
    } catch (const sim::ConfigError& e) {
      return std::string(e.what()).substr((dir_ / "overlay.yaml").string().size());
    } catch (const workloads::NetworkError& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_EQ(error("    - {name: e1, after: stem_rel, probability: 0.5, classes: 4}\n"),
            ":5: network.exits[0].after = stem_rel: allowed a node or tensor name of " + (dir_ / "net.onnx").string() +
                "; closest: stem_relu, stem_conv, pool");
  EXPECT_EQ(error("    - {name: e1, after: stem_relu, probability: 0.5, clases: 4}\n"),
            ":5: network.exits[0].clases is not a known key: allowed keys are name, after, probability, classes, classifier");
  EXPECT_EQ(error("    - {name: e1, after: x, probability: 0.5, classes: 4}\n"),
            ":5: network.exits[0].after = x: allowed a node or tensor computed from the input (this is the input, a "
            "constant, or unused)");
  // The relu is fused into the convolution: naming either puts the exit after that layer.
  EXPECT_EQ(error("    - {name: e1, after: stem_relu, probability: 0.5, classes: 4}\n"), "");
  const auto net = sim::load_model((dir_ / "overlay.yaml").string());
  EXPECT_EQ(net.layers[net.exits[0].after_layer].name, "stem_conv");
  EXPECT_EQ(net.exits[0].classifier_layers.size(), 2u);
  EXPECT_EQ(net.total_params, 8u * 4 * 9 + 10 * 8 + 4 * 8 + 4);  // backbone, then the exit's FC with bias

  // A second ONNX file as the classifier: its input is the tensor the exit hangs off.
  Graph head({1, 8, 4, 4});
  head.node("GlobalAveragePool", "gap", {"x"}, "p");
  head.node("Flatten", "flat", {"p"}, "f");
  head.weight("w", {8, 3});
  head.node("MatMul", "proj", {"f", "w"}, "y");
  write("head.onnx", head.bytes("y"));
  EXPECT_EQ(error("    - {name: e1, after: c, probability: 0.25, classifier: head.onnx}\n"), "");
  const auto with_head = sim::load_model((dir_ / "overlay.yaml").string());
  ASSERT_EQ(with_head.exits[0].classifier_layers.size(), 2u);
  EXPECT_EQ(with_head.layers[with_head.exits[0].classifier_layers[1]].name, "e1.proj");
  EXPECT_DOUBLE_EQ(with_head.exits[1].probability, 0.75);

  // A scenario names the bare model as a device's model: one exit, the model's output.
  write("scenario.yaml", "name: s\ndevices:\n  - {name: cam, model: net.onnx, arrival: {process: poisson, rate_hz: 5}, "
                         "slo_ms: 10}\nscheduler: {policy: fcfs}\nsimulation: {seed: 1, samples: 5}\n");
  const auto scenario = sim::load_scenario((dir_ / "scenario.yaml").string());
  ASSERT_EQ(scenario.models.count("net.onnx"), 1u);
  EXPECT_EQ(scenario.models.at("net.onnx").exits.size(), 1u);
  EXPECT_EQ(scenario.models.at("net.onnx").total_macs, 4u * 4 * 8 * 4 * 9 + 10 * 8);
}

}  // namespace
}  // namespace npusim
