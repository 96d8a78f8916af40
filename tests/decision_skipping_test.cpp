// Decision skipping (docs/serving.md, "Decision skipping") changes how often a policy is asked,
// never what happens: for every built-in policy, a run with skipping and one without it give
// byte-identical summary.json and samples.csv, over random scenarios of one to four networks
// that use every arrival process, light load and overload, both drop policies, and a range of
// batch limits, preemption depths and context buffers. Over the same kind of scenarios, every
// boundary a policy's horizon covers is also asked, to check it would have kept running.

#include <filesystem>
#include <fstream>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "sim/run_report.hpp"
#include "sim/serving.hpp"

namespace npusim {
namespace {

class DecisionSkipping : public ::testing::Test {
 protected:
  void SetUp() override {
    scheduler::register_builtin_policies(registry_);
    dir_ = std::filesystem::temp_directory_path() /
           fmt::format("npusim-skipping-{}", ::testing::UnitTest::GetInstance()->random_seed());
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  struct Outcome {
    std::string summary, samples_csv;
    std::uint64_t decisions = 0, asked = 0;
    std::string unobserved_summary;  // of a run with no observer, which settles quiet layers in one pass
  };

  Outcome run(const sim::Scenario& scenario, bool skip) {
    const auto csv = dir_ / (skip ? "skipping.csv" : "asking.csv");
    Outcome out;
    {
      sim::SampleCsvWriter writer(csv, scenario);
      std::vector<sim::ServingObserver*> observers{&writer};
      const auto result = sim::run_serving(scenario, registry_, observers, {}, {.skip_decisions = skip});
      writer.commit();
      out.summary = sim::summary_json(scenario, result);
      out.decisions = result.stats.decisions;
      out.asked = result.stats.decisions_asked;
    }
    out.unobserved_summary =
        sim::summary_json(scenario, sim::run_serving(scenario, registry_, {}, {}, {.skip_decisions = skip}));
    std::ifstream in(csv);
    std::stringstream text;
    text << in.rdbuf();
    out.samples_csv = text.str();
    return out;
  }

  // Runs `scenario` with skipping and without, expects the same bytes from both (and from each
  // without observers), and every boundary asked without skipping; returns the skipping run.
  Outcome expect_same_bytes(const sim::Scenario& scenario) {
    const Outcome skipping = run(scenario, true);
    const Outcome asking = run(scenario, false);
    EXPECT_EQ(skipping.summary, asking.summary);
    EXPECT_EQ(skipping.unobserved_summary, asking.summary);
    EXPECT_EQ(asking.unobserved_summary, asking.summary);
    EXPECT_EQ(skipping.samples_csv, asking.samples_csv);
    EXPECT_EQ(asking.asked, asking.decisions);
    EXPECT_LE(skipping.asked, skipping.decisions);
    return skipping;
  }

  // Writes `yaml` as the scenario file and loads it.
  sim::Scenario scenario_of(const std::string& yaml) {
    std::ofstream(dir_ / "scenario.yaml") << yaml;
    return sim::load_scenario((dir_ / "scenario.yaml").string(), {}, registry_);
  }

  scheduler::PolicyRegistry registry_;
  std::filesystem::path dir_;
};

// The overall count of dropped samples in a summary.json (its first "dropped").
std::uint64_t overall_dropped(const std::string& summary) {
  const auto at = summary.find("\"dropped\": ");
  return at == std::string::npos ? 0 : std::stoull(summary.substr(at + 11));
}

// Rates at which one device of each network alone would keep the default NPU about busy at
// batch 1 (docs/models.md gives each network's expected time per sample with its exits).
struct Network {
  const char* name;
  double full_load_hz;
};
constexpr Network networks[] = {{"resnet56", 19000}, {"mobilenetv2", 2400}, {"resnet50", 700}, {"inception_v3", 520}};

// Each arrival process as a scenario's device writes it, at mean rate `hz`; replay reads
// `trace` (written beside the scenario).
std::string arrival(int process, double hz) {
  switch (process) {
    case 0: return fmt::format("{{process: poisson, rate_hz: {:.1f}}}", hz);
    case 1: return fmt::format("{{process: mmpp, rate_hz: {:.1f}, peak_factor: 4, burst_ms: 20, gap_ms: 80}}", hz / 1.6);
    case 2: return fmt::format("{{process: periodic, fps: {:.1f}, jitter_ms: {:.4f}}}", hz, 250.0 / hz);
    case 3: return fmt::format("{{process: on_off, rate_hz: {:.1f}, burst_ms: 30, gap_ms: 30}}", 2 * hz);
    case 4:
      return fmt::format("{{process: piecewise, schedule: [{{until_ms: 50, rate_hz: {:.1f}}}, {{rate_hz: {:.1f}}}]}}",
                         hz / 2, 2 * hz);
    default: return "{process: replay, file: trace.csv}";
  }
}
constexpr int arrival_processes = 6;

// A policy as the scenario's scheduler names it, with parameters set (YAML) or its defaults.
struct PolicySetting {
  std::string policy, parameters;
};

// Every built-in policy with its defaults, and exit_aware with each parameter that turns one
// of the rules its horizon reasons about on or off, or reprices it.
std::vector<PolicySetting> policy_settings(const scheduler::PolicyRegistry& registry) {
  std::vector<PolicySetting> settings;
  for (const auto& policy : registry.names()) settings.push_back({policy, ""});
  for (const char* parameters : {"{objective: slo}", "{objective: blend}", "{cross_model: false}", "{exit_blind: true}",
                                 "{max_preemptions: 1}", "{guard_deadlines: false, slack_ms: 0.5}"})
    settings.push_back({"exit_aware", parameters});
  // A fixed batch that a small FIFO cannot hold: it idles until its timeout with the FIFO full.
  settings.push_back({"static_batch", "{batch_size: 8, aimd: false}"});
  return settings;
}

// Writes the next random scenario under `policy` (and its replay trace) into `dir`; returns its
// YAML. One to four networks by `scenario_index`, every arrival process, one or two SLOs per
// network, light load to overload, FIFOs from one sample to 307.
std::string write_random_scenario(const std::filesystem::path& dir, std::mt19937_64& rng, int scenario_index,
                                  const std::string& policy, const std::string& parameters) {
  const auto pick = [&](int n) { return static_cast<int>(rng() % static_cast<std::uint64_t>(n)); };
  const double loads[] = {0.4, 0.8, 1.5};
  const int network_count = 1 + scenario_index % 4;
  const double load = loads[pick(3)];
  std::string devices, trace = "arrival_ns,device,model,exit\n";
  for (int n = 0; n < network_count; ++n) {
    const Network& network = networks[(scenario_index + n) % 4];
    const int process = (scenario_index + n) % arrival_processes;
    const double hz = network.full_load_hz * load / network_count;
    devices += fmt::format("  - {{name: d{}, model: {}, arrival: {}, {}}}\n", n, network.name, arrival(process, hz),
                           pick(2) ? fmt::format("slo_ms: {}", 1 + pick(30)) : fmt::format("slo_factor: {}", 2 + pick(8)));
    // Half the networks get a second, Poisson device with an SLO of its own, so that a batch can
    // hold deadlines of two SLOs and an arrival can fall due among them.
    if (pick(2))
      devices += fmt::format("  - {{name: d{}b, model: {}, arrival: {}, slo_ms: {}}}\n", n, network.name,
                             arrival(0, hz / 2), 1 + pick(30));
    if (process == arrival_processes - 1) {
      std::int64_t t = 0;
      for (int i = 0; i < 300; ++i) {
        t += static_cast<std::int64_t>(1e9 / hz * (0.2 + 1.6 * static_cast<double>(pick(1000)) / 1000.0));
        trace += fmt::format("{},d{},{},\n", t, n, network.name);
      }
    }
  }
  std::ofstream(dir / "trace.csv") << trace;
  // A third of the FIFOs hold fewer samples than a batch may: full while a policy idles, they
  // refuse arrivals (drop: newest) that must then not wake it.
  const int fifo_capacity = pick(3) ? 8 + pick(300) : 1 + pick(6);
  const std::string yaml = fmt::format(
      "name: skipping{}\ndevices:\n{}scheduler: {{policy: {}, max_batch: {}{}}}\n"
      "serving: {{fifo_capacity: {}, drop: {}, preemption_depth: {}, context_buffer_kib: {}}}\n"
      "simulation: {{seed: {}, samples: 600}}\n",
      scenario_index, devices, policy, 1 + pick(16), parameters.empty() ? "" : fmt::format(", {}: {}", policy, parameters),
      fifo_capacity, pick(2) ? "newest" : "oldest", pick(4), pick(2) ? 0 : 64, scenario_index);
  std::ofstream(dir / "scenario.yaml") << yaml;
  return yaml;
}
constexpr int scenarios_per_setting = 6;

TEST_F(DecisionSkipping, GivesTheSameBytesForEveryBuiltInPolicy) {
  std::mt19937_64 rng(20261202);
  int scenario_index = 0;
  for (const auto& [policy, parameters] : policy_settings(registry_)) {
    std::uint64_t decisions = 0, asked = 0;
    for (int k = 0; k < scenarios_per_setting; ++k, ++scenario_index) {
      const std::string yaml = write_random_scenario(dir_, rng, scenario_index, policy, parameters);
      SCOPED_TRACE(yaml);
      const auto scenario = sim::load_scenario((dir_ / "scenario.yaml").string(), {}, registry_);
      const Outcome skipping = expect_same_bytes(scenario);
      decisions += skipping.decisions;
      asked += skipping.asked;
    }
    // Every built-in policy declares a horizon, and at these loads it covers some boundaries.
    EXPECT_LT(asked, decisions) << policy << " " << parameters;
  }
}

// Checks a policy's horizons directly, where equal bytes could hide a broken promise: it hands
// the engine a horizon of one boundary, so that every boundary is asked, keeps the wrapped
// policy's horizon as the engine would (from each decision the engine would have asked), and
// at every boundary that horizon covers, counts whether the wrapped policy answers keep_running.
class HorizonChecker final : public scheduler::Policy, public scheduler::DecisionHorizon {
 public:
  struct Tally {
    std::uint64_t covered = 0, broken = 0;
    // Boundaries where the overhead the view foresaw, now or when the promise was made, is not
    // the one it has (SchedulerView::preemption_overheads' contract).
    std::uint64_t misforeseen = 0;
    std::uint64_t sleeping_through_arrivals = 0;  // promises that the first arrival does not wake
  };
  HorizonChecker(std::unique_ptr<scheduler::Policy> wrapped, Tally& tally)
      : wrapped_(std::move(wrapped)),
        wrapped_horizon_(dynamic_cast<const scheduler::DecisionHorizon*>(wrapped_.get())),
        wrapped_filter_(dynamic_cast<const scheduler::ArrivalWakeFilter*>(wrapped_.get())),
        wrapped_count_(dynamic_cast<const scheduler::ArrivalCountWake*>(wrapped_.get())),
        tally_(tally) {}

