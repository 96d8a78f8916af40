// Issue 12's targets on the default NPU, whole networks (every layer, exit classifiers
// included, under its control-block entry), as `npusim model NAME --npu X` reports them and
// docs/npu-model.md §4 tabulates them.

#include <gtest/gtest.h>

#include "workloads/control_blocks.hpp"
#include "sim/network_yaml.hpp"
#include "sim/npu_yaml.hpp"

namespace npusim {
namespace {

struct NetworkFigures {
  double cycles_per_sample = 0;
  double mac_utilisation = 0;
  double over_roofline = 0;  // cycles / the sum of the layers' roofline bounds
};

NetworkFigures figures(const npu::Npu& npu, const std::string& model, std::uint32_t batch) {
  const auto net = sim::load_model(model);
  const auto table = workloads::control_block_table(npu, net, batch);
  std::uint64_t cycles = 0, roofline = 0;
  for (std::size_t l = 0; l < net.layers.size(); ++l) {
    cycles += table.entry(batch, l).cycles;
    roofline += table.entry(batch, l).roofline_cycles;
  }
  const double macs = static_cast<double>(net.total_macs) * batch;
  return {static_cast<double>(cycles) / batch,
          macs / (static_cast<double>(cycles) * static_cast<double>(npu.macs_per_cycle())),
          static_cast<double>(cycles) / static_cast<double>(roofline)};
}

npu::Npu preset(const std::string& name, const std::vector<std::string>& overrides = {}) {
  return sim::load_npu_file(std::string(NPUSIM_SOURCE_DIR) + "/configs/npu/" + name + ".yaml", overrides);
}

TEST(NpuTargets, MacUtilisationFloors) {
  const auto npu = preset("default");
  EXPECT_GE(figures(npu, "resnet50", 1).mac_utilisation, 0.30);
  EXPECT_GE(figures(npu, "resnet56", 1).mac_utilisation, 0.20);
  EXPECT_GE(figures(npu, "mobilenetv2", 1).mac_utilisation, 0.08);
  EXPECT_GE(figures(npu, "resnet50", 16).mac_utilisation, 0.40);
}

// "ResNet-50-EE at batch 16 <= 0.75x per sample of batch 1". With every activation through
// DRAM a batch of 16 costs about 0.65x. Residency speeds batch 1 (its activations fit on chip
// from the third stage on) more than batch 16 (they do not), so with it on the ratio is about
// 0.7495x, just inside the target: batching still pays, by less. docs/npu-model.md §4 reports
// both.
TEST(NpuTargets, BatchingPaysOnResNet50) {
  const auto through_dram = preset("default", {"npu.keep_activations_on_chip=false"});
  EXPECT_LE(figures(through_dram, "resnet50", 16).cycles_per_sample,
            0.75 * figures(through_dram, "resnet50", 1).cycles_per_sample);
  const auto npu = preset("default");
  EXPECT_LE(figures(npu, "resnet50", 16).cycles_per_sample, 0.75 * figures(npu, "resnet50", 1).cycles_per_sample);
}

TEST(NpuTargets, StackablePesPayWhereOutputsAreNarrow) {
  EXPECT_LE(figures(preset("spe-only"), "resnet56", 1).cycles_per_sample,
            0.85 * figures(preset("baseline"), "resnet56", 1).cycles_per_sample);
}

TEST(NpuTargets, EveryZooNetworkWithinOnePointSixOfItsRoofline) {
  const auto npu = preset("default");
  for (const char* model : {"resnet56", "resnet50", "mobilenetv2", "inception_v3", "vgg16"}) {
    const double ratio = figures(npu, model, 1).over_roofline;
    EXPECT_GE(ratio, 1.0) << model;
    EXPECT_LE(ratio, 1.6) << model;
  }
}

}  // namespace
}  // namespace npusim
