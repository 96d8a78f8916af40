// YAML loading: every error names the file, line, YAML path, value and what is allowed.

#include <algorithm>
#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "sim/config_node.hpp"
#include "sim/network_yaml.hpp"
#include "sim/npu_yaml.hpp"
#include "sim/scenario_yaml.hpp"

namespace npusim {
namespace {

std::string error_of(const std::string& yaml) {
  try {
    sim::load_npu(sim::ConfigNode::load_text(yaml, "test.yaml"));
  } catch (const sim::ConfigError& e) {
    return e.what();
  }
  return "";
}

// Text compiled into npusim is loaded without the strict pass (ConfigNode::load_embedded_text),
// so every such text must pass it: the NPU presets and the zoo's networks, from the folders
// they are compiled from, and the default scenario.
TEST(ConfigNode, EveryEmbeddedTextPassesTheStrictCheck) {
  std::size_t files = 0;
  for (const char* folder : {"/configs/npu", "/configs/models"})
    for (const auto& entry : std::filesystem::directory_iterator(std::string(NPUSIM_SOURCE_DIR) + folder))
      if (entry.path().extension() == ".yaml") {
        EXPECT_NO_THROW(sim::ConfigNode::load_file(entry.path())) << entry.path();
        ++files;
      }
  EXPECT_GE(files, 6u);
  EXPECT_NO_THROW(sim::ConfigNode::load_text(sim::default_scenario_yaml(), "default"));
  EXPECT_NO_THROW(sim::model_zoo());  // strict-loads every compiled-in network
}

TEST(NpuYaml, ShippedConfigsLoad) {
  const auto default_npu = sim::load_npu_file(NPUSIM_SOURCE_DIR "/configs/npu/default.yaml");
  EXPECT_EQ(default_npu.config().name, "default");
  const auto embedded = sim::default_npu();
  EXPECT_EQ(embedded.config().pe_count, default_npu.config().pe_count);
  const auto baseline = sim::load_npu_file(NPUSIM_SOURCE_DIR "/configs/npu/baseline.yaml");
  EXPECT_FALSE(baseline.allows(npu::BatchingMode::fluid));
  EXPECT_EQ(baseline.geometries().size(), 1u);
}

// The struct's defaults, the shipped file and the copy compiled into the binary must agree on
// every key the table declares, so a key added to one and forgotten in another fails here.
TEST(NpuYaml, DefaultFileMatchesTheStructDefaults) {
  const auto from_file = sim::load_npu_file(NPUSIM_SOURCE_DIR "/configs/npu/default.yaml").config();
  const auto embedded = sim::default_npu().config();
  const npu::NpuConfig defaults;
  for (const auto& key : sim::npu_keys()) {
    SCOPED_TRACE(key.path);
    EXPECT_EQ(key.show(from_file), key.show(defaults));
    EXPECT_EQ(key.show(embedded), key.show(defaults));
  }
}

// Every preset has the 2 MiB split (512 + 1024 + 512 KiB) and a 16-request DMA queue.
TEST(NpuYaml, PresetsShareBuffersAndQueueDepth) {
  for (const auto& name : sim::npu_presets()) {
    SCOPED_TRACE(name);
    const auto from_file =
        sim::load_npu_file(std::string(NPUSIM_SOURCE_DIR "/configs/npu/") + name + ".yaml").config();
    EXPECT_EQ(from_file.buffers.input_bytes, 512u * 1024);
    EXPECT_EQ(from_file.buffers.weight_bytes, 1024u * 1024);
    EXPECT_EQ(from_file.buffers.output_bytes, 512u * 1024);
    EXPECT_EQ(from_file.buffers.input_bytes + from_file.buffers.weight_bytes + from_file.buffers.output_bytes,
              std::uint64_t{2} << 20);
    EXPECT_EQ(from_file.offchip.queue_depth, 16u);
    const auto embedded = sim::load_npu_preset(name).config();
    for (const auto& key : sim::npu_keys()) EXPECT_EQ(key.show(embedded), key.show(from_file)) << key.path;
  }
}

TEST(NpuYaml, OmittedKeysTakeDefaults) {
  const auto npu = sim::load_npu(sim::ConfigNode::load_text("npu:\n  pe_count: 32\n", "t.yaml"));
  EXPECT_EQ(npu.config().pe_count, 32u);
  EXPECT_EQ(npu.config().pe_width, 64u);
}

TEST(NpuYaml, SystolicArrays) {
  const auto npu = sim::load_npu_preset("systolic");
  EXPECT_TRUE(npu.is_systolic());
  EXPECT_EQ(npu.config().systolic.rows, 64u);
  EXPECT_EQ(npu.config().systolic.dataflow, npu::Dataflow::weight_stationary);
  EXPECT_EQ(npu.macs_per_cycle(), 64u * 64u);
  // Without a batching section a systolic array gets its only mode, R-batching with k = 1.
  const auto small = sim::load_npu(sim::ConfigNode::load_text(
      "npu:\n  array: systolic\n  systolic: {rows: 8, cols: 4, dataflow: os, stall_free: true}\n", "t.yaml"));
  EXPECT_EQ(small.config().systolic.cols, 4u);
  EXPECT_TRUE(small.config().systolic.stall_free);
  EXPECT_TRUE(small.allows(npu::BatchingMode::r_batching));
  EXPECT_FALSE(small.allows(npu::BatchingMode::fluid));
  EXPECT_EQ(error_of("npu:\n  array: systolic\n  pe_count: 32\n"),
            "test.yaml:3: npu.pe_count: applies to array: dot_product; a systolic array is sized by systolic.rows "
            "and systolic.cols");
  EXPECT_EQ(error_of("npu:\n  systolic: {rows: 8}\n"),
            "test.yaml:2: npu.systolic: applies to array: systolic (this NPU's array is dot_product)");
  EXPECT_EQ(error_of("npu:\n  array: systolic\n  systolic: {dataflow: rs}\n"),
            "test.yaml:3: npu.systolic.dataflow = rs: allowed a dataflow: os, ws, is");
  EXPECT_EQ(error_of("npu:\n  array: systolic\n  systolic: {rows: 0}\n"),
            "test.yaml:3: npu.systolic.rows = 0: allowed an integer in [1, 4096]");
  EXPECT_EQ(error_of("npu:\n  array: systolic\n  batching: {modes: [r, fluid]}\n"),
            "test.yaml:3: npu.batching.modes = [r, fluid]: allowed [r] on a systolic array: batching streams more "
            "rows (R-batching)");
  EXPECT_EQ(error_of("npu:\n  array: tpu\n"),
            "test.yaml:2: npu.array = tpu: allowed an array kind: dot_product, systolic");
}

TEST(NpuYaml, UnknownKeysAreErrors) {
  EXPECT_EQ(error_of("npu:\n  pe_cuont: 32\n"),
            "test.yaml:2: npu.pe_cuont is not a known key: allowed keys are name, clock_mhz, array, "
            "pe_count, pe_width, input_rows, systolic, element_bytes, accumulator_bytes, vector_lanes, "
            "buffers, offchip, fuse_epilogue, keep_activations_on_chip, batching, energy");
  EXPECT_EQ(error_of("npu:\n  buffers:\n    weight_kb: 4\n"),
            "test.yaml:3: npu.buffers.weight_kb is not a known key: allowed keys are input_kib, "
            "weight_kib, output_kib");
  EXPECT_EQ(error_of("npus: {}\n"), "test.yaml:1: npus is not a known key: allowed keys are npu");
}

TEST(NpuYaml, DuplicateAndNonScalarKeys) {
  EXPECT_EQ(error_of("npu:\n  pe_count: 32\n  clock_mhz: 900\n  pe_count: 64\n"),
            "test.yaml:4: npu.pe_count is given twice");
  EXPECT_EQ(error_of("npu:\n  [a, b]: 3\n"), "test.yaml:2: npu has a key that is not a name");
}

TEST(NpuYaml, WrongTypesNameThePathAndLine) {
  EXPECT_EQ(error_of("npu:\n  clock_mhz: fast\n"),
            "test.yaml:2: npu.clock_mhz = fast: allowed a whole number in [0, 4294967295]");
  EXPECT_EQ(error_of("npu:\n  buffers:\n    weight_kib: -3\n"),
            "test.yaml:3: npu.buffers.weight_kib = -3: allowed a whole number in [0, 4294967295]");
  EXPECT_EQ(error_of("npu:\n  offchip:\n    bandwidth_gb_per_s: lots\n"),
            "test.yaml:3: npu.offchip.bandwidth_gb_per_s = lots: allowed a number");
  EXPECT_EQ(error_of("npu:\n  batching:\n    modes: [r, q]\n"),
            "test.yaml:3: npu.batching.modes[1] = q: allowed a batching mode: r, p, fluid");
  EXPECT_EQ(error_of("npu:\n  batching:\n    modes: r\n"),
            "test.yaml:3: npu.batching.modes = r: allowed a list, e.g. [a, b]");
}

TEST(NpuYaml, RangeErrorsFromValidationPointAtTheKey) {
  EXPECT_EQ(error_of("npu:\n  name: x\n  buffers:\n    weight_kib: 0\n"),
            "test.yaml:4: npu.buffers.weight_kib = 0: allowed more than 0");
  // Smaller than one 4 KiB weight tile, but whether a layer fits is the mapper's question.
  EXPECT_EQ(error_of("npu:\n  name: x\n  buffers:\n    weight_kib: 1\n"), "");
  EXPECT_EQ(error_of("npu:\n  clock_mhz: 0\n"),
            "test.yaml:2: npu.clock_mhz = 0: allowed an integer in [1, 10000]");
  EXPECT_EQ(error_of("npu:\n  batching:\n    stack_factors: [1, 3]\n"),
            "test.yaml:3: npu.batching.stack_factors = [1, 3]: allowed factors that divide "
            "pe_count (64) and input_rows (64)");
}

TEST(NpuYaml, QueueDepthIsReadAndCheckedOnBothSides) {
  const auto depth = [](const std::string& value) {
    return sim::load_npu(sim::ConfigNode::load_text("npu:\n  offchip:\n    queue_depth: " + value + "\n", "t.yaml"))
        .config()
        .offchip.queue_depth;
  };
  EXPECT_EQ(depth("1"), 1u);
  EXPECT_EQ(depth("7"), 7u);
  EXPECT_EQ(depth("1024"), 1024u);
  EXPECT_EQ(error_of("npu:\n  offchip:\n    queue_depth: 0\n"),
            "test.yaml:3: npu.offchip.queue_depth = 0: allowed an integer in [1, 1024]");
  EXPECT_EQ(error_of("npu:\n  offchip:\n    queue_depth: 1025\n"),
            "test.yaml:3: npu.offchip.queue_depth = 1025: allowed an integer in [1, 1024]");
  EXPECT_EQ(error_of("npu:\n  offchip:\n    queue_depth: deep\n"),
            "test.yaml:3: npu.offchip.queue_depth = deep: allowed a whole number in [0, 4294967295]");
  EXPECT_EQ(sim::default_npu({"npu.offchip.queue_depth=4"}).config().offchip.queue_depth, 4u);
  const auto described = std::find_if(sim::npu_keys().begin(), sim::npu_keys().end(), [](const sim::NpuKey& key) {
    return std::string(key.path) == "offchip.queue_depth";
  });
  ASSERT_NE(described, sim::npu_keys().end());
  npu::NpuConfig config;
  config.offchip.queue_depth = 5;
  EXPECT_EQ(described->show(config), "5");
}

// The old name is refused rather than read, and the one line names where it is, its value and
// the key that replaced it.
TEST(NpuYaml, RenamedBandwidthKeyNamesTheNewKey) {
  EXPECT_EQ(error_of("npu:\n  clock_mhz: 800\n  offchip:\n    bandwidth_gbps: 12.8\n"),
            "test.yaml:4: npu.offchip.bandwidth_gbps = 12.8: renamed: bandwidth is in gigabytes per second; use "
            "npu.offchip.bandwidth_gb_per_s = 12.8");
  // Even next to the new key: which of the two was meant is the user's call.
  EXPECT_EQ(error_of("npu:\n  offchip: {bandwidth_gb_per_s: 25.6, bandwidth_gbps: 51.2}\n"),
            "test.yaml:2: npu.offchip.bandwidth_gbps = 51.2: renamed: bandwidth is in gigabytes per second; use "
            "npu.offchip.bandwidth_gb_per_s = 51.2");
  // Other misspellings keep the generic error.
  EXPECT_EQ(error_of("npu:\n  offchip:\n    bandwidth_gbs: 12.8\n"),
            "test.yaml:3: npu.offchip.bandwidth_gbs is not a known key: allowed keys are bandwidth_gb_per_s, "
            "latency_ns, queue_depth");

  const auto file = std::filesystem::path(testing::TempDir()) / "npusim-renamed-bandwidth.yaml";
  std::ofstream(file) << "npu:\n  name: old\n  offchip:\n    latency_ns: 80\n    bandwidth_gbps: 25.6\n";
  try {
    sim::load_npu_file(file);
    ADD_FAILURE() << "expected an error";
  } catch (const sim::ConfigError& e) {
    EXPECT_EQ(std::string(e.what()), file.string() + ":5: npu.offchip.bandwidth_gbps = 25.6: renamed: bandwidth is "
                                                      "in gigabytes per second; use npu.offchip.bandwidth_gb_per_s = 25.6");
  }
  std::filesystem::remove(file);

  try {
    sim::default_npu({"npu.offchip.bandwidth_gbps=51.2"});
    ADD_FAILURE() << "expected an error";
  } catch (const sim::ConfigError& e) {
    EXPECT_EQ(std::string(e.what()),
              "<embedded configs/npu/default.yaml> (--set npu.offchip.bandwidth_gbps): npu.offchip.bandwidth_gbps = "
              "51.2: renamed: bandwidth is in gigabytes per second; use npu.offchip.bandwidth_gb_per_s = 51.2");
  }
}

TEST(NpuYaml, OverridesApplyBeforeParsingAndAreNamedInErrors) {
  const auto npu = sim::default_npu({"npu.pe_count=32", "npu.offchip.bandwidth_gb_per_s=51.2",
                                      "npu.batching.modes=[r]"});
  EXPECT_EQ(npu.config().pe_count, 32u);
  EXPECT_EQ(npu.bandwidth_mbps(), 51'200u);
  EXPECT_FALSE(npu.allows(npu::BatchingMode::fluid));
  const auto error = [](const std::vector<std::string>& overrides) {
    try {
      sim::default_npu(overrides);
    } catch (const sim::ConfigError& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_EQ(error({"npu.clock_mhz=0"}),
            "<embedded configs/npu/default.yaml> (--set npu.clock_mhz): npu.clock_mhz = 0: allowed an integer in [1, 10000]");
  EXPECT_EQ(error({"npu.offchip.latency=3"}),
            "<embedded configs/npu/default.yaml> (--set npu.offchip.latency): npu.offchip.latency is not a known key: "
            "allowed keys are bandwidth_gb_per_s, latency_ns, queue_depth");
  EXPECT_EQ(error({"npu.batching.stack_factors[5]=2"}), "--set npu.batching.stack_factors[5]=2: npu.batching.stack_factors has no item [5]");
  EXPECT_EQ(error({"=3"}), "--set =3: allowed KEY=VALUE, e.g. npu.pe_count=32");
  // An override of one list item leaves the others.
  EXPECT_EQ(sim::default_npu({"npu.batching.stack_factors[2]=8"}).config().stack_factors,
            (std::vector<std::uint32_t>{1, 2, 8}));
}

TEST(NpuYaml, FileProblems) {
  EXPECT_THROW(sim::load_npu_file("/nonexistent/npu.yaml"), sim::ConfigError);
  try {
    sim::load_npu_file("/nonexistent/npu.yaml");
  } catch (const sim::ConfigError& e) {
    EXPECT_STREQ(e.what(), "/nonexistent/npu.yaml: no such file");
  }
  EXPECT_EQ(error_of("npu: [unclosed\n"), "test.yaml:2: not valid YAML: end of sequence flow not found");
  EXPECT_EQ(error_of("- a\n- b\n"), "test.yaml:1: the document must be a YAML mapping (key: value)");
  EXPECT_EQ(error_of("other: 1\n"), "test.yaml:1: other is not a known key: allowed keys are npu");
  EXPECT_EQ(error_of("{}\n"), "test.yaml:1: npu is missing: required key");
}

}  // namespace
}  // namespace npusim