  void observe_arrival(const scheduler::SchedulerView& view, const scheduler::SampleInfo& sample) override {
    if (sample.deadline_ns < wakes_if_due_before_ns_ && arrivals_until_wake_ > 0) --arrivals_until_wake_;
    wrapped_->observe_arrival(view, sample);
  }

  scheduler::Decision decide(const scheduler::SchedulerView& view) override {
    last_covered_ = covers(view);
    if (!last_covered_) promise_.reset();
    if (view.running && view.preemption_overheads &&
        view.preemption_overheads->cycles_before(view.running->next_layer) != view.preemption_overhead_cycles)
      ++tally_.misforeseen;
    scheduler::Decision decision = wrapped_->decide(view);
    if (last_covered_) {
      ++tally_.covered;
      if (decision.kind != scheduler::Decision::Kind::run) ++tally_.broken;
      // Foreseen for the batch as it was: an exit since (a horizon may let one pass) changes it.
      if (!foreseen_.empty() && view.running->samples.size() == promised_size_ &&
          foreseen_[view.running->next_layer] != view.preemption_overhead_cycles)
        ++tally_.misforeseen;
    }
    return decision;
  }

  scheduler::Horizon horizon(const scheduler::SchedulerView& view) const override {
    if (!last_covered_ && wrapped_horizon_) {
      promise_ = wrapped_horizon_->horizon(view);
      wakes_if_due_before_ns_ = promise_->wake_on_arrival && wrapped_filter_
                                    ? wrapped_filter_->wakes_on_arrivals_due_before_ns(view)
                                    : scheduler::never_ns;
      arrivals_until_wake_ = promise_->wake_on_arrival && wrapped_count_ ? wrapped_count_->arrivals_that_wake(view) : 1;
      if (arrivals_until_wake_ > 1) ++tally_.sleeping_through_arrivals;
      const scheduler::BatchInfo& running = *view.running;
      promised_batch_ = {running.model, running.next_layer, {}, running.merges, running.merge_layer,
                         running.preemptions};
      promised_size_ = running.samples.size();
      foreseen_.clear();
      if (view.preemption_overheads)
        for (std::uint32_t layer = 0; layer < view.models[running.model].layer_count(); ++layer)
          foreseen_.push_back(view.preemption_overheads->cycles_before(layer));
    }
    return scheduler::Horizon::next_boundary(view);
  }

