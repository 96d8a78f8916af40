// Metrics: nearest-rank percentiles, the bounded-memory estimator's error bound, and the
// windowed tail SLO metric.

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include <gtest/gtest.h>

#include "sim/metrics.hpp"

namespace npusim {
namespace {

TEST(LatencyDistribution, NearestRankPercentiles) {
  sim::LatencyDistribution d(100);
  for (int v = 10; v >= 1; --v) d.add(v);  // 1..10, added out of order
  // p50 of 10 values: rank ceil(0.5 * 10) = 5 -> 5; p95: rank ceil(9.5) = 10 -> 10;
  // p10: rank 1 -> 1; p11: rank ceil(1.1) = 2 -> 2.
  EXPECT_EQ(d.percentile(50), 5.0);
  EXPECT_EQ(d.percentile(95), 10.0);
  EXPECT_EQ(d.percentile(10), 1.0);
  EXPECT_EQ(d.percentile(11), 2.0);
  EXPECT_EQ(d.mean(), 5.5);
  EXPECT_EQ(d.max(), 10.0);
  EXPECT_TRUE(d.exact());
  EXPECT_EQ(sim::LatencyDistribution(5).percentile(99), 0.0);  // empty
}

// Past the exact limit every percentile stays within 0.1 % of the exact value, on data
// spanning six decades, and the summary says so.
TEST(LatencyDistribution, EstimatorStaysWithinItsBound) {
  std::mt19937_64 rng(7);
  std::lognormal_distribution<double> latency(std::log(2e6), 1.5);  // ns; about 2 ms median
  sim::LatencyDistribution sketched(1000);
  std::vector<double> all;
  for (int i = 0; i < 200000; ++i) {
    const double v = latency(rng);
    sketched.add(v);
    all.push_back(v);
  }
  std::sort(all.begin(), all.end());
  EXPECT_FALSE(sketched.exact());
  EXPECT_EQ(sketched.relative_error_bound(), 0.001);
  for (double q : {1.0, 10.0, 50.0, 90.0, 95.0, 99.0, 99.9, 99.99, 100.0}) {
    // Nearest rank ceil(q/100 * n); the tolerance keeps 99.9 % of 200,000 at exactly 199,800.
    const auto rank = static_cast<std::size_t>(std::ceil(q / 100.0 * static_cast<double>(all.size()) - 1e-9));
    const double exact = all[rank - 1];
    EXPECT_LE(std::fabs(sketched.percentile(q) - exact) / exact, 0.001) << "p" << q;
  }
  EXPECT_EQ(sketched.max(), all.back());
  EXPECT_NEAR(sketched.mean(), std::accumulate(all.begin(), all.end(), 0.0) / static_cast<double>(all.size()), 1e-3);
}

TEST(TailWindows, AWindowIsSatisfiedWhenItsPercentileMeetsTheSlo) {
  sim::TailWindows tail(1000.0, 95.0);  // 1000 ns windows, p95
  // Window 0: 20 samples, one late (ratio 2): p95 is rank 19 of 20 -> 1.0, satisfied.
  for (int i = 0; i < 19; ++i) tail.add(10.0 * i, i == 0 ? 1.0 : 0.5);
  tail.add(500.0, 2.0);
  // Window 1: 10 samples, one late: p95 is rank ceil(9.5) = 10 -> the late one, not satisfied.
  for (int i = 0; i < 9; ++i) tail.add(1000.0 + i, 0.9);
  tail.add(1999.0, 1.01);
  // Window 2 is empty (not counted); window 3 has one sample within its SLO.
  tail.add(3500.0, 0.1);
  tail.finish();
  EXPECT_EQ(tail.windows(), 3u);
  EXPECT_EQ(tail.satisfied(), 2u);
  EXPECT_DOUBLE_EQ(tail.satisfaction(), 2.0 / 3.0);
}

// The definition, computed the long way: each window's ratios sorted, the nearest-rank
// percentile read off and compared with 1. Random windows of 1 to 40 samples, ratios around 1
// (some exactly 1), several percentiles.
TEST(TailWindows, AgreesWithSortingEachWindowsRatios) {
  std::mt19937_64 rng(20261203);
  std::uniform_int_distribution<int> size(1, 40);
  std::uniform_real_distribution<double> ratio(0.2, 1.8);
  for (const double q : {50.0, 90.0, 95.0, 99.0, 100.0}) {
    sim::TailWindows tail(1000.0, q);
    std::uint64_t windows = 0, satisfied = 0;
    for (int w = 0; w < 300; ++w) {
      if (w % 7 == 3) continue;  // an empty window is not counted
      std::vector<double> ratios(static_cast<std::size_t>(size(rng)));
      for (auto& r : ratios) r = rng() % 5 == 0 ? 1.0 : ratio(rng);
      for (std::size_t i = 0; i < ratios.size(); ++i) tail.add(1000.0 * w + static_cast<double>(i), ratios[i]);
      std::sort(ratios.begin(), ratios.end());
      const auto rank = static_cast<std::size_t>(std::ceil(q / 100.0 * static_cast<double>(ratios.size()) - 1e-9));
      ++windows;
      if (ratios[std::max<std::size_t>(rank, 1) - 1] <= 1.0) ++satisfied;
    }
    tail.finish();
    EXPECT_EQ(tail.windows(), windows) << "p" << q;
    EXPECT_EQ(tail.satisfied(), satisfied) << "p" << q;
    EXPECT_GT(satisfied, 0u) << "p" << q;
    EXPECT_LT(satisfied, windows) << "p" << q;
  }
}

TEST(MetricsCollector, CountsPerDeviceAndOverall) {
  sim::MetricsCollector m(2, 100, 1e9, 95.0);
  m.arrived(0);
  m.arrived(1);
  m.arrived(1);
  m.dropped(1);
  m.completed(0, 5e6, 10e6, 5e6);   // 5 ms against a 10 ms SLO: met
  m.completed(1, 12e6, 10e6, 13e6); // 12 ms: missed
  m.finish();
  EXPECT_EQ(m.overall().arrived, 3u);
  EXPECT_EQ(m.overall().completed + m.overall().dropped, 3u);
  EXPECT_DOUBLE_EQ(m.overall().slo_satisfaction(), 0.5);
  EXPECT_DOUBLE_EQ(m.devices()[0].slo_satisfaction(), 1.0);
  EXPECT_EQ(m.devices()[1].dropped, 1u);
  // One 1 s window with ratios 0.5 and 1.2: p95 of 2 is rank 2 -> 1.2, not satisfied.
  EXPECT_EQ(m.overall().tail.windows(), 1u);
  EXPECT_EQ(m.overall().tail.satisfied(), 0u);
}

}  // namespace
}  // namespace npusim
