// Early-exit networks: the zoo against published totals, graph validation, the SCALE-Sim
// importer, and the error each malformed file gets.

#include <fstream>
#include <sstream>

#include <gtest/gtest.h>

#include "sim/network_yaml.hpp"
#include "workloads/scalesim_csv.hpp"

namespace npusim {
namespace {

workloads::LoweredNetwork from_yaml(const std::string& yaml) {
  return workloads::lower_network(sim::parse_network(sim::ConfigNode::load_text(yaml, "net.yaml"), "."));
}

std::string error_of(const std::string& yaml) {
  try {
    from_yaml(yaml);
  } catch (const workloads::NetworkError& e) {
    return e.what();
  } catch (const sim::ConfigError& e) {
    return e.what();
  }
  return "";
}

// Published per-image totals: MACs of convolutions and FC layers, weights plus FC biases
// (batch-norm parameters excluded: about 0.2 % of each).
struct Published {
  const char* name;
  double gmacs;
  double million_params;
};

class Zoo : public ::testing::TestWithParam<Published> {};

TEST_P(Zoo, BackboneMatchesThePublishedTotalsWithinOnePercent) {
  const auto& expected = GetParam();
  const auto net = sim::load_model(expected.name);
  EXPECT_NEAR(static_cast<double>(net.backbone_macs) / 1e9, expected.gmacs, 0.01 * expected.gmacs);
  EXPECT_NEAR(static_cast<double>(net.backbone_params) / 1e6, expected.million_params,
              0.01 * expected.million_params);
  // Exits: six early exits by depth, then the final one; probabilities sum to 1.
  ASSERT_EQ(net.exits.size(), 7u);
  double sum = 0;
  for (std::size_t e = 0; e < net.exits.size(); ++e) {
    sum += net.exits[e].probability;
    if (e > 0) {
      EXPECT_GT(net.exits[e].after_layer, net.exits[e - 1].after_layer);
      EXPECT_GT(net.exits[e].macs_to_exit, net.exits[e - 1].macs_to_exit);
    }
  }
  EXPECT_NEAR(sum, 1.0, 1e-9);
  EXPECT_EQ(net.exits.back().after_layer, net.layers.size() - 1);
  EXPECT_EQ(net.exits.back().macs_to_exit, net.total_macs);
  // Each early exit's classifier layers follow its attach point in execution order.
  for (std::size_t e = 0; e + 1 < net.exits.size(); ++e)
    for (std::size_t i = 0; i < net.exits[e].classifier_layers.size(); ++i)
      EXPECT_EQ(net.exits[e].classifier_layers[i], net.exits[e].after_layer + 1 + i);
}

INSTANTIATE_TEST_SUITE_P(
    Published, Zoo,
    ::testing::Values(Published{"resnet56", 0.1258, 0.855},       // He et al. 2016 (CIFAR-100 head)
                      Published{"resnet50", 4.089, 25.50},        // 4.1 GMAC, 25.6 M with BN
                      Published{"mobilenetv2", 0.3006, 3.47},     // 300 MMAC, 3.4-3.5 M
                      Published{"vgg16", 15.47, 138.36},          // 15.5 GMAC, 138 M
                      Published{"inception_v3", 5.713, 23.80}),   // 5.7 GMAC, 23.8 M (no aux)
    [](const auto& param_info) { return std::string(param_info.param.name); });

TEST(Network, ShapeInferenceAndLoweringOfResNet50Conv1) {
  const auto net = sim::load_model("resnet50");
  const auto& conv1 = net.layers.front();
  EXPECT_EQ(conv1.output, (workloads::TensorShape{112, 112, 64}));
  EXPECT_EQ(conv1.work.gemm, (npu::GemmShape{112 * 112, 7 * 7 * 3, 64, 1, {224, 224, 7, 7, 2, 2, 3, 3}}));
  EXPECT_EQ(conv1.macs, 112ull * 112 * 147 * 64);
}

TEST(Network, DepthwiseLayersLowerToGroups) {
  const auto net = sim::load_model("mobilenetv2");
  bool found = false;
  for (const auto& l : net.layers)
    if (l.name == "block2.depthwise") {
      found = true;
      EXPECT_EQ(l.work.gemm, (npu::GemmShape{56 * 56, 9, 1, 96, {112, 112, 3, 3, 2, 2, 1, 1}}));  // 112 -> 56, 16 * 6 channels
    }
  EXPECT_TRUE(found);
}

const char* const tiny_header = R"(network:
  name: tiny
  input: {height: 8, width: 8, channels: 3}
)";

TEST(Network, BranchesJoinAndExitsAttach) {
  const auto net = from_yaml(std::string(tiny_header) + R"(  layers:
    - {name: a, type: conv, out_channels: 4, kernel: 3, padding: 1}
    - {name: b1, type: conv, out_channels: 4, kernel: 1, inputs: [a]}
    - {name: b2, type: conv, out_channels: 4, kernel: 3, padding: 1, inputs: [a]}
    - {name: sum, type: add, inputs: [b1, b2]}
    - {name: cat, type: concat, inputs: [sum, a]}
    - {name: pool, type: global_avgpool}
    - {name: fc, type: fc, out_channels: 10, bias: true, in_features: 8}
  exits:
    - {name: final, after: fc, probability: 0.7}
    - name: early
      after: sum
      probability: 0.3
      classifier:
        - {name: early.pool, type: global_avgpool}
        - {name: early.fc, type: fc, out_channels: 10}
)");
  ASSERT_EQ(net.layers.size(), 9u);
  EXPECT_EQ(net.layers[4].name, "early.pool");  // right after its attach point, sum (#3)
  EXPECT_EQ(net.exits.front().name, "early");   // exits sorted by depth
  EXPECT_EQ(net.layers[6].output, (workloads::TensorShape{8, 8, 8}));  // concat 4 + 4
  EXPECT_EQ(net.layers.back().params, 8u * 10u + 10u);
  // early exit: a (8*8*27*4) + b1 (8*8*4*4) + b2 (8*8*36*4) + its fc (4*10)
  EXPECT_EQ(net.exits.front().macs_to_exit, 8u * 8 * 27 * 4 + 8u * 8 * 4 * 4 + 8u * 8 * 36 * 4 + 40u);
  // Live activations at each boundary, per sample. Order: a b1 b2 sum early.pool early.fc cat
  // pool fc. An 8x8x4 tensor is 256 elements; a is read by b1, b2 and cat, sum by early.pool
  // and cat, so both stay live across the exit.
  const std::vector<std::uint64_t> live{
      192,              // before a: the 8x8x3 input
      256,              // a
      256 + 256,        // a, b1
      256 + 256 + 256,  // a, b1, b2
      256 + 256,        // a, sum
      256 + 256 + 4,    // a, sum, early.pool (1x1x4)
      256 + 256,        // a, sum (early.fc's output is read by nobody)
      512,              // cat (8x8x8)
      8};               // pool
  for (std::size_t b = 0; b < live.size(); ++b) EXPECT_EQ(net.layers[b].live_elements_before, live[b]) << b;
}

TEST(Network, ShapeMismatchIsNamed) {
  EXPECT_EQ(error_of(std::string(tiny_header) + R"(  layers:
    - {name: a, type: conv, out_channels: 4, kernel: 3}
    - {name: b, type: conv, out_channels: 4, kernel: 3, padding: 1, inputs: [input]}
    - {name: sum, type: add, inputs: [a, b]}
  exits:
    - {name: final, after: sum, probability: 1}
)"),
            "net.yaml:7: layer sum: input shapes do not match: a is 6x6x4 but b is 8x8x4");
  EXPECT_EQ(error_of(std::string(tiny_header) + R"(  layers:
    - {name: a, type: conv, out_channels: 4, kernel: 3, in_channels: 4}
  exits:
    - {name: final, after: a, probability: 1}
)"),
            "net.yaml:5: layer a: declares 4 input channels but input gives 3 (8x8x3)");
}

TEST(Network, CycleIsNamed) {
  EXPECT_EQ(error_of(std::string(tiny_header) + R"(  layers:
    - {name: a, type: conv, out_channels: 3, kernel: 1, inputs: [c]}
    - {name: b, type: conv, out_channels: 3, kernel: 1}
    - {name: c, type: add, inputs: [b, input]}
  exits:
    - {name: final, after: c, probability: 1}
)"),
            "net.yaml:7: layer c: its output feeds a, which it depends on: the layers form a cycle");
}

TEST(Network, UnknownTypeMissingExitLayerAndBadProbabilities) {
  EXPECT_EQ(error_of(std::string(tiny_header) + R"(  layers:
    - {name: a, type: convolution, out_channels: 3}
  exits: []
)"),
            "net.yaml:5: network.layers[0].type = convolution: allowed a layer type: conv, fc, "
            "maxpool, avgpool, global_avgpool, add, concat");
  EXPECT_EQ(error_of(std::string(tiny_header) + R"(  layers:
    - {name: a, type: conv, out_channels: 3, kernel: 1}
  exits:
    - {name: final, after: a, probability: 0.5}
    - {name: e1, after: nope, probability: 0.5, classifier: [{name: p, type: global_avgpool}]}
)"),
            "net.yaml:8: exit e1: after = nope is not a backbone layer");
  EXPECT_EQ(error_of(std::string(tiny_header) + R"(  layers:
    - {name: a, type: conv, out_channels: 3, kernel: 1}
    - {name: b, type: conv, out_channels: 3, kernel: 1}
  exits:
    - {name: final, after: b, probability: 0.5}
    - {name: e1, after: a, probability: 0.4, classifier: [{name: p, type: global_avgpool}]}
)"),
            "net.yaml: exit probabilities sum to 0.9, not 1");
  EXPECT_EQ(error_of(std::string(tiny_header) + R"(  layers:
    - {name: a, type: conv, out_channels: 3, kernel: 1}
  exits:
    - {name: final, after: a, probability: 1.5}
)"),
            "net.yaml:7: exit final: probability = 1.5: allowed a number in [0, 1]");
}

TEST(Network, OtherRuleBreaks) {
  EXPECT_EQ(error_of(std::string(tiny_header) + R"(  layers:
    - {name: a, type: conv, out_channels: 3, kernel: 1}
    - {name: a, type: conv, out_channels: 3, kernel: 1}
  exits:
    - {name: final, after: a, probability: 1}
)"),
            "net.yaml:6: layer a: duplicate layer name");
  EXPECT_EQ(error_of(std::string(tiny_header) + R"(  layers:
    - {name: a, type: conv, out_channels: 3, kernel: 1}
    - {name: b, type: conv, out_channels: 3, kernel: 1, inputs: [input]}
  exits:
    - {name: final, after: b, probability: 1}
)"),
            "net.yaml: the backbone must end in one layer (the final classifier); it ends in 2: a, b");
  EXPECT_EQ(error_of(std::string(tiny_header) + R"(  layers:
    - {name: a, type: conv, out_channels: 3, kernel: 1, stide: 2}
  exits: []
)"),
            "net.yaml:5: network.layers[0].stide is not a known key: allowed keys are name, type, inputs, "
            "out_channels, kernel, stride, padding, groups, bias, in_channels");
  EXPECT_EQ(error_of(std::string(tiny_header) + R"(  layers:
    - {name: a, type: conv, out_channels: 3, kernel: 9}
  exits:
    - {name: final, after: a, probability: 1}
)"),
            "net.yaml:5: layer a: kernel height = 9 does not fit the padded height 8 (input 8x8x3)");
}

TEST(Network, ClassifierCannotReadAheadOfItsExit) {
  EXPECT_EQ(error_of(std::string(tiny_header) + R"(  layers:
    - {name: a, type: conv, out_channels: 3, kernel: 1}
    - {name: b, type: conv, out_channels: 3, kernel: 1}
  exits:
    - {name: final, after: b, probability: 0.5}
    - name: e1
      after: a
      probability: 0.5
      classifier:
        - {name: p, type: global_avgpool, inputs: [b]}
)"),
            "net.yaml:13: layer p: input b runs after the exit's layer a: a classifier may only read layers "
            "up to the one it hangs off");
}

TEST(ScaleSim, ChainedRowsImportWithInferredPadding) {
  std::istringstream csv(
      "Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, Strides,\n"
      "Conv1, 230, 230, 7, 7, 3, 64, 2,\n"
      "Conv2, 114, 114, 3, 3, 64, 64, 1,\n"  // 112 + 2 * 1
      "FC, 112, 112, 112, 112, 64, 10, 1,\n");
  workloads::NetworkDef net;
  net.source = "t.csv";
  workloads::import_scalesim_csv(csv, "t.csv", net);
  ASSERT_EQ(net.layers.size(), 3u);
  EXPECT_EQ(net.input, (workloads::TensorShape{230, 230, 3}));
  EXPECT_EQ(net.layers[1].padding_height, 1u);
  EXPECT_EQ(net.layers[2].padding_height, 0u);
  net.exits.push_back({"final", "FC", 1.0, {}, ""});
  const auto lowered = workloads::lower_network(net);
  // SCALE-Sim writes the FC as a convolution whose kernel covers the whole 112 x 112 input.
  EXPECT_EQ(lowered.layers[2].work.gemm, (npu::GemmShape{1, 112 * 112 * 64, 10, 1, {112, 112, 112, 112, 1, 1, 0, 0}}));
}

std::string csv_error(const std::string& text,
                      workloads::ScaleSimChaining chaining = workloads::ScaleSimChaining::implicit_steps) {
  std::istringstream csv(text);
  workloads::NetworkDef net;
  try {
    workloads::import_scalesim_csv(csv, "t.csv", net, chaining);
  } catch (const workloads::NetworkError& e) {
    return e.what();
  }
  return "";
}

TEST(ScaleSim, BadRowsAreNamedByLine) {
  const std::string header =
      "Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, Strides\n";
  EXPECT_EQ(csv_error(header + "c1, 8, 8, 3, 3, 3, x, 1\n"), "t.csv:2: Num Filter = x: allowed a positive integer");
  EXPECT_EQ(csv_error(header + "c1, 8, 8, 3, 3, 3, 4, 1\nc2, 9, 9, 3, 3, 4, 4, 1\n", workloads::ScaleSimChaining::strict),
            "t.csv:3: layer c2: IFMAP 9x9x4 does not follow from c1's 6x6x4 output (rows must chain: "
            "same channels, input = output + symmetric padding)");
  EXPECT_EQ(csv_error("name,a,b\n"), "t.csv:1: expected the SCALE-Sim header: Layer name, IFMAP Height, "
                                     "IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, Strides");
  EXPECT_EQ(csv_error(header), "t.csv: no layers after the header");
}

// SCALE-Sim's AlexNet leaves its pooling out: Conv1's 54x54x96 output is followed by Conv2's
// 27x27x96 IFMAP, and Conv2's 23x23x256 by Conv3's 13x13x256. Each gap becomes an implicit max
// pooling on the vector path; Conv4 and Conv5 chain (padding 1).
TEST(ScaleSim, RowsThatDoNotChainAreJoinedByImplicitSteps) {
  const auto net = sim::load_model(NPUSIM_SOURCE_DIR "/examples/scalesim/alexnet.csv");
  std::vector<std::string> names;
  for (const auto& l : net.layers) names.push_back(l.name);
  EXPECT_EQ(names, (std::vector<std::string>{"Conv1", "Conv2.implicit", "Conv2", "Conv3.implicit", "Conv3", "Conv4", "Conv5"}));
  for (const std::size_t i : {1u, 3u}) {
    const auto& step = net.layers[i];
    EXPECT_TRUE(step.implicit);
    EXPECT_EQ(step.type, workloads::LayerType::maxpool);
    EXPECT_TRUE(step.work.on_vector_path);
    EXPECT_EQ(step.macs, 0u);
    EXPECT_EQ(step.params, 0u);
  }
  EXPECT_EQ(net.layers[1].input, (workloads::TensorShape{54, 54, 96}));
  EXPECT_EQ(net.layers[1].output, (workloads::TensorShape{27, 27, 96}));
  EXPECT_EQ(net.layers[3].input, (workloads::TensorShape{23, 23, 256}));
  EXPECT_EQ(net.layers[3].output, (workloads::TensorShape{13, 13, 256}));
  EXPECT_FALSE(net.layers[2].implicit);
  EXPECT_EQ(net.layers[5].input, (workloads::TensorShape{11, 11, 384}));  // Conv4 pads Conv3's output by 1
  // The rows' MACs are those of the topology's convolutions, each as SCALE-Sim lists it.
  const std::uint64_t expected = 54ull * 54 * 363 * 96 + 23ull * 23 * 2400 * 256 + 11ull * 11 * 2304 * 384 +
                                 11ull * 11 * 3456 * 384 + 11ull * 11 * 3456 * 256;
  EXPECT_EQ(net.total_macs, expected);

  // A row that grows, or changes channels, reads some other tensor: a resampling pass writes its IFMAP.
  const std::string header =
      "Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, Strides\n";
  std::istringstream csv(header + "c1, 8, 8, 3, 3, 3, 4, 1\nc2, 9, 9, 3, 3, 5, 4, 1\n");
  workloads::NetworkDef def;
  workloads::import_scalesim_csv(csv, "t.csv", def);
  ASSERT_EQ(def.layers.size(), 3u);
  EXPECT_EQ(def.layers[1].type, workloads::LayerType::resample);
  EXPECT_TRUE(def.layers[1].implicit);
  def.exits.push_back({"final", "c2", 1.0, {}, ""});
  const auto lowered = workloads::lower_network(def);
  EXPECT_EQ(lowered.layers[1].output, (workloads::TensorShape{9, 9, 5}));
  EXPECT_EQ(lowered.layers[2].work.gemm.rows, 7u * 7u);

  // An overlay asks for the strict check with `strict: true`.
  const auto dir = std::filesystem::temp_directory_path() / ("npusim_strict_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "overlay.yaml") << "network:\n  name: alex\n  scalesim_csv: " NPUSIM_SOURCE_DIR
                                         "/examples/scalesim/alexnet.csv\n  strict: true\n  exits:\n"
                                         "    - {name: final, after: Conv5, probability: 1}\n";
  try {
    sim::load_model((dir / "overlay.yaml").string());
    ADD_FAILURE() << "a strict overlay took rows that do not chain";
  } catch (const workloads::NetworkError& e) {
    EXPECT_NE(std::string(e.what()).find("layer Conv2: IFMAP 27x27x96 does not follow from Conv1's 54x54x96 output"),
              std::string::npos)
        << e.what();
  }
  std::filesystem::remove_all(dir);
}

TEST(ScaleSim, OverlayAddsExits) {
  const auto dir = std::filesystem::temp_directory_path() / ("npusim_overlay_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "net.csv")
      << "Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, Strides,\n"
         "c1, 10, 10, 3, 3, 3, 8, 1,\nc2, 10, 10, 3, 3, 8, 8, 1,\nc3, 10, 10, 3, 3, 8, 8, 1,\n";
  std::ofstream(dir / "overlay.yaml") << R"(network:
  name: imported
  scalesim_csv: net.csv
  exits:
    - {name: e1, after: c1, probability: 0.25, classifier: [{name: e1.pool, type: global_avgpool}, {name: e1.fc, type: fc, out_channels: 10}]}
    - {name: final, after: c3, probability: 0.75}
)";
  const auto net = sim::load_model((dir / "overlay.yaml").string());
  EXPECT_EQ(net.exits.size(), 2u);
  EXPECT_EQ(net.exits.front().after_layer, 0u);
  EXPECT_EQ(net.layers[1].name, "e1.pool");
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace npusim