 private:
  // Whether the engine, skipping, would not have asked at this boundary: the batch the promise
  // was made for runs on without a merge or resume, short of the promised layer, and nothing
  // the promise wakes on has happened.
  bool covers(const scheduler::SchedulerView& view) const {
    if (!promise_ || !view.running || view.trigger == scheduler::Trigger::batch_completed) return false;
    const scheduler::BatchInfo& running = *view.running;
    if (running.model != promised_batch_.model || running.merges != promised_batch_.merges ||
        running.merge_layer != promised_batch_.merge_layer || running.preemptions != promised_batch_.preemptions ||
        running.samples.size() > promised_size_ || running.next_layer <= promised_batch_.next_layer)
      return false;
    if (promised_batch_.merges && running.next_layer == promised_batch_.merge_layer) return false;
    if (promise_->wake_on_arrival && arrivals_until_wake_ == 0) return false;
    if (promise_->wake_on_exit && running.samples.size() < promised_size_) return false;
    return running.next_layer < promise_->until_layer;
  }

  std::unique_ptr<scheduler::Policy> wrapped_;
  const scheduler::DecisionHorizon* wrapped_horizon_;
  const scheduler::ArrivalWakeFilter* wrapped_filter_;
  const scheduler::ArrivalCountWake* wrapped_count_;
  Tally& tally_;
  bool last_covered_ = false;
  // Since the promise, the count of samples due before wakes_if_due_before_ns_ still to arrive
  // before one wakes it (0: it is woken).
  mutable std::uint32_t arrivals_until_wake_ = 1;
  mutable std::int64_t wakes_if_due_before_ns_ = scheduler::never_ns;
  mutable std::optional<scheduler::Horizon> promise_;
  mutable scheduler::BatchInfo promised_batch_;
  mutable std::size_t promised_size_ = 0;
  mutable std::vector<std::uint64_t> foreseen_;  // by layer, when the promise was made
};

TEST_F(DecisionSkipping, EveryBoundaryAHorizonCoversWouldKeepRunning) {
  HorizonChecker::Tally tally;
  std::vector<scheduler::PolicyInfo> checked;
  for (const auto& info : registry_.policies()) {
    scheduler::PolicyInfo wrapper = info;
    wrapper.name = "checked_" + info.name;
    wrapper.create = [create = info.create, &tally](const scheduler::ParameterValues& p) {
      return std::make_unique<HorizonChecker>(create(p), tally);
    };
    checked.push_back(std::move(wrapper));
  }
  for (auto& wrapper : checked) registry_.add(std::move(wrapper));
  std::mt19937_64 rng(20261203);
  int scenario_index = 0;
  for (const auto& [policy, parameters] : policy_settings(registry_)) {
    if (policy.starts_with("checked_")) continue;
    tally = {};
    for (int k = 0; k < scenarios_per_setting; ++k, ++scenario_index) {
      const std::string yaml = write_random_scenario(dir_, rng, scenario_index, "checked_" + policy, parameters);
      SCOPED_TRACE(yaml);
      const auto scenario = sim::load_scenario((dir_ / "scenario.yaml").string(), {}, registry_);
      sim::run_serving(scenario, registry_, {}, {}, {.skip_decisions = true});
    }
    EXPECT_EQ(tally.broken, 0u) << policy << " " << parameters << ": " << tally.covered << " covered";
    EXPECT_EQ(tally.misforeseen, 0u) << policy << " " << parameters;
    EXPECT_GT(tally.covered, 0u) << policy << " " << parameters;
  }
}

// exit_aware's horizon reaches furthest on one busy network, where the context-save overhead it
// foresees at each later boundary (SchedulerView::preemption_overheads) decides whether a
// catch-up could pay. Random scenarios of 600 samples rarely reach those boundaries, so this
// runs two like the serving benchmark's, long enough that they do: with every context spilled
// (no context buffer) and with a buffer that holds some.
TEST_F(DecisionSkipping, ExitAwareForeseesThePreemptionOverheadExactly) {
  HorizonChecker::Tally tally;
  scheduler::PolicyInfo wrapper = *registry_.find("exit_aware");
  wrapper.name = "checked_exit_aware";
  wrapper.create = [create = wrapper.create, &tally](const scheduler::ParameterValues& p) {
    return std::make_unique<HorizonChecker>(create(p), tally);
  };
  registry_.add(std::move(wrapper));
  for (const int context_buffer_kib : {0, 512}) {
    for (const char* policy : {"exit_aware", "checked_exit_aware"}) {
      std::ofstream(dir_ / "scenario.yaml") << fmt::format(
          "name: busy\nmodel: resnet50\ndevices:\n"
          "  - {{name: cam, count: 8, arrival: {{process: poisson, rate_hz: 64}}, slo_factor: 5}}\n"
          "scheduler: {{policy: {}, max_batch: 16}}\nserving: {{context_buffer_kib: {}}}\n"
          "simulation: {{seed: 5, samples: 6000}}\n",
          policy, context_buffer_kib);
      SCOPED_TRACE(fmt::format("{}, context_buffer_kib {}", policy, context_buffer_kib));
      const auto scenario = sim::load_scenario((dir_ / "scenario.yaml").string(), {}, registry_);
      if (std::string(policy) == "exit_aware") {
        const Outcome skipping = expect_same_bytes(scenario);
        EXPECT_LT(skipping.asked * 10, skipping.decisions);  // about 1.6 of 52 boundaries a sample
      } else {
        sim::run_serving(scenario, registry_, {}, {}, {.skip_decisions = true});
      }
    }
  }
  EXPECT_EQ(tally.broken, 0u) << tally.covered << " covered";
  EXPECT_EQ(tally.misforeseen, 0u);
  EXPECT_GT(tally.covered, 10000u);
  // A lone ResNet-50 sample never makes a catch-up pay on this NPU once the overhead is priced,
  // so most horizons given while nothing waits sleep through the first arrival.
  EXPECT_GT(tally.sleeping_through_arrivals, 1000u);
}

// edf's ArrivalWakeFilter lets the engine plan a stretch past arrivals that cannot preempt, and
// wake at the first that can: two SLOs on one network, where arrivals of the tight device fall
// due among the batch's deadlines, and a loose device fast enough that many arrivals fall inside
// one stretch.
TEST_F(DecisionSkipping, EdfSleepsOnlyThroughArrivalsThatCannotPreempt) {
  const Outcome skipping = expect_same_bytes(scenario_of(
      "name: two_slos\nmodel: resnet50\ndevices:\n"
      "  - {name: tight, count: 2, arrival: {process: poisson, rate_hz: 120}, slo_ms: 6}\n"
      "  - {name: loose, arrival: {process: poisson, rate_hz: 3000}, slo_ms: 400}\n"
      "scheduler: {policy: edf, max_batch: 16}\nserving: {fifo_capacity: 64, drop: oldest, preemption_depth: 2}\n"
      "simulation: {seed: 9, samples: 8000}\n"));
  EXPECT_LT(skipping.asked, skipping.decisions / 4);
}

// Runs every batch to its end, and starts the oldest sample's network with as many as fit.
scheduler::Decision greedy(const scheduler::SchedulerView& view) {
  if (view.running) return scheduler::Decision::keep_running();
  if (view.queue.empty()) return scheduler::Decision::idle();
  return scheduler::Decision::start(view.queued_of_model(view.queue.front().model, view.max_batch));
}

// With lazy arrivals the NPU, idling, sleeps until the next arrival and admits it itself. An
// arrival that a full FIFO refuses (drop: newest) never woke it when arrivals were events, so it
// must not wake it now: static_batch waits for a batch of 8 that a FIFO of 3 cannot hold, until
// its timeout, while most arrivals are refused.
TEST_F(DecisionSkipping, AnArrivalTheFifoRefusesWakesNoIdlePolicy) {
  const Outcome skipping = expect_same_bytes(scenario_of(
      "name: refused\nmodel: resnet56\ndevices:\n"
      "  - {name: cam, count: 2, arrival: {process: poisson, rate_hz: 3000}, slo_ms: 50}\n"
      "scheduler:\n  policy: static_batch\n  max_batch: 8\n"
      "  static_batch: {batch_size: 8, aimd: false, timeout_ms: 5, slo_aware_timeout: false}\n"
      "serving: {fifo_capacity: 3, drop: newest}\nsimulation: {seed: 5, samples: 2000}\n"));
  // The FIFO refuses most arrivals: 2 x 3,000/s against batches of at most 3 every 5 ms or so.
  EXPECT_GT(overall_dropped(skipping.summary), 1000u);
}

// The end of the arrivals wakes a waiting NPU only if it has no wake-up of its own: static_batch,
// idling until its timeout for a batch of 8, sees the last of two arrivals and then only its
// timeout, with arrivals as events or lazy. The NPU used to be woken once more at the last
// arrival when arrivals were events, and lazy arrivals made one decision fewer.
TEST_F(DecisionSkipping, TheEndOfArrivalsWakesOnlyAnNpuWithNoWakeUp) {
  std::ofstream(dir_ / "two.csv") << "arrival_ns,device,model,exit\n0,cam,resnet56,0\n1000000,cam,resnet56,0\n";
  expect_same_bytes(scenario_of(
      "name: two\nmodel: resnet56\ndevices:\n  - {name: cam, arrival: {process: replay, file: two.csv}, slo_ms: 100}\n"
      "scheduler:\n  policy: static_batch\n  max_batch: 16\n"
      "  static_batch: {batch_size: 8, aimd: false, timeout_ms: 30, slo_aware_timeout: false}\n"
      "simulation: {seed: 1, duration_s: 10}\n"));
}

// A policy that declares no horizon, as a plugin built before DecisionHorizon existed: it is
// asked at every decision point, skipping on or off.
class AskedEverywhere final : public scheduler::Policy {
 public:
  scheduler::Decision decide(const scheduler::SchedulerView& view) override { return greedy(view); }
};

TEST_F(DecisionSkipping, AsksAPolicyWithoutAHorizonAtEveryBoundary) {
  registry_.add({"asked_everywhere", "greedy batches, no horizon", {},
                 [](const scheduler::ParameterValues&) { return std::make_unique<AskedEverywhere>(); }});
  const auto scenario = scenario_of(
      "name: plain\nmodel: resnet56\ndevices:\n  - {name: cam, arrival: {process: poisson, rate_hz: 9000}, slo_ms: 5}\n"
      "scheduler: {policy: asked_everywhere, max_batch: 8}\nsimulation: {seed: 3, samples: 2000}\n");
  const Outcome skipping = run(scenario, true);
  EXPECT_EQ(skipping.asked, skipping.decisions);
  EXPECT_GT(skipping.decisions, 2000u);  // a batch of up to 8 runs 60-odd layers
  EXPECT_EQ(skipping.summary, run(scenario, false).summary);
}

// Merges the running network's waiting samples into its batch once `every` samples have
// arrived since its last start or preemption, and keeps running otherwise. Its horizon lasts
// until an arrival, and through ArrivalCountWake it sleeps through the arrivals before that
// one (unless `counts` is off): a run that skips decisions equals one that asks at every
// boundary only if the engine wakes it at the first boundary after that arrival, and the run
// that counts equals the one woken by every arrival.
class CountingMerger final : public scheduler::Policy,
                             public scheduler::DecisionHorizon,
                             public scheduler::ArrivalCountWake {
 public:
  CountingMerger(std::uint32_t every, bool counts, std::uint64_t& merges)
      : every_(every), counts_(counts), merges_(merges) {}
  void observe_arrival(const scheduler::SchedulerView&, const scheduler::SampleInfo&) override { ++arrived_; }
  scheduler::Decision decide(const scheduler::SchedulerView& view) override {
    if (!view.running) {
      if (!view.queue.empty()) arrived_ = 0;
      return greedy(view);
    }
    const std::uint32_t room = std::min(view.waiting_of_model(view.running->model), view.merge_room);
    if (arrived_ < every_ || room == 0 || view.preemptions_left == 0 || view.running->next_layer == 0)
      return scheduler::Decision::keep_running();
    arrived_ = 0;
    ++merges_;
    return scheduler::Decision::preempt(view.queued_of_model(view.running->model, room));
  }
  // A merge that found no room or register waits for one at every boundary.
  scheduler::Horizon horizon(const scheduler::SchedulerView& view) const override {
    return arrived_ < every_ ? scheduler::Horizon::until_arrival() : scheduler::Horizon::next_boundary(view);
  }
  std::uint32_t arrivals_that_wake(const scheduler::SchedulerView&) const override {
    return counts_ && arrived_ < every_ ? every_ - arrived_ : 1;
  }

 private:
  std::uint32_t every_;
  bool counts_;
  std::uint64_t& merges_;
  std::uint32_t arrived_ = 0;
};

TEST_F(DecisionSkipping, WakesAHorizonAtTheArrivalItCounts) {
  std::uint64_t merges = 0;
  for (const bool counts : {true, false})
    registry_.add({counts ? "counting" : "first_arrival", "merges every few arrivals", {},
                   [&merges, counts](const scheduler::ParameterValues&) {
                     return std::make_unique<CountingMerger>(3, counts, merges);
                   }});
  // Two networks' cameras at about the load batches of 8 sustain: arrivals land inside long
  // batches, and a FIFO of 12 refuses some in the bursts.
  const auto scenario = [&](const std::string& policy) {
    return scenario_of(fmt::format(
        "name: counted\ndevices:\n"
        "  - {{name: cam, model: resnet56, arrival: {{process: mmpp, rate_hz: 3000, peak_factor: 3, burst_ms: 4, "
        "gap_ms: 8}}, slo_ms: 5}}\n"
        "  - {{name: mic, model: mobilenetv2, arrival: {{process: poisson, rate_hz: 400}}, slo_ms: 20}}\n"
        "scheduler: {{policy: {}, max_batch: 8}}\nserving: {{fifo_capacity: 12}}\n"
        "simulation: {{seed: 9, samples: 3000}}\n",
        policy));
  };
  const Outcome counting = expect_same_bytes(scenario("counting"));
  EXPECT_GT(merges, 100u);
  const Outcome first_arrival = expect_same_bytes(scenario("first_arrival"));
  const auto named_first_arrival = [](std::string summary) {
    const std::string from = "\"policy\": \"counting\"";
    return summary.replace(summary.find(from), from.size(), "\"policy\": \"first_arrival\"");
  };
  EXPECT_EQ(named_first_arrival(counting.summary), first_arrival.summary);
  EXPECT_EQ(counting.samples_csv, first_arrival.samples_csv);
  // The first two arrivals after a merge woke the horizon that does not count them, to no effect.
  EXPECT_LT(counting.asked * 10, first_arrival.asked * 9) << counting.asked << " against " << first_arrival.asked;
}

// A greedy policy without a horizon that says through ArrivalObservation whether it watches
// arrivals, counts those it is shown, and checks that each is shown at its own instant: with
// decision skipping the NPU admits arrivals itself when it next wakes, later in kernel time.
class ArrivalWatcher final : public scheduler::Policy, public scheduler::ArrivalObservation {
 public:
  struct Tally {
    std::uint64_t shown = 0, shown_at_another_time = 0, shown_twice = 0;
  };
  ArrivalWatcher(bool interested, Tally& tally) : interested_(interested), tally_(tally) {}
  bool observes_arrivals(const scheduler::SchedulerView&) const override { return interested_; }
  void observe_arrival(const scheduler::SchedulerView& view, const scheduler::SampleInfo& sample) override {
    ++tally_.shown;
    if (view.now_ns != sample.arrival_ns) ++tally_.shown_at_another_time;
    if (sample.id < next_id_) ++tally_.shown_twice;
    next_id_ = sample.id + 1;
  }
  scheduler::Decision decide(const scheduler::SchedulerView& view) override { return greedy(view); }

