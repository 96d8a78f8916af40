#pragma once
// Helpers the built-in policies share: grouping the queue by model and pricing a catch-up
// preemption (docs/policies.md, "Predictions").

#include <cstdint>
#include <vector>

#include "scheduler/policy.hpp"

namespace npusim::scheduler::policies {

// Positions of up to `limit` queued samples of the oldest waiting sample's model, oldest first.
// Empty when the queue is.
std::vector<std::uint32_t> oldest_model_batch(const SchedulerView& view, std::size_t limit);

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
};
CatchUpEstimate estimate_catch_up(const SchedulerView& view, std::uint32_t take, std::uint32_t waiting,
                                  Prediction prediction);

// Candidate catch-up sizes: 0, then powers of two below `limit`, then `limit` itself.
std::vector<std::uint32_t> catch_up_candidates(std::uint32_t limit);

// How many samples of the running batch's model may join it now: bounded by the queue, the
// merge room and the preemption registers. 0 when preemption is not possible.
std::uint32_t catch_up_room(const SchedulerView& view, std::uint32_t queued_of_model);

}  // namespace npusim::scheduler::policies
