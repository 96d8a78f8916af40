// fcfs: one sample at a time, oldest first, run to completion. The latency floor at light load
// and the throughput floor at heavy load.
#include "scheduler/policies/builtin.hpp"

namespace npusim::scheduler::policies {
namespace {

class Fcfs final : public Policy, public DecisionHorizon, public ArrivalObservation {
 public:
  bool observes_arrivals(const SchedulerView&) const override { return false; }
  // A batch of one runs to completion: nothing wakes it.
  Horizon horizon(const SchedulerView&) const override { return Horizon::until_batch_changes(); }

  Decision decide(const SchedulerView& view) override {
    if (view.running) return Decision::keep_running();
    if (view.queue.empty()) return Decision::idle();
    std::vector<std::uint32_t> front = view.take_spare_positions();
    front.push_back(0);
    return Decision::start(std::move(front));
  }
};

}  // namespace

PolicyInfo fcfs_info() {
  return {"fcfs", "batch size 1, first come first served, run to completion, never preempts", {},
          [](const ParameterValues&) { return std::make_unique<Fcfs>(); }};
}

}  // namespace npusim::scheduler::policies