 private:
  bool interested_;
  Tally& tally_;
  std::uint64_t next_id_ = 0;
};

TEST_F(DecisionSkipping, ShowsArrivalsAtTheirInstantAndOnlyToPoliciesThatWatchThem) {
  ArrivalWatcher::Tally watching, ignoring;
  registry_.add({"watching", "greedy, watches arrivals", {}, [&](const scheduler::ParameterValues&) {
                   return std::make_unique<ArrivalWatcher>(true, watching);
                 }});
  registry_.add({"ignoring", "greedy, ignores arrivals", {}, [&](const scheduler::ParameterValues&) {
                   return std::make_unique<ArrivalWatcher>(false, ignoring);
                 }});
  // 2,000 arrivals in bursts at up to four times what batches of 8 sustain, with gaps: the FIFO
  // of 16 drops some, oldest first, so every arrival enters it and is observed; arrivals land
  // both while the NPU runs and while it waits.
  const auto write = [&](const std::string& policy) {
    return scenario_of(fmt::format(
        "name: watched\nmodel: resnet56\ndevices:\n"
        "  - {{name: cam, count: 2, arrival: {{process: mmpp, rate_hz: 6000, peak_factor: 4, burst_ms: 3, gap_ms: 6}}, "
        "slo_ms: 5}}\n"
        "scheduler: {{policy: {}, max_batch: 8}}\nserving: {{fifo_capacity: 16, drop: oldest}}\n"
        "simulation: {{seed: 5, samples: 2000}}\n",
        policy));
  };
  const auto watched = write("watching");
  const Outcome lazy = run(watched, true);  // two runs: with an observer and without
  EXPECT_EQ(watching.shown, 2 * 2000u);
  EXPECT_EQ(watching.shown_at_another_time, 0u);
  EXPECT_EQ(watching.shown_twice, 0u);
  const Outcome eager = run(watched, false);
  EXPECT_EQ(watching.shown, 4 * 2000u);
  EXPECT_EQ(watching.shown_at_another_time, 0u);
  EXPECT_EQ(lazy.summary, eager.summary);
  EXPECT_EQ(lazy.samples_csv, eager.samples_csv);
  EXPECT_EQ(lazy.unobserved_summary, eager.unobserved_summary);
  EXPECT_GT(overall_dropped(lazy.summary), 100u);

  const auto ignored = write("ignoring");
  run(ignored, true);
  EXPECT_EQ(ignoring.shown, 0u);  // asked once, before the first arrival: it does not watch
  run(ignored, false);
  EXPECT_EQ(ignoring.shown, 2 * 2000u);  // without skipping, every arrival is shown, as always
}

}  // namespace
}  // namespace npusim
