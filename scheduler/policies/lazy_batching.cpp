// lazy_batching: after LazyBatching (Choi et al., HPCA'21). Node-level preemption with
// catch-up merging; it merges as many queued samples as the in-flight samples' SLO slack
// allows, predicting as if every sample ran to the final layer. It is exit-blind.
#include "scheduler/policies/builtin.hpp"
#include "scheduler/policies/catch_up_policy.hpp"

namespace npusim::scheduler::policies {
namespace {

class LazyBatching final : public CatchUpPolicy {
 public:
  explicit LazyBatching(const ParameterValues& p) : CatchUpPolicy(p.real("slack_ms")) {}

 protected:
  std::uint32_t choose(const SchedulerView& view, std::uint32_t room, std::uint32_t waiting) override {
    const auto alone = estimate_catch_up(view, 0, waiting, Prediction::exit_blind);
    const double deadline = guarded_deadline_ns(view, alone.in_flight_completion_ns);
    const auto now = static_cast<double>(view.now_ns);
    std::uint32_t best = 0;
    for (const std::uint32_t j : catch_up_candidates(room)) {
      const auto plan = estimate_catch_up(view, j, waiting, Prediction::exit_blind);
      if (now + plan.in_flight_completion_ns <= deadline) best = j;
    }
    return best;
  }
};

}  // namespace

PolicyInfo lazy_batching_info() {
  return {"lazy_batching",
          "LazyBatching (HPCA'21): layer-level catch-up merging as far as the in-flight SLO slack allows, exit-blind",
          {ParameterSpec::real("slack_ms", 0.0, 0.0, 1e6,
                               "safety margin kept between the in-flight samples' predicted completion and their "
                               "deadline")},
          [](const ParameterValues& p) { return std::make_unique<LazyBatching>(p); }};
}

}  // namespace npusim::scheduler::policies
