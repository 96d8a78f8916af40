// prema as PREMA schedules (Choi and Rhu, HPCA'20): tokens, the threshold and the choice
// between drain, checkpoint and kill, decision by decision. Model 0 is short (layers of
// 100 + 10 * batch cycles, isolated 4 * 110 = 440), model 1 long (1000 + 10 * batch,
// isolated 4 * 1010 = 4040); 1 ns per cycle. A sample's tokens are
// priority * (1 + waited / isolated); the threshold is the highest of the levels 1, 3, 9 that
// some job's tokens reach.

#include <gtest/gtest.h>

#include "policy_views.hpp"

namespace npusim {
namespace {

using namespace policy_views;
using scheduler::high_priority;
using scheduler::medium_priority;

ViewBuilder short_and_long() {
  ViewBuilder b;
  b.models.push_back(four_layers(100, 10));
  b.models.push_back(four_layers(1000, 10));
  return b;
}

TEST(Prema, ShortestCandidateFirstUntilALongJobPassesAHigherLevel) {
  auto b = short_and_long();
  // The long job has waited since 0, the short one since 8,000 (both medium priority, 3).
  b.queue = {sample(1, 0, 1'000'000, 1), sample(2, 8'000, 1'000'000, 0)};
  // At 8,079 the long job has 3 * (1 + 8,079 / 4,040) = 8.9993 tokens, the short one
  // 3 * (1 + 79 / 440) = 3.54: threshold 3, both are candidates, the shorter goes.
  EXPECT_EQ(make("prema")->decide(b.view(8'079)).queue_positions, (std::vector<std::uint32_t>{1}));
  // At 8,080 the long job reaches 3 * (1 + 2) = 9: threshold 9, it is the only candidate.
  EXPECT_EQ(make("prema")->decide(b.view(8'080)).queue_positions, (std::vector<std::uint32_t>{0}));
  // A fixed threshold of 10 leaves no candidate: the job with the most tokens goes.
  EXPECT_EQ(make("prema", {{"token_threshold", 10.0}})->decide(b.view(8'079)).queue_positions,
            (std::vector<std::uint32_t>{0}));
}

TEST(Prema, AHighPriorityDeviceIsACandidateFromItsFirstToken) {
  auto b = short_and_long();
  // A long high-priority sample (9 tokens on arrival) against a short medium one that has
  // waited 200 ns (3 * (1 + 200 / 440) = 4.36): threshold 9, the long job goes first.
  b.queue = {sample(1, 0, 1'000'000, 0), sample(2, 100, 1'000'000, 1, high_priority)};
  EXPECT_EQ(make("prema")->decide(b.view(200)).queue_positions, (std::vector<std::uint32_t>{1}));
  // Both medium: threshold 3 (4.36 and 3 * (1 + 100 / 4040) = 3.07), the short one goes.
  b.queue[1].priority = medium_priority;
  EXPECT_EQ(make("prema")->decide(b.view(200)).queue_positions, (std::vector<std::uint32_t>{0}));
}

// A long batch of 1 (medium priority, 3 tokens: it arrived now) at layer 1 has R = 3 * 1010 =
// 3030 cycles left and W = 1010 done. A short job of 1 sample that waited 2,640 ns has
// 3 * (1 + 2640 / 440) = 21 tokens: threshold 9, the running batch (3) is no candidate, the
// job (D = 440) runs now. Priority-weighted costs of each way to make room:
//   drain 3 * R = 9090,  checkpoint 3 * (D + O) = 1320 + 3 O,  kill 3 * (D + W) = 4350.
TEST(Prema, ChoosesDrainCheckpointOrKillByTheirCost) {
  auto b = short_and_long();
  b.queue = {sample(1, 7'360, 1'000'000, 0)};
  b.has_running = true;
  b.running.model = 1;
  b.running.next_layer = 1;
  b.running_samples = {sample(9, 10'000, 1'000'000, 1)};
  auto view = b.view(10'000);
  // No context to move (O = 0): checkpoint, 1320.
  auto d = make("prema")->decide(view);
  EXPECT_EQ(d.kind, Decision::Kind::preempt);
  EXPECT_FALSE(d.merge);
  EXPECT_FALSE(d.restart);
  // O = 1010: checkpoint 4350 ties kill; no work is lost, so checkpoint.
  view.preemption_overhead_cycles = 1010;
  EXPECT_FALSE(make("prema")->decide(view).restart);
  // O = 1011: kill (4350) undercuts checkpoint (4353): the batch reruns from layer 0.
  view.preemption_overhead_cycles = 1011;
  d = make("prema")->decide(view);
  EXPECT_EQ(d.kind, Decision::Kind::preempt);
  EXPECT_TRUE(d.restart);
  // Without kill, checkpoint (4353 < 9090) ...
  EXPECT_FALSE(make("prema", {{"kill", false}})->decide(view).restart);
  // ... until its transfers make draining cheaper: O = 2591 gives 9093 > 9090.
  view.preemption_overhead_cycles = 2591;
  EXPECT_EQ(make("prema", {{"kill", false}})->decide(view).kind, Decision::Kind::run);
  view.preemption_overhead_cycles = 2590;  // 9090: a tie, drain
  EXPECT_EQ(make("prema", {{"kill", false}})->decide(view).kind, Decision::Kind::run);
  view.preemption_overhead_cycles = 2589;
  EXPECT_EQ(make("prema", {{"kill", false}})->decide(view).kind, Decision::Kind::preempt);
  // Not preemptive: always drain.
  EXPECT_EQ(make("prema", {{"preemptive", false}})->decide(view).kind, Decision::Kind::run);
}

TEST(Prema, TheRunningBatchKeepsItsPlaceWhileItIsAShortEnoughCandidate) {
  auto b = short_and_long();
  b.has_running = true;
  b.running.model = 1;
  b.running.next_layer = 3;  // one long layer left: R = 1010
  // The running sample waited 36,360 ns before the policy saw it: 3 * (1 + 9) = 30 tokens.
  b.running_samples = {sample(9, 0, 1'000'000, 1)};
  // A short job with 21 tokens (threshold 9) is a candidate too, but D = 440 < R = 1010, so
  // it preempts; against a job of 2 long samples (D = 4 * 1020) the running batch stays.
  b.queue = {sample(1, 33'720, 1'000'000, 0)};
  EXPECT_EQ(make("prema")->decide(b.view(36'360)).kind, Decision::Kind::preempt);
  b.queue = {sample(1, 0, 1'000'000, 1), sample(2, 0, 1'000'000, 1)};
  EXPECT_EQ(make("prema")->decide(b.view(36'360)).kind, Decision::Kind::run);
}

}  // namespace
}  // namespace npusim
