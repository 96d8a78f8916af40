#pragma once
// Helpers the built-in policies share: grouping the queue by model and pricing a catch-up
// preemption (docs/policies.md, "Predictions").

#include <algorithm>
#include <array>
#include <cstdint>
#include <span>
#include <vector>

#include "scheduler/policy.hpp"

namespace npusim::scheduler::policies {

// `positions` copied into the engine's spare memory (SchedulerView::take_spare_positions), for
// a Decision: the policy keeps its own vector for the next call, and nothing is allocated.
std::vector<std::uint32_t> positions_in_spare(const SchedulerView& view, std::span<const std::uint32_t> positions);

// Positions of up to `limit` queued samples of the oldest waiting sample's model, oldest first.
// Empty when the queue is.
std::vector<std::uint32_t> oldest_model_batch(const SchedulerView& view, std::size_t limit);

// SchedulerView::queued_of_model written into `out`, whose memory is reused, so that a decision
// need not allocate; returns `out`.
const std::vector<std::uint32_t>& queued_of_model(const SchedulerView& view, std::uint32_t model, std::size_t limit,
                                                  std::vector<std::uint32_t>& out);

// The expected outcome of catching up `take` queued samples into the running batch now.
struct CatchUpEstimate {
  // Expected completion of an in-flight sample of the running batch, from now.
  double in_flight_completion_ns = 0.0;
  // Expected sum of remaining latency, from now, over the running batch, the caught-up samples
  // and the `waiting` samples of the model that stay queued (they start when the merged batch
  // finishes).
  double total_latency_ns = 0.0;
  // Expected completion, from now, of a sample of the model left in the queue.
  double left_completion_ns = 0.0;
  // Expected end of the merged batch, from now: when the samples left in the queue can start.
  double merged_end_ns = 0.0;
};
CatchUpEstimate estimate_catch_up(const SchedulerView& view, std::uint32_t take, std::uint32_t waiting,
                                  Prediction prediction);

// Candidate catch-up sizes: 0, then powers of two below `limit`, then `limit` itself. Asked for
// at every boundary, so held in a fixed array rather than allocated.
class CatchUpCandidates {
 public:
  explicit CatchUpCandidates(std::uint32_t limit);
  const std::uint32_t* begin() const { return sizes_.data(); }
  const std::uint32_t* end() const { return sizes_.data() + count_; }

 private:
  std::array<std::uint32_t, 34> sizes_;  // 0, at most 32 powers of two, the limit; [0, count_) set
  std::size_t count_ = 0;
};
inline CatchUpCandidates catch_up_candidates(std::uint32_t limit) { return CatchUpCandidates(limit); }

// How many samples of the running batch's model may join it now: bounded by the queue, the
// merge room and the preemption registers. 0 when preemption is not possible.
std::uint32_t catch_up_room(const SchedulerView& view, std::uint32_t queued_of_model);

// The cheapest way to serve n queued samples of one network back to back, if nothing else
// arrived or merged: V(n) = min over the first batch b of b·δ(b) + (n − b)·D(b) + V(n − b), in
// cycles of total latency, with δ(b) a sample's and D(b) the batch's expected time. Where
// batching does not pay (MobileNetV2 on the default NPU costs more per sample at 16 than at 1),
// the first batch is small: its samples leave early instead of waiting for the whole batch.
// Grown on demand to the longest queue seen; a policy keeps one per network.
class DrainPlan {
 public:
  DrainPlan(const ModelProfile& model, std::uint32_t max_batch, Prediction prediction) {
    for (std::uint32_t b = 1; b <= max_batch; ++b) {
      sample_cycles_.push_back(model.sample_remaining_cycles(0, b, prediction));
      batch_cycles_.push_back(static_cast<double>(model.remaining_cycles(0, b, prediction)));
    }
  }

  // V(n): the expected total latency, in cycles from now, of draining n samples.
  double total_cycles(std::uint32_t n) {
    extend_to(n);
    return value_[n];
  }
  // The first batch size of that plan (0 for n = 0).
  std::uint32_t first_batch(std::uint32_t n) {
    extend_to(n);
    return first_batch_[n];
  }
  // Calls f(k, c) for the k-th of the n samples (oldest first) with its expected completion c,
  // in cycles from now, under that plan.
  template <typename F>
  void for_each_completion(std::uint32_t n, F f) {
    extend_to(n);
    double start = 0.0;
    for (std::uint32_t k = 0; k < n;) {
      const std::uint32_t b = first_batch_[n - k];
      for (std::uint32_t i = 0; i < b; ++i) f(k + i, start + sample_cycles_[b - 1]);
      start += batch_cycles_[b - 1];
      k += b;
    }
  }

 private:
  void extend_to(std::uint32_t n) {
    for (auto m = static_cast<std::uint32_t>(value_.size()); m <= n; ++m) {
      double best = 0.0;
      std::uint32_t best_b = 0;
      const auto largest = std::min<std::size_t>(m, sample_cycles_.size());
      for (std::uint32_t b = 1; b <= largest; ++b) {
        const double v = b * sample_cycles_[b - 1] + (m - b) * batch_cycles_[b - 1] + value_[m - b];
        // Ties go to the larger batch: the same latency with the NPU free sooner for others.
        if (best_b == 0 || v <= best) {
          best = v;
          best_b = b;
        }
      }
      value_.push_back(best);
      first_batch_.push_back(best_b);
    }
  }

  std::vector<double> sample_cycles_, batch_cycles_;  // index b - 1
  std::vector<double> value_{0.0};
  std::vector<std::uint32_t> first_batch_{0};
};

// A policy's DrainPlan of every network in the view, each built at its first use.
class DrainPlans {
 public:
  explicit DrainPlans(Prediction prediction) : prediction_(prediction) {}
  DrainPlan& of(const SchedulerView& view, std::uint32_t model) {
    if (plans_.empty())
      for (const auto& profile : view.models) plans_.emplace_back(profile, view.max_batch, prediction_);
    return plans_[model];
  }

 private:
  Prediction prediction_;
  std::vector<DrainPlan> plans_;
};

}  // namespace npusim::scheduler::policies
