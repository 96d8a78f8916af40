#include "scheduler/policy.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include "traces/checked.hpp"

namespace npusim::scheduler {

std::int64_t BatchInfo::earliest_deadline_ns() const {
  std::int64_t earliest = never_ns;
  for (const auto& s : samples) earliest = std::min(earliest, s.deadline_ns);
  return earliest;
}

// Of an empty batch, the least int64: no deadline is later than none.
std::int64_t BatchInfo::latest_deadline_ns() const {
  std::int64_t latest = std::numeric_limits<std::int64_t>::min();
  for (const auto& s : samples) latest = std::max(latest, s.deadline_ns);
  return latest;
}

std::string to_string(Trigger trigger) {
  switch (trigger) {
    case Trigger::arrival: return "arrival";
    case Trigger::wakeup: return "wakeup";
    case Trigger::layer_boundary: return "layer_boundary";
    case Trigger::early_exit: return "early_exit";
    case Trigger::batch_completed: return "batch_completed";
  }
  return "?";
}

// Saturates at never_ns: a cast of a double past int64 would be undefined, and no time that
// long can be waited for anyway.
std::int64_t SchedulerView::ns_from_cycles(double cycles) const {
  return traces::checked_int64(std::ceil(cycles * ns_per_cycle)).value_or(never_ns);
}

Horizon Horizon::only_legal_answer(const SchedulerView& view) {
  if (view.queue.empty()) return until_arrival();
  if (view.preemptions_left == 0) return until_batch_changes();
  return next_boundary(view);
}

std::vector<std::uint32_t> SchedulerView::queued_of_model(std::uint32_t model, std::size_t limit) const {
  std::vector<std::uint32_t> out;
  queued_of_model(model, limit, out);
  return out;
}

void SchedulerView::queued_of_model(std::uint32_t model, std::size_t limit, std::vector<std::uint32_t>& out) const {
  out.clear();
  if (uses_index()) return queue_index->oldest(model, limit, out);
  for (std::uint32_t i = 0; i < queue.size() && out.size() < limit; ++i)
    if (queue[i].model == model) out.push_back(i);
}

std::uint32_t SchedulerView::waiting_of_model(std::uint32_t model) const {
  if (queue_index) return queue_index->waiting(model);
  return static_cast<std::uint32_t>(
      std::count_if(queue.begin(), queue.end(), [&](const SampleInfo& s) { return s.model == model; }));
}

std::uint32_t SchedulerView::most_urgent() const {
  if (uses_index()) return queue_index->most_urgent();
  std::uint32_t best = 0;
  for (std::uint32_t i = 1; i < queue.size(); ++i)
    if (queue[i].deadline_ns < queue[best].deadline_ns) best = i;
  return best;
}

void SchedulerView::earliest_due(std::uint32_t model, std::int64_t before, std::size_t limit,
                                 std::vector<std::uint32_t>& out) const {
  out.clear();
  if (uses_index()) return queue_index->earliest_due(model, before, limit, out);
  for (std::uint32_t i = 0; i < queue.size(); ++i)
    if (queue[i].model == model && queue[i].deadline_ns < before) out.push_back(i);
  // Ties keep queue order; std::sort with the position as tie-break needs no buffer, unlike
  // std::stable_sort.
  std::sort(out.begin(), out.end(), [&](std::uint32_t a, std::uint32_t b) {
    return queue[a].deadline_ns < queue[b].deadline_ns || (queue[a].deadline_ns == queue[b].deadline_ns && a < b);
  });
  if (out.size() > limit) out.resize(limit);
}

void SchedulerView::ordered_of_model(std::uint32_t model, std::size_t limit, const SampleOrder& before,
                                     std::vector<std::uint32_t>& out) const {
  out.clear();
  if (uses_index()) return queue_index->ordered(model, limit, before, out);
  for (std::uint32_t i = 0; i < queue.size(); ++i)
    if (queue[i].model == model) out.push_back(i);
  std::stable_sort(out.begin(), out.end(), [&](std::uint32_t a, std::uint32_t b) { return before(queue[a], queue[b]); });
  if (out.size() > limit) out.resize(limit);
}

std::vector<std::uint32_t> SchedulerView::take_spare_positions() const {
  std::vector<std::uint32_t> out;
  if (spare_positions) out.swap(*spare_positions);
  out.clear();
  return out;
}

}  // namespace npusim::scheduler
