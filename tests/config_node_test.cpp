// YAML loading: every error names the file, line, YAML path, value and what is allowed.

#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "sim/npu_yaml.hpp"

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

TEST(NpuYaml, ShippedConfigsLoad) {
  const auto default_npu = sim::load_npu_file(NPUSIM_SOURCE_DIR "/configs/npu/default.yaml");
  EXPECT_EQ(default_npu.config().name, "default");
  const auto embedded = sim::default_npu();
  EXPECT_EQ(embedded.config().pe_count, default_npu.config().pe_count);
  const auto baseline = sim::load_npu_file(NPUSIM_SOURCE_DIR "/configs/npu/baseline.yaml");
  EXPECT_FALSE(baseline.allows(npu::BatchingMode::fluid));
  EXPECT_EQ(baseline.geometries().size(), 1u);
}

TEST(NpuYaml, DefaultFileMatchesTheStructDefaults) {
  const auto from_file = sim::load_npu_file(NPUSIM_SOURCE_DIR "/configs/npu/default.yaml").config();
  const npu::NpuConfig defaults;
  EXPECT_EQ(from_file.clock_mhz, defaults.clock_mhz);
  EXPECT_EQ(from_file.buffers.weight_bytes, defaults.buffers.weight_bytes);
  EXPECT_EQ(from_file.offchip.bandwidth_gb_per_s, defaults.offchip.bandwidth_gb_per_s);
  EXPECT_EQ(from_file.stack_factors, defaults.stack_factors);
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
            "buffers, offchip, batching");
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
  EXPECT_EQ(error_of("npu:\n  name: x\n  buffers:\n    weight_kib: 2\n"),
            "test.yaml:4: npu.buffers.weight_kib = 2: allowed at least one T_P x T_C weight tile: "
            "4 KiB (4096 bytes)");
  EXPECT_EQ(error_of("npu:\n  clock_mhz: 0\n"),
            "test.yaml:2: npu.clock_mhz = 0: allowed an integer in [1, 10000]");
  EXPECT_EQ(error_of("npu:\n  batching:\n    stack_factors: [1, 3]\n"),
            "test.yaml:3: npu.batching.stack_factors = [1, 3]: allowed factors that divide "
            "pe_count (64) and input_rows (64)");
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
            "allowed keys are bandwidth_gb_per_s, latency_ns");
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
