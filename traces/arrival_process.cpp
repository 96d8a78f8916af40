#include "traces/arrival_process.hpp"

#include <cmath>
#include <limits>

#include <fmt/format.h>

namespace npusim::traces {

std::string to_string(ProcessKind kind) { return process_kind_names()[static_cast<std::size_t>(kind)]; }

const std::vector<std::string>& process_kind_names() {
  static const std::vector<std::string> names{"poisson", "periodic", "mmpp", "on_off", "piecewise", "replay"};
  return names;
}

ArrivalSpecError::ArrivalSpecError(std::string key, std::string value, std::string allowed)
    : std::invalid_argument(fmt::format("{} = {}: allowed {}", key, value, allowed)),
      key_(std::move(key)),
      value_(std::move(value)),
      allowed_(std::move(allowed)) {}

namespace {

constexpr double max_rate_hz = 1e9;  // one arrival per ns
constexpr double max_duration_ms = 1e12;

void require(bool ok, const std::string& key, double value, const std::string& allowed) {
  if (!ok) throw ArrivalSpecError(key, fmt::format("{}", value), allowed);
}

void require_rate(const std::string& key, double value) {
  require(std::isfinite(value) && value > 0.0 && value <= max_rate_hz, key, value, "a rate in (0, 1e9] Hz");
}

void require_duration(const std::string& key, double value) {
  require(std::isfinite(value) && value > 0.0 && value <= max_duration_ms, key, value,
          "a duration in (0, 1e12] ms");
}

double exponential_s(RandomStream& rng, double rate_hz) {
  return -std::log1p(-rng.uniform_unit()) / rate_hz;
}

// Past the arrival range (or not a number) is max_arrival_ns + 1: a plain cast of a double
// beyond int64 would be undefined.
std::int64_t to_ns(double seconds) {
  const double ns = std::floor(seconds * 1e9);
  if (!(ns <= static_cast<double>(max_arrival_ns))) return max_arrival_ns + 1;
  return static_cast<std::int64_t>(ns);
}

class Poisson final : public ArrivalProcess {
 public:
  Poisson(double rate_hz, RandomStream rng) : rate_hz_(rate_hz), rng_(rng) {}
  std::optional<ArrivalEvent> next() override {
    now_s_ += exponential_s(rng_, rate_hz_);
    return ArrivalEvent{to_ns(now_s_), {}};
  }

 private:
  double rate_hz_;
  RandomStream rng_;
  double now_s_ = 0.0;
};

class Periodic final : public ArrivalProcess {
 public:
  Periodic(const ArrivalSpec& s, RandomStream rng)
      : period_s_(1.0 / s.fps), jitter_s_(s.jitter_ms / 1e3), phase_s_(s.phase_ms / 1e3), rng_(rng) {}
  std::optional<ArrivalEvent> next() override {
    const double tick = phase_s_ + static_cast<double>(index_++) * period_s_;
    const double offset = jitter_s_ > 0 ? (2.0 * rng_.uniform_unit() - 1.0) * jitter_s_ : 0.0;
    // jitter < period / 2 keeps the order; the clamp only guards rounding at time 0.
    last_ns_ = std::max(last_ns_, to_ns(std::max(0.0, tick + offset)));
    return ArrivalEvent{last_ns_, {}};
  }

 private:
  double period_s_, jitter_s_, phase_s_;
  RandomStream rng_;
  std::uint64_t index_ = 0;
  std::int64_t last_ns_ = 0;
};

// Two-state Markov-modulated Poisson process; on_off is the case of a zero quiet rate.
class Mmpp final : public ArrivalProcess {
 public:
  Mmpp(double quiet_hz, double burst_hz, double burst_ms, double gap_ms, RandomStream rng)
      : rate_hz_{quiet_hz, burst_hz}, mean_s_{gap_ms / 1e3, burst_ms / 1e3}, rng_(rng) {
    // Start in the stationary state distribution, so the process has its mean rate from t = 0.
    state_ = rng_.uniform_unit() < mean_s_[1] / (mean_s_[0] + mean_s_[1]) ? 1 : 0;
    state_end_s_ = exponential_s(rng_, 1.0 / mean_s_[state_]);
  }
  std::optional<ArrivalEvent> next() override {
    while (true) {
      const double rate = rate_hz_[state_];
      const double candidate = rate > 0 ? now_s_ + exponential_s(rng_, rate)
                                        : std::numeric_limits<double>::infinity();
      if (candidate < state_end_s_) {
        now_s_ = candidate;
        return ArrivalEvent{to_ns(now_s_), {}};
      }
      // Memoryless: restart the draw from the state change.
      now_s_ = state_end_s_;
      state_ = 1 - state_;
      state_end_s_ = now_s_ + exponential_s(rng_, 1.0 / mean_s_[state_]);
    }
  }

