// Arrival processes, exit sampling and the merged stream: statistics over fixed seeds with
// bounds derived below, determinism, streaming memory, and the trace CSV.

#include <sys/resource.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>

#include <gtest/gtest.h>

#include "traces/arrival_stream.hpp"
#include "traces/trace_file.hpp"

namespace npusim {
namespace {

using traces::ArrivalSpec;
using traces::ProcessKind;

// Arrival times (seconds) of the first n arrivals of a process.
std::vector<double> times_of(const ArrivalSpec& spec, std::size_t n, std::uint64_t seed = 1) {
  auto process = traces::make_process(spec, traces::RandomStream(seed, 1));
  std::vector<double> t;
  while (t.size() < n) {
    const auto event = process->next();
    if (!event) break;
    t.push_back(static_cast<double>(event->time_ns) / 1e9);
  }
  return t;
}

// Index of dispersion of counts in windows of `window_s`: 1 for Poisson, > 1 when bursty.
double dispersion(const std::vector<double>& t, double window_s) {
  const auto windows = static_cast<std::size_t>(t.back() / window_s);
  std::vector<double> counts(windows, 0.0);
  for (double x : t)
    if (static_cast<std::size_t>(x / window_s) < windows) counts[static_cast<std::size_t>(x / window_s)] += 1;
  double mean = 0, var = 0;
  for (double c : counts) mean += c;
  mean /= static_cast<double>(windows);
  for (double c : counts) var += (c - mean) * (c - mean);
  var /= static_cast<double>(windows - 1);
  return var / mean;
}

TEST(Arrivals, PoissonRateAndDispersion) {
  ArrivalSpec spec;
  spec.kind = ProcessKind::poisson;
  spec.rate_hz = 200;
  const auto t = times_of(spec, 200000);
  // N arrivals by time T: N / T estimates the rate with relative standard error 1/sqrt(N) =
  // 0.22 %; 4 sigma = 0.9 %.
  EXPECT_NEAR(static_cast<double>(t.size()) / t.back(), 200.0, 200.0 * 4 / std::sqrt(200000.0));
  // Counts in 100 ms windows (mean 20): dispersion 1, standard error sqrt(2 / windows) with
  // 10,000 windows = 0.014; bound 0.1.
  EXPECT_NEAR(dispersion(t, 0.1), 1.0, 0.1);
  for (std::size_t i = 1; i < t.size(); ++i) ASSERT_GE(t[i], t[i - 1]);
}

TEST(Arrivals, PeriodicWithJitterStaysNearItsTicks) {
  ArrivalSpec spec;
  spec.kind = ProcessKind::periodic;
  spec.fps = 30;
  spec.jitter_ms = 5;
  spec.phase_ms = 10;
  const auto t = times_of(spec, 3000);
  double max_offset = 0;
  for (std::size_t i = 0; i < t.size(); ++i) {
    const double tick = 0.010 + static_cast<double>(i) / 30.0;
    max_offset = std::max(max_offset, std::fabs(t[i] - tick));
    if (i > 0) {
      ASSERT_GE(t[i], t[i - 1]);
    }
  }
  EXPECT_LE(max_offset, 0.005 + 1e-9);
  EXPECT_GT(max_offset, 0.004);  // uniform in +-5 ms: some of 3000 come within 1 ms of the edge
  // Far less dispersed than Poisson: counts per 1 s window vary by at most one frame or so.
  EXPECT_LT(dispersion(t, 1.0), 0.2);
}

TEST(Arrivals, MmppMeanRateAndBurstiness) {
  ArrivalSpec spec;
  spec.kind = ProcessKind::mmpp;
  spec.rate_hz = 10;
  spec.peak_factor = 10;
  spec.burst_ms = 200;
  spec.gap_ms = 800;
  // Mean rate: (10 * 800 + 100 * 200) / 1000 = 28 Hz.
  EXPECT_DOUBLE_EQ(traces::mean_rate_hz(spec), 28.0);
  const auto t = times_of(spec, 300000);
  // About 10,700 s of arrivals, 10,700 burst cycles: the rate estimate's relative error is
  // dominated by the number of cycles, roughly 1/sqrt(10,700) times the rate swing (~1.5), ~1.5 %;
  // bound 5 %.
  EXPECT_NEAR(static_cast<double>(t.size()) / t.back(), 28.0, 28.0 * 0.05);
  // Bursts make counts in 100 ms windows over-dispersed (Poisson would give 1).
  EXPECT_GT(dispersion(t, 0.1), 3.0);
}

TEST(Arrivals, OnOffHasNothingBetweenBursts) {
  ArrivalSpec spec;
  spec.kind = ProcessKind::on_off;
  spec.rate_hz = 100;
  spec.burst_ms = 100;
  spec.gap_ms = 900;
  EXPECT_DOUBLE_EQ(traces::mean_rate_hz(spec), 10.0);
  const auto t = times_of(spec, 100000);
  EXPECT_NEAR(static_cast<double>(t.size()) / t.back(), 10.0, 10.0 * 0.05);
  // Gaps between bursts are exponential with mean 900 ms: many inter-arrival times exceed
  // 500 ms, which a 100 Hz Poisson stream (P = e^-50) would never show.
  int long_gaps = 0;
  for (std::size_t i = 1; i < t.size(); ++i) long_gaps += t[i] - t[i - 1] > 0.5;
  EXPECT_GT(long_gaps, 1000);
}

TEST(Arrivals, PiecewiseScheduleFollowsItsRates) {
  ArrivalSpec spec;
  spec.kind = ProcessKind::piecewise;
  spec.schedule = {{100000, 20}, {200000, 200}, {300000, 50}};
  const auto t = times_of(spec, std::numeric_limits<std::size_t>::max());
  int counts[3] = {0, 0, 0};
  for (double x : t) ++counts[std::min(2, static_cast<int>(x / 100.0))];
  // Expected 2,000 / 20,000 / 5,000 arrivals in the three 100 s segments; Poisson standard
  // deviations 45 / 141 / 71; bounds 4 sigma.
  EXPECT_NEAR(counts[0], 2000, 4 * std::sqrt(2000.0));
  EXPECT_NEAR(counts[1], 20000, 4 * std::sqrt(20000.0));
  EXPECT_NEAR(counts[2], 5000, 4 * std::sqrt(5000.0));
  EXPECT_LT(t.back(), 300.0);  // the schedule is closed: the process ends
}

TEST(Arrivals, InvalidSpecsNameTheField) {
  ArrivalSpec spec;
  spec.kind = ProcessKind::periodic;
  spec.fps = 30;
  spec.jitter_ms = 20;  // period 33.3 ms: jitter must stay below 16.7 ms
  try {
    traces::validate(spec);
    FAIL();
  } catch (const traces::ArrivalSpecError& e) {
    EXPECT_EQ(e.key(), "jitter_ms");
  }
  spec.kind = ProcessKind::poisson;
  spec.rate_hz = 0;
  EXPECT_THROW(traces::validate(spec), traces::ArrivalSpecError);
  spec.kind = ProcessKind::piecewise;
  spec.schedule = {{100, 5}, {50, 5}};
  EXPECT_THROW(traces::validate(spec), traces::ArrivalSpecError);
}

TEST(Exits, SamplingMatchesTheProbabilities) {
  const std::vector<double> p{0.05, 0.15, 0.3, 0.5};
  traces::ExitSampler sampler(p);
  traces::RandomStream rng(99, 2);
  const int n = 200000;
  std::vector<int> counts(p.size(), 0);
  for (int i = 0; i < n; ++i) ++counts[sampler.sample(rng)];
  // Binomial: sd = sqrt(n p (1 - p)); bound 4.5 sd per exit.
  for (std::size_t e = 0; e < p.size(); ++e)
    EXPECT_NEAR(counts[e], n * p[e], 4.5 * std::sqrt(n * p[e] * (1 - p[e]))) << "exit " << e;
  EXPECT_THROW(traces::ExitSampler({0.5, 0.4}), std::invalid_argument);
  EXPECT_THROW(traces::ExitSampler({1.5, -0.5}), std::invalid_argument);
}

TEST(Exits, TiltShiftsTowardLaterOrEarlierExits) {
  const std::vector<double> p{0.25, 0.25, 0.25, 0.25};
  const auto harder = traces::tilt_exit_probabilities(p, 1.0);
  const auto easier = traces::tilt_exit_probabilities(p, -1.0);
  double sum = 0;
  for (std::size_t e = 1; e < p.size(); ++e) {
    EXPECT_GT(harder[e], harder[e - 1]);
    EXPECT_LT(easier[e], easier[e - 1]);
  }
  for (double x : harder) sum += x;
  EXPECT_NEAR(sum, 1.0, 1e-12);
  EXPECT_EQ(traces::tilt_exit_probabilities(p, 0.0), p);
}

std::vector<traces::DeviceStream> two_devices() {
  traces::DeviceStream a{"a", "m", {}, {0.5, 0.5}};
  a.arrival.kind = ProcessKind::poisson;
  a.arrival.rate_hz = 50;
  traces::DeviceStream b{"b", "m", {}, {0.2, 0.8}};
  b.arrival.kind = ProcessKind::periodic;
  b.arrival.fps = 25;
  return {a, b};
}

std::string first_samples(std::uint64_t seed, std::vector<traces::DeviceStream> devices, int n) {
  traces::ArrivalStream stream(std::move(devices), seed, ".");
  std::ostringstream out;
  for (int i = 0; i < n; ++i) {
    const auto s = stream.next();
    out << s->arrival_ns << ' ' << s->device << ' ' << s->exit << '\n';
  }
  return out.str();
}

TEST(Stream, SameSeedSameStreamAndDevicesAreIndependent) {
  EXPECT_EQ(first_samples(5, two_devices(), 2000), first_samples(5, two_devices(), 2000));
  EXPECT_NE(first_samples(5, two_devices(), 2000), first_samples(6, two_devices(), 2000));
  // Adding a third device leaves the first two devices' samples unchanged.
  auto three = two_devices();
  three.push_back(three.front());
  three.back().name = "c";
  traces::ArrivalStream with_two(two_devices(), 5, "."), with_three(three, 5, ".");
  std::vector<std::pair<std::int64_t, std::uint32_t>> from_two, from_three;
  for (int i = 0; i < 3000; ++i) {
    const auto s = with_two.next();
    from_two.emplace_back(s->arrival_ns, s->exit);
    const auto t = with_three.next();
    if (t->device < 2 && from_three.size() < 1000) from_three.emplace_back(t->arrival_ns, t->exit);
  }
  from_two.resize(from_three.size());
  EXPECT_EQ(from_two, from_three);
}

TEST(Stream, SamplesAreInTimeOrderWithIncreasingIds) {
  traces::ArrivalStream stream(two_devices(), 11, ".");
  std::int64_t last = 0;
  for (std::uint64_t i = 0; i < 10000; ++i) {
    const auto s = stream.next();
    ASSERT_EQ(s->id, i);
    ASSERT_GE(s->arrival_ns, last);
    last = s->arrival_ns;
  }
}

long max_rss_kib() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_maxrss;
}

TEST(Stream, MemoryStaysFlatOverMillionsOfSamples) {
  // 5 million samples through the merged stream: peak memory may not grow by more than 8 MiB
  // (storing them would take over 100 MiB).
  traces::ArrivalStream stream(two_devices(), 3, ".");
  for (int i = 0; i < 1000; ++i) stream.next();
  const long before = max_rss_kib();
  std::int64_t checksum = 0;
  for (int i = 0; i < 5'000'000; ++i) checksum += stream.next()->arrival_ns & 1;
  EXPECT_LT(max_rss_kib() - before, 8 * 1024);
  EXPECT_GT(checksum, 0);
}

class TraceFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("npusim_trace_test_" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::filesystem::path write(const std::string& text) {
    const auto file = dir_ / "t.csv";
    std::ofstream(file) << text;
    return file;
  }
  std::string replay_error(const std::string& text) {
    const auto file = write(text);
    try {
      auto replay = traces::open_replay(file, "cam", "m", 3, {"cam", "mic"});
      while (replay->next()) {
      }
    } catch (const traces::TraceFileError& e) {
      return std::string(e.what()).substr(file.string().size());
    }
    return "";
  }
  std::filesystem::path dir_;
};

TEST_F(TraceFiles, WriteThenReplayRoundTrips) {
  {
    traces::TraceWriter writer(dir_ / "out.csv");
    writer.write(10, "cam", "m", 2);
    writer.write(20, "mic", "m", std::nullopt);
    writer.write(30, "cam", "m", std::nullopt);
    EXPECT_TRUE(std::filesystem::exists(dir_ / "out.csv.partial"));
    EXPECT_FALSE(std::filesystem::exists(dir_ / "out.csv"));
    writer.commit();
  }
  EXPECT_FALSE(std::filesystem::exists(dir_ / "out.csv.partial"));
  auto replay = traces::open_replay(dir_ / "out.csv", "cam", "m", 3, {"cam", "mic"});
  auto first = replay->next();
  ASSERT_TRUE(first);
  EXPECT_EQ(first->time_ns, 10);
  EXPECT_EQ(first->exit, 2u);
  auto second = replay->next();
  EXPECT_EQ(second->time_ns, 30);
  EXPECT_FALSE(second->exit);
  EXPECT_FALSE(replay->next());
}

TEST_F(TraceFiles, AbandonedWriterLeavesNothing) {
  {
    traces::TraceWriter writer(dir_ / "gone.csv");
    writer.write(1, "cam", "m", 0);
  }
  EXPECT_FALSE(std::filesystem::exists(dir_ / "gone.csv"));
  EXPECT_FALSE(std::filesystem::exists(dir_ / "gone.csv.partial"));
}

TEST_F(TraceFiles, BadRowsAreNamedByLine) {
  const std::string header = "arrival_ns,device,model,exit\n";
  EXPECT_EQ(replay_error(header + "5,cam,m,\n3,cam,m,\n"),
            ":3: arrival_ns = 3 is earlier than the row before (5): rows must be sorted by time");
  EXPECT_EQ(replay_error(header + "-5,cam,m,\n"), ":2: arrival_ns = -5: allowed a time >= 0");
  EXPECT_EQ(replay_error(header + "1.5,cam,m,\n"), ":2: arrival_ns = 1.5: allowed a whole number of nanoseconds");
  EXPECT_EQ(replay_error(header + "5,dog,m,\n"), ":2: device = dog: not a device of the scenario");
  EXPECT_EQ(replay_error(header + "5,cam,m,x\n"), ":2: exit = x: allowed an exit index (0 = first exit) or empty");
  EXPECT_EQ(replay_error(header + "5,cam,m,3\n"), ":2: exit = 3: allowed 0 to 2 (m has 3 exits)");
  EXPECT_EQ(replay_error(header + "5,cam,other,\n"), ":2: model = other: device cam runs m in the scenario");
  EXPECT_EQ(replay_error(header + "5,cam\n"), ":2: 2 fields: allowed 4 (the header's columns)");
  EXPECT_EQ(replay_error("time,device\n"), ":1: header \"time,device\": allowed arrival_ns,device,model[,exit]");
  EXPECT_EQ(replay_error("arrival_ns,device,model\n7,mic,m\n9,cam,m\n"), "");  // exit column optional
}

}  // namespace
}  // namespace npusim
