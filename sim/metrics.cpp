#include "sim/metrics.hpp"

#include <algorithm>
#include <cmath>

namespace npusim::sim {
namespace {

// Buckets (gamma^(i-1), gamma^i] with gamma = (1 + a) / (1 - a): the point 2 gamma^i / (gamma + 1)
// is within a of every value in its bucket.
const double gamma_base = (1.0 + LatencyDistribution::sketch_relative_error) / (1.0 - LatencyDistribution::sketch_relative_error);
const double log_gamma = std::log(gamma_base);

std::size_t nearest_rank(double q, std::size_t n) {
  const auto rank = static_cast<std::size_t>(std::ceil(q / 100.0 * static_cast<double>(n) - 1e-9));
  return std::clamp<std::size_t>(rank, 1, n);
}

}  // namespace

int LatencyDistribution::bucket_of(double value) {
  return static_cast<int>(std::ceil(std::log(value) / log_gamma));
}

void LatencyDistribution::add_to_sketch(double value, int bucket) {
  if (value <= 0.0) {
    ++zero_count_;
    return;
  }
  if (buckets_.empty()) first_bucket_ = bucket;
  if (bucket < first_bucket_) {
    buckets_.insert(buckets_.begin(), static_cast<std::size_t>(first_bucket_ - bucket), 0);
    first_bucket_ = bucket;
  }
  const auto index = static_cast<std::size_t>(bucket - first_bucket_);
  if (index >= buckets_.size()) buckets_.resize(index + 1, 0);
  ++buckets_[index];
}

void LatencyDistribution::add(double value) { add(value, sketching_ && value > 0.0 ? bucket_of(value) : 0); }

void LatencyDistribution::add(double value, int bucket) {
  ++count_;
  sum_ += value;
  max_ = std::max(max_, value);
  if (sketching_) {
    add_to_sketch(value, bucket);
    return;
  }
  values_.push_back(value);
  sorted_ = false;
  if (values_.size() > exact_limit_) {
    sketching_ = true;
    for (const double v : values_) add_to_sketch(v, v > 0.0 ? bucket_of(v) : 0);
    std::vector<double>().swap(values_);
  }
}

double LatencyDistribution::percentile(double q) const {
  if (count_ == 0) return 0.0;
  const std::size_t rank = nearest_rank(q, count_);
  if (!sketching_) {
    if (!sorted_) {
      std::sort(values_.begin(), values_.end());
      sorted_ = true;
    }
    return values_[rank - 1];
  }
  std::uint64_t seen = zero_count_;
  if (seen >= rank) return 0.0;
  for (std::size_t i = 0; i < buckets_.size(); ++i) {
    seen += buckets_[i];
    if (seen >= rank)
      return std::min(max_, 2.0 * std::pow(gamma_base, first_bucket_ + static_cast<int>(i)) / (gamma_base + 1.0));
  }
  return max_;
}

std::int64_t TailWindows::window_of(double completion_ns) const {
  return static_cast<std::int64_t>(std::floor(completion_ns / window_ns_));
}

void TailWindows::add_in_window(std::int64_t window, double latency_over_slo) {
  if (window != current_) {
    close();
    current_ = window;
  }
  ++in_window_;
  if (latency_over_slo <= 1.0) ++within_in_window_;
}

void TailWindows::close() {
  if (in_window_ == 0) return;
  ++windows_;
  if (within_in_window_ >= nearest_rank(percentile_, in_window_)) ++satisfied_;
  in_window_ = within_in_window_ = 0;
}

void TailWindows::finish() { close(); }

MetricsCollector::MetricsCollector(std::size_t devices, std::uint64_t exact_limit, double window_ns, double percentile)
    : overall_(exact_limit, window_ns, percentile), devices_(devices, GroupMetrics(exact_limit, window_ns, percentile)) {}

void MetricsCollector::arrived(std::uint32_t device) {
  ++overall_.arrived;
  ++devices_[device].arrived;
}

void MetricsCollector::dropped(std::uint32_t device) {
  ++overall_.dropped;
  ++devices_[device].dropped;
}

void MetricsCollector::completed(std::uint32_t device, double latency_ns, double slo_ns, double completion_ns) {
  // Every group has the same exact limit and window width, so a device's distribution sketches
  // only once the overall one does, and the sample's sketch bucket and window are found once.
  const int bucket =
      !overall_.latency_ns.exact() && latency_ns > 0.0 ? LatencyDistribution::bucket_of(latency_ns) : 0;
  const std::int64_t window = overall_.tail.window_of(completion_ns);
  const double over_slo = latency_ns / slo_ns;
  for (GroupMetrics* group : {&overall_, &devices_[device]}) {
    ++group->completed;
    if (latency_ns <= slo_ns) ++group->within_slo;
    group->latency_ns.add(latency_ns, bucket);
    group->tail.add_in_window(window, over_slo);
  }
}

void MetricsCollector::finish() {
  overall_.tail.finish();
  for (auto& d : devices_) d.tail.finish();
}

}  // namespace npusim::sim
