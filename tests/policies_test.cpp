// The built-in policies, decision by decision, on hand-built views of a four-layer network
// whose costs are simple enough to compute by hand; and the predictions they rest on.

#include <cmath>
#include <map>
#include <random>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "policy_views.hpp"

namespace npusim {
namespace {

using namespace policy_views;

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

// The predictions from every start layer against their definitions, summed here layer by layer
// (docs/policies.md, "Predictions"), on random profiles: random cycles (some near 2^62, so that
// sums wrap), exits at random layers, some with probability 0, and some taking every sample
// still there (hazard 1 before the last layer: nothing survives past them).
TEST(ModelProfile, PredictionsFromEveryLayerMatchTheirDefinitions) {
  std::mt19937_64 random(20261204);
  for (int trial = 0; trial < 300; ++trial) {
    const auto layers = static_cast<std::uint32_t>(1 + random() % 40);
    const auto max_batch = static_cast<std::uint32_t>(1 + random() % 16);
    std::vector<std::uint64_t> cycles(std::size_t{layers} * (max_batch + 1));
    for (auto& c : cycles) c = random() % 50 == 0 ? (std::uint64_t{1} << 62) + random() % 1000 : random() % 1'000'000;
    std::vector<scheduler::ExitPoint> exits;
    double left = 1.0;
    for (std::uint32_t l = 0; l + 1 < layers; ++l)
      if (random() % 5 == 0) {
        const auto draw = random() % 8;
        const double p = draw < 2 ? 0.0 : draw == 2 ? left : left * static_cast<double>(random() % 1000) / 1000.0;
        exits.push_back({fmt::format("e{}", l), l, p});
        left -= p;
      }
    exits.push_back({"final", layers - 1, left});
    const scheduler::ModelProfile profile(
        "random", layers, max_batch, [&](std::uint32_t l, std::uint32_t b) { return cycles[l * (max_batch + 1) + b]; },
        exits);
    for (const auto prediction : {scheduler::Prediction::exit_aware, scheduler::Prediction::exit_blind})
      for (std::uint32_t start = 0; start < layers; ++start)
        for (std::uint32_t b = 1; b <= max_batch; ++b) {
          std::uint64_t elapsed = 0;
          double sample_latency = 0.0;
          for (std::uint32_t m = start; m < layers; ++m) {
            const std::uint32_t running = profile.expected_batch(b, start, m, prediction);
            if (running > 0) elapsed += profile.cycles(m, running);
            if (profile.exit_after(m) >= 0) {
              const double hazard = m + 1 == layers ? 1.0 : 1.0 - profile.survival(m, m + 1);
              sample_latency += profile.survival(start, m) * hazard * static_cast<double>(elapsed);
            }
          }
          SCOPED_TRACE(fmt::format("trial {}, {} layers, start {}, batch {}", trial, layers, start, b));
          ASSERT_EQ(profile.remaining_cycles(start, b, prediction), elapsed);
          if (prediction == scheduler::Prediction::exit_aware) {
            ASSERT_NEAR(profile.sample_remaining_cycles(start, b, prediction), sample_latency,
                        1e-9 * std::max(1.0, std::fabs(sample_latency)));
          }
        }
  }
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

// The engine hands each view the memory of its last decision's positions (spare_positions):
// a start or preempt built in it allocates nothing. Every built-in scheduler that starts a
// batch must return its positions in that memory.
TEST(Policies, StartsAreBuiltInTheEnginesSpareMemory) {
  for (const char* name : {"fcfs", "static_batch", "lazy_batching", "prema", "edf", "exit_aware"}) {
    SCOPED_TRACE(name);
    auto policy = make(name);
    ViewBuilder b;
    b.models.push_back(four_layers(100, 10));
    b.queue = {sample(1, 0, 100000), sample(2, 1, 100000)};
    std::vector<std::uint32_t> spare;
    spare.reserve(64);
    const std::uint32_t* memory = spare.data();
    auto view = b.view(1'000'000'000);  // long after every timeout
    view.spare_positions = &spare;
    const auto d = policy->decide(view);
    ASSERT_EQ(d.kind, Decision::Kind::start);
    EXPECT_EQ(d.queue_positions.data(), memory);
    EXPECT_EQ(spare.capacity(), 0u);  // taken
  }
}

TEST(Policies, StaticBatchWaitsForAFullBatchOrItsTimeout) {
  auto policy = make("static_batch", {{"batch_size", std::int64_t{2}}, {"aimd", false}, {"timeout_ms", 0.001}});
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
// ceil(1 * 0.5) = 1 sample) = 3030 cycles left, and its sample expects r = 0.5 * 1010 + 0.5 *
// 3030 = 2020. Under the mean objective, preempting it for a group of n samples with batch time
// D, with context overhead o (the group waits for the save, o / 2), gains
//   n * (R - o / 2) - (D + o) - (other waiting samples) * (o + excess),
// where excess = D - n * (the network's cheapest cycles a sample: a batch of 8 takes
// 2 * 180 + 2 * 140 = 640, 80 a sample).
TEST(Policies, ExitAwarePreemptsForAnotherNetworkWhenThatLowersTotalLatency) {
  // Patience 0: the gain alone decides (patience is checked at the end).
  auto exit_aware = make("exit_aware", {{"objective", std::string("mean")}, {"preempt_patience", 0.0}});
  ViewBuilder b;
  b.models.push_back(four_layers(100, 10));   // model 0
  b.models.push_back(four_layers(1000, 10));  // model 1, running
  b.models.push_back(four_layers(100, 10));   // model 2
  b.has_running = true;
  b.running.model = 1;
  b.running.next_layer = 1;
  b.running_samples = {sample(9, 0, 1'000'000'000, 1)};
  // Model 0: 2 samples, D = 2 * 120 (layers 0-1) + 2 * 110 (ceil(2 * 0.5) = 1 after the exit) =
  // 460, excess 460 - 160 = 300. Model 2: 3 samples, D = 2 * 130 + 2 * 120 (ceil(1.5) = 2) = 500,
  // excess 500 - 240 = 260.
  b.queue = {sample(1, 0, 99999, 0), sample(2, 0, 99999, 0), sample(3, 0, 99999, 2), sample(4, 0, 99999, 2),
             sample(5, 0, 99999, 2)};
  // No overhead: model 0 gains 2 * 3030 - 460 - 3 * 300 = 4700, model 2 3 * 3030 - 500 - 2 * 260
  // = 8070: model 2 runs first.
  auto view = b.view(10);
  auto d = exit_aware->decide(view);
  EXPECT_EQ(d.kind, Decision::Kind::preempt);
  EXPECT_FALSE(d.merge);
  EXPECT_EQ(d.queue_positions, (std::vector<std::uint32_t>{2, 3, 4}));
  // Overhead 1000: model 0 gains 2 * 2530 - 1460 - 3 * 1300 = -300, model 2 3 * 2530 - 1500 -
  // 2 * 1260 = 3570.
  view.preemption_overhead_cycles = 1000;
  d = exit_aware->decide(view);
  EXPECT_EQ(d.queue_positions, (std::vector<std::uint32_t>{2, 3, 4}));
  // Patience 30 (the default): the group must first have waited, in all, 30 times the in-flight
  // sample's save and restore, 30 * 1 * 1000 = 30000 cycles. At 10 model 2's three samples have
  // waited 3 * 10 = 30: keep running. At 10000 they have waited 30000 (model 0's two only 20000),
  // and the gain is the same (every cost moves with now): model 2 runs first.
  auto patient = make("exit_aware", {{"objective", std::string("mean")}});
  EXPECT_EQ(patient->decide(view).kind, Decision::Kind::run);
  auto later = b.view(10'000);
  later.preemption_overhead_cycles = 1000;
  EXPECT_EQ(patient->decide(later).queue_positions, (std::vector<std::uint32_t>{2, 3, 4}));
  // Overhead 2000: model 2 gains 3 * 2030 - 2500 - 2 * 2260 = -930: nothing pays, keep running.
  view.preemption_overhead_cycles = 2000;
  EXPECT_EQ(exit_aware->decide(view).kind, Decision::Kind::run);
  // Without cross-model preemption it never preempts for another network.
  auto same_model_only = make("exit_aware", {{"cross_model", false}});
  EXPECT_EQ(same_model_only->decide(b.view(10)).kind, Decision::Kind::run);
  // With its deadline at 10 + 2020 + 400 the in-flight sample cannot absorb model 2's 500 cycles
  // nor model 0's 460.
  b.running_samples = {sample(9, 0, 10 + 2020 + 400, 1)};
  EXPECT_EQ(exit_aware->decide(b.view(10)).kind, Decision::Kind::run);
  // Nor can a batch that has been suspended max_preemptions times be preempted again.
  b.running_samples = {sample(9, 0, 1'000'000'000, 1)};
  b.running.preemptions = 1;
  EXPECT_EQ(make("exit_aware", {{"max_preemptions", std::int64_t{1}}})->decide(b.view(10)).kind, Decision::Kind::run);
  EXPECT_EQ(make("exit_aware", {{"max_preemptions", std::int64_t{2}}})->decide(b.view(10)).kind,
            Decision::Kind::preempt);
  b.running.preemptions = 0;
  // A batch of 8 at its last layer (8 * 10 + 100 = 180 cycles left) is not worth stopping for
  // one sample of model 0 (440 cycles): it would delay 8 samples by 440 to save one 180.
  b.running.next_layer = 3;
  b.running_samples.assign(8, sample(9, 0, 1'000'000'000, 1));
  b.queue = {sample(1, 0, 99999, 0)};
  EXPECT_EQ(exit_aware->decide(b.view(10)).kind, Decision::Kind::run);
}

// Ageing: model 1's sample (SLO 1000) arrived at 0; model 0's would go first by the c-mu rule
// (440 against 4040 cycles). At 2999 it has waited under 3 SLOs; at 3000 it has waited 3 and
// starts first. With ageing off it never does while model 0 waits.
TEST(Policies, ExitAwareStartsASampleThatHasWaitedMaxWaitSlos) {
  ViewBuilder b;
  b.models.push_back(four_layers(100, 10));
  b.models.push_back(four_layers(1000, 10));
  b.queue = {sample(1, 0, 1000, 1), sample(2, 2990, 1'000'000, 0)};
  auto exit_aware = make("exit_aware", {{"objective", std::string("mean")}});
  EXPECT_EQ(exit_aware->decide(b.view(2999)).queue_positions, (std::vector<std::uint32_t>{1}));
  EXPECT_EQ(exit_aware->decide(b.view(3000)).queue_positions, (std::vector<std::uint32_t>{0}));
  auto no_ageing = make("exit_aware", {{"objective", std::string("mean")}, {"max_wait_slos", 0.0}});
  EXPECT_EQ(no_ageing->decide(b.view(100000)).queue_positions, (std::vector<std::uint32_t>{1}));
}

// The objective decides between two starts, at time 0. Model 0: one sample, a batch of 440
// cycles in which it expects to finish after 0.5 * 220 + 0.5 * 440 = 330. Model 1: one sample
// that arrived at -500 with its deadline at 3400 (SLO 3900), a batch of 4040 cycles, finishing
// after 0.5 * 2020 + 0.5 * 4040 = 3030. Latencies:
//   model 0 first (the c-mu rule): 330 and 440 + 3030 + 500 = 3970, a miss (3470 > 3400);
//   model 1 first: 3030 + 500 = 3530 and 4040 + 330 = 4370.
// mean: 4300 < 7900, model 0 first. blend: 4300 + 3900 = 8200 > 7900, model 1 first. slo: one
// miss against none, model 1 first.
TEST(Policies, ExitAwareObjectiveWeighsMisses) {
  ViewBuilder b;
  b.models.push_back(four_layers(100, 10));
  b.models.push_back(four_layers(1000, 10));
  b.queue = {sample(1, -500, 3400, 1), sample(2, 0, 1'000'000, 0)};
  EXPECT_EQ(make("exit_aware", {{"objective", std::string("mean")}})->decide(b.view(0)).queue_positions,
            (std::vector<std::uint32_t>{1}));
  EXPECT_EQ(make("exit_aware", {{"objective", std::string("blend")}})->decide(b.view(0)).queue_positions,
            (std::vector<std::uint32_t>{0}));
  EXPECT_EQ(make("exit_aware", {{"objective", std::string("slo")}})->decide(b.view(0)).queue_positions,
            (std::vector<std::uint32_t>{0}));
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
  // Layers cost 1000 per sample, so batching saves nothing. The samples left in the queue are
  // priced as their DrainPlan drains them (cycles; δ(b), D(b) a sample's and the batch's
  // expected time from layer 0; half the samples leave after layer 1):
  //  δ(1) = 0.5 * 2000 + 0.5 * 4000 = 3000, D(1) = 4000; δ(2) = 0.5 * 4000 + 0.5 * 6000 = 5000,
  //  D(2) = 4000 + 2000 = 6000; batches of 3 and 4 cost more per sample.
  //  V(1) = 3000; V(2) = min(3000 + 4000 + 3000, 2 * 5000) = 10000;
  //  V(3) = min(3000 + 2 * 4000 + 10000, 10000 + 6000 + 3000, 3 * 8000) = 19000;
  //  V(4) = min(3000 + 3 * 4000 + 19000, 10000 + 2 * 6000 + 10000, ...) = 32000.
  // Each candidate (E = expected total latency from now):
  //  j=0: in-flight 2000; the 4 wait for it, then drain: E = 2000 + 4 * 2000 + V(4) = 42000
  //  j=1: catch-up 2000, merged batch 1 + ceil(0.5) = 2 (2 layers of 2000):
  //       E = 1.5 * 6000 + 0.5 * 2000 + 3 * 6000 + V(3) = 47000
  //  j=2: catch-up 4000, merged 1 + 1 = 2: E = 2 * 8000 + 2 * 0.5 * 4000 + 2 * 8000 + V(2) = 46000
  //  j=4: catch-up 8000, merged 1 + 2 = 3: E = 3 * (8000 + 6000) + 4 * 0.5 * 8000 = 58000
  // so it keeps running: merging only pays where batching does.
  b = catch_up_case(0, 1000, 1'000'000);
  d = exit_aware->decide(b.view(0));
  EXPECT_EQ(d.kind, Decision::Kind::run);
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

TEST(Policies, ExitAwarePricesTheArrivalsACatchUpHoldsBack) {
  // The case above where all 4 merge (layers cost 1000 + 1 per sample), with a second network
  // whose samples stream in: 4 cheap layers of 1 cycle, so a sample expects 0.5 * 2 + 0.5 * 4 =
  // 3 cycles. The catch-up takes the only FBE register, so its 2 layers at batch 4 (T = 2 * 1004
  // = 2008 cycles, no context to save) hold those arrivals back: at rate λ per ns they cost
  // λ * T * T / 2. The plans of the running network (expected total latency, cycles):
  //  j=0: the in-flight sample's 2 layers (2 * 1001 = 2002), the 4 wait for it and drain as one
  //       batch, V(4) = 4 * δ(4) = 4 * (0.5 * 2008 + 0.5 * 4012) = 12040: E = 2002 + 4 * 2002 +
  //       12040 = 22052;
  //  j=4: catch-up 2008, then the in-flight sample and the 2 that stay run 2 layers at batch 3
  //       (2006): E = 3 * 4014 + 2 * 2008 = 16058, a gain of 5994;
  //  j=1 and j=2 gain less (j=1 loses: E = 28052).
  // Both are stretched by 1 / (1 - λ * 3), the other network's share of the NPU.
  auto b = catch_up_case(1000, 1, 1'000'000);
  b.models.push_back(four_layers(1, 0));
  // A policy that has seen `arrivals` of the second network, all at t = 0.
  const auto fed = [&](const std::map<std::string, scheduler::ParameterValue>& params, int arrivals) {
    auto policy = make("exit_aware", params);
    for (int i = 0; i < arrivals; ++i)
      policy->observe_arrival(b.view(0), sample(100 + static_cast<std::uint64_t>(i), 0, 1'000'000, 1));
    return policy;
  };
  // A 1 ms window: λ = arrivals / 1e6 per ns at the decision.
  const auto blocking_after = [&](int arrivals) { return fed({{"blocking_window_ms", 1.0}}, arrivals)->decide(b.view(0)); };
  // 1,000 arrivals: λ = 1e-3, blocking 1e-3 * 2008^2 / 2 = 2016 < 5994 * 1.003: all 4 merge.
  auto d = blocking_after(1000);
  EXPECT_EQ(d.kind, Decision::Kind::preempt);
  EXPECT_EQ(d.queue_positions.size(), 4u);
  // 5,000 arrivals: λ = 5e-3, blocking 10,080 > 5994 * 1.015 = 6085; no smaller catch-up is
  // shorter than 2 layers (blocking at least 5e-3 * 2002^2 / 2 = 10,020) nor gains more. Keep
  // running.
  EXPECT_EQ(blocking_after(5000).kind, Decision::Kind::run);
  // Break-even: 5994 / (1 - 3λ) = λ * 2008^2 / 2 at λ = 3.00e-3, between 2,950 and 3,050
  // arrivals in the window.
  EXPECT_EQ(blocking_after(2950).kind, Decision::Kind::preempt);
  EXPECT_EQ(blocking_after(3050).kind, Decision::Kind::run);
  // A window of 0 prices no blocking: the same arrivals change nothing.
  EXPECT_EQ(fed({{"blocking_window_ms", 0.0}}, 5000)->decide(b.view(0)).queue_positions.size(), 4u);
  // With a second register left, other networks can still preempt the catch-up: no blocking.
  auto view = b.view(0);
  view.preemptions_left = 2;
  EXPECT_EQ(fed({{"blocking_window_ms", 1.0}}, 5000)->decide(view).queue_positions.size(), 4u);
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

// Once the in-flight sample is predicted late even alone (2 layers of 1000 > its deadline of
// 1000), refusing to merge cannot save it; a merge must then bring a caught-up sample in on
// time, or LazyBatching has no slack to spend. Exit-blind, catching up j samples completes at
// 2000 j (layers 0-1 at batch j) + 2 * 1000 (1 + j) (layers 2-3 at 1 + j):
// j = 1: 6000, j = 2: 10000, j = 4: 18000.
TEST(Policies, LazyBatchingNeverMergesPastThePointWhereNoDeadlineCanBeMet) {
  auto lazy = make("lazy_batching");
  auto b = catch_up_case(0, 1000, 1000);
  // The queued samples are due at 1,000,000: all 4 make it, merge them all.
  EXPECT_EQ(lazy->decide(b.view(0)).queue_positions.size(), 4u);
  // Due at 6000: only j = 1 brings one in on time.
  for (auto& s : b.queue) s.deadline_ns = 6000;
  auto d = lazy->decide(b.view(0));
  EXPECT_EQ(d.kind, Decision::Kind::preempt);
  EXPECT_EQ(d.queue_positions.size(), 1u);
  // With 1 ns of slack kept, or due at 5999, nobody can make it: no merge at all.
  EXPECT_EQ(make("lazy_batching", {{"slack_ms", 1e-6}})->decide(b.view(0)).kind, Decision::Kind::run);
  for (auto& s : b.queue) s.deadline_ns = 5999;
  EXPECT_EQ(lazy->decide(b.view(0)).kind, Decision::Kind::run);
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
  // Layers cost 1000 per sample. The samples left in the queue drain as the exact recursion
  // prices them: n early samples cost W(n) = min over the first batch b of b * 2000b +
  // (n - b) * 2000b + W(n - b), so one at a time: W(1) = 2000, W(2) = 6000, W(3) = 12000,
  // W(4) = 20000. Exact totals (cycles from now):
  //  j=0: in-flight 2000; the 4 wait 2000, then drain: 2000 + 4 * 2000 + W(4) = 30000
  //  j=1: catch-up 2000 (it leaves at 2000); in-flight 2000 + 2000; the 3 left wait 4000:
  //       2000 + 4000 + 3 * 4000 + W(3) = 30000   <- the least, and the larger of the tie
  //  j=2: catch-up 4000 (both leave at 4000); in-flight 6000; the 2 left wait 6000:
  //       8000 + 6000 + 2 * 6000 + W(2) = 32000
  //  j=4: catch-up 8000 (all leave at 8000); in-flight 10000: 32000 + 10000 = 42000
  auto b = catch_up_case(0, 1000, 1'000'000);
  ScriptedOracle oracle;
  oracle.exits = {{0, final_exit}, {1, early}, {2, early}, {3, early}, {4, early}};
  auto view = b.view(0);
  view.oracle = &oracle;
  auto d = clairvoyant->decide(view);
  EXPECT_EQ(d.kind, Decision::Kind::preempt);
  EXPECT_EQ(d.queue_positions, (std::vector<std::uint32_t>{0}));
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
