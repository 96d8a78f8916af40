// The energy model (docs/npu-model.md, "Energy"): a hand-worked layer, the defaults' scaling,
// the access rule checked against the schedule it is derived from, and properties over random
// layers (parts sum to the total, energy grows with every count).

#include <cmath>

#include <gtest/gtest.h>

#include "npu_model/cost_model.hpp"
#include "npu_model/energy.hpp"
#include "npu_model/vector_path.hpp"
#include "random_layer.hpp"

namespace npusim {
namespace {

// Dynamic energies from 45 nm, 0.9 V to the default 16 nm, 0.8 V: (16/45) * (0.8/0.9)^2.
const double default_scale = 16.0 / 45.0 * (0.8 / 0.9) * (0.8 / 0.9);

TEST(Energy, DefaultsAreHorowitzScaledToSixteenNanometres) {
  const npu::Npu npu = npu::Npu::validate(npu::NpuConfig{});
  const npu::EnergyTable& t = npu.energy();
  // 8-bit multiply 0.2 pJ + 32-bit add 0.1 pJ; the vector op is the 32-bit add.
  EXPECT_DOUBLE_EQ(t.mac_pj, 0.3 * default_scale);
  EXPECT_DOUBLE_EQ(t.vector_op_pj, 0.1 * default_scale);
  // The 512 KiB input buffer is one bank: 20 pJ * (512 KiB / 32 KiB)^(ln 5 / ln 32) per 64 bits.
  EXPECT_NEAR(t.input_buffer_pj_per_byte, 20.0 * std::pow(16.0, std::log(5.0) / std::log(32.0)) / 8 * default_scale,
              1e-12);
  // 1 MiB of weights over 64 PE banks: 16 KiB banks, 10 pJ * (16 KiB / 8 KiB)^(ln 2 / ln 4) = 10 * sqrt 2.
  EXPECT_NEAR(t.weight_buffer_pj_per_byte, 10.0 * std::sqrt(2.0) / 8 * default_scale, 1e-12);
  // 512 KiB of accumulators over 64 banks: 8 KiB banks, Horowitz's 10 pJ exactly.
  EXPECT_NEAR(t.output_buffer_pj_per_byte, 10.0 / 8 * default_scale, 1e-12);
  EXPECT_DOUBLE_EQ(t.dram_pj_per_byte, 108.0);
  EXPECT_DOUBLE_EQ(t.static_mw, 40.0);
}

TEST(Energy, SramCapacityRulePassesThroughHorowitzPointsAndGrows) {
  EXPECT_NEAR(npu::horowitz_sram_read64_pj(8 * 1024), 10.0, 1e-12);
  EXPECT_NEAR(npu::horowitz_sram_read64_pj(32 * 1024), 20.0, 1e-12);
  EXPECT_NEAR(npu::horowitz_sram_read64_pj(1024 * 1024), 100.0, 1e-9);
  double previous = 0.0;
  for (std::uint64_t bytes = 1; bytes <= (std::uint64_t{1} << 30); bytes *= 2) {
    const double pj = npu::horowitz_sram_read64_pj(bytes);
    EXPECT_GT(pj, previous) << bytes;
    previous = pj;
  }
}

TEST(Energy, ExplicitKeysOverrideTheDefaults) {
  npu::NpuConfig config;
  config.energy.mac_pj = 1.0;
  config.energy.output_buffer_pj_per_byte = 0.0;
  config.energy.node_nm = 45.0;
  config.energy.supply_v = 0.9;
  const npu::EnergyTable t = npu::Npu::validate(config).energy();
  EXPECT_DOUBLE_EQ(t.mac_pj, 1.0);
  EXPECT_DOUBLE_EQ(t.output_buffer_pj_per_byte, 0.0);
  EXPECT_DOUBLE_EQ(t.vector_op_pj, 0.1);  // Horowitz's own node: no scaling
}

TEST(Energy, NegativeOrNonFiniteEnergiesAreRefusedByKey) {
  npu::NpuConfig config;
  config.energy.vector_op_pj = -0.5;
  try {
    npu::Npu::validate(config);
    FAIL() << "a negative energy was accepted";
  } catch (const npu::NpuConfigError& e) {
    EXPECT_EQ(e.key(), "energy.vector_op_pj");
  }
  config.energy.vector_op_pj.reset();
  config.energy.static_mw = std::nan("");
  EXPECT_THROW(npu::Npu::validate(config), npu::NpuConfigError);
}

// One GEMM on the default NPU (64 x 64 PEs, 1 GHz, int8 operands, int32 accumulators), under a
// fixed mapping <1,1,1> and tiling, priced by hand.
TEST(Energy, HandWorkedGemmLayer) {
  const npu::Npu npu = npu::Npu::validate(npu::NpuConfig{});
  const npu::GemmShape shape{.rows = 64, .depth = 576, .cols = 64};
  npu::Tiling tiling;
  tiling.order = npu::LoopOrder::inputs_outer;
  tiling.band_rows = 4;
  tiling.col_block = 64;
  tiling.input_resident = tiling.weights_resident = true;
  tiling.input_prefetch = tiling.weight_prefetch = 3;
  const npu::LayerCost cost = npu::gemm_cost_tiled(npu, shape, 1, {1, 1, 1}, tiling);
  // Streaming: 64 rows * ceil(576 / 64) = 9 depth tiles * ceil(64 / 64) = 1 column tile = 576 cycles.
  ASSERT_EQ(cost.compute_cycles, 576u);
  // Off chip: the input 64 * 576 = 36864 B, the weights 576 * 64 = 36864 B, the outputs 64 * 64 = 4096 B.
  ASSERT_EQ(cost.bytes.input, 36864u);
  ASSERT_EQ(cost.bytes.weight, 36864u);
  ASSERT_EQ(cost.bytes.output, 4096u);
  const npu::OnChipAccesses& a = cost.on_chip;
  // (E3) input reads: 576 cycles * 64 lanes * 1 B = 36864; (E6) input writes: the 36864 B loaded.
  EXPECT_EQ(a.input_read_bytes, 36864u);
  EXPECT_EQ(a.input_write_bytes, 36864u);
  // (E4) weight reads: R-blocks 64 rows / 4 per band = 16, * 9 depth tiles * 1 column tile = 144
  // tile loads of 64 * 64 B = 589824; (E6) weight writes: the 36864 B loaded.
  EXPECT_EQ(a.weight_read_bytes, 589824u);
  EXPECT_EQ(a.weight_write_bytes, 36864u);
  // (E5) accumulators: 576 cycles * 64 columns * 4 B = 147456 read and as many written;
  // (E7) write-back: 64 * 64 outputs * 4 B = 16384 read; (E6) the DMA reads the 4096 B it stores.
  // Reads 147456 + 16384 + 4096 = 167936.
  EXPECT_EQ(a.output_read_bytes, 167936u);
  EXPECT_EQ(a.output_write_bytes, 147456u);
  EXPECT_EQ(a.vector_ops, 0u);

  const npu::EnergyParts e = npu::layer_energy(npu, cost);
  const double s = default_scale;
  // MACs: 64 * 576 * 64 = 2359296 at 0.3 pJ * s.
  EXPECT_NEAR(e.mac_pj, 2359296 * 0.3 * s, 1e-6);
  // SRAM: (36864 + 36864) B at the 512 KiB input bank, (589824 + 36864) B at a 16 KiB weight
  // bank, (167936 + 147456) B at an 8 KiB accumulator bank, each (64-bit energy / 8) * s.
  const double input_pj = 20.0 * std::pow(16.0, std::log(5.0) / std::log(32.0)) / 8 * s;
  const double weight_pj = 10.0 * std::sqrt(2.0) / 8 * s;
  const double output_pj = 10.0 / 8 * s;
  EXPECT_NEAR(e.sram_pj, 73728 * input_pj + 626688 * weight_pj + 315392 * output_pj, 1e-6);
  // DRAM: 36864 + 36864 + 4096 = 77824 B at 108 pJ = 8404992 pJ.
  EXPECT_NEAR(e.dram_pj, 8404992.0, 1e-6);
  EXPECT_EQ(e.vector_pj, 0.0);
  // Leakage: 40 mW over the layer's cycles at 1 GHz (1 ns each): 40 * cycles pJ.
  EXPECT_NEAR(e.static_pj, 40.0 * static_cast<double>(cost.cycles), 1e-6);
  EXPECT_NEAR(e.total_pj(), e.mac_pj + e.sram_pj + e.dram_pj + e.vector_pj + e.static_pj, 1e-6);
}

// The weight-read rule counts tile loads in closed form over the loop nest. Where every R-block
// has the same M im2col rows, the schedule's streaming cycles are exactly M per tile load: so the
// rule and the schedule agree on the loop nest they walk.
TEST(Energy, WeightTileLoadsAgreeWithTheScheduleOverRandomLayers) {
  traces::RandomStream rng(17, 5);
  int checked = 0;
  for (int trial = 0; trial < 4000 && checked < 300; ++trial) {
    testing::RandomLayerCase c = testing::random_layer_case(rng);
    const npu::Npu npu = npu::Npu::validate(c.config);
    const npu::BatchMapping m = testing::random_mapping(npu, c, rng);
    const npu::Tiling t = testing::random_tiling(npu, c, m, rng);
    const npu::FeatureMap f = npu::feature_map_of(c.shape);
    if (f.out_height % t.band_rows != 0 || m.b_r % t.band_samples != 0) continue;
    const npu::ScheduleResult r = npu::evaluate_schedule(npu, c.shape, c.batch, m, t);
    if (!r.feasible) continue;
    const npu::LayerCost cost = npu::gemm_cost_tiled(npu, c.shape, c.batch, m, t);
    const auto& g = npu.geometry(m.k);
    const std::uint64_t tile_bytes = std::uint64_t{g.tile_depth} * g.tile_cols * c.config.element_bytes;
    ASSERT_EQ(cost.on_chip.weight_read_bytes % tile_bytes, 0u);
    const std::uint64_t loads = cost.on_chip.weight_read_bytes / tile_bytes;
    const std::uint64_t rows_per_block =
        t.band_samples > 1 ? std::uint64_t{t.band_samples} * f.out_height * f.out_width : std::uint64_t{t.band_rows} * f.out_width;
    EXPECT_EQ(r.compute_cycles, loads * rows_per_block) << "trial " << trial;
    // (E3): one t_p-wide row per streaming cycle.
    EXPECT_GE(cost.on_chip.input_read_bytes, r.compute_cycles * g.tile_depth * c.config.element_bytes);
    ++checked;
  }
  EXPECT_GE(checked, 100);
}

TEST(Energy, PartsSumToTheTotalOverRandomLayers) {
  traces::RandomStream rng(23, 5);
  int checked = 0;
  for (int trial = 0; trial < 600; ++trial) {
    testing::RandomLayerCase c = testing::random_layer_case(rng);
    npu::Placement placement = testing::random_placement(rng, c.config, c.shape, c.batch);
    const npu::Npu npu = npu::Npu::validate(c.config);
    npu::LayerCost cost;
    try {
      cost = npu::best_gemm_cost(npu, c.shape, c.batch, placement);
    } catch (const npu::NoFeasibleTiling&) {
      continue;
    }
    const npu::EnergyParts e = npu::layer_energy(npu, cost);
    const double sum = e.mac_pj + e.sram_pj + e.dram_pj + e.vector_pj + e.static_pj;
    EXPECT_NEAR(e.total_pj(), sum, 1e-9 * sum);
    for (double part : {e.mac_pj, e.sram_pj, e.dram_pj, e.vector_pj, e.static_pj}) EXPECT_GE(part, 0.0);
    EXPECT_GT(e.mac_pj, 0.0);
    EXPECT_GT(e.sram_pj, 0.0);
    ++checked;
  }
  EXPECT_GE(checked, 100);
}

// Each count that feeds the energy, raised alone, raises the total and only its own part.
TEST(Energy, GrowsWithEveryCountThatFeedsIt) {
  traces::RandomStream rng(29, 5);
  const npu::Npu npu = npu::Npu::validate(npu::NpuConfig{});
  using Bump = void (*)(npu::OnChipAccesses&, std::uint64_t&, std::uint64_t&, std::uint64_t&, std::uint64_t);
  const Bump bumps[] = {
      [](npu::OnChipAccesses&, std::uint64_t& macs, std::uint64_t&, std::uint64_t&, std::uint64_t d) { macs += d; },
      [](npu::OnChipAccesses& a, std::uint64_t&, std::uint64_t&, std::uint64_t&, std::uint64_t d) { a.input_read_bytes += d; },
      [](npu::OnChipAccesses& a, std::uint64_t&, std::uint64_t&, std::uint64_t&, std::uint64_t d) { a.input_write_bytes += d; },
      [](npu::OnChipAccesses& a, std::uint64_t&, std::uint64_t&, std::uint64_t&, std::uint64_t d) { a.weight_read_bytes += d; },
      [](npu::OnChipAccesses& a, std::uint64_t&, std::uint64_t&, std::uint64_t&, std::uint64_t d) { a.weight_write_bytes += d; },
      [](npu::OnChipAccesses& a, std::uint64_t&, std::uint64_t&, std::uint64_t&, std::uint64_t d) { a.output_read_bytes += d; },
      [](npu::OnChipAccesses& a, std::uint64_t&, std::uint64_t&, std::uint64_t&, std::uint64_t d) { a.output_write_bytes += d; },
      [](npu::OnChipAccesses& a, std::uint64_t&, std::uint64_t&, std::uint64_t&, std::uint64_t d) { a.vector_ops += d; },
      [](npu::OnChipAccesses&, std::uint64_t&, std::uint64_t& offchip, std::uint64_t&, std::uint64_t d) { offchip += d; },
      [](npu::OnChipAccesses&, std::uint64_t&, std::uint64_t&, std::uint64_t& cycles, std::uint64_t d) { cycles += d; },
  };
  for (int trial = 0; trial < 200; ++trial) {
    testing::RandomLayerCase c = testing::random_layer_case(rng);
    npu::LayerCost cost;
    try {
      cost = npu::best_gemm_cost(npu::Npu::validate(c.config), c.shape, c.batch);
    } catch (const npu::NoFeasibleTiling&) {
      continue;
    }
    const double before = npu::price_energy(npu, cost.macs, cost.on_chip, cost.offchip_bytes, cost.cycles).total_pj();
    for (const Bump bump : bumps) {
      npu::OnChipAccesses a = cost.on_chip;
      std::uint64_t macs = cost.macs, offchip = cost.offchip_bytes, cycles = cost.cycles;
      bump(a, macs, offchip, cycles, rng.uniform_between(1, 1000));
      EXPECT_GT(npu::price_energy(npu, macs, a, offchip, cycles).total_pj(), before);
    }
  }
}

TEST(Energy, VectorLayersCountTheirOperationsAndElements) {
  const npu::Npu npu = npu::Npu::validate(npu::NpuConfig{});
  npu::VectorWork pool;
  pool.kind = npu::VectorKind::pooling;
  pool.height = pool.width = 8;
  pool.channels = 16;
  pool.kernel_height = pool.kernel_width = pool.stride_height = pool.stride_width = 2;
  pool.input_elements = 8 * 8 * 16;
  pool.output_elements = 4 * 4 * 16;
  pool.operations = 4 * 4 * 16 * 3;  // three max operations per 2x2 window
  const npu::LayerCost cost = npu::vector_cost(npu, pool, 2);
  // Two samples: every input element read once, every output written once, int8.
  EXPECT_EQ(cost.on_chip.vector_ops, 2u * 768);
  EXPECT_EQ(cost.on_chip.input_read_bytes, 2u * 1024 + cost.bytes.output);
  EXPECT_EQ(cost.on_chip.input_write_bytes, cost.bytes.input + 2u * 256);
  EXPECT_NEAR(npu::layer_energy(npu, cost).vector_pj, 1536 * 0.1 * default_scale, 1e-9);
}

TEST(Energy, SystolicLayersCountTheirFolds) {
  npu::NpuConfig config;
  config.array = npu::ArrayKind::systolic;
  config.systolic = {.rows = 8, .cols = 8, .dataflow = npu::Dataflow::weight_stationary};
  config.modes = {npu::BatchingMode::r_batching};
  config.stack_factors = {1};
  const npu::Npu npu = npu::Npu::validate(config);
  const npu::LayerCost cost = npu::best_gemm_cost(npu, {.rows = 16, .depth = 16, .cols = 16}, 1);
  // WS: k = 16 over 8 rows (2 row folds), n = 16 over 8 columns (2 column folds). Inputs 16 * 16
  // read once per column fold: 512 B; weights once: 256 B; partial sums 16 * 16 * 4 B read and
  // written once per row fold: 2048 B each, plus the write-back read 1024 B and the DMA's 256 B.
  EXPECT_EQ(cost.on_chip.input_read_bytes, 512u);
  EXPECT_EQ(cost.on_chip.weight_read_bytes, 256u);
  EXPECT_EQ(cost.on_chip.output_write_bytes, 2048u);
  EXPECT_EQ(cost.on_chip.output_read_bytes, 2048u + 1024u + cost.bytes.output);
}

}  // namespace
}  // namespace npusim
