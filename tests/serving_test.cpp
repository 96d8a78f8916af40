// The serving engine: hand-computed timelines, invariants over random scenarios, and policy
// sanity. Timelines are built from the FBE table's layer cycles, whose own exactness the
// reference-agreement tests prove; the arithmetic here is the serving model's.

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <string_view>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "workloads/control_blocks.hpp"
#include "sim/network_yaml.hpp"
#include "sim/run_report.hpp"
#include "sim/serving.hpp"

namespace npusim {
namespace {

using scheduler::Decision;
using scheduler::SchedulerView;

// Four layers on a 64-wide input: fc1, exit1.fc (the early exit's classifier), fc2, fc3.
// exit1 is decided after layer 1, the final exit after layer 3.
const char* const tiny_model = R"(network:
  name: tiny
  input: {height: 1, width: 1, channels: 64}
  layers:
    - {name: fc1, type: fc, out_channels: 64}
    - {name: fc2, type: fc, out_channels: 64}
    - {name: fc3, type: fc, out_channels: 10}
  exits:
    - name: exit1
      after: fc1
      probability: 0.5
      classifier:
        - {name: exit1.fc, type: fc, out_channels: 10}
    - {name: final, after: fc3, probability: 0.5}
)";

// Starts everything waiting when idle; preempts with everything waiting when the running batch
// is about to run `preempt_at_layer`: merging, or with `restart` killing the running batch.
class ScriptedPolicy final : public scheduler::Policy {
 public:
  ScriptedPolicy(std::uint32_t layer, bool restart) : layer_(layer), restart_(restart) {}
  Decision decide(const SchedulerView& view) override {
    std::vector<std::uint32_t> all;
    for (std::uint32_t i = 0; i < view.queue.size(); ++i) all.push_back(i);
    if (!view.running) return all.empty() ? Decision::idle() : Decision::start(all);
    if (view.running->next_layer == layer_ && !all.empty() && view.preemptions_left > 0)
      return restart_ ? Decision::preempt_restarting(all) : Decision::preempt(all);
    return Decision::keep_running();
  }

 private:
  std::uint32_t layer_;
  bool restart_;
};

class Serving : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / fmt::format("npusim_serving_test_{}", ::getpid());
    std::filesystem::create_directories(dir_);
    std::ofstream(dir_ / "tiny.yaml") << tiny_model;
    scheduler::register_builtin_policies(registry_);
    registry_.add({"scripted", "test",
                   {scheduler::ParameterSpec::integer("layer", 1, 0, 100, "preempt before it"),
                    scheduler::ParameterSpec::boolean("restart", false, "kill instead of merging")},
                   [](const scheduler::ParameterValues& p) {
                     return std::make_unique<ScriptedPolicy>(static_cast<std::uint32_t>(p.integer("layer")),
                                                             p.boolean("restart"));
                   }});
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // A scenario with one device replaying `rows` ("arrival_ns,exit" each) of the tiny model.
  sim::Scenario tiny_scenario(const std::vector<std::pair<std::int64_t, int>>& rows, const std::string& scheduler,
                              const std::string& extra = "") {
    std::ofstream csv(dir_ / "trace.csv");
    csv << "arrival_ns,device,model,exit\n";
    for (const auto& [t, exit] : rows) csv << t << ",cam,tiny.yaml," << exit << "\n";
    csv.close();
    std::ofstream(dir_ / "s.yaml") << "name: tiny\nmodel: tiny.yaml\n"
                                   << "devices:\n  - {name: cam, arrival: {process: replay, file: trace.csv}, slo_ms: 1}\n"
                                   << "scheduler: " << scheduler << "\nsimulation: {seed: 1, duration_s: 1}\n" << extra;
    return sim::load_scenario((dir_ / "s.yaml").string(), {}, registry_);
  }

  // Layer cycles the FBE table gives the tiny model at `batch` on the scenario's NPU.
  std::vector<std::uint64_t> cycles(const sim::Scenario& s, std::uint32_t batch) const {
    const auto& network = s.models.begin()->second;
    const auto table = workloads::control_block_table(s.npu, network, batch);
    std::vector<std::uint64_t> out;
    for (std::size_t l = 0; l < network.layers.size(); ++l) out.push_back(table.entry(batch, l).cycles);
    return out;
  }

  struct Recorder : sim::ServingObserver {
    std::map<std::uint64_t, double> latency_ns;
    std::map<std::uint64_t, std::uint32_t> exit;
    void on_complete(std::int64_t time_ps, const scheduler::SampleInfo& s, std::uint32_t e) override {
      latency_ns[s.id] = static_cast<double>(time_ps - s.arrival_ns * 1000) / 1000.0;
      exit[s.id] = e;
    }
  };

