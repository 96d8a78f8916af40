// The oracle of analysis-only policies and the clairvoyant bound, run through the real engine:
// the oracle tells the exits the engine then applies, looking ahead changes no other policy's
// results, and clairvoyant is an upper reference for exit_aware.

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "sim/serving.hpp"

namespace npusim {
namespace {

using scheduler::Decision;
using scheduler::SchedulerView;

// What a peeking policy learnt from the oracle.
struct Told {
  std::map<std::uint64_t, std::uint32_t> exit;
  std::map<std::uint64_t, std::int64_t> foreseen_arrival_ns;
  int contradictions = 0;  // an answer that differs from an earlier one about the same sample
  int foreseen_not_ahead = 0;  // a foreseen sample that arrives before now or is already waiting
};

// Before every call, asks the oracle about every sample it can see and the arrivals within
// `horizon_ns`, then lets an ordinary policy decide on a view without the oracle: an
// analysis-only policy that must behave exactly like the one it wraps.
class Peeking final : public scheduler::Policy {
 public:
  Peeking(std::unique_ptr<scheduler::Policy> inner, std::int64_t horizon_ns, Told& told)
      : inner_(std::move(inner)), horizon_ns_(horizon_ns), told_(told) {}
  void observe_arrival(const SchedulerView& view, const scheduler::SampleInfo& sample) override {
    ask(view);
    inner_->observe_arrival(blind(view), sample);
  }
  Decision decide(const SchedulerView& view) override {
    ask(view);
    return inner_->decide(blind(view));
  }

 private:
  static SchedulerView blind(const SchedulerView& view) {
    SchedulerView v = view;
    v.oracle = nullptr;
    return v;
  }
  void note(std::uint64_t id, std::uint32_t exit) {
    const auto [it, fresh] = told_.exit.emplace(id, exit);
    if (!fresh && it->second != exit) ++told_.contradictions;
  }
  void ask(const SchedulerView& view) {
    for (const auto& s : view.queue) note(s.id, view.oracle->drawn_exit(s.id));
    if (view.running)
      for (const auto& s : view.running->samples) note(s.id, view.oracle->drawn_exit(s.id));
    for (const auto& b : view.suspended)
      for (const auto& s : b.samples) note(s.id, view.oracle->drawn_exit(s.id));
    for (const auto& f : view.oracle->arrivals_within(horizon_ns_)) {
      note(f.sample.id, f.exit);
      note(f.sample.id, view.oracle->drawn_exit(f.sample.id));
      told_.foreseen_arrival_ns[f.sample.id] = f.sample.arrival_ns;
      const bool waiting = std::any_of(view.queue.begin(), view.queue.end(),
                                       [&](const scheduler::SampleInfo& s) { return s.id == f.sample.id; });
      if (f.sample.arrival_ns < view.now_ns || f.sample.arrival_ns > view.now_ns + horizon_ns_ || waiting)
        ++told_.foreseen_not_ahead;
    }
  }

