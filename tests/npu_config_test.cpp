// Validation of NPU configurations: both sides of every limit, and the key each error names.

#include <utility>

#include <gtest/gtest.h>

#include "npu_model/npu_config.hpp"

namespace npusim {
namespace {

std::string rejected_key(const npu::NpuConfig& config) {
  try {
    npu::Npu::validate(config);
  } catch (const npu::NpuConfigError& e) {
    return e.key();
  }
  return "";
}

TEST(NpuConfig, DefaultIsValid) {
  const auto npu = npu::Npu::validate(npu::NpuConfig{});
  EXPECT_EQ(npu.macs_per_cycle(), 64u * 64u);
  EXPECT_EQ(npu.latency_cycles(), 100u);  // 100 ns at 1000 MHz
  EXPECT_EQ(npu.bandwidth_mbps(), 25'600u);
  ASSERT_EQ(npu.geometries().size(), 3u);
  const auto& g4 = npu.geometry(4);
  EXPECT_EQ(g4.tile_rows, 16u);    // T_R / k
  EXPECT_EQ(g4.tile_depth, 256u);  // k * T_P
  EXPECT_EQ(g4.tile_cols, 16u);    // T_C / k
  EXPECT_THROW(npu.geometry(8), std::out_of_range);
  EXPECT_EQ(npu.config().offchip.queue_depth, 16u);
}

TEST(NpuConfig, LatencyRoundsUpToWholeCycles) {
  npu::NpuConfig c;
  c.clock_mhz = 700;
  c.offchip.latency_ns = 100;  // 70 cycles exactly
  EXPECT_EQ(npu::Npu::validate(c).latency_cycles(), 70u);
  c.offchip.latency_ns = 101;  // 70.7 -> 71
  EXPECT_EQ(npu::Npu::validate(c).latency_cycles(), 71u);
}

// Whether a layer fits is the mapper's question, so a buffer smaller than one tile validates;
// validation only refuses a buffer that does not exist or exceeds 1 GiB.
TEST(NpuConfig, BuffersNeedOneByteAndAtMostOneGibibyte) {
  using Field = std::uint64_t npu::BufferConfig::*;
  const std::pair<Field, const char*> buffers[] = {{&npu::BufferConfig::input_bytes, "buffers.input_kib"},
                                                   {&npu::BufferConfig::weight_bytes, "buffers.weight_kib"},
                                                   {&npu::BufferConfig::output_bytes, "buffers.output_kib"}};
  for (const auto& [field, key] : buffers) {
    SCOPED_TRACE(key);
    npu::NpuConfig c;
    c.buffers.*field = 0;
    EXPECT_EQ(rejected_key(c), key);
    c.buffers.*field = 1;  // far below one tile (64 x 64 x 1 B for input and weights)
    EXPECT_EQ(rejected_key(c), "");
    c.buffers.*field = std::uint64_t{1} << 30;
    EXPECT_EQ(rejected_key(c), "");
    c.buffers.*field += 1;
    EXPECT_EQ(rejected_key(c), key);
    // A systolic array has its own validation path with the same limits.
    c.array = npu::ArrayKind::systolic;
    c.modes = {npu::BatchingMode::r_batching};
    c.stack_factors = {1};
    EXPECT_EQ(rejected_key(c), key);
    c.buffers.*field = std::uint64_t{1} << 30;
    EXPECT_EQ(rejected_key(c), "");
    c.buffers.*field = 1;
    EXPECT_EQ(rejected_key(c), "");
    c.buffers.*field = 0;
    EXPECT_EQ(rejected_key(c), key);
  }
}

TEST(NpuConfig, ZeroBufferErrorSaysMoreThanZero) {
  npu::NpuConfig c;
  c.buffers.weight_bytes = 0;
  try {
    npu::Npu::validate(c);
    FAIL() << "expected an error";
  } catch (const npu::NpuConfigError& e) {
    EXPECT_STREQ(e.what(), "buffers.weight_kib = 0: allowed more than 0");
  }
}

TEST(NpuConfig, QueueDepthIsCheckedOnBothSides) {
  for (const auto array : {npu::ArrayKind::dot_product, npu::ArrayKind::systolic}) {
    SCOPED_TRACE(npu::to_string(array));
    npu::NpuConfig c;
    c.array = array;
    if (array == npu::ArrayKind::systolic) {
      c.modes = {npu::BatchingMode::r_batching};
      c.stack_factors = {1};
    }
    c.offchip.queue_depth = 0;
    EXPECT_EQ(rejected_key(c), "offchip.queue_depth");
    c.offchip.queue_depth = 1;
    EXPECT_EQ(rejected_key(c), "");
    c.offchip.queue_depth = 1024;
    EXPECT_EQ(rejected_key(c), "");
    c.offchip.queue_depth = 1025;
    EXPECT_EQ(rejected_key(c), "offchip.queue_depth");
  }
}

TEST(NpuConfig, RangesAreCheckedOnBothSides) {
  npu::NpuConfig c;
  c.clock_mhz = 0;
  EXPECT_EQ(rejected_key(c), "clock_mhz");
  c.clock_mhz = 10'000;
  EXPECT_EQ(rejected_key(c), "");
  c.clock_mhz = 10'001;
  EXPECT_EQ(rejected_key(c), "clock_mhz");
  c = {};
  c.pe_count = 0;
  EXPECT_EQ(rejected_key(c), "pe_count");
  c = {};
  c.element_bytes = 3;
  EXPECT_EQ(rejected_key(c), "element_bytes");
  c = {};
  c.element_bytes = 4;
  c.accumulator_bytes = 2;
  EXPECT_EQ(rejected_key(c), "accumulator_bytes");
}

TEST(NpuConfig, BandwidthNeedsWholeMegabytesPerSecond) {
  npu::NpuConfig c;
  c.offchip.bandwidth_gb_per_s = 12.8;
  EXPECT_EQ(rejected_key(c), "");
  c.offchip.bandwidth_gb_per_s = 0.001;
  EXPECT_EQ(rejected_key(c), "");
  c.offchip.bandwidth_gb_per_s = 0.0005;
  EXPECT_EQ(rejected_key(c), "offchip.bandwidth_gb_per_s");
  c.offchip.bandwidth_gb_per_s = 0.0;
  EXPECT_EQ(rejected_key(c), "offchip.bandwidth_gb_per_s");
  c.offchip.bandwidth_gb_per_s = -1.0;
  EXPECT_EQ(rejected_key(c), "offchip.bandwidth_gb_per_s");
}

TEST(NpuConfig, BatchingRestrictions) {
  npu::NpuConfig c;
  c.modes = {npu::BatchingMode::p_batching};
  EXPECT_EQ(rejected_key(c), "batching.modes");
  c.modes = {};
  EXPECT_EQ(rejected_key(c), "batching.modes");
  c = {};
  c.stack_factors = {2, 4};
  EXPECT_EQ(rejected_key(c), "batching.stack_factors");  // must include 1
  c.stack_factors = {1, 3};  // 3 divides neither 64 nor 64
  EXPECT_EQ(rejected_key(c), "batching.stack_factors");
  c.stack_factors = {1, 1};
  EXPECT_EQ(rejected_key(c), "batching.stack_factors");
  c.stack_factors = {4, 1};  // order does not matter
  EXPECT_EQ(rejected_key(c), "");
  c.modes = {npu::BatchingMode::r_batching};
  const auto baseline = npu::Npu::validate(c);
  EXPECT_TRUE(baseline.allows(npu::BatchingMode::r_batching));
  EXPECT_FALSE(baseline.allows(npu::BatchingMode::fluid));
}

TEST(NpuConfig, ErrorMessageNamesKeyValueAndAllowed) {
  npu::NpuConfig c;
  c.clock_mhz = 0;
  try {
    npu::Npu::validate(c);
    FAIL() << "expected an error";
  } catch (const npu::NpuConfigError& e) {
    EXPECT_STREQ(e.what(), "clock_mhz = 0: allowed an integer in [1, 10000]");
  }
}

}  // namespace
}  // namespace npusim
