// static_batch as Clipper batches (Crankshaw et al., NSDI'17): AIMD on each network's batch
// size and the SLO-aware timeout, decision by decision on a four-layer network whose layer
// costs 100 + 10 * batch cycles (1 ns per cycle), so a batch of b takes 4 * (100 + 10 b) ns.

#include <gtest/gtest.h>

#include "policy_views.hpp"

namespace npusim {
namespace {

using namespace policy_views;

// Eight samples of SLO 10,000 ns waiting from time 0, less the `taken` already started.
std::vector<SampleInfo> waiting(std::size_t taken) {
  std::vector<SampleInfo> out;
  for (std::uint64_t id = taken; id < 8; ++id) out.push_back(sample(id, 0, 10'000));
  return out;
}

TEST(StaticBatch, AimdGrowsByOneWhileBatchesMeetTheirSloAndBacksOffByTenPercent) {
  auto clipper = make("static_batch");  // AIMD from 1, + 1, x 0.9, cap max_batch = 8
  ViewBuilder b;
  b.models.push_back(four_layers(100, 10));
  b.queue = waiting(0);
  auto d = clipper->decide(b.view(0));
  ASSERT_EQ(d.kind, Decision::Kind::start);
  EXPECT_EQ(d.queue_positions.size(), 1u);
  // That batch of 1 ends at 4 * 110 = 440 ns, within 10,000: the next holds 2.
  b.queue = waiting(1);
  d = clipper->decide(b.view(440));
  EXPECT_EQ(d.queue_positions.size(), 2u);
  // Ends at 440 + 4 * 120 = 920: 3.
  b.queue = waiting(3);
  d = clipper->decide(b.view(920));
  EXPECT_EQ(d.queue_positions.size(), 3u);
  // Its processing time is exactly the SLO (10,920 - 920 = 10,000): still met, 4.
  b.queue = waiting(0);
  d = clipper->decide(b.view(10'920));
  EXPECT_EQ(d.queue_positions.size(), 4u);
  // One nanosecond over (10,001): floor(4 * 0.9) = 3.
  d = clipper->decide(b.view(20'921));
  EXPECT_EQ(d.queue_positions.size(), 3u);
  // Met five times: 3 -> 8, then the cap (max_batch = 8) holds it at 8.
  std::int64_t now = 20'921;
  for (int batch = 0; batch < 6; ++batch) d = clipper->decide(b.view(now += 1));
  EXPECT_EQ(d.queue_positions.size(), 8u);
  // A miss at 8: floor(8 * 0.9) = 7.
  d = clipper->decide(b.view(now += 10'001));
  EXPECT_EQ(d.queue_positions.size(), 7u);
  // With AIMD off the size is batch_size, whatever the outcome.
  auto fixed = make("static_batch", {{"aimd", false}, {"batch_size", std::int64_t{5}}});
  EXPECT_EQ(fixed->decide(b.view(0)).queue_positions.size(), 5u);
  EXPECT_EQ(fixed->decide(b.view(1'000'000)).queue_positions.size(), 5u);
}

TEST(StaticBatch, SloAwareTimeoutStartsAPartialBatchExactlyWhenWaitingLongerWouldMiss) {
  // A batch of 4 that waits up to 1 ms for samples, unless the SLO says otherwise.
  const std::map<std::string, scheduler::ParameterValue> waits{
      {"aimd", false}, {"batch_size", std::int64_t{4}}, {"timeout_ms", 1.0}};
  auto clipper = make("static_batch", waits);
  ViewBuilder b;
  b.models.push_back(four_layers(100, 10));
  // One sample due at 1,000 ns: alone it takes 440 ns, so it must start by 1,000 - 440 = 560.
  b.queue = {sample(1, 0, 1'000)};
  auto d = clipper->decide(b.view(100));
  EXPECT_EQ(d.kind, Decision::Kind::idle);
  EXPECT_EQ(d.wake_ns, 560);
  EXPECT_EQ(clipper->decide(b.view(559)).kind, Decision::Kind::idle);
  d = clipper->decide(b.view(560));
  EXPECT_EQ(d.kind, Decision::Kind::start);
  EXPECT_EQ(d.queue_positions, (std::vector<std::uint32_t>{0}));
  // A second sample arrives at 200: a batch of 2 takes 4 * 120 = 480, so the oldest must start
  // by 1,000 - 480 = 520.
  b.queue = {sample(1, 0, 1'000), sample(2, 200, 1'200)};
  d = clipper->decide(b.view(300));
  EXPECT_EQ(d.wake_ns, 520);
  EXPECT_EQ(clipper->decide(b.view(519)).kind, Decision::Kind::idle);
  EXPECT_EQ(clipper->decide(b.view(520)).queue_positions, (std::vector<std::uint32_t>{0, 1}));
  // Without SLO awareness only the fixed timeout counts: 0 + 1 ms.
  auto blind = make("static_batch", {{"aimd", false}, {"batch_size", std::int64_t{4}}, {"timeout_ms", 1.0},
                                     {"slo_aware_timeout", false}});
  EXPECT_EQ(blind->decide(b.view(300)).wake_ns, 1'000'000);
  // A fixed timeout shorter than the SLO allows comes first: 0 + 100 ns.
  auto short_wait = make("static_batch", {{"aimd", false}, {"batch_size", std::int64_t{4}}, {"timeout_ms", 0.0001}});
  EXPECT_EQ(short_wait->decide(b.view(50)).wake_ns, 100);
  // A sample already too late to make it starts at once.
  b.queue = {sample(1, 0, 300)};
  EXPECT_EQ(clipper->decide(b.view(10)).kind, Decision::Kind::start);
}

TEST(StaticBatch, EachNetworkAdaptsItsOwnBatchSize) {
  auto clipper = make("static_batch");
  ViewBuilder b;
  b.models.push_back(four_layers(100, 10));
  b.models.push_back(four_layers(100, 10));
  // Model 1's oldest sample goes first; its batch of 1 misses its 100 ns SLO (440 ns), model
  // 0's meets its 10,000: model 1 stays at 1 (floor(0.9) is raised to 1), model 0 grows to 2.
  b.queue = {sample(1, 0, 100, 1), sample(2, 0, 10'000, 0), sample(3, 0, 10'000, 0), sample(4, 0, 100, 1)};
  EXPECT_EQ(clipper->decide(b.view(0)).queue_positions, (std::vector<std::uint32_t>{0}));
  b.queue = {sample(2, 0, 10'000, 0), sample(3, 0, 10'000, 0), sample(4, 0, 100, 1)};
  EXPECT_EQ(clipper->decide(b.view(440)).queue_positions, (std::vector<std::uint32_t>{0}));
  b.queue = {sample(3, 0, 10'000, 0), sample(4, 0, 100, 1), sample(5, 0, 10'000, 0)};
  EXPECT_EQ(clipper->decide(b.view(880)).queue_positions, (std::vector<std::uint32_t>{0, 2}));
}

}  // namespace
}  // namespace npusim
