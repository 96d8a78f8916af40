#pragma once
// The shape lazy_batching and exit_aware share: start the oldest model's queued samples at
// once when the NPU is free (never wait for a batch to form), and at each layer boundary
// choose how many queued samples of the running model to catch up and merge. They differ in
// the prediction they use and in how they choose.

#include <cmath>

#include "scheduler/policies/common.hpp"

namespace npusim::scheduler::policies {

class CatchUpPolicy : public Policy, public DecisionHorizon {
 public:
  explicit CatchUpPolicy(double slack_ms) : slack_ns_(slack_ms * 1e6) {}

  Decision decide(const SchedulerView& view) override {
    if (!view.running) {
      if (view.queue.empty()) return Decision::idle();
      return Decision::start(oldest_model_batch(view, view.max_batch));
    }
    // Counted, not listed: most boundaries merge nothing, and then nothing is allocated.
    const std::uint32_t model = view.running->model;
    const std::uint32_t waiting = queued_count(view, model);
    const std::uint32_t room = catch_up_room(view, waiting);
    if (room == 0 || surely_refuses(view, room, waiting)) return Decision::keep_running();
    const std::uint32_t take = choose(view, room, waiting);
    if (take == 0) return Decision::keep_running();
    std::vector<std::uint32_t> positions = view.take_spare_positions();
    view.queued_of_model(model, take, positions);
    return Decision::preempt(std::move(positions));
  }

  // Their costs move with time (deadlines, waiting, arrival rates), so they are asked at every
  // boundary while anything waits that a preemption could take.
  Horizon horizon(const SchedulerView& view) const override { return Horizon::only_legal_answer(view); }

 protected:
  // How many of the `waiting` queued samples of the running model to catch up, at most `room`.
  virtual std::uint32_t choose(const SchedulerView& view, std::uint32_t room, std::uint32_t waiting) = 0;
  // A shortcut a policy may know: true only where choose would answer 0, so it need not be asked.
  virtual bool surely_refuses(const SchedulerView& /*view*/, std::uint32_t /*room*/, std::uint32_t /*waiting*/) const {
    return false;
  }

  // The deadline the in-flight samples must still meet: the earliest among those that make it
  // when nothing joins (samples already predicted late cannot be saved by refusing to merge),
  // less the safety slack. never_ns when none of them can make it.
  double guarded_deadline_ns(const SchedulerView& view, double completion_if_alone_ns) const {
    double earliest = static_cast<double>(never_ns);
    for (const auto& s : view.running->samples) {
      const double d = static_cast<double>(s.deadline_ns);
      if (d >= static_cast<double>(view.now_ns) + completion_if_alone_ns && d < earliest) earliest = d;
    }
    return earliest == static_cast<double>(never_ns) ? earliest : earliest - slack_ns_;
  }

  double slack_ns() const { return slack_ns_; }

  static std::uint32_t queued_count(const SchedulerView& view, std::uint32_t model) {
    return view.waiting_of_model(model);
  }

 private:
  double slack_ns_;
};

}  // namespace npusim::scheduler::policies
