#include "scheduler/policies/common.hpp"

#include <algorithm>

namespace npusim::scheduler::policies {

std::vector<std::uint32_t> oldest_model_batch(const SchedulerView& view, std::size_t limit) {
  std::vector<std::uint32_t> out = view.take_spare_positions();
  if (view.queue.empty()) return out;
  view.queued_of_model(view.queue.front().model, limit, out);
  return out;
}

std::vector<std::uint32_t> positions_in_spare(const SchedulerView& view, std::span<const std::uint32_t> positions) {
  std::vector<std::uint32_t> out = view.take_spare_positions();
  out.assign(positions.begin(), positions.end());
  return out;
}

const std::vector<std::uint32_t>& queued_of_model(const SchedulerView& view, std::uint32_t model, std::size_t limit,
                                                  std::vector<std::uint32_t>& out) {
  view.queued_of_model(model, limit, out);
  return out;
}

CatchUpEstimate estimate_catch_up(const SchedulerView& view, std::uint32_t take, std::uint32_t waiting,
                                  Prediction prediction) {
  const BatchInfo& running = *view.running;
  const ModelProfile& model = view.models[running.model];
  const std::uint32_t layer = running.next_layer;
  const auto batch = static_cast<std::uint32_t>(running.samples.size());
  double delay = 0.0;
  std::uint32_t merged = batch;
  double caught_exit_latency = 0.0, caught_survivors = 0.0;
  if (take > 0) {
    delay = static_cast<double>(model.catch_up_cycles(take, layer, prediction) + view.preemption_overhead_cycles);
    merged = std::min(view.max_batch, batch + model.expected_batch(take, 0, layer, prediction));
    caught_exit_latency = take * model.catch_up_exit_latency_cycles(take, layer, prediction);
    caught_survivors = prediction == Prediction::exit_blind ? take : take * model.survival(0, layer);
  }
  const double per_sample = delay + model.sample_remaining_cycles(layer, merged, prediction);
  const double batch_end = delay + static_cast<double>(model.remaining_cycles(layer, merged, prediction));
  const std::uint32_t left = waiting - take;
  const double next_batch = left == 0 ? 0.0
                                      : model.sample_remaining_cycles(0, std::min(left, view.max_batch), prediction);
  const double total = (batch + caught_survivors) * per_sample + caught_exit_latency + left * (batch_end + next_batch);
  return {view.ns_per_cycle * per_sample, view.ns_per_cycle * total, view.ns_per_cycle * (batch_end + next_batch),
          view.ns_per_cycle * batch_end};
}

CatchUpCandidates::CatchUpCandidates(std::uint32_t limit) {
  sizes_[count_++] = 0;
  for (std::uint64_t j = 1; j < limit; j *= 2) sizes_[count_++] = static_cast<std::uint32_t>(j);
  if (limit > 0) sizes_[count_++] = limit;
}

std::uint32_t catch_up_room(const SchedulerView& view, std::uint32_t queued_of_model) {
  if (!view.running || view.preemptions_left == 0 || view.running->next_layer == 0) return 0;
  return std::min(queued_of_model, view.merge_room);
}

}  // namespace npusim::scheduler::policies