 private:
  double rate_hz_[2];
  double mean_s_[2];
  RandomStream rng_;
  int state_ = 0;
  double now_s_ = 0.0, state_end_s_ = 0.0;
};

class Piecewise final : public ArrivalProcess {
 public:
  Piecewise(std::vector<RateSegment> schedule, RandomStream rng) : schedule_(std::move(schedule)), rng_(rng) {}
  std::optional<ArrivalEvent> next() override {
    while (segment_ < schedule_.size()) {
      const RateSegment& s = schedule_[segment_];
      const double end_s = s.until_ms / 1e3;
      const double candidate = now_s_ + exponential_s(rng_, s.rate_hz);
      if (candidate < end_s) {
        now_s_ = candidate;
        return ArrivalEvent{to_ns(now_s_), {}};
      }
      now_s_ = end_s;
      ++segment_;
    }
    return std::nullopt;
  }

 private:
  std::vector<RateSegment> schedule_;
  RandomStream rng_;
  std::size_t segment_ = 0;
  double now_s_ = 0.0;
};

}  // namespace

void validate(const ArrivalSpec& s) {
  switch (s.kind) {
    case ProcessKind::poisson:
      require_rate("rate_hz", s.rate_hz);
      return;
    case ProcessKind::periodic:
      require_rate("fps", s.fps);
      require(std::isfinite(s.jitter_ms) && s.jitter_ms >= 0 && s.jitter_ms < 500.0 / s.fps, "jitter_ms",
              s.jitter_ms, fmt::format("a jitter in [0, half the period = {} ms)", 500.0 / s.fps));
      require(std::isfinite(s.phase_ms) && s.phase_ms >= 0 && s.phase_ms <= max_duration_ms, "phase_ms",
              s.phase_ms, "an offset in [0, 1e12] ms");
      return;
    case ProcessKind::mmpp:
      require_rate("rate_hz", s.rate_hz);
      require(std::isfinite(s.peak_factor) && s.peak_factor >= 1.0 && s.rate_hz * s.peak_factor <= max_rate_hz,
              "peak_factor", s.peak_factor, "a factor >= 1 (burst rate = rate_hz * peak_factor <= 1e9 Hz)");
      require_duration("burst_ms", s.burst_ms);
      require_duration("gap_ms", s.gap_ms);
      return;
    case ProcessKind::on_off:
      require_rate("rate_hz", s.rate_hz);
      require_duration("burst_ms", s.burst_ms);
      require_duration("gap_ms", s.gap_ms);
      return;
    case ProcessKind::piecewise: {
      if (s.schedule.empty()) throw ArrivalSpecError("schedule", "[]", "a non-empty list of {until_ms, rate_hz}");
      double previous = 0.0;
      for (std::size_t i = 0; i < s.schedule.size(); ++i) {
        const auto& seg = s.schedule[i];
        const std::string at = fmt::format("schedule[{}]", i);
        require_rate(at + ".rate_hz", seg.rate_hz);
        const bool open = std::isinf(seg.until_ms);
        if (open && i + 1 != s.schedule.size())
          throw ArrivalSpecError(at + ".until_ms", "(none)", "an end time: only the last segment may be open");
        if (!open)
          require(std::isfinite(seg.until_ms) && seg.until_ms > previous && seg.until_ms <= max_duration_ms,
                  at + ".until_ms", seg.until_ms, fmt::format("an end time after {} ms, at most 1e12 ms", previous));
        previous = seg.until_ms;
      }
      return;
    }
    case ProcessKind::replay:
      if (s.file.empty()) throw ArrivalSpecError("file", "\"\"", "a trace CSV file");
      return;
  }
}

double mean_rate_hz(const ArrivalSpec& s) {
  switch (s.kind) {
    case ProcessKind::poisson: return s.rate_hz;
    case ProcessKind::periodic: return s.fps;
    case ProcessKind::mmpp:
      return s.rate_hz * (s.gap_ms + s.peak_factor * s.burst_ms) / (s.gap_ms + s.burst_ms);
    case ProcessKind::on_off: return s.rate_hz * s.burst_ms / (s.gap_ms + s.burst_ms);
    case ProcessKind::piecewise: {
      if (std::isinf(s.schedule.back().until_ms)) return s.schedule.back().rate_hz;
      double arrivals = 0.0, previous = 0.0;
      for (const auto& seg : s.schedule) {
        arrivals += seg.rate_hz * (seg.until_ms - previous) / 1e3;
        previous = seg.until_ms;
      }
      return arrivals / (previous / 1e3);
    }
    case ProcessKind::replay: return 0.0;
  }
  return 0.0;
}

std::unique_ptr<ArrivalProcess> make_process(const ArrivalSpec& s, RandomStream rng) {
  validate(s);
  switch (s.kind) {
    case ProcessKind::poisson: return std::make_unique<Poisson>(s.rate_hz, rng);
    case ProcessKind::periodic: return std::make_unique<Periodic>(s, rng);
    case ProcessKind::mmpp:
      return std::make_unique<Mmpp>(s.rate_hz, s.rate_hz * s.peak_factor, s.burst_ms, s.gap_ms, rng);
    case ProcessKind::on_off: return std::make_unique<Mmpp>(0.0, s.rate_hz, s.burst_ms, s.gap_ms, rng);
    case ProcessKind::piecewise: return std::make_unique<Piecewise>(s.schedule, rng);
    case ProcessKind::replay:
      throw std::invalid_argument("replay processes are built from a TraceReader (open_replay)");
  }
  throw std::invalid_argument("unknown arrival process");
}

}  // namespace npusim::traces