  sim::ServingResult run(const sim::Scenario& s, Recorder& recorder) {
    std::vector<sim::ServingObserver*> observers{&recorder};
    return sim::run_serving(s, registry_, observers);
  }

  std::filesystem::path dir_;
  scheduler::PolicyRegistry registry_;
};

// The default NPU runs at 1 GHz: one cycle is one nanosecond.
TEST_F(Serving, OneSampleTakesItsIsolatedLatency) {
  const auto s = tiny_scenario({{1000, 1}}, "{policy: fcfs}");
  const auto c = cycles(s, 1);
  Recorder r;
  const auto result = run(s, r);
  // Arrives at 1000 ns to an idle NPU and runs fc1, exit1.fc, fc2, fc3 at batch 1 back to back.
  EXPECT_DOUBLE_EQ(r.latency_ns.at(0), static_cast<double>(c[0] + c[1] + c[2] + c[3]));
  EXPECT_EQ(r.exit.at(0), 1u);
  EXPECT_EQ(result.stats.layers_run, 4u);
  EXPECT_EQ(result.metrics.overall().completed, 1u);
}

TEST_F(Serving, TwoSamplesArrivingTogetherRunAsOneBatch) {
  const auto s = tiny_scenario({{500, 1}, {500, 1}}, "{policy: static_batch, static_batch: {batch_size: 2, aimd: false}}");
  const auto c2 = cycles(s, 2);
  Recorder r;
  const auto result = run(s, r);
  // Both are in the FIFO at 500 ns, the batch is full, and four layers run at batch 2.
  const double expected = static_cast<double>(c2[0] + c2[1] + c2[2] + c2[3]);
  EXPECT_DOUBLE_EQ(r.latency_ns.at(0), expected);
  EXPECT_DOUBLE_EQ(r.latency_ns.at(1), expected);
  EXPECT_EQ(result.stats.layers_run, 4u);
}

TEST_F(Serving, StaticBatchWaitsForItsTimeout) {
  const auto s = tiny_scenario({{0, 1}}, "{policy: static_batch, static_batch: {batch_size: 4, aimd: false, timeout_ms: 0.002}}");
  const auto c = cycles(s, 1);
  Recorder r;
  run(s, r);
  // Alone, it waits the 2 us timeout (2000 ns), then runs at batch 1.
  EXPECT_DOUBLE_EQ(r.latency_ns.at(0), 2000.0 + static_cast<double>(c[0] + c[1] + c[2] + c[3]));
}

TEST_F(Serving, AnEarlyExitLeavesTheBatch) {
  const auto s = tiny_scenario({{0, 0}, {0, 1}}, "{policy: static_batch, static_batch: {batch_size: 2, aimd: false}}");
  const auto c1 = cycles(s, 1);
  const auto c2 = cycles(s, 2);
  Recorder r;
  const auto result = run(s, r);
  // Sample 0 leaves at exit1 after fc1 and exit1.fc at batch 2; sample 1 goes on alone.
  EXPECT_DOUBLE_EQ(r.latency_ns.at(0), static_cast<double>(c2[0] + c2[1]));
  EXPECT_DOUBLE_EQ(r.latency_ns.at(1), static_cast<double>(c2[0] + c2[1] + c1[2] + c1[3]));
  EXPECT_EQ(result.stats.exits.at(0).completions, 1u);
  EXPECT_EQ(result.stats.exits.at(1).completions, 1u);
}