  std::unique_ptr<scheduler::Policy> inner_;
  std::int64_t horizon_ns_;
  Told& told_;
};

// Every completion (time, exit) and drop, by sample.
struct Outcomes : sim::ServingObserver {
  std::map<std::uint64_t, std::pair<std::int64_t, std::uint32_t>> completed;
  std::map<std::uint64_t, std::int64_t> arrival_ns;
  std::map<std::uint64_t, std::int64_t> dropped_ps;
  void on_complete(std::int64_t time_ps, const scheduler::SampleInfo& s, std::uint32_t exit) override {
    completed[s.id] = {time_ps, exit};
    arrival_ns[s.id] = s.arrival_ns;
  }
  void on_drop(std::int64_t time_ps, const scheduler::SampleInfo& s) override { dropped_ps[s.id] = time_ps; }
};

class Clairvoyance : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           fmt::format("npusim_clairvoyant_test_{}_{}", ::getpid(),
                       ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(dir_);
    scheduler::register_builtin_policies(registry_);
    // peeking_<policy>: an analysis-only wrapper of each ordinary policy the tests compare.
    for (const std::string inner : {"fcfs", "edf", "exit_aware"}) {
      scheduler::PolicyInfo info{"peeking_" + inner, "test", {scheduler::ParameterSpec::real("horizon_ms", 5, 0, 1e6, "")},
                                 [this, inner](const scheduler::ParameterValues& p) {
                                   const auto* wrapped = registry_.find(inner);
                                   return std::make_unique<Peeking>(wrapped->create({wrapped->parameters, {}}),
                                                                    std::llround(p.real("horizon_ms") * 1e6), told_);
                                 }};
      info.analysis_only = true;
      registry_.add(std::move(info));
    }
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  sim::Scenario scenario(const std::string& yaml, const std::vector<std::string>& overrides) {
    std::ofstream(dir_ / "s.yaml") << yaml;
    return sim::load_scenario((dir_ / "s.yaml").string(), overrides, registry_);
  }
  sim::ServingResult run(const sim::Scenario& s, Outcomes& outcomes) {
    std::vector<sim::ServingObserver*> observers{&outcomes};
    return sim::run_serving(s, registry_, observers);
  }

  std::filesystem::path dir_;
  scheduler::PolicyRegistry registry_;
  Told told_;
};

// Two networks, bursty and Poisson devices, a tilted exit profile, a mix of SLOs, and a FIFO
// small enough to drop: preemptions, merges and drops all happen (about 7,700 samples).
const char* const busy_yaml = R"(name: busy
devices:
  - {name: a, model: resnet56, count: 4, arrival: {process: mmpp, rate_hz: 1200, peak_factor: 4, burst_ms: 50, gap_ms: 200}, slo_ms: 0.5}
  - {name: b, model: mobilenetv2, count: 2, arrival: {process: poisson, rate_hz: 300}, exits: {tilt: 1.0}, slo_factor: 4}
serving: {fifo_capacity: 4}
scheduler: {policy: edf}
simulation: {seed: 11, duration_s: 1}
)";

TEST_F(Clairvoyance, TheOracleTellsTheExitsTheEngineApplies) {
  for (const char* policy : {"peeking_edf", "peeking_exit_aware"}) {
    told_ = {};
    Outcomes outcomes;
    const auto result = run(scenario(busy_yaml, {std::string("scheduler.policy=") + policy}), outcomes);
    SCOPED_TRACE(policy);
    ASSERT_GT(outcomes.completed.size(), 7000u);
    EXPECT_GT(outcomes.dropped_ps.size(), 0u);
    EXPECT_GT(result.stats.preemptions, 0u);
    EXPECT_EQ(told_.contradictions, 0);
    EXPECT_EQ(told_.foreseen_not_ahead, 0);
    // Every completed sample was asked about and took the exit the oracle named; nearly all
    // were foreseen before they arrived (not the first: nothing asks before it), and arrived
    // when the oracle said.
    std::size_t foreseen = 0;
    for (const auto& [id, done] : outcomes.completed) {
      ASSERT_TRUE(told_.exit.contains(id)) << "sample " << id;
      EXPECT_EQ(told_.exit.at(id), done.second) << "sample " << id;
      if (!told_.foreseen_arrival_ns.contains(id)) continue;
      ++foreseen;
      EXPECT_EQ(told_.foreseen_arrival_ns.at(id), outcomes.arrival_ns.at(id)) << "sample " << id;
    }
    EXPECT_GT(foreseen, outcomes.completed.size() * 99 / 100);
  }
}

// The same seed gives the same samples, the same completions at the same picoseconds, the same
// drops and the same counters, whether or not the policy looks ahead, and however far.
TEST_F(Clairvoyance, LookingAheadChangesNothing) {
  for (const std::string policy : {"fcfs", "edf", "exit_aware"}) {
    Outcomes plain;
    const auto a = run(scenario(busy_yaml, {"scheduler.policy=" + policy}), plain);
    for (const char* horizon : {"0", "2", "20"}) {
      Outcomes peeking;
      const auto b = run(scenario(busy_yaml, {"scheduler.policy=peeking_" + policy,
                                              fmt::format("scheduler.peeking_{}.horizon_ms={}", policy, horizon)}),
                         peeking);
      SCOPED_TRACE(policy + " looking " + horizon + " ms ahead");
      EXPECT_EQ(plain.completed, peeking.completed);
      EXPECT_EQ(plain.dropped_ps, peeking.dropped_ps);
      EXPECT_EQ(a.stats.decisions, b.stats.decisions);
      EXPECT_EQ(a.stats.preemptions, b.stats.preemptions);
      EXPECT_EQ(a.stats.layers_run, b.stats.layers_run);
      EXPECT_EQ(a.stats.end_ps, b.stats.end_ps);
      EXPECT_EQ(a.metrics.overall().latency_ns.mean(), b.metrics.overall().latency_ns.mean());
    }
  }
}

TEST_F(Clairvoyance, ClairvoyantIsDeterministicAndBalanced) {
  Outcomes first, second;
  const auto a = run(scenario(busy_yaml, {"scheduler.policy=clairvoyant"}), first);
  run(scenario(busy_yaml, {"scheduler.policy=clairvoyant"}), second);
  EXPECT_EQ(first.completed, second.completed);
  EXPECT_EQ(first.dropped_ps, second.dropped_ps);
  EXPECT_EQ(a.metrics.overall().arrived, a.metrics.overall().completed + a.metrics.overall().dropped);
}

// An honest bound, measured: with every sample's true exit, clairvoyant's mean latency is at
// most exit_aware's on single-network scenarios. Measured (this commit): ResNet-50, 8 Poisson
// cameras at about 70 % load, 2.429 ms against 2.547; ResNet-56, 8 cameras at 2000 samples/s
// each, 0.114 against 0.115; MobileNetV2, bursty cameras, 1.316 against 1.464. The margin is a
// few per cent except on MobileNetV2, where exact prices choose the drain plan's batch sizes
// better. It is a heuristic, not an optimum, so its p99 can be worse (it minimises the mean).
TEST_F(Clairvoyance, ClairvoyantMeanLatencyIsAtMostExitAwares) {
  const std::vector<std::string> scenarios{
      "name: r50\nmodel: resnet50\ndevices:\n  - {name: cam, count: 8, arrival: {process: poisson, rate_hz: 53}, "
      "slo_factor: 5}\nscheduler: {policy: edf, max_batch: 16}\nsimulation: {seed: 1, samples: 20000}\n",
      "name: r56\nmodel: resnet56\ndevices:\n  - {name: cam, count: 8, arrival: {process: poisson, rate_hz: 2000}, "
      "slo_factor: 5}\nscheduler: {policy: edf, max_batch: 16}\nsimulation: {seed: 3, samples: 30000}\n",
      "name: mbv2\nmodel: mobilenetv2\ndevices:\n  - {name: cam, count: 6, arrival: {process: mmpp, rate_hz: 150, "
      "peak_factor: 4, burst_ms: 200, gap_ms: 1000}, slo_factor: 4}\nscheduler: {policy: edf, max_batch: 16}\n"
      "simulation: {seed: 5, samples: 30000}\n"};
  for (const auto& yaml : scenarios) {
    std::map<std::string, double> mean_ms;
    for (const char* policy : {"exit_aware", "clairvoyant"}) {
      Outcomes outcomes;
      mean_ms[policy] =
          run(scenario(yaml, {std::string("scheduler.policy=") + policy}), outcomes).metrics.overall().latency_ns.mean() / 1e6;
    }
    SCOPED_TRACE(fmt::format("{}: exit_aware {:.4f} ms, clairvoyant {:.4f} ms", yaml.substr(6, 4), mean_ms["exit_aware"],
                             mean_ms["clairvoyant"]));
    EXPECT_LE(mean_ms["clairvoyant"], mean_ms["exit_aware"]);
  }
}

// Looking beyond the first layer of the batch it would start changes nothing, so any horizon
// past it gives the same run; horizon 0 sees exits only.
TEST_F(Clairvoyance, AHorizonPastTheFirstLayerChangesNothing) {
  const std::string yaml =
      "name: r56\nmodel: resnet56\ndevices:\n  - {name: cam, count: 8, arrival: {process: poisson, rate_hz: 600}, "
      "slo_factor: 5}\nscheduler: {policy: clairvoyant, max_batch: 16}\nsimulation: {seed: 2, samples: 5000}\n";
  Outcomes three_ms, a_second, blind;
  run(scenario(yaml, {}), three_ms);
  run(scenario(yaml, {"scheduler.clairvoyant.horizon_ms=1000"}), a_second);
  run(scenario(yaml, {"scheduler.clairvoyant.horizon_ms=0"}), blind);
  EXPECT_EQ(three_ms.completed, a_second.completed);
  EXPECT_NE(three_ms.completed, blind.completed);
}

}  // namespace
}  // namespace npusim
