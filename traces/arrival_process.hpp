#pragma once
// Per-device arrival processes. Each is a generator: it holds O(1) state (replay: one open
// file) and yields arrival times in non-decreasing order, so a scenario of any length streams
// in constant memory.

#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "traces/random_stream.hpp"

namespace npusim::traces {

// Simulated time is picoseconds in a signed 64-bit integer: at most 9223372036854775807 ps,
// about 106.7 days. Arrivals are held to the first 4e6 s (46.3 days) of it, which leaves room
// for a deadline (an SLO of up to 1e9 ms) and for the queue to drain after the last arrival.
inline constexpr std::int64_t max_arrival_ns = 4'000'000'000'000'000;
inline constexpr double max_arrival_ms = 4e9;

enum class ProcessKind { poisson, periodic, mmpp, on_off, piecewise, replay };
std::string to_string(ProcessKind kind);  // YAML spelling
const std::vector<std::string>& process_kind_names();

struct RateSegment {
  double until_ms = 0.0;  // end of the segment; the last segment may be open (infinity)
  double rate_hz = 0.0;
};

// What a scenario file says of one device's arrivals. Which fields matter depends on `kind`:
//  poisson:   rate_hz
//  periodic:  fps, jitter_ms (each arrival uniform in tick +- jitter), phase_ms (first tick)
//  mmpp:      rate_hz (quiet rate), peak_factor (burst rate = rate_hz * peak_factor),
//             burst_ms and gap_ms (mean burst and quiet durations, exponential)
//  on_off:    as mmpp with no arrivals between bursts: rate_hz is the rate inside a burst
//  piecewise: schedule (Poisson with a piecewise-constant rate)
//  replay:    file (rows of this device in a trace CSV)
struct ArrivalSpec {
  ProcessKind kind = ProcessKind::poisson;
  double rate_hz = 0.0;
  double fps = 0.0;
  double jitter_ms = 0.0;
  double phase_ms = 0.0;
  double peak_factor = 1.0;
  double burst_ms = 0.0;
  double gap_ms = 0.0;
  std::vector<RateSegment> schedule;
  std::string file;
};

// A spec field out of range. key() is relative to the device's `arrival` mapping.
class ArrivalSpecError : public std::invalid_argument {
 public:
  ArrivalSpecError(std::string key, std::string value, std::string allowed);
  const std::string& key() const { return key_; }
  const std::string& value() const { return value_; }
  const std::string& allowed() const { return allowed_; }

 private:
  std::string key_, value_, allowed_;
};

// Throws ArrivalSpecError for the first field out of range for its kind.
void validate(const ArrivalSpec& spec);

// The long-run mean rate in Hz implied by a (non-replay) spec; piecewise: over its closed
// segments, or the open segment's rate if there is one.
double mean_rate_hz(const ArrivalSpec& spec);

struct ArrivalEvent {
  std::int64_t time_ns = 0;             // since the start of the scenario
  std::optional<std::uint32_t> exit;    // set only when a replayed trace fixes the exit
};

class ArrivalProcess {
 public:
  virtual ~ArrivalProcess() = default;
  // The next arrival, never earlier than the previous one; nullopt when the process has ended
  // (a closed piecewise schedule, the end of a replayed trace).
  virtual std::optional<ArrivalEvent> next() = 0;
};

// Builds the generator for a validated non-replay spec (replay needs a TraceReader; see
// trace_file.hpp). `rng` is the device's own arrival stream. A random process may still draw
// an arrival past max_arrival_ns (a slow rate, a long gap): such a time is reported as
// max_arrival_ns + 1, never wrapped, and the run that would use it refuses the scenario.
std::unique_ptr<ArrivalProcess> make_process(const ArrivalSpec& spec, RandomStream rng);

}  // namespace npusim::traces
