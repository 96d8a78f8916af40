// The built-in policies, decision by decision, on hand-built views of a four-layer network
// whose costs are simple enough to compute by hand; and the predictions they rest on.

#include <map>

#include <gtest/gtest.h>

#include "scheduler/registry.hpp"

namespace npusim {
namespace {

using scheduler::Decision;
using scheduler::ModelProfile;
using scheduler::SampleInfo;
using scheduler::SchedulerView;

// Four layers; exit "early" after layer 1 takes half the samples, the final exit the rest.
// A layer costs fixed + per_sample * batch cycles.
ModelProfile four_layers(std::uint64_t fixed, std::uint64_t per_sample, std::uint32_t max_batch = 8) {
  return ModelProfile("four", 4, max_batch,
                      [=](std::uint32_t, std::uint32_t batch) { return fixed + per_sample * batch; },
                      {{"early", 1, 0.5}, {"final", 3, 0.5}});
}

std::unique_ptr<scheduler::Policy> make(const std::string& name,
                                        const std::map<std::string, scheduler::ParameterValue>& given = {}) {
  scheduler::PolicyRegistry registry;
  scheduler::register_builtin_policies(registry);
  const auto* info = registry.find(name);
  return info->create(scheduler::ParameterValues(info->parameters, given));
}

SampleInfo sample(std::uint64_t id, std::int64_t arrival_ns, std::int64_t deadline_ns, std::uint32_t model = 0) {
  return {id, arrival_ns, deadline_ns, 0, model};
}

// A view at `now_ns` of the queue, optionally with a running batch; 1 ns per cycle.
struct ViewBuilder {
  std::vector<ModelProfile> models;
  std::vector<SampleInfo> queue, running_samples;
  scheduler::BatchInfo running;
  bool has_running = false;
  SchedulerView view(std::int64_t now_ns, std::uint32_t max_batch = 8) {
    SchedulerView v;
    v.now_ns = now_ns;
    v.queue = queue;
    v.models = models;
    v.max_batch = max_batch;
    v.ns_per_cycle = 1.0;
    v.preemptions_left = 1;
    if (has_running) {
      running.samples = running_samples;
      v.running = &running;
      v.merge_room = max_batch - static_cast<std::uint32_t>(running_samples.size());
    }
    return v;
  }
};

TEST(ModelProfile, SurvivalAndPredictionsByHand) {
  const auto p = four_layers(100, 10);
  // Hazards: 0.5 after layer 1, then everybody at the final exit.
  EXPECT_DOUBLE_EQ(p.survival(0, 2), 0.5);
  EXPECT_DOUBLE_EQ(p.survival(2, 3), 1.0);
  EXPECT_DOUBLE_EQ(p.survival(0, 4), 0.0);
  EXPECT_EQ(p.expected_batch(4, 0, 2, scheduler::Prediction::exit_aware), 2u);
  EXPECT_EQ(p.expected_batch(3, 0, 2, scheduler::Prediction::exit_aware), 2u);  // ceil(1.5)
  EXPECT_EQ(p.expected_batch(3, 0, 2, scheduler::Prediction::exit_blind), 3u);
  // Batch 4 from layer 0: layers 0 and 1 at 4 (140 each), layers 2 and 3 at 2 (120 each).
  EXPECT_EQ(p.remaining_cycles(0, 4, scheduler::Prediction::exit_aware), 140u + 140 + 120 + 120);
  EXPECT_EQ(p.remaining_cycles(0, 4, scheduler::Prediction::exit_blind), 4u * 140);
  // A sample of that batch: half leave after 280 cycles, half after 520.
  EXPECT_DOUBLE_EQ(p.sample_remaining_cycles(0, 4, scheduler::Prediction::exit_aware), 0.5 * 280 + 0.5 * 520);
  // Catching 4 up to layer 2 costs layers 0 and 1 at batch 4; the 2 expected to leave at the
  // early exit finish after 280 cycles: 0.5 * 280 per caught-up sample.
  EXPECT_EQ(p.catch_up_cycles(4, 2, scheduler::Prediction::exit_aware), 280u);
  EXPECT_DOUBLE_EQ(p.catch_up_exit_latency_cycles(4, 2, scheduler::Prediction::exit_aware), 0.5 * 280);
  EXPECT_EQ(p.isolated_cycles(), 4u * 110);
}

TEST(Policies, FcfsRunsOneAtATimeInOrder) {
  auto fcfs = make("fcfs");
  ViewBuilder b;
  b.models.push_back(four_layers(100, 10));
  b.queue = {sample(7, 0, 1000), sample(8, 5, 1000)};
  const auto d = fcfs->decide(b.view(10));
  EXPECT_EQ(d.kind, Decision::Kind::start);
  EXPECT_EQ(d.queue_positions, (std::vector<std::uint32_t>{0}));
  b.has_running = true;
  b.running_samples = {sample(6, 0, 1000)};
  b.running.next_layer = 1;
  EXPECT_EQ(fcfs->decide(b.view(10)).kind, Decision::Kind::run);
}

TEST(Policies, StaticBatchWaitsForAFullBatchOrItsTimeout) {
  auto policy = make("static_batch", {{"batch_size", std::int64_t{2}}, {"timeout_ms", 0.001}});
  ViewBuilder b;
  b.models.push_back(four_layers(100, 10));
  b.models.push_back(four_layers(100, 10));
  b.queue = {sample(1, 100, 99999, 1)};
  // One sample, arrived at 100 ns: wait until 100 + 1000 ns.
  auto d = policy->decide(b.view(500));
  EXPECT_EQ(d.kind, Decision::Kind::idle);
  EXPECT_EQ(d.wake_ns, 1100);
  d = policy->decide(b.view(1100));
  EXPECT_EQ(d.kind, Decision::Kind::start);
  EXPECT_EQ(d.queue_positions, (std::vector<std::uint32_t>{0}));
  // Model 1 has one sample, model 0 a full batch: the full batch goes first.
  b.queue = {sample(1, 100, 99999, 1), sample(2, 200, 99999, 0), sample(3, 300, 99999, 0)};
  d = policy->decide(b.view(400));
  EXPECT_EQ(d.queue_positions, (std::vector<std::uint32_t>{1, 2}));
}

TEST(Policies, EdfServesEarliestDeadlinesAndPreemptsForThem) {
  auto edf = make("edf");
  ViewBuilder b;
  b.models.push_back(four_layers(100, 10));
  b.models.push_back(four_layers(100, 10));
  b.queue = {sample(1, 0, 500), sample(2, 1, 100), sample(3, 2, 300)};
  auto d = edf->decide(b.view(10));
  EXPECT_EQ(d.kind, Decision::Kind::start);
  EXPECT_EQ(d.queue_positions, (std::vector<std::uint32_t>{1, 2, 0}));  // by deadline
  // A running batch whose earliest deadline is 400: queued samples due earlier preempt it; of
  // its model they merge, the later one stays queued.
  b.has_running = true;
  b.running_samples = {sample(9, 0, 400)};
  b.running.next_layer = 2;
  d = edf->decide(b.view(10));
  EXPECT_EQ(d.kind, Decision::Kind::preempt);
  EXPECT_TRUE(d.merge);
  EXPECT_EQ(d.queue_positions, (std::vector<std::uint32_t>{1, 2}));
  // Of another model, they run as their own batch first.
  b.queue = {sample(1, 0, 100, 1)};
  d = edf->decide(b.view(10));
  EXPECT_EQ(d.kind, Decision::Kind::preempt);
  EXPECT_FALSE(d.merge);
  // Nothing due earlier: keep running.
  b.queue = {sample(1, 0, 900)};
  EXPECT_EQ(edf->decide(b.view(10)).kind, Decision::Kind::run);
}

TEST(Policies, PremaPicksTheShortestReadyJobAndPreemptsWithoutMerging) {
  auto prema = make("prema", {{"token_threshold", 1.0}});
  ViewBuilder b;
  b.models.push_back(four_layers(100, 10));   // isolated 440 cycles
  b.models.push_back(four_layers(1000, 10));  // isolated 4040 cycles: a long job
  // At 5000 ns both waited past one isolated latency of their model (tokens >= 1): the shorter
  // job (model 0) goes first although model 1's sample is older.
  b.queue = {sample(1, 0, 99999, 1), sample(2, 100, 99999, 0)};
  auto d = prema->decide(b.view(5000));
  EXPECT_EQ(d.kind, Decision::Kind::start);
  EXPECT_EQ(d.queue_positions, (std::vector<std::uint32_t>{1}));
  // At 2000 ns only model 0's sample is ready (1900/440 tokens; model 1's 2000/4040 < 1).
  d = prema->decide(b.view(2000));
  EXPECT_EQ(d.queue_positions, (std::vector<std::uint32_t>{1}));
  // A long batch of model 1 at layer 1 has 3 layers of 1010 cycles left; a ready model-0 job of
  // 440 cycles preempts it, without merging.
  b.queue = {sample(2, 100, 99999, 0)};
  b.has_running = true;
  b.running = {};
  b.running.model = 1;
  b.running.next_layer = 1;
  b.running_samples = {sample(5, 0, 99999, 1)};
  d = prema->decide(b.view(2000));
  EXPECT_EQ(d.kind, Decision::Kind::preempt);
  EXPECT_FALSE(d.merge);
  // Not yet ready (tokens 0.2 < 1): no preemption.
  EXPECT_EQ(prema->decide(b.view(188)).kind, Decision::Kind::run);
}

// Two networks: model 0 short (100 + 10/sample cycles a layer), model 1 long (1000 + 10).
// Both: half the samples leave after layer 1, the rest after layer 3.
TEST(Policies, ExitAwareStartsTheGroupThatCompletesMostPerCycle) {
  auto exit_aware = make("exit_aware");
  ViewBuilder b;
  b.models.push_back(four_layers(100, 10));
  b.models.push_back(four_layers(1000, 10));
  // Model 1's sample is older, but one sample of model 0 takes 4 * 110 = 440 cycles against
  // 4 * 1010 = 4040 (a batch of 1 stays 1 after the exit: ceil(0.5) = 1): 1/440 > 1/4040.
  b.queue = {sample(1, 0, 99999, 1), sample(2, 5, 99999, 0)};
  const auto d = exit_aware->decide(b.view(10));
  EXPECT_EQ(d.kind, Decision::Kind::start);
  EXPECT_EQ(d.queue_positions, (std::vector<std::uint32_t>{1}));
}

// A model-1 batch of one sample at layer 1 has R = 1010 (layer 1) + 1010 + 1010 (layers 2-3,
// ceil(1 * 0.5) = 1 sample) = 3030 cycles left. Preempting it for a group of n samples with
// batch time D gains n * R - 1 * (D + overhead) - (other waiting samples) * overhead.
TEST(Policies, ExitAwarePreemptsForAnotherNetworkWhenThatLowersTotalLatency) {
  auto exit_aware = make("exit_aware");
  ViewBuilder b;
  b.models.push_back(four_layers(100, 10));   // model 0
  b.models.push_back(four_layers(1000, 10));  // model 1, running
  b.models.push_back(four_layers(100, 10));   // model 2
  b.has_running = true;
  b.running.model = 1;
  b.running.next_layer = 1;
  b.running_samples = {sample(9, 0, 1'000'000'000, 1)};
  // Model 0: 2 samples, D = 2 * 120 (layers 0-1) + 2 * 110 (ceil(2 * 0.5) = 1 after the exit) = 460.
  // Model 2: 3 samples, D = 2 * 130 + 2 * 120 (ceil(1.5) = 2) = 500.
  b.queue = {sample(1, 0, 99999, 0), sample(2, 0, 99999, 0), sample(3, 0, 99999, 2), sample(4, 0, 99999, 2),
             sample(5, 0, 99999, 2)};
  // No overhead: gains 2 * 3030 - 460 = 5600 and 3 * 3030 - 500 = 8590: model 2 runs first.
  auto view = b.view(10);
  auto d = exit_aware->decide(view);
  EXPECT_EQ(d.kind, Decision::Kind::preempt);
  EXPECT_FALSE(d.merge);
  EXPECT_EQ(d.queue_positions, (std::vector<std::uint32_t>{2, 3, 4}));
  // Overhead 2000: model 0 gains 6060 - 2460 - 3 * 2000 = -2400, model 2 9090 - 2500 - 2 * 2000 = 2590.
  view.preemption_overhead_cycles = 2000;
  d = exit_aware->decide(view);
  EXPECT_EQ(d.queue_positions, (std::vector<std::uint32_t>{2, 3, 4}));
  // Overhead 4000: model 2 gains 9090 - 4500 - 2 * 4000 = -3410: nothing pays, keep running.
  view.preemption_overhead_cycles = 4000;
  EXPECT_EQ(exit_aware->decide(view).kind, Decision::Kind::run);
  // Without cross-model preemption it never preempts for another network.
  auto same_model_only = make("exit_aware", {{"cross_model", false}});
  EXPECT_EQ(same_model_only->decide(b.view(10)).kind, Decision::Kind::run);
  // The in-flight sample expects 0.5 * 1010 + 0.5 * 3030 = 2020 more cycles; with its deadline
  // at 10 + 2020 + 400 it cannot absorb model 2's 500 cycles nor model 0's 460.
  b.running_samples = {sample(9, 0, 10 + 2020 + 400, 1)};
  EXPECT_EQ(exit_aware->decide(b.view(10)).kind, Decision::Kind::run);
  // A batch of 8 at its last layer (1080 cycles left) is not worth stopping for one sample of
  // model 0 (440 cycles): 1080 - 8 * 440 < 0.
  b.running.next_layer = 3;
  b.running_samples.assign(8, sample(9, 0, 1'000'000'000, 1));
  b.queue = {sample(1, 0, 99999, 0)};
  EXPECT_EQ(exit_aware->decide(b.view(10)).kind, Decision::Kind::run);
}

// The catch-up policies on a batch of 1 at layer 2 with 4 samples waiting.
ViewBuilder catch_up_case(std::uint64_t fixed, std::uint64_t per_sample, std::int64_t in_flight_deadline) {
  ViewBuilder b;
  b.models.push_back(four_layers(fixed, per_sample));
  b.queue = {sample(1, 0, 1'000'000), sample(2, 0, 1'000'000), sample(3, 0, 1'000'000), sample(4, 0, 1'000'000)};
  b.has_running = true;
  b.running.next_layer = 2;
  b.running_samples = {sample(0, 0, in_flight_deadline)};
  return b;
}

TEST(Policies, ExitAwareMergesWhenBatchingPaysAndTheDeadlineAllows) {
  auto exit_aware = make("exit_aware");
  // Layers cost 1000 + 1 per sample: batching is almost free. Merging all 4 delays the
  // in-flight sample by the catch-up (2 layers at batch 4: 2008) but saves the 4 from waiting
  // for its 2 remaining layers and lets them share the last two layers.
  auto b = catch_up_case(1000, 1, 1'000'000);
  auto d = exit_aware->decide(b.view(0));
  EXPECT_EQ(d.kind, Decision::Kind::preempt);
  EXPECT_TRUE(d.merge);
  EXPECT_EQ(d.queue_positions.size(), 4u);
  // Layers cost 1000 per sample, so batching saves nothing, but exits still reward smaller
  // groups: the policy prices each candidate (cycles; E = expected total latency from now):
  //  j=0: in-flight 2000; the 4 start at 2000 as one batch: layers 0-1 at 4 (8000), half
  //       leave at 10000, layers 2-3 at 2 (4000), the rest at 14000:
  //       E = 2000 + 4 * (2000 + (0.5 * 8000 + 0.5 * 12000)) = 50000
  //  j=1: catch-up 2000, merged batch 1 + ceil(0.5) = 2 (2 layers of 2000):
  //       E = 1.5 * (2000 + 4000) + 0.5 * 2000 + 3 * ((2000 + 4000) + 8000) = 52000
  //  j=2: catch-up 4000, merged 1 + 1 = 2: E = 2 * (4000 + 4000) + 2 * 0.5 * 4000
  //       + 2 * ((4000 + 4000) + 5000) = 46000   <- the least
  //  j=4: catch-up 8000, merged 1 + 2 = 3: E = 3 * (8000 + 6000) + 4 * 0.5 * 8000 = 58000
  b = catch_up_case(0, 1000, 1'000'000);
  d = exit_aware->decide(b.view(0));
  EXPECT_EQ(d.kind, Decision::Kind::preempt);
  EXPECT_EQ(d.queue_positions, (std::vector<std::uint32_t>{0, 1}));
  // One layer left for the in-flight sample, one sample waiting, no batching gain:
  //  j=0: E = 1000 + (1000 + (0.5 * 2000 + 0.5 * 4000)) = 5000
  //  j=1: catch-up of layers 0-2 (3000), then the merged 2 run layer 3 (2000):
  //       E = 1.5 * (3000 + 2000) + 0.5 * 2000 = 8500. Keep running.
  b = catch_up_case(0, 1000, 1'000'000);
  b.queue.resize(1);
  b.running.next_layer = 3;
  EXPECT_EQ(exit_aware->decide(b.view(0)).kind, Decision::Kind::run);
  // Batching pays, but the in-flight sample would miss a deadline it meets alone: its 2
  // layers take 2002 cycles; a catch-up of even 1 sample adds 2002 more.
  b = catch_up_case(1000, 1, 3000);
  EXPECT_EQ(exit_aware->decide(b.view(0)).kind, Decision::Kind::run);
  auto unguarded = make("exit_aware", {{"guard_deadlines", false}});
  EXPECT_EQ(unguarded->decide(b.view(0)).kind, Decision::Kind::preempt);
}

TEST(Policies, LazyBatchingMergesAllTheSlackAllowsWhateverItCosts) {
  auto lazy = make("lazy_batching");
  // No batching gain, ample slack: lazy merges everything anyway (exit_aware would not).
  auto b = catch_up_case(0, 1000, 1'000'000);
  auto d = lazy->decide(b.view(0));
  EXPECT_EQ(d.kind, Decision::Kind::preempt);
  EXPECT_EQ(d.queue_positions.size(), 4u);
  // Exit-blind: the in-flight sample needs 2 layers alone (2000); catching up j samples adds
  // 2 layers at batch j (2000 j) and makes the last two layers 1000 (1 + j) each. A deadline
  // of 9000 allows j = 1 (2000 + 2 * 2000 = 6000) but not j = 2 (4000 + 2 * 3000 = 10000).
  b = catch_up_case(0, 1000, 9000);
  d = lazy->decide(b.view(0));
  EXPECT_EQ(d.kind, Decision::Kind::preempt);
  EXPECT_EQ(d.queue_positions.size(), 1u);
}

// The oracle a test controls: the exits it names and the arrivals it foresees.
struct ScriptedOracle final : scheduler::Oracle {
  std::map<std::uint64_t, std::uint32_t> exits;
  std::vector<scheduler::ForeseenSample> coming;
  std::int64_t now_ns = 0;
  std::vector<scheduler::ForeseenSample> answer;
  std::uint32_t drawn_exit(std::uint64_t id) const override { return exits.at(id); }
  std::span<const scheduler::ForeseenSample> arrivals_within(std::int64_t horizon_ns) override {
    answer.clear();
    for (const auto& f : coming)
      if (f.sample.arrival_ns <= now_ns + horizon_ns) answer.push_back(f);
    return answer;
  }
};

constexpr std::uint32_t early = 0, final_exit = 1;  // four_layers' exits: after layer 1, after layer 3

TEST(Policies, ClairvoyantPricesCatchUpsWithTheTrueExits) {
  auto clairvoyant = make("clairvoyant");
  // In flight: sample 0 at layer 2, leaving at the final exit. Waiting: 1-4, all leaving early.
  // Layers cost 1000 per sample. Exact totals (cycles from now):
  //  j=0: in-flight 2000; the 4 then run layers 0-1 at 4 (8000): 2000 + 4 * (2000 + 8000) = 42000
  //  j=1: catch-up 2000 (it leaves at 2000); in-flight 2000 + 2000; the 3 left wait 4000, then
  //       6000: 2000 + 4000 + 3 * (4000 + 6000) = 36000
  //  j=2: catch-up 4000 (both leave at 4000); in-flight 6000; the 2 left wait 6000, then 4000:
  //       8000 + 6000 + 2 * (6000 + 4000) = 34000   <- the least
  //  j=4: catch-up 8000 (all leave at 8000); in-flight 10000: 32000 + 10000 = 42000
  auto b = catch_up_case(0, 1000, 1'000'000);
  ScriptedOracle oracle;
  oracle.exits = {{0, final_exit}, {1, early}, {2, early}, {3, early}, {4, early}};
  auto view = b.view(0);
  view.oracle = &oracle;
  auto d = clairvoyant->decide(view);
  EXPECT_EQ(d.kind, Decision::Kind::preempt);
  EXPECT_EQ(d.queue_positions, (std::vector<std::uint32_t>{0, 1}));
  // Without an oracle (say, wrapped by a plugin's policy) it refuses to guess.
  EXPECT_THROW(clairvoyant->decide(b.view(0)), scheduler::PolicyError);
}

TEST(Policies, ClairvoyantIdlesForAnImminentArrivalOnlyWhenThatPays) {
  auto clairvoyant = make("clairvoyant");
  // Sample 1 waits; sample 2 arrives at 10 ns, before the first layer of sample 1 would end.
  // Both leave at the final exit. Starting now, sample 2 catches up at the first boundary.
  const auto plan = [&](std::uint64_t fixed, std::uint64_t per_sample, std::int64_t arrival_ns) {
    ViewBuilder b;
    b.models.push_back(four_layers(fixed, per_sample));
    b.queue = {sample(1, 0, 1'000'000)};
    ScriptedOracle oracle;
    oracle.exits = {{1, final_exit}, {2, final_exit}};
    oracle.coming = {{sample(2, arrival_ns, 1'000'000), final_exit}};
    auto view = b.view(0);
    view.oracle = &oracle;
    return clairvoyant->decide(view);
  };
  // Layers cost 1000 + 1 per sample: batching is almost free.
  //  now:  layer 0 alone (1001), catch-up of layer 0 (1001), layers 1-3 at 2 (3 * 1002): both
  //        finish at 5008: 5008 + (5008 - 10) = 10006
  //  wait: from 10, four layers at 2 (4008): 4018 + (4018 - 10) = 8026   <- idle until 10 ns
  auto d = plan(1000, 1, 10);
  EXPECT_EQ(d.kind, Decision::Kind::idle);
  EXPECT_EQ(d.wake_ns, 10);
  // Layers cost 1000 per sample: batching saves nothing.
  //  now:  1000 + 1000 + 3 * 2000: both at 8000: 8000 + 7990 = 15990   <- start now
  //  wait: from 10, 4 * 2000: 8010 + 8000 = 16010
  d = plan(0, 1000, 10);
  EXPECT_EQ(d.kind, Decision::Kind::start);
  // An arrival after the first layer would end (1001 cycles) is not waited for.
  d = plan(1000, 1, 1001);
  EXPECT_EQ(d.kind, Decision::Kind::start);
  d = plan(1000, 1, 900);  // now 5008 + 4108, wait 4908 + 4008
  EXPECT_EQ(d.kind, Decision::Kind::idle);
}

}  // namespace
}  // namespace npusim
