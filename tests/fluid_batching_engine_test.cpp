#include <memory>

#include <gtest/gtest.h>
#include <systemc>

#include "npu_model/fluid_batching_engine.hpp"
#include "npu_model/systemc_context.hpp"
#include "sim/network_yaml.hpp"

namespace npusim {
namespace {

std::vector<npu::LayerWork> resnet56() {
  return workloads::layer_works(sim::load_model("resnet56"));
}

// Each entry is the best legal mapping of its layer with the operands where that batch size's
// residency plan puts them; a fused add costs nothing; the boundary bytes are the plan's.
TEST(ControlBlockTable, EveryEntryIsTheBestLegalMapping) {
  const auto npu = npu::Npu::validate(npu::NpuConfig{});
  const auto layers = resnet56();
  const auto table = npu::ControlBlockTable::build(npu, layers, 8);
  EXPECT_EQ(table.layer_count(), layers.size());
  std::size_t fused = 0;
  for (std::uint32_t b = 1; b <= 8; ++b) {
    const auto plan = npu::plan_residency(npu, layers, b);
    for (std::size_t l = 0; l < layers.size(); ++l) {
      const auto& e = table.entry(b, l);
      EXPECT_EQ(table.on_chip_bytes_before(b, l), plan.on_chip_bytes_before[l]);
      EXPECT_EQ(e.fused_into_previous, plan.layers[l].fused_into_previous);
      if (e.fused_into_previous) {
        EXPECT_EQ(e.cycles, 0u);
        ++fused;
        continue;
      }
      EXPECT_EQ(e.placement, plan.layers[l].placement);
      EXPECT_EQ(e.cycles, npu::best_layer_cost(npu, layers[l], b, plan.layers[l].placement).cycles);
      if (!layers[l].on_vector_path) {
        EXPECT_EQ(npu::mapping_violation(npu, layers[l].gemm, b, e.mapping), "");
      }
    }
  }
  // Every residual add of ResNet-56's 27 blocks and every global pool (six exits and the final
  // classifier's), at each batch size.
  EXPECT_EQ(fused, (27u + 7u) * 8);
  EXPECT_THROW(table.entry(0, 0), std::out_of_range);
  EXPECT_THROW(table.entry(9, 0), std::out_of_range);
  EXPECT_THROW(table.entry(1, layers.size()), std::out_of_range);
}

// Batch sizes built on several threads give the table of one thread, entry for entry, and the
// error of one thread: the smallest failing batch size's.
TEST(ControlBlockTable, ThreadsChangeNothingButTheTime) {
  const auto npu = npu::Npu::validate(npu::NpuConfig{});
  const auto layers = resnet56();
  const auto serial = npu::ControlBlockTable::build(npu, layers, 7);
  for (unsigned threads : {2u, 3u, 7u, 64u}) EXPECT_EQ(npu::ControlBlockTable::build(npu, layers, 7, threads), serial) << threads;

  npu::NpuConfig cramped;
  cramped.buffers.output_bytes = 1024;  // less than one output row's accumulators of conv1
  const auto small = npu::Npu::validate(cramped);
  const auto message = [&](unsigned threads) {
    try {
      (void)npu::ControlBlockTable::build(small, layers, 6, threads);
    } catch (const npu::NoFeasibleTiling& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  const std::string expected = message(1);
  EXPECT_NE(expected.find("at least 2 KiB"), std::string::npos) << expected;
  EXPECT_EQ(message(3), expected);
}

TEST(ControlBlockTable, FluidHardwareIsNeverSlowerThanTheBaseline) {
  // The baseline's mappings (R-batching, k = 1) are a subset of the full NPU's, so every entry
  // of the full table is at most the baseline's; and somewhere in ResNet-56 it is strictly
  // better, or fluid batching and stacking would be dead weight.
  const auto npu = npu::Npu::validate(npu::NpuConfig{});
  auto baseline_config = npu::NpuConfig{};
  baseline_config.modes = {npu::BatchingMode::r_batching};
  baseline_config.stack_factors = {1};
  const auto baseline = npu::Npu::validate(baseline_config);
  const auto layers = resnet56();
  const auto full = npu::ControlBlockTable::build(npu, layers, 8);
  const auto plain = npu::ControlBlockTable::build(baseline, layers, 8);
  int strictly_better = 0;
  for (std::size_t l = 0; l < layers.size(); ++l)
    for (std::uint32_t b = 1; b <= 8; ++b) {
      ASSERT_LE(full.entry(b, l).cycles, plain.entry(b, l).cycles);
      EXPECT_EQ(plain.mapping(b, l).k, 1u);
      EXPECT_EQ(plain.mapping(b, l).b_p, 1u);
      strictly_better += full.entry(b, l).cycles < plain.entry(b, l).cycles;
    }
  EXPECT_GT(strictly_better, 0);
}

TEST(FbeRegisters, PreemptCatchUpAndMerge) {
  npu::FbeRegisters fbe(16);
  fbe.start(8);
  fbe.layer_done();
  fbe.layer_done();
  fbe.early_exit(3);  // 3 leave at layer 2's exit
  fbe.layer_done();   // now at layer 3 with 5 samples
  EXPECT_EQ(fbe.active_batch(), 5u);
  fbe.preempt(4);  // 4 new samples catch up from layer 0
  EXPECT_EQ(fbe.suspended_batch(), 5u);
  EXPECT_EQ(fbe.suspended_layer(), 3u);
  EXPECT_EQ(fbe.active_batch(), 4u);
  EXPECT_EQ(fbe.layer(), 0u);
  fbe.layer_done();
  fbe.layer_done();
  fbe.early_exit(1);  // one catch-up sample exits at layer 2
  EXPECT_TRUE(fbe.catching_up());
  fbe.layer_done();  // reaches l_old = 3: merge 3 + 5
  EXPECT_FALSE(fbe.catching_up());
  EXPECT_EQ(fbe.active_batch(), 8u);
  EXPECT_EQ(fbe.layer(), 3u);
}

// layers_done(n) is n layer_done()s: the engine settles a quiet stretch of layers with it.
TEST(FbeRegisters, SeveralLayersDoneAtOnceMergeOnlyOnTheLast) {
  npu::FbeRegisters fbe(16);
  fbe.start(5);
  fbe.layers_done(0);
  EXPECT_EQ(fbe.layer(), 0u);
  fbe.layers_done(4);  // layers 0..3
  EXPECT_EQ(fbe.layer(), 4u);
  fbe.preempt(3);  // 3 catch up from layer 0 to l_old = 4
  // Passing the merge at layer 4 on the way to layer 5 would skip it.
  EXPECT_THROW(fbe.layers_done(5), npu::FbeProtocolError);
  EXPECT_EQ(fbe.layer(), 0u);
  fbe.layers_done(3);
  EXPECT_TRUE(fbe.catching_up());
  EXPECT_EQ(fbe.active_batch(), 3u);
  fbe.layers_done(1);  // reaches l_old = 4: merge 3 + 5
  EXPECT_FALSE(fbe.catching_up());
  EXPECT_EQ(fbe.active_batch(), 8u);
  EXPECT_EQ(fbe.layer(), 4u);
}

TEST(FbeRegisters, ProtocolViolationsThrow) {
  npu::FbeRegisters fbe(8);
  EXPECT_THROW(fbe.start(0), npu::FbeProtocolError);
  EXPECT_THROW(fbe.start(9), npu::FbeProtocolError);
  fbe.start(6);
  EXPECT_THROW(fbe.preempt(1), npu::FbeProtocolError);  // nothing past layer 0 yet
  fbe.layer_done();
  EXPECT_THROW(fbe.preempt(3), npu::FbeProtocolError);  // 6 + 3 > 8
  EXPECT_THROW(fbe.early_exit(7), npu::FbeProtocolError);
  fbe.preempt(2);
  EXPECT_THROW(fbe.preempt(1), npu::FbeProtocolError);  // already catching up
  EXPECT_THROW(fbe.start(1), npu::FbeProtocolError);    // a batch is active
  EXPECT_THROW(fbe.resume(), npu::FbeProtocolError);    // ... and not empty
}

TEST(FbeRegisters, DeeperStacksMergeInTurnAndCapTheWholeChain) {
  npu::FbeRegisters fbe(10, 2);
  fbe.start(4);
  for (int l = 0; l < 5; ++l) fbe.layer_done();  // 4 samples at layer 5
  fbe.preempt(3);                                 // 3 catch up toward layer 5
  fbe.layer_done();
  fbe.layer_done();                               // at layer 2
  // The chain is 3 + 4 = 7; 4 more would merge into 11 > 10.
  EXPECT_THROW(fbe.preempt(4), npu::FbeProtocolError);
  fbe.preempt(2);  // 2 catch up toward layer 2: 2 + 3 + 4 = 9
  EXPECT_EQ(fbe.suspended_count(), 2u);
  fbe.layer_done();
  fbe.layer_done();  // reach 2: merge with the 3
  EXPECT_EQ(fbe.active_batch(), 5u);
  EXPECT_EQ(fbe.suspended_count(), 1u);
  EXPECT_TRUE(fbe.catching_up());  // the merged batch still catches up to layer 5
  for (int l = 2; l < 5; ++l) fbe.layer_done();
  EXPECT_EQ(fbe.active_batch(), 9u);
  EXPECT_EQ(fbe.layer(), 5u);
  EXPECT_FALSE(fbe.catching_up());
  EXPECT_EQ(fbe.suspended_count(), 0u);
}

TEST(FbeRegisters, NonMergingPreemptionAndEmptiedCatchUpsResume) {
  npu::FbeRegisters fbe(8);
  fbe.start(5);
  fbe.layer_done();
  fbe.layer_done();
  fbe.preempt(2, false);  // runs to the end on its own
  for (int l = 0; l < 4; ++l) fbe.layer_done();
  EXPECT_EQ(fbe.active_batch(), 2u);  // passed layer 2 without merging
  EXPECT_EQ(fbe.suspended_count(), 1u);
  fbe.early_exit(2);  // its final exit
  fbe.resume();       // the 5 come back at layer 2
  EXPECT_EQ(fbe.active_batch(), 5u);
  EXPECT_EQ(fbe.layer(), 2u);
  // A catch-up run whose samples all leave before l_old does not merge; the batch resumes.
  fbe.preempt(1);
  fbe.early_exit(1);
  fbe.layer_done();
  EXPECT_EQ(fbe.active_batch(), 0u);
  fbe.resume();
  EXPECT_EQ(fbe.active_batch(), 5u);
  EXPECT_EQ(fbe.layer(), 2u);
}

// The clocked module drives the table's mapping for (B_act, l) after each edge.
TEST(FluidBatchingEngineModule, DrivesTheControlBlockMapping) {
  npu::ScopedSystemCContext context;
  {
    const auto npu = npu::Npu::validate(npu::NpuConfig{});
    const auto layers = resnet56();
    const auto table = npu::ControlBlockTable::build(npu, layers, 8);
    sc_core::sc_clock clk("clk", 1, sc_core::SC_NS);
    sc_core::sc_signal<bool> start, preempt, early_exit, layer_done;
    sc_core::sc_signal<std::uint32_t> b_start, b_incr, b_exit, b_r, b_p, k, layer, active;
    npu::FluidBatchingEngine fbe("fbe", table);
    fbe.clk(clk);
    fbe.start(start);
    fbe.preempt(preempt);
    fbe.early_exit(early_exit);
    fbe.layer_done(layer_done);
    fbe.b_start(b_start);
    fbe.b_incr(b_incr);
    fbe.b_exit(b_exit);
    fbe.b_r(b_r);
    fbe.b_p(b_p);
    fbe.k(k);
    fbe.layer(layer);
    fbe.active_batch(active);
    const auto expect_mapping = [&](std::uint32_t batch, std::uint32_t l) {
      EXPECT_EQ(active.read(), batch);
      EXPECT_EQ(layer.read(), l);
      const auto& m = table.mapping(batch, l);
      EXPECT_EQ(b_r.read(), m.b_r);
      EXPECT_EQ(b_p.read(), m.b_p);
      EXPECT_EQ(k.read(), m.k);
    };
    start = true;
    b_start = 6;
    sc_core::sc_start(1, sc_core::SC_NS);  // edge at 0 samples start = 6
    start = false;
    layer_done = true;
    sc_core::sc_start(1, sc_core::SC_NS);  // edge at 1: l = 1
    expect_mapping(6, 1);
    layer_done = false;
    preempt = true;
    b_incr = 2;
    sc_core::sc_start(1, sc_core::SC_NS);  // edge at 2: suspend 6 at l = 1, run 2 from 0
    expect_mapping(2, 0);
    preempt = false;
    layer_done = true;
    sc_core::sc_start(1, sc_core::SC_NS);  // edge at 3: l = 1 = l_old: merge to 8
    expect_mapping(8, 1);
    layer_done = false;
    early_exit = true;
    b_exit = 5;
    sc_core::sc_start(1, sc_core::SC_NS);  // edge at 4: 5 exit
    expect_mapping(3, 1);
    EXPECT_EQ(fbe.registers().active_batch(), 3u);
  }
}

}  // namespace
}  // namespace npusim
