// edf: earliest deadline first, preemptive at layer boundaries. Queued samples whose deadline
// is earlier than every in-flight sample's preempt the running batch; of the running model
// they catch up and merge, of another model they run as their own batch first.
#include <algorithm>

#include "scheduler/policies/builtin.hpp"

namespace npusim::scheduler::policies {
namespace {

// Positions of the queued samples of `model` with a deadline before `before`, earliest
// deadline first (ties by arrival), at most `limit`.
std::vector<std::uint32_t> by_deadline(const SchedulerView& view, std::uint32_t model, std::int64_t before,
                                       std::size_t limit) {
  std::vector<std::uint32_t> out = view.take_spare_positions();
  view.earliest_due(model, before, limit, out);
  return out;
}

class Edf final : public Policy, public DecisionHorizon, public ArrivalWakeFilter, public ArrivalObservation {
 public:
  bool observes_arrivals(const SchedulerView&) const override { return false; }
  // The waiting sample with the earliest deadline (the first of equals); the queue is not empty.
  static const SampleInfo* most_urgent(const SchedulerView& view) { return &view.queue[view.most_urgent()]; }

  Decision decide(const SchedulerView& view) override {
    if (view.queue.empty()) return view.running ? Decision::keep_running() : Decision::idle();
    const auto urgent = most_urgent(view);
    if (!view.running) return Decision::start(by_deadline(view, urgent->model, never_ns, view.max_batch));
    const std::int64_t running_deadline = view.running->earliest_deadline_ns();
    if (view.preemptions_left == 0 || urgent->deadline_ns >= running_deadline) return Decision::keep_running();
    if (urgent->model == view.running->model) {
      const auto room = catch_up_room(view, static_cast<std::uint32_t>(view.queue.size()));
      if (room > 0) return Decision::preempt(by_deadline(view, urgent->model, running_deadline, room));
    }
    return Decision::preempt(by_deadline(view, urgent->model, running_deadline, view.max_batch), false);
  }

  // It keeps running while no queued deadline is earlier than every in-flight one. Exits can
  // raise the in-flight earliest up to the batch's latest deadline at most, and only arrivals
  // due before it can lower the queued earliest. So while nothing waiting is due before the
  // batch's latest deadline, only such an arrival wakes it; otherwise (nothing waiting is due
  // before its earliest) an exit, or an arrival due before the earliest.
  Horizon horizon(const SchedulerView& view) const override {
    if (view.preemptions_left == 0) return Horizon::until_batch_changes();
    switch (standing(view)) {
      case Standing::behind_every_deadline: return Horizon::until_arrival();
      case Standing::behind_the_earliest: return Horizon::until_arrival_or_exit();
      case Standing::ahead: break;
    }
    return Horizon::next_boundary(view);
  }

  std::int64_t wakes_on_arrivals_due_before_ns(const SchedulerView& view) const override {
    switch (standing(view)) {
      case Standing::behind_every_deadline: return view.running->latest_deadline_ns();
      case Standing::behind_the_earliest: return view.running->earliest_deadline_ns();
      case Standing::ahead: break;
    }
    return never_ns;
  }

 private:
  // Where the earliest waiting deadline stands against the running batch's deadlines.
  enum class Standing { behind_every_deadline, behind_the_earliest, ahead };
  static Standing standing(const SchedulerView& view) {
    if (view.queue.empty()) return Standing::behind_every_deadline;
    const std::int64_t urgent = most_urgent(view)->deadline_ns;
    if (urgent >= view.running->latest_deadline_ns()) return Standing::behind_every_deadline;
    if (urgent >= view.running->earliest_deadline_ns()) return Standing::behind_the_earliest;
    return Standing::ahead;
  }
};

}  // namespace

PolicyInfo edf_info() {
  return {"edf",
          "earliest deadline first, preemptive at layer boundaries, merging earlier-deadline samples of the running "
          "model",
          {},
          [](const ParameterValues&) { return std::make_unique<Edf>(); }};
}

}  // namespace npusim::scheduler::policies
