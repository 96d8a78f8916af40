// exit_aware: the scheduler of Fluid Batching (Kouris et al., ICCAD'22) as docs/policies.md
// formulates it. At each layer boundary it prices every candidate catch-up size with the
// exits' survival (the running batch shrinks, so does the catch-up run) and takes the one with
// the lowest expected total latency whose in-flight samples still meet their deadlines.
#include "scheduler/policies/builtin.hpp"
#include "scheduler/policies/catch_up_policy.hpp"

namespace npusim::scheduler::policies {
namespace {

class ExitAware final : public CatchUpPolicy {
 public:
  explicit ExitAware(const ParameterValues& p)
      : CatchUpPolicy(p.real("slack_ms")), guard_deadlines_(p.boolean("guard_deadlines")) {}

 protected:
  std::uint32_t choose(const SchedulerView& view, std::uint32_t room, std::uint32_t waiting) override {
    const auto alone = estimate_catch_up(view, 0, waiting, Prediction::exit_aware);
    const double deadline = guard_deadlines_ ? guarded_deadline_ns(view, alone.in_flight_completion_ns)
                                             : static_cast<double>(never_ns);
    const auto now = static_cast<double>(view.now_ns);
    std::uint32_t best = 0;
    double best_total = alone.total_latency_ns;
    for (const std::uint32_t j : catch_up_candidates(room)) {
      if (j == 0) continue;
      const auto plan = estimate_catch_up(view, j, waiting, Prediction::exit_aware);
      // Ties go to the larger catch-up: the same latency with more samples served.
      if (now + plan.in_flight_completion_ns <= deadline && plan.total_latency_ns <= best_total) {
        best = j;
        best_total = plan.total_latency_ns;
      }
    }
    return best;
  }

 private:
  bool guard_deadlines_;
};

}  // namespace

PolicyInfo exit_aware_info() {
  return {"exit_aware",
          "Fluid Batching (ICCAD'22): exit-aware catch-up merging that minimises expected total latency within the "
          "in-flight deadlines",
          {ParameterSpec::real("slack_ms", 0.0, 0.0, 1e6,
                               "safety margin kept between the in-flight samples' expected completion and their "
                               "deadline"),
           ParameterSpec::boolean("guard_deadlines", true,
                                  "refuse a catch-up that makes an in-flight sample expected to meet its deadline "
                                  "miss it")},
          [](const ParameterValues& p) { return std::make_unique<ExitAware>(p); }};
}

}  // namespace npusim::scheduler::policies
