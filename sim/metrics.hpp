#pragma once
// Run metrics (docs/metrics.md): latency distributions with exact or bounded-error
// percentiles, per-sample and windowed tail SLO satisfaction, per device and overall.
// Memory is bounded: it does not grow with the number of samples once the exact limit is hit.

#include <cstdint>
#include <string>
#include <vector>

namespace npusim::sim {

// Latencies (any positive unit). Exact percentiles until `exact_limit` values were added; then
// a logarithmic histogram whose percentiles are within `sketch_relative_error` of the exact
// value. Mean and max stay exact.
class LatencyDistribution {
 public:
  static constexpr double sketch_relative_error = 0.001;
  explicit LatencyDistribution(std::uint64_t exact_limit) : exact_limit_(exact_limit) {}

  void add(double value);
  // The same, with the value's sketch bucket found once for several distributions: `bucket` must
  // be bucket_of(value) if this one sketches and value > 0; it is ignored otherwise.
  void add(double value, int bucket);
  static int bucket_of(double value);
  std::uint64_t count() const { return count_; }
  double mean() const { return count_ ? sum_ / static_cast<double>(count_) : 0.0; }
  double max() const { return max_; }
  // Nearest rank: the smallest value with at least q% of the values at or below it. 0 when
  // empty.
  double percentile(double q) const;
  bool exact() const { return !sketching_; }  // false once it sketches: it stays so
  double relative_error_bound() const { return sketching_ ? sketch_relative_error : 0.0; }

 private:
  void add_to_sketch(double value, int bucket);

  std::uint64_t exact_limit_;
  std::uint64_t count_ = 0;
  double sum_ = 0.0, max_ = 0.0;
  bool sketching_ = false;
  mutable std::vector<double> values_;
  mutable bool sorted_ = true;
  // Counts of the buckets from first_bucket_ on, dense (a run's latencies span a few thousand
  // buckets at most), and of the latencies that are not positive.
  std::vector<std::uint64_t> buckets_;
  int first_bucket_ = 0;
  std::uint64_t zero_count_ = 0;
};

// Windowed tail SLO satisfaction: completion time is cut into windows; a window that saw
// completions is satisfied when the q-th percentile (nearest rank) of its samples'
// latency / SLO is at most 1.
class TailWindows {
 public:
  TailWindows(double window_ns, double percentile) : window_ns_(window_ns), percentile_(percentile) {}
  // Completions must come in non-decreasing time.
  void add(double completion_ns, double latency_over_slo) { add_in_window(window_of(completion_ns), latency_over_slo); }
  // The same, in steps that several windowed series of one width can share.
  std::int64_t window_of(double completion_ns) const;
  void add_in_window(std::int64_t window, double latency_over_slo);
  void finish();  // closes the open window
  std::uint64_t windows() const { return windows_; }
  std::uint64_t satisfied() const { return satisfied_; }
  double satisfaction() const { return windows_ ? static_cast<double>(satisfied_) / static_cast<double>(windows_) : 0.0; }

 private:
  void close();
  double window_ns_, percentile_;
  std::int64_t current_ = -1;
  // The open window's samples, and those of them within their SLO: its q-th percentile is at
  // most 1 exactly when at least its nearest rank of them are, so no ratio needs keeping.
  std::uint64_t in_window_ = 0, within_in_window_ = 0;
  std::uint64_t windows_ = 0, satisfied_ = 0;
};

// Counts and latencies of one group of samples (a device, or all of them).
struct GroupMetrics {
  GroupMetrics(std::uint64_t exact_limit, double window_ns, double percentile)
      : latency_ns(exact_limit), tail(window_ns, percentile) {}
  std::uint64_t arrived = 0, completed = 0, dropped = 0, within_slo = 0;
  LatencyDistribution latency_ns;
  TailWindows tail;
  double slo_satisfaction() const {
    return completed ? static_cast<double>(within_slo) / static_cast<double>(completed) : 0.0;
  }
};

class MetricsCollector {
 public:
  MetricsCollector(std::size_t devices, std::uint64_t exact_limit, double window_ns, double percentile);
  void arrived(std::uint32_t device);
  void dropped(std::uint32_t device);
  void completed(std::uint32_t device, double latency_ns, double slo_ns, double completion_ns);
  void finish();

  const GroupMetrics& overall() const { return overall_; }
  const std::vector<GroupMetrics>& devices() const { return devices_; }

 private:
  GroupMetrics overall_;
  std::vector<GroupMetrics> devices_;
};

}  // namespace npusim::sim
