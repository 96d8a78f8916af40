// lazy_batching: after LazyBatching (Choi et al., HPCA'21). Node-level preemption with
// catch-up merging; it merges as many queued samples as the SLO slack allows, predicting as if
// every sample ran to the final layer (it is exit-blind). Slack is spent only on a merge after
// which some deadline can still be met: once every in-flight sample is predicted late, a merge
// must at least bring a caught-up sample in on time. docs/policies.md writes the rule out.
#include <algorithm>

#include "scheduler/policies/builtin.hpp"
#include "scheduler/policies/catch_up_policy.hpp"

namespace npusim::scheduler::policies {
namespace {

class LazyBatching final : public CatchUpPolicy, public ArrivalObservation {
 public:
  bool observes_arrivals(const SchedulerView&) const override { return false; }
  explicit LazyBatching(const ParameterValues& p) : CatchUpPolicy(p.real("slack_ms")), slack_ns_(p.real("slack_ms") * 1e6) {}

 protected:
  std::uint32_t choose(const SchedulerView& view, std::uint32_t room, std::uint32_t waiting) override {
    const auto alone = estimate_catch_up(view, 0, waiting, Prediction::exit_blind);
    const double in_flight_deadline = guarded_deadline_ns(view, alone.in_flight_completion_ns);
    const bool some_in_flight_on_time = in_flight_deadline != static_cast<double>(never_ns);
    const auto& joining = queued_of_model(view, view.running->model, room, joining_);
    const auto now = static_cast<double>(view.now_ns);
    std::uint32_t best = 0;
    for (const std::uint32_t j : catch_up_candidates(room)) {
      if (j == 0) continue;
      const double completion = now + estimate_catch_up(view, j, waiting, Prediction::exit_blind).in_flight_completion_ns;
      if (completion > in_flight_deadline) continue;
      if (!some_in_flight_on_time && completion > latest_deadline_ns(view, joining, j) - slack_ns_) continue;
      best = j;
    }
    return best;
  }

 private:
  // The latest deadline among the first `take` of the joining samples.
  static double latest_deadline_ns(const SchedulerView& view, const std::vector<std::uint32_t>& joining,
                                   std::uint32_t take) {
    std::int64_t latest = std::numeric_limits<std::int64_t>::min();
    for (std::uint32_t i = 0; i < take; ++i) latest = std::max(latest, view.queue[joining[i]].deadline_ns);
    return static_cast<double>(latest);
  }

  double slack_ns_;
  std::vector<std::uint32_t> joining_;  // choose's, kept to reuse its memory
};

}  // namespace

PolicyInfo lazy_batching_info() {
  return {"lazy_batching",
          "LazyBatching (HPCA'21): layer-level catch-up merging as far as the SLO slack allows, never past the point "
          "where no deadline can be met; exit-blind",
          {ParameterSpec::real("slack_ms", 0.0, 0.0, 1e6,
                               "safety margin kept between the predicted completion and the deadline")},
          [](const ParameterValues& p) { return std::make_unique<LazyBatching>(p); }};
}

}  // namespace npusim::scheduler::policies
