// SCALE-Sim v2 inputs: .cfg files as systolic NPUs and topology files read row by row the way
// SCALE-Sim reads them.

#include <sstream>
#include <string>

#include <gtest/gtest.h>

#include "sim/scalesim_cfg.hpp"
#include "workloads/network.hpp"
#include "workloads/scalesim_csv.hpp"

namespace npusim {
namespace {

// SCALE-Sim's configs/google.cfg, keys it accepts but npusim does not model included.
const std::string google_cfg = R"([general]
run_name = GoogleTPU_v1_ws

[architecture_presets]
ArrayHeight:    256
ArrayWidth:     256
IfmapSramSzkB:    6144
FilterSramSzkB:   6144
OfmapSramSzkB:    2048
IfmapOffset:    0
FilterOffset:   10000000
OfmapOffset:    20000000
Dataflow : ws
Bandwidth : 10
MemoryBanks: 1

[run_presets]
InterfaceBandwidth: CALC
SRAM_row_size: 2
)";

std::string replace(std::string text, const std::string& from, const std::string& to) {
  const auto at = text.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  return text.replace(at, from.size(), to);
}

std::string cfg_error(const std::string& text) {
  std::istringstream in(text);
  try {
    sim::parse_scalesim_cfg(in, "google.cfg");
  } catch (const sim::ConfigError& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(ScaleSimCfg, ReadsTheArrayTheDataflowTheBuffersAndTheBandwidthMode) {
  std::istringstream in(google_cfg);
  const npu::Npu npu = sim::parse_scalesim_cfg(in, "google.cfg");
  const auto& c = npu.config();
  EXPECT_EQ(c.name, "GoogleTPU_v1_ws");
  EXPECT_TRUE(npu.is_systolic());
  EXPECT_EQ(c.systolic.rows, 256u);
  EXPECT_EQ(c.systolic.cols, 256u);
  EXPECT_EQ(c.systolic.dataflow, npu::Dataflow::weight_stationary);
  EXPECT_TRUE(c.systolic.stall_free);  // CALC
  EXPECT_EQ(c.buffers.input_bytes, 6144u * 1024);
  EXPECT_EQ(c.buffers.output_bytes, 2048u * 1024);

  // USER: Bandwidth words per cycle, 1-byte words, 1 cycle = 1 ns -> 10 GB/s, no extra latency.
  std::istringstream user(replace(google_cfg, "InterfaceBandwidth: CALC", "InterfaceBandwidth: USER"));
  const npu::Npu bounded = sim::parse_scalesim_cfg(user, "google.cfg");
  EXPECT_FALSE(bounded.config().systolic.stall_free);
  EXPECT_DOUBLE_EQ(bounded.config().offchip.bandwidth_gb_per_s, 10.0);
  EXPECT_EQ(bounded.latency_cycles(), 0u);
}

TEST(ScaleSimCfg, KeysAreCaseInsensitiveLikeConfigParser) {
  std::istringstream in(replace(google_cfg, "ArrayHeight:    256", "arrayheight = 128"));
  EXPECT_EQ(sim::parse_scalesim_cfg(in, "google.cfg").config().systolic.rows, 128u);
}

TEST(ScaleSimCfg, MalformedFilesGetOneLineNamingFileSectionKeyValueAndAllowed) {
  EXPECT_EQ(cfg_error(replace(google_cfg, "Dataflow : ws", "Dataflow : rs")),
            "google.cfg:13: [architecture_presets] Dataflow = rs: allowed one of os, ws, is");
  EXPECT_EQ(cfg_error(replace(google_cfg, "ArrayWidth:     256\n", "")),
            "google.cfg: [architecture_presets] ArrayWidth is missing: SCALE-Sim v2 requires it");
  EXPECT_EQ(cfg_error(replace(google_cfg, "IfmapSramSzkB:    6144", "IfmapSramSzkB:    6k")),
            "google.cfg:7: [architecture_presets] IfmapSramSzkB = 6k: allowed an integer in [1, 1048576]");
  EXPECT_EQ(cfg_error(replace(google_cfg, "ArrayHeight:    256", "ArrayHeight:    0")),
            "google.cfg:5: [architecture_presets] ArrayHeight = 0: allowed an integer in [1, 4096]");
  EXPECT_EQ(cfg_error(replace(google_cfg, "InterfaceBandwidth: CALC", "InterfaceBandwidth: FAST")),
            "google.cfg:18: [run_presets] InterfaceBandwidth = FAST: allowed one of CALC, USER");
  EXPECT_EQ(cfg_error(replace(google_cfg, "MemoryBanks: 1", "ArrayHieght: 1")),
            "google.cfg:15: [architecture_presets] ArrayHieght = 1: unknown key: allowed ArrayHeight, ArrayWidth, "
            "IfmapSramSzkB, FilterSramSzkB, OfmapSramSzkB, IfmapOffset, FilterOffset, OfmapOffset, Dataflow, "
            "Bandwidth, MemoryBanks, ReadRequestBuffer, WriteRequestBuffer, OnChipMemoryBanks, OnChipMemoryBankPorts, "
            "IfmapCustomLayout, FilterCustomLayout, IfmapSRAMBankBandwidth, IfmapSRAMBankNum, IfmapSRAMBankPort, "
            "FilterSRAMBankBandwidth, FilterSRAMBankNum, FilterSRAMBankPort");
  EXPECT_EQ(cfg_error(replace(google_cfg, "[run_presets]", "[run]")),
            "google.cfg:17: [run]: unknown section: allowed general, architecture_presets, layout, run_presets, "
            "network_presets, sparsity");
  EXPECT_EQ(cfg_error(replace(google_cfg, "MemoryBanks: 1", "Dataflow: os")),
            "google.cfg:15: [architecture_presets] Dataflow is given twice (first on line 13)");
  const std::string user = replace(google_cfg, "InterfaceBandwidth: CALC", "InterfaceBandwidth: USER");
  EXPECT_EQ(cfg_error(replace(user, "Bandwidth : 10\n", "")),
            "google.cfg: [architecture_presets] Bandwidth is missing: SCALE-Sim v2 requires it with "
            "InterfaceBandwidth USER");
  EXPECT_EQ(cfg_error(replace(user, "Bandwidth : 10", "Bandwidth : ten")),
            "google.cfg:14: [architecture_presets] Bandwidth = ten: allowed words per cycle: integers in [1, "
            "100000], comma-separated");
  EXPECT_EQ(cfg_error(google_cfg + "[sparsity]\nSparsitySupport : true\n"),
            "google.cfg:21: [sparsity] SparsitySupport = true: allowed false (npusim does not model sparse arrays)");
  EXPECT_EQ(cfg_error("ArrayHeight: 4\n"),
            "google.cfg:1: ArrayHeight: 4: a key before any [section]: allowed general, architecture_presets, layout, "
            "run_presets, network_presets, sparsity");
}

TEST(ScaleSimTopology, RowsAreIndependentLayersWithSharedOrSeparateStrides) {
  std::istringstream in(
      "Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, Strides,\n"
      "Conv1 ,224 ,224 ,11 ,11 ,3 ,96 ,4 ,\n"
      "\n"
      "Conv2, 27, 27, 5, 5, 96, 256, 1, 2,\n"
      "DP3, 14, 14, 3, 3, 2, 1, 1\n");
  const auto layers = workloads::read_scalesim_topology(in, "t.csv");
  ASSERT_EQ(layers.size(), 4u);  // Conv1, Conv2 and DP3 split into its 2 channels
  EXPECT_EQ(layers[0].name, "Conv1");
  EXPECT_EQ(layers[0].stride_width, 4u);
  EXPECT_EQ(layers[1].stride_height, 1u);
  EXPECT_EQ(layers[1].stride_width, 2u);
  EXPECT_EQ(layers[1].origin, "t.csv:4");
  EXPECT_EQ(layers[2].name, "DP3Channel_0");
  EXPECT_EQ(layers[3].name, "DP3Channel_1");
  EXPECT_EQ(layers[3].channels, 1u);
}

TEST(ScaleSimTopology, BadRowsNameTheLine) {
  const auto error = [](const std::string& text) {
    std::istringstream in(text);
    try {
      workloads::read_scalesim_topology(in, "t.csv");
    } catch (const workloads::NetworkError& e) {
      return std::string(e.what());
    }
    return std::string("(no error)");
  };
  const std::string header = "Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, Strides,\n";
  EXPECT_EQ(error(header + "Conv1, 8, 8, 3, x, 1, 1, 1,\n"), "t.csv:2: Filter Width = x: allowed a positive integer");
  EXPECT_EQ(error(header + "Conv1, 8, 8, 3, 3, 1, 1, 0,\n"), "t.csv:2: Strides = 0: allowed a positive integer");
  EXPECT_EQ(error(header + "Conv1, 8, 8, 3,\n"),
            "t.csv:2: 4 fields: allowed 8 (Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, "
            "Channels, Num Filter, Strides) or 9 (two strides)");
  EXPECT_EQ(error(header + "Conv1, 2, 8, 3, 3, 1, 1, 1,\n"), "t.csv:2: layer Conv1: filter 3x3 is larger than the IFMAP 2x8");
  EXPECT_EQ(error(header), "t.csv: no layers after the header");
}

}  // namespace
}  // namespace npusim
