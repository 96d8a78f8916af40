// The network-level residency plan and epilogue fusion (docs/npu-model.md §4, "Fusion and
// residency"): hand-worked plans of a small residual network, the rules' invariants over the
// zoo, and the traffic a CIFAR network is left with.

#include <gtest/gtest.h>

#include <string>

#include "npu_model/fluid_batching_engine.hpp"
#include "npu_model/residency_plan.hpp"
#include "sim/network_yaml.hpp"
#include "tests/toy_npu.hpp"

namespace npusim {
namespace {

using npu::EpilogueOperand;

std::vector<npu::LayerWork> lowered(const std::string& yaml) {
  const auto net = workloads::lower_network(sim::parse_network(sim::ConfigNode::load_text(yaml, "block.yaml"), "."));
  return workloads::layer_works(net);
}

// input 8x8x4 (256 B a sample) -> c1 3x3 -> 8x8x8 (512 B) -> c2 3x3 -> 8x8x8 -> add(c2, c1)
// -> `after_add` -> pool (global, 8 channels) -> fc 10 (10 B, the result).
std::vector<npu::LayerWork> residual_network(const std::string& after_add) {
  return lowered(R"(network:
  name: block
  input: {height: 8, width: 8, channels: 4}
  layers:
    - {name: c1, type: conv, out_channels: 8, kernel: 3, padding: 1}
    - {name: c2, type: conv, out_channels: 8, kernel: 3, padding: 1}
    - {name: add, type: add, inputs: [c2, c1]}
)" + after_add + R"(
    - {name: pool, type: global_avgpool}
    - {name: fc, type: fc, out_channels: 10}
  exits:
    - {name: final, after: fc, probability: 1.0}
)");
}

std::vector<npu::LayerWork> residual_block() { return residual_network(""); }

// A third conv after the add, so that the add's output has a reader that needs it in a buffer.
std::vector<npu::LayerWork> residual_block_and_conv() {
  return residual_network("    - {name: c3, type: conv, out_channels: 8, kernel: 3, padding: 1}");
}

npu::Npu toy(std::uint64_t input_bytes, bool fuse = true, bool keep = true, std::uint32_t vector_lanes = 4) {
  auto config = testing::toy_npu_config(input_bytes, 4096, 4096, 4);
  config.fuse_epilogue = fuse;
  config.keep_activations_on_chip = keep;
  config.vector_lanes = vector_lanes;
  return npu::Npu::validate(config);
}

TEST(ResidencyPlan, HandWorkedResidualBlockWithRoomForEverything) {
  // 8 KiB of input buffer, batch 2. The add runs in c2's epilogue and the pool accumulates the
  // add's output there too, so that output, read by nothing else, is never stored. c1's output
  // is 2 * 512 = 1,024 B. The pool sums 8 x 8 = 64 int8 values a channel: 8 + log2(64) = 14
  // bits, so 2 B a sum, 2 samples * 8 channels * 2 B = 32 B, made in c2's epilogue and held
  // until the fc reads them. At c2: 1,024 + 32 = 1,056 <= 8,192.
  const auto plan = npu::plan_residency(toy(8192), residual_block(), 2);
  ASSERT_EQ(plan.layers.size(), 5u);
  const auto& c1 = plan.layers[0].placement;
  EXPECT_FALSE(c1.input_on_chip);  // the network input comes from DRAM
  EXPECT_TRUE(c1.output_on_chip);
  EXPECT_EQ(c1.reserved_input_bytes, 1024u);  // its own output
  EXPECT_EQ(c1.epilogue, EpilogueOperand::none);
  const auto& c2 = plan.layers[1].placement;
  EXPECT_TRUE(c2.input_on_chip);
  EXPECT_TRUE(c2.output_on_chip);  // the add's output: only the pool reads it, in the epilogue
  EXPECT_EQ(c2.epilogue, EpilogueOperand::on_chip);  // c1's tensor is still on chip
  EXPECT_EQ(c2.reserved_input_bytes, 32u);  // c1's tensor is its input: only the pool's sums
  EXPECT_TRUE(plan.layers[2].fused_into_previous);
  EXPECT_EQ(plan.layers[2].epilogue_host, 1u);
  EXPECT_TRUE(plan.layers[3].fused_into_previous);  // the pool, through the fused add
  EXPECT_EQ(plan.layers[3].epilogue_host, 1u);
  const auto& fc = plan.layers[4].placement;
  EXPECT_TRUE(fc.input_on_chip);
  EXPECT_EQ(fc.reserved_input_bytes, 0u);
  EXPECT_FALSE(fc.output_on_chip);  // the result leaves the chip
  // Boundaries: before c2 c1's tensor, which the add reads in c2's epilogue (gone by the next
  // boundary); before the add, the pool and the fc the sums.
  EXPECT_EQ(plan.on_chip_bytes_before, (std::vector<std::uint64_t>{0, 1024, 32, 32, 32}));
}

TEST(ResidencyPlan, TensorsThatDoNotFitGoThroughDram) {
  // 1,500 B of input buffer, batch 2. Tensors are decided in the order they are made. c1's
  // (1,024 B) needs, at c1, 1,024 + c1's streaming room min(1,500 / 8, 2 * 256) = 187 -> 1,211
  // <= 1,500, and at c2 (its reader) 1,024: it stays. The add's output then needs, at c2,
  // 1,024 + 1,024 = 2,048 > 1,500: it goes to DRAM, and c3 streams it back. The pool's 32 B of
  // sums need at c3 32 + c3's streaming room 187 = 219: they stay for the fc, and c3's own
  // output, read only by the pool in c3's epilogue, is never stored.
  const auto plan = npu::plan_residency(toy(1500), residual_block_and_conv(), 2);
  EXPECT_TRUE(plan.layers[0].placement.output_on_chip);
  EXPECT_TRUE(plan.layers[1].placement.input_on_chip);
  EXPECT_FALSE(plan.layers[1].placement.output_on_chip);
  EXPECT_EQ(plan.layers[1].placement.epilogue, EpilogueOperand::on_chip);
  EXPECT_FALSE(plan.layers[3].placement.input_on_chip);
  EXPECT_TRUE(plan.layers[3].placement.output_on_chip);
  EXPECT_EQ(plan.layers[3].placement.reserved_input_bytes, 32u);
  EXPECT_TRUE(plan.layers[4].fused_into_previous);
  EXPECT_EQ(plan.layers[4].epilogue_host, 3u);
  EXPECT_TRUE(plan.layers[5].placement.input_on_chip);
}

TEST(ResidencyPlan, APoolWhoseSumsFindNoRoomRunsOnItsOwn) {
  // 30 B of input buffer, batch 2: the sums need 32 B + c2's streaming room min(30 / 8, 2 * 256)
  // = 3 > 30, so the pool is not fused. It then streams the add's output back from DRAM and its
  // 2 * 8 = 16 B output stays for the fc: 16 + its streaming room min(30 / 8, 2 * 512) = 3 -> 19
  // <= 30.
  const auto plan = npu::plan_residency(toy(30), residual_block(), 2);
  EXPECT_TRUE(plan.layers[2].fused_into_previous);
  EXPECT_FALSE(plan.layers[3].fused_into_previous);
  EXPECT_FALSE(plan.layers[1].placement.output_on_chip);
  EXPECT_FALSE(plan.layers[3].placement.input_on_chip);
  EXPECT_TRUE(plan.layers[3].placement.output_on_chip);
  EXPECT_TRUE(plan.layers[4].placement.input_on_chip);
}

TEST(ResidencyPlan, AnEpilogueThatCannotKeepPaceIsNotFused) {
  // c1 is a 1x1 conv over 4 channels (P = 4) and c2 one over 8 (P = 8). The toy array finishes
  // min(4 PEs, 16 MACs / 8) = 2 of c2's outputs a cycle: an epilogue of 2 lanes keeps pace, one
  // of 1 lane does not, and then neither the add nor the pool after it runs in c2's epilogue.
  const auto layers = lowered(R"(network:
  name: narrow
  input: {height: 4, width: 4, channels: 4}
  layers:
    - {name: c1, type: conv, out_channels: 8, kernel: 1}
    - {name: c2, type: conv, out_channels: 8, kernel: 1}
    - {name: add, type: add, inputs: [c2, c1]}
    - {name: pool, type: global_avgpool}
    - {name: fc, type: fc, out_channels: 10}
  exits:
    - {name: final, after: fc, probability: 1.0}
)");
  const auto paced = npu::plan_residency(toy(8192, true, true, 2), layers, 1);
  EXPECT_TRUE(paced.layers[2].fused_into_previous);
  EXPECT_TRUE(paced.layers[3].fused_into_previous);
  const auto slow = npu::plan_residency(toy(8192, true, true, 1), layers, 1);
  EXPECT_FALSE(slow.layers[2].fused_into_previous);
  EXPECT_FALSE(slow.layers[3].fused_into_previous);
}

TEST(ResidencyPlan, SwitchesTurnFusionAndResidencyOff) {
  // Without residency the add still fuses, but the pool does not: its sums could not stay.
  const auto no_keep = npu::plan_residency(toy(8192, true, false), residual_block(), 2);
  EXPECT_TRUE(no_keep.layers[2].fused_into_previous);
  EXPECT_FALSE(no_keep.layers[3].fused_into_previous);
  EXPECT_EQ(no_keep.layers[1].placement.epilogue, EpilogueOperand::off_chip);
  for (const auto& layer : no_keep.layers) {
    EXPECT_FALSE(layer.placement.input_on_chip);
    EXPECT_FALSE(layer.placement.output_on_chip);
    EXPECT_EQ(layer.placement.reserved_input_bytes, 0u);
  }
  EXPECT_EQ(no_keep.on_chip_bytes_before, std::vector<std::uint64_t>(5, 0));

  // Without fusion the add runs on the vector path and reads both operands over the channel,
  // so neither c1's nor c2's tensor may stay on chip, and the pool reads the add's output.
  const auto no_fuse = npu::plan_residency(toy(8192, false, true), residual_block(), 2);
  EXPECT_FALSE(no_fuse.layers[2].fused_into_previous);
  EXPECT_FALSE(no_fuse.layers[3].fused_into_previous);
  EXPECT_FALSE(no_fuse.layers[0].placement.output_on_chip);
  EXPECT_FALSE(no_fuse.layers[1].placement.output_on_chip);
  EXPECT_FALSE(no_fuse.layers[2].placement.input_on_chip);
  EXPECT_TRUE(no_fuse.layers[2].placement.output_on_chip);
  EXPECT_TRUE(no_fuse.layers[3].placement.input_on_chip);
}

// Invariants of every plan over the zoo at several batch sizes on the default NPU: what is held
// while a layer runs fits the input buffer, an input on chip was an output left on chip, the
// network's results and the input from the devices always cross the channel, and every layer
// finds a tiling under its plan (the table never falls back to no residency).
TEST(ResidencyPlan, ZooPlansKeepTheirInvariants) {
  const auto npu = npu::Npu::validate(npu::NpuConfig{});
  const std::uint64_t capacity = npu.config().buffers.input_bytes;
  for (const char* model : {"resnet56", "resnet50", "mobilenetv2", "inception_v3", "vgg16"}) {
    const auto net = sim::load_model(model);
    const auto works = workloads::layer_works(net);
    const auto table = npu::ControlBlockTable::build(npu, works, 32);
    for (const std::uint32_t batch : {1u, 4u, 32u}) {
      const auto plan = npu::plan_residency(npu, works, batch);
      for (std::size_t j = 0; j < works.size(); ++j) {
        SCOPED_TRACE(std::string(model) + " batch " + std::to_string(batch) + " layer " + works[j].name);
        const auto& p = plan.layers[j].placement;
        const std::uint64_t input_bytes =
            p.input_on_chip ? std::uint64_t{batch} * works[j].input_elements * npu.config().element_bytes : 0;
        EXPECT_LE(p.reserved_input_bytes + input_bytes, capacity);
        for (const auto from : works[j].inputs) {
          if (from < 0) {
            EXPECT_FALSE(p.input_on_chip);
          } else if (p.input_on_chip) {
            // A pool's sums always stay; anything else on chip was its host's output left there.
            const auto producer = static_cast<std::size_t>(from);
            const auto& made = plan.layers[producer];
            if (works[producer].kind != npu::LayerKind::pooling || !made.fused_into_previous) {
              EXPECT_TRUE(plan.layers[made.fused_into_previous ? made.epilogue_host : producer].placement.output_on_chip);
            }
          }
        }
        if (plan.layers[j].fused_into_previous) {
          // An add runs in the epilogue of the GEMM right before it; a pool in that of the GEMM
          // (and add) right before it.
          const std::size_t host = plan.layers[j].epilogue_host;
          EXPECT_FALSE(works[host].on_vector_path);
          EXPECT_FALSE(plan.layers[host].fused_into_previous);
          if (works[j].kind == npu::LayerKind::elementwise) {
            EXPECT_EQ(host, j - 1);
            EXPECT_NE(plan.layers[host].placement.epilogue, EpilogueOperand::none);
          } else {
            EXPECT_EQ(works[j].kind, npu::LayerKind::pooling);
            EXPECT_GE(host + 2, j);
          }
        } else {
          // The table ran the plan: no layer needed the fallback without residency.
          EXPECT_EQ(table.entry(batch, j).placement, p);
        }
      }
      // Every exit's result leaves the chip (the final exit's is the last layer's).
      for (const auto& exit : net.exits) {
        const std::size_t result = exit.classifier_layers.empty() ? exit.after_layer : exit.classifier_layers.back();
        EXPECT_FALSE(plan.layers[result].placement.output_on_chip) << model << " exit " << exit.name;
      }
    }
  }
}

// Issue 12: "a CIFAR-size network needs off-chip traffic only for weights, its input and its
// results". ResNet-56 at batch 1 on the default NPU: the activation bytes that cross the
// channel are the first layer's input loads and the exits' results, nothing else.
TEST(ResidencyPlan, CifarNetworkMovesOnlyWeightsItsInputAndItsResults) {
  const auto npu = npu::Npu::validate(npu::NpuConfig{});
  const auto net = sim::load_model("resnet56");
  const auto works = workloads::layer_works(net);
  const auto table = npu::ControlBlockTable::build(npu, works, 1);
  std::uint64_t results = 0;
  for (const auto& exit : net.exits) {
    const std::size_t last = exit.classifier_layers.empty() ? exit.after_layer : exit.classifier_layers.back();
    results += npu::output_elements(works[last]) * npu.config().element_bytes;
  }
  std::uint64_t activations = 0;
  for (std::size_t l = 0; l < works.size(); ++l) {
    const auto& bytes = table.entry(1, l).bytes;
    activations += (l == 0 ? 0 : bytes.input) + bytes.output + bytes.epilogue + bytes.psum;
  }
  EXPECT_EQ(activations, results);
  // The first layer reads the 32x32x3 input at least once.
  EXPECT_GE(table.entry(1, 0).bytes.input, 32u * 32 * 3);
}

}  // namespace
}  // namespace npusim