TEST_F(Serving, PreemptionCatchesUpAndMergesPayingTheContextTransfers) {
  // Sample 0 arrives at 0 and starts alone; sample 1 arrives at 10 ns, during fc1. Before
  // layer 1 the policy preempts: sample 0's context (fc1's output, which the residency plan
  // keeps on chip: 64 int8 values = 64 bytes) does not fit a 0 KiB context buffer, so it is
  // written off chip, sample 1 runs fc1, the context is read back, and the two run layers 1..3
  // as a batch of 2.
  const auto s = tiny_scenario({{0, 1}, {10, 1}}, "{policy: scripted}", "serving: {context_buffer_kib: 0}\n");
  const auto c1 = cycles(s, 1);
  const auto c2 = cycles(s, 2);
  // One transfer: 100 ns latency = 100 cycles, plus 64 bytes at 25.6 GB/s = ceil(2.5) = 3 bus
  // cycles: 103 cycles each way.
  ASSERT_EQ(s.npu.transfer_cycles(64), 103u);
  Recorder r;
  const auto result = run(s, r);
  const double merged_end = static_cast<double>(c1[0] + 103 + c1[0] + 103 + c2[1] + c2[2] + c2[3]);
  EXPECT_DOUBLE_EQ(r.latency_ns.at(0), merged_end);
  EXPECT_DOUBLE_EQ(r.latency_ns.at(1), merged_end - 10.0);
  EXPECT_EQ(result.stats.preemptions, 1u);
  EXPECT_EQ(result.stats.merges, 1u);
  EXPECT_EQ(result.stats.context_spills, 1u);
  EXPECT_EQ(result.stats.context_bytes_moved, 128u);  // written once, read once
  EXPECT_EQ(result.stats.context_transfer_ps, 206'000);

  // With a 1 KiB context buffer the context stays on chip: free.
  const auto on_chip = tiny_scenario({{0, 1}, {10, 1}}, "{policy: scripted}", "serving: {context_buffer_kib: 1}\n");
  Recorder r2;
  const auto kept = run(on_chip, r2);
  EXPECT_DOUBLE_EQ(r2.latency_ns.at(0), static_cast<double>(c1[0] + c1[0] + c2[1] + c2[2] + c2[3]));
  EXPECT_EQ(kept.stats.context_spills, 0u);
}

// Energy (docs/npu-model.md, "Energy"): a sample that leaves at exit1 runs fc1 and exit1.fc;
// one that goes to the end runs all four layers. Its energy is the same first two layers' plus
// more, never less.
TEST_F(Serving, AnExitNeverCostsMoreEnergyThanRunningToTheEnd) {
  const auto energy_of = [&](int exit) {
    Recorder r;
    const auto result = run(tiny_scenario({{0, exit}}, "{policy: fcfs}"), r);
    EXPECT_NEAR(result.stats.device_dynamic_energy_pj.at(0), result.stats.dynamic_energy.total_pj(),
                1e-9 * result.stats.dynamic_energy.total_pj());
    return result.stats.dynamic_energy.total_pj();
  };
  const double at_exit1 = energy_of(0);
  const double at_end = energy_of(1);
  EXPECT_GT(at_exit1, 0.0);
  EXPECT_LT(at_exit1, at_end);

  // The same arrivals in batches: each sample's exit moved to the end costs no less.
  std::vector<std::pair<std::int64_t, int>> exits, ends;
  std::mt19937_64 random(7);
  for (int i = 0; i < 40; ++i) {
    const std::int64_t t = static_cast<std::int64_t>(i) * 150;
    exits.push_back({t, static_cast<int>(random() % 2)});
    ends.push_back({t, 1});
  }
  const std::string policy = "{policy: static_batch, static_batch: {batch_size: 4, aimd: false}}";
  Recorder r1, r2;
  const double with_exits = run(tiny_scenario(exits, policy), r1).stats.dynamic_energy.total_pj();
  const double to_the_end = run(tiny_scenario(ends, policy), r2).stats.dynamic_energy.total_pj();
  EXPECT_LE(with_exits, to_the_end);
}

// The engine counts energy exactly in zeptojoules and settles unobserved stretches of layers
// from running sums (sim/energy_ledger.hpp). Its totals must equal what the layers report one by
// one to an observer, summed here in long double with Kahan compensation, and each device's
// share the layers' energy split evenly over the samples that ran them.
TEST_F(Serving, EnergyTotalsEqualACompensatedSumOfTheLayersRun) {
  struct Kahan {
    long double sum = 0, carry = 0;
    void add(long double x) {
      const long double y = x - carry, t = sum + y;
      carry = (t - sum) - y;
      sum = t;
    }
  };
  struct LayerEnergy : sim::ServingObserver {
    Kahan total;
    std::vector<Kahan> device;
    void on_layer(const sim::LayerRun& run) override {
      total.add(run.dynamic_energy_pj);
      const long double share = static_cast<long double>(run.dynamic_energy_pj) / run.samples.size();
      for (const auto& sample : run.samples) {
        if (sample.device >= device.size()) device.resize(sample.device + 1);
        device[sample.device].add(share);
      }
    }
  };
  // fcfs never preempts; exit_aware does, and spills contexts with no context buffer.
  for (const char* policy : {"fcfs", "exit_aware"}) {
    SCOPED_TRACE(policy);
    const auto s = sim::load_scenario(NPUSIM_SOURCE_DIR "/configs/scenarios/default.yaml",
                                      {fmt::format("scheduler.policy={}", policy), "simulation.samples=2000",
                                       "serving.context_buffer_kib=0"},
                                      registry_);
    LayerEnergy layers;
    std::vector<sim::ServingObserver*> observers{&layers};
    const auto observed = sim::run_serving(s, registry_, observers);
    const auto unobserved = sim::run_serving(s, registry_);
    const long double expected = layers.total.sum + observed.stats.context_energy_pj;
    ASSERT_GT(expected, 0);
    for (const auto* result : {&observed, &unobserved})
      EXPECT_NEAR(result->stats.dynamic_energy.total_pj(), static_cast<double>(expected),
                  static_cast<double>(1e-12L * expected));
    if (observed.stats.context_spills == 0) {
      ASSERT_EQ(layers.device.size(), unobserved.stats.device_dynamic_energy_pj.size());
      for (std::size_t d = 0; d < layers.device.size(); ++d)
        EXPECT_NEAR(unobserved.stats.device_dynamic_energy_pj[d], static_cast<double>(layers.device[d].sum),
                    static_cast<double>(1e-12L * layers.device[d].sum))
            << "device " << d;
    } else {
      EXPECT_STRNE(policy, "fcfs");
    }
    if (std::string_view(policy) == "exit_aware") {
      EXPECT_GT(observed.stats.context_spills, 0u);
    }
  }
}

TEST_F(Serving, ASpilledContextCostsItsBytesAtDramAndInputBufferEnergy) {
  const auto s = tiny_scenario({{0, 1}, {10, 1}}, "{policy: scripted}", "serving: {context_buffer_kib: 0}\n");
  Recorder r;
  const auto result = run(s, r);
  ASSERT_EQ(result.stats.context_bytes_moved, 128u);
  // 128 bytes over the channel and through the input buffer, one way each time.
  const auto& t = s.npu.energy();
  EXPECT_NEAR(result.stats.context_energy_pj, 128 * (t.dram_pj_per_byte + t.input_buffer_pj_per_byte), 1e-9);
  double charged = 0;
  for (double pj : result.stats.device_dynamic_energy_pj) charged += pj;
  EXPECT_NEAR(charged, result.stats.dynamic_energy.total_pj(), 1e-9 * charged);
}

TEST_F(Serving, AKilledBatchSavesNoContextAndRerunsFromLayerZero) {
  // As above, but the preemption kills sample 0's batch (PREMA's kill): nothing is written off
  // chip, sample 1 runs all four layers alone, then sample 0 runs all four again from layer 0.
  const auto s = tiny_scenario({{0, 1}, {10, 1}}, "{policy: scripted, scripted: {restart: true}}",
                               "serving: {context_buffer_kib: 0}\n");
  const auto c1 = cycles(s, 1);
  const double alone = static_cast<double>(c1[0] + c1[1] + c1[2] + c1[3]);
  Recorder r;
  const auto result = run(s, r);
  EXPECT_DOUBLE_EQ(r.latency_ns.at(1), static_cast<double>(c1[0]) + alone - 10.0);
  EXPECT_DOUBLE_EQ(r.latency_ns.at(0), static_cast<double>(c1[0]) + 2 * alone);
  EXPECT_EQ(result.stats.preemptions, 1u);
  EXPECT_EQ(result.stats.resumes, 1u);
  EXPECT_EQ(result.stats.merges, 0u);
  EXPECT_EQ(result.stats.context_spills, 0u);
  EXPECT_EQ(result.stats.context_bytes_moved, 0u);
  EXPECT_EQ(result.stats.context_transfer_ps, 0);
  EXPECT_EQ(result.stats.layers_run, 9u);  // 1 lost, 4 + 4
}

TEST_F(Serving, PreemptionDepthZeroForbidsPreempting) {
  const auto s = tiny_scenario({{0, 1}, {10, 1}}, "{policy: scripted}", "serving: {preemption_depth: 0}\n");
  const auto c1 = cycles(s, 1);
  Recorder r;
  const auto result = run(s, r);
  // No preemption: sample 1 waits for sample 0 to finish, then runs alone.
  const double first = static_cast<double>(c1[0] + c1[1] + c1[2] + c1[3]);
  EXPECT_DOUBLE_EQ(r.latency_ns.at(0), first);
  EXPECT_DOUBLE_EQ(r.latency_ns.at(1), 2 * first - 10.0);
  EXPECT_EQ(result.stats.preemptions, 0u);
}

TEST_F(Serving, FullFifoDropsAndCountsThem) {
  const auto s = tiny_scenario({{0, 1}, {1, 1}, {2, 1}, {3, 1}}, "{policy: fcfs}",
                               "serving: {fifo_capacity: 1, drop: newest}\n");
  Recorder r;
  const auto result = run(s, r);
  // Sample 0 starts at once (the FIFO is empty again); sample 1 waits; 2 and 3 find it full.
  EXPECT_EQ(result.metrics.overall().arrived, 4u);
  EXPECT_EQ(result.metrics.overall().completed, 2u);
  EXPECT_EQ(result.metrics.overall().dropped, 2u);
  EXPECT_TRUE(r.latency_ns.count(0) && r.latency_ns.count(1));

  const auto oldest = tiny_scenario({{0, 1}, {1, 1}, {2, 1}, {3, 1}}, "{policy: fcfs}",
                                    "serving: {fifo_capacity: 1, drop: oldest}\n");
  Recorder r2;
  run(oldest, r2);
  // Each newcomer evicts the waiting sample: 0 runs, 3 is the one left waiting.
  EXPECT_TRUE(r2.latency_ns.count(0) && r2.latency_ns.count(3));
  EXPECT_FALSE(r2.latency_ns.count(1) || r2.latency_ns.count(2));
}

// A policy that breaks the rules is stopped with a one-line PolicyError.
class Rogue final : public scheduler::Policy {
 public:
  Decision decide(const SchedulerView& view) override {
    if (!view.running) return Decision::start({0, 0});
    return Decision::keep_running();
  }
};

// Starts properly, then preempts with a queue position that does not exist.
class PhantomPreempter final : public scheduler::Policy {
 public:
  Decision decide(const SchedulerView& view) override {
    if (!view.running) return Decision::start({0});
    return Decision::preempt({7});
  }
};

TEST_F(Serving, RuleBreakingPoliciesAreStopped) {
  registry_.add({"rogue", "test", {}, [](const scheduler::ParameterValues&) { return std::make_unique<Rogue>(); }});
  registry_.add({"phantom", "test", {},
                 [](const scheduler::ParameterValues&) { return std::make_unique<PhantomPreempter>(); }});
  const auto error_of = [&](const std::string& policy) -> std::string {
    try {
      sim::run_serving(tiny_scenario({{0, 1}}, "{policy: " + policy + "}"), registry_);
    } catch (const scheduler::PolicyError& e) {
      return e.what();
    }
    return "no error";
  };
  EXPECT_EQ(error_of("rogue"), "policy rogue at 0 ns: started a batch names queue position 0 twice");
  // After fc1 (batch 1) the queue is empty.
  const auto c = cycles(tiny_scenario({{0, 1}}, "{policy: fcfs}"), 1);
  EXPECT_EQ(error_of("phantom"), fmt::format("policy phantom at {} ns: preempted names queue position 7 of a queue of 0", c[0]));
}

// ---- invariants over random scenarios ----

struct InvariantChecker : sim::ServingObserver {
  std::int64_t last_end_ps = 0;
  std::map<std::uint64_t, int> last_layer;  // per sample: the last layer it ran
  std::set<std::uint64_t> completed;
  std::vector<std::string> failures;
  std::map<std::uint32_t, std::vector<std::uint64_t>> isolated_ps_to_exit;  // [model][exit]
  std::map<std::uint32_t, std::vector<std::uint32_t>> decision_layer;       // [model][exit]

  void fail(const std::string& what) {
    if (failures.size() < 5) failures.push_back(what);
  }
  void on_layer(const sim::LayerRun& run) override {
    if (run.start_ps < last_end_ps) fail(fmt::format("layer at {} ps starts before the last ended ({})", run.start_ps, last_end_ps));
    last_end_ps = run.end_ps;
    for (const auto& s : run.samples) {
      auto [it, fresh] = last_layer.emplace(s.id, -1);
      // In order, or from layer 0 again after a kill (a restarting preemption) lost its work.
      if (static_cast<int>(run.layer) != it->second + 1 && run.layer != 0)
        fail(fmt::format("sample {} ran layer {} after layer {}", s.id, run.layer, it->second));
      it->second = static_cast<int>(run.layer);
    }
  }
  void on_complete(std::int64_t time_ps, const scheduler::SampleInfo& s, std::uint32_t exit) override {
    if (!completed.insert(s.id).second) fail(fmt::format("sample {} completed twice", s.id));
    if (last_layer[s.id] != static_cast<int>(decision_layer.at(s.model)[exit]))
      fail(fmt::format("sample {} left at exit {} after layer {}", s.id, exit, last_layer[s.id]));
    const std::int64_t latency_ps = time_ps - s.arrival_ns * 1000;
    if (latency_ps < static_cast<std::int64_t>(isolated_ps_to_exit.at(s.model)[exit]))
      fail(fmt::format("sample {} took {} ps, below its isolated latency {} ps", s.id, latency_ps,
                       isolated_ps_to_exit.at(s.model)[exit]));
  }
};

TEST_F(Serving, RandomScenariosKeepTheInvariants) {
  const std::vector<std::string> policies{"fcfs", "static_batch", "lazy_batching", "prema", "edf", "exit_aware"};
  std::mt19937_64 rng(20221030);
  const int cases = 36;
  for (int c = 0; c < cases; ++c) {
    const std::string policy = policies[static_cast<std::size_t>(c) % policies.size()];
    const auto pick = [&](int n) { return static_cast<int>(rng() % static_cast<std::uint64_t>(n)); };
    std::string devices;
    const int device_count = 1 + pick(4);
    for (int d = 0; d < device_count; ++d) {
      const char* model = pick(2) ? "resnet56" : "mobilenetv2";
      const int rate = 100 + pick(900);
      devices += pick(2) ? fmt::format("  - {{name: d{}, model: {}, arrival: {{process: poisson, rate_hz: {}}}, slo_ms: {}}}\n",
                                       d, model, rate, 1 + pick(20))
                         : fmt::format("  - {{name: d{}, model: {}, arrival: {{process: mmpp, rate_hz: {}, peak_factor: 4, "
                                       "burst_ms: 20, gap_ms: 80}}, slo_factor: {}}}\n",
                                       d, model, rate, 2 + pick(8));
    }
    const std::string yaml = fmt::format(
        "name: random{}\ndevices:\n{}scheduler: {{policy: {}, max_batch: {}}}\n"
        "serving: {{fifo_capacity: {}, preemption_depth: {}, context_buffer_kib: {}}}\n"
        "simulation: {{seed: {}, samples: 400}}\n",
        c, devices, policy, 1 + pick(16), 20 + pick(400), pick(3), pick(2) ? 0 : 64, c);
    std::ofstream(dir_ / "random.yaml") << yaml;
    const auto scenario = sim::load_scenario((dir_ / "random.yaml").string(), {}, registry_);

    InvariantChecker checker;
    std::uint32_t m = 0;
    for (const auto& [name, network] : scenario.models) {
      const auto table = workloads::control_block_table(scenario.npu, network, 1);
      for (const auto& exit : network.exits) {
        const std::size_t last = exit.classifier_layers.empty() ? exit.after_layer : exit.classifier_layers.back();
        // Every layer up to the exit's decision runs, earlier exits' classifiers included; at
        // 1 GHz a cycle is 1000 ps.
        std::uint64_t cycles = 0;
        for (std::size_t l = 0; l <= last; ++l) cycles += table.entry(1, l).cycles;
        checker.isolated_ps_to_exit[m].push_back(cycles * 1000);
        checker.decision_layer[m].push_back(static_cast<std::uint32_t>(last));
      }
      ++m;
    }
    std::vector<sim::ServingObserver*> observers{&checker};
    const auto first = sim::run_serving(scenario, registry_, observers);
    SCOPED_TRACE(yaml);
    EXPECT_TRUE(checker.failures.empty()) << fmt::format("{}", fmt::join(checker.failures, "\n"));
    const auto& all = first.metrics.overall();
    EXPECT_EQ(all.arrived, 400u);
    EXPECT_EQ(all.arrived, all.completed + all.dropped);
    EXPECT_EQ(checker.completed.size(), all.completed);
    // Same seed, same bytes.
    const auto second = sim::run_serving(scenario, registry_);
    EXPECT_EQ(sim::summary_json(scenario, first), sim::summary_json(scenario, second));
  }
}

// ---- policy sanity ----

TEST_F(Serving, ExitAwareBeatsFcfsAndStaticBatchingUnderBurstsAtCapacity) {
  // ResNet-50 at batch 1 serves about 465 samples/s on the default NPU (2,150,182 cycles, about
  // 2.15 ms each). Eight bursty cameras offer about 8 x 44 x (0.8 + 0.2 x 3) = 493 samples/s on
  // average (106 % of that: one sample at a time cannot keep up), three times that in bursts.
  // Measured (seeds 1..3): exit_aware's mean latency is 16-27 % below fcfs's and 6-7 % below
  // static_batch's (Clipper's AIMD, starting partial batches at once); the bounds (8 % and 3 %)
  // leave room for noise. Against a 5 ms timeout that waits for a batch it was 47-57 % below. With fusion and residency a batch of 16 costs 0.77x per sample of batch 1 (0.65x
  // without residency), so batching pays less than it did: at 93 % load exit_aware is only 0-2 %
  // ahead of fcfs, at 99 % 2-10 %.
  for (int seed = 1; seed <= 3; ++seed) {
    std::ofstream(dir_ / "burst.yaml")
        << "name: burst\nmodel: resnet50\ndevices:\n"
        << "  - {name: cam, count: 8, arrival: {process: mmpp, rate_hz: 44, peak_factor: 3, burst_ms: 300, gap_ms: 1200},"
        << " slo_factor: 5}\nscheduler: {policy: exit_aware, max_batch: 16}\n"
        << "simulation: {seed: " << seed << ", samples: 12000}\n";
    std::map<std::string, double> mean_ms;
    for (const char* policy : {"fcfs", "static_batch", "exit_aware"}) {
      const auto s = sim::load_scenario((dir_ / "burst.yaml").string(), {std::string("scheduler.policy=") + policy},
                                        registry_);
      mean_ms[policy] = sim::run_serving(s, registry_).metrics.overall().latency_ns.mean() / 1e6;
    }
    SCOPED_TRACE(fmt::format("seed {}: fcfs {:.2f} ms, static_batch {:.2f} ms, exit_aware {:.2f} ms", seed,
                             mean_ms["fcfs"], mean_ms["static_batch"], mean_ms["exit_aware"]));
    EXPECT_LT(mean_ms["exit_aware"], 0.92 * mean_ms["fcfs"]);
    EXPECT_LT(mean_ms["exit_aware"], 0.97 * mean_ms["static_batch"]);
  }
}

// ResNet-50, MobileNetV2 and ResNet-56 share the NPU at about 92 % load; shortest-job-first
// alone keeps ResNet-50's job waiting whenever a shorter one is ready. PREMA's tokens grow with
// the waiting time over each network's isolated latency, and its threshold rises with them, so
// ResNet-50's job becomes a candidate that shorter jobs must pass a level to compete with.
// Measured over 6 s (seeds 1 to 4): ResNet-50's mean under prema is 1.56, 1.65, 1.78 and 1.73
// times its mean under edf; with a fixed threshold that every job passes (pure shortest-job-
// first) 2.67, 3.38, 9.97 and 1.73 times (seed 4 starves nobody). The test takes seed 2; the
// bound, 2x, leaves room for noise.
TEST_F(Serving, PremaDoesNotStarveTheLongNetworkInAMix) {
  std::ofstream(dir_ / "mix.yaml")
      << "name: mix\ndevices:\n"
      << "  - {name: r50, model: resnet50, arrival: {process: poisson, rate_hz: 100}, slo_factor: 5}\n"
      << "  - {name: mnv2, count: 2, model: mobilenetv2, arrival: {process: poisson, rate_hz: 400}, slo_factor: 5}\n"
      << "  - {name: r56, count: 2, model: resnet56, arrival: {process: poisson, rate_hz: 5200}, slo_factor: 5}\n"
      << "scheduler: {policy: edf, max_batch: 16}\nsimulation: {seed: 2, duration_s: 6}\n";
  const auto resnet50_mean_ms = [&](const std::vector<std::string>& overrides) {
    const auto s = sim::load_scenario((dir_ / "mix.yaml").string(), overrides, registry_);
    return sim::run_serving(s, registry_).metrics.devices().at(0).latency_ns.mean() / 1e6;
  };
  const double edf = resnet50_mean_ms({"scheduler.policy=edf"});
  const double prema = resnet50_mean_ms({"scheduler.policy=prema"});
  const double shortest_first = resnet50_mean_ms(
      {"scheduler.policy=prema", "scheduler.prema.token_threshold=1", "scheduler.prema.kill=false"});
  SCOPED_TRACE(fmt::format("ResNet-50 mean: edf {:.2f} ms, prema {:.2f} ms, shortest-job-first {:.2f} ms", edf, prema,
                           shortest_first));
  EXPECT_LT(prema, 2.0 * edf);
  EXPECT_GT(shortest_first, 2.0 * edf);  // the mix does starve a policy without PREMA's threshold
}

// Issue 13: "A test asserts the starvation bound on a randomised mix of networks". exit_aware
// ages waiting samples: once one has waited max_wait_slos (w) of its SLO, its network starts
// next, before any cheaper choice. So a sample starts within w SLOs of arriving, plus the batch
// running at that moment and the batches of aged samples with earlier deadlines, each at most
// one full batch of max_batch of its network (preemptions of them are bounded too, by
// max_preemptions, and each is again at most one batch). The bound checked is
// w * SLO + (networks + max_preemptions) * the longest full batch. Mixes pair ResNet-50 with
// the fast networks that starved it (issue 13) at 60-90 % of the batch-1 capacity.
TEST_F(Serving, ExitAwareStartsEverySampleWithinItsAgeingBound) {
  struct FirstStart : sim::ServingObserver {
    std::map<std::uint64_t, std::int64_t> start_ps;
    std::map<std::uint64_t, scheduler::SampleInfo> samples;
    void on_layer(const sim::LayerRun& run) override {
      for (const auto& s : run.samples)
        if (start_ps.emplace(s.id, run.start_ps).second) samples[s.id] = s;
    }
  };
  const std::vector<std::string> fast{"resnet56", "mobilenetv2"};
  std::mt19937_64 rng(13);
  const auto uniform = [&](double lo, double hi) { return lo + (hi - lo) * static_cast<double>(rng() % 10000) / 1e4; };
  for (int c = 0; c < 4; ++c) {
    std::vector<std::string> models{"resnet50"};
    for (const auto& m : fast)
      if (rng() % 2 || models.size() == 1) models.push_back(m);
    // Each network's batch-1 time for the whole network (every exit's classifier run), an upper
    // bound on its expected service time, and its time for a full batch.
    std::map<std::string, double> isolated_s, full_batch_ns;
    const std::uint32_t max_batch = 16;
    {
      std::ofstream(dir_ / "probe.yaml") << "name: probe\nmodel: resnet50\ndevices:\n  - {name: d, arrival: {process: "
                                            "poisson, rate_hz: 1}, slo_ms: 10}\nscheduler: {policy: fcfs}\n"
                                            "simulation: {seed: 1, samples: 1}\n";
      auto probe = sim::load_scenario((dir_ / "probe.yaml").string(), {}, registry_);
      for (const auto& m : models) {
        const auto network = sim::load_model(m);
        const auto table = workloads::control_block_table(probe.npu, network, max_batch);
        double one = 0, full = 0;
        for (std::size_t l = 0; l < network.layers.size(); ++l) {
          one += static_cast<double>(table.entry(1, l).cycles);
          full += static_cast<double>(table.entry(max_batch, l).cycles);
        }
        isolated_s[m] = one * 1e-9;  // 1 GHz
        full_batch_ns[m] = full;
      }
    }
    const double load = uniform(0.6, 0.9);
    const char* processes[] = {"poisson", "mmpp", "on_off"};
    std::string devices;
    for (std::size_t d = 0; d < models.size(); ++d) {
      const double rate = load / static_cast<double>(models.size()) / isolated_s[models[d]];
      const std::string process = processes[rng() % 3];
      const std::string extra = process == "poisson" ? "" : ", burst_ms: 40, gap_ms: 120" ;
      const std::string peak = process == "mmpp" ? ", peak_factor: 3" : "";
      devices += fmt::format("  - {{name: d{}, model: {}, arrival: {{process: {}, rate_hz: {:.3f}{}{}}}, slo_factor: {}}}\n",
                             d, models[d], process, process == "on_off" ? 4 * rate : rate, peak, extra, 2 + rng() % 8);
    }
    const std::string yaml = fmt::format(
        "name: mix{}\ndevices:\n{}scheduler: {{policy: exit_aware, max_batch: {}}}\n"
        "serving: {{fifo_capacity: 100000, preemption_depth: 1}}\nsimulation: {{seed: {}, duration_s: 3}}\n",
        c, devices, max_batch, 100 + c);
    std::ofstream(dir_ / "mix.yaml") << yaml;
    const auto scenario = sim::load_scenario((dir_ / "mix.yaml").string(), {}, registry_);
    const auto& params = scenario.scheduler.parameters;
    const double w = params.real("max_wait_slos");
    const auto max_preemptions = static_cast<double>(params.integer("max_preemptions"));
    double longest_batch_ns = 0;
    for (const auto& [m, ns] : full_batch_ns) longest_batch_ns = std::max(longest_batch_ns, ns);
    const double allowance_ns = (static_cast<double>(models.size()) + max_preemptions) * longest_batch_ns;

    FirstStart starts;
    std::vector<sim::ServingObserver*> observers{&starts};
    const auto result = sim::run_serving(scenario, registry_, observers);
    SCOPED_TRACE(yaml);
    ASSERT_GT(starts.samples.size(), 100u);
    double worst = 0;  // the largest wait, in units of the bound
    for (const auto& [id, s] : starts.samples) {
      const double wait_ns = static_cast<double>(starts.start_ps[id]) / 1000.0 - static_cast<double>(s.arrival_ns);
      const double bound_ns = w * static_cast<double>(s.deadline_ns - s.arrival_ns) + allowance_ns;
      worst = std::max(worst, wait_ns / bound_ns);
    }
    EXPECT_LE(worst, 1.0) << "load " << load;
  }
}

}  // namespace
}  // namespace npusim
