// exit_aware: the scheduler of Fluid Batching (Kouris et al., ICCAD'22) as docs/policies.md
// formulates it. Every choice compares expected total latencies priced with the exits'
// survival (a batch shrinks as it goes, so does a catch-up run):
//  - when the NPU is free, which network's waiting samples to start;
//  - at each layer boundary, how many queued samples of the running network to catch up and
//    merge, or whether a batch of another network should run first,
// keeping only the plans whose in-flight samples still meet their deadlines.
#include <algorithm>

#include "scheduler/policies/builtin.hpp"
#include "scheduler/policies/catch_up_policy.hpp"

namespace npusim::scheduler::policies {
namespace {

class ExitAware final : public CatchUpPolicy {
 public:
  explicit ExitAware(const ParameterValues& p)
      : CatchUpPolicy(p.real("slack_ms")),
        guard_deadlines_(p.boolean("guard_deadlines")),
        cross_model_(p.boolean("cross_model")),
        prediction_(p.boolean("exit_blind") ? Prediction::exit_blind : Prediction::exit_aware) {}

  Decision decide(const SchedulerView& view) override {
    if (!view.running) {
      if (view.queue.empty()) return Decision::idle();
      const std::uint32_t model = model_to_start(view);
      return Decision::start(view.queued_of_model(model, view.max_batch));
    }
    Decision merge = CatchUpPolicy::decide(view);
    if (merge.kind != Decision::Kind::run || !cross_model_) return merge;
    return preempt_for_other_model(view);
  }

 protected:
  std::uint32_t choose(const SchedulerView& view, std::uint32_t room, std::uint32_t waiting) override {
    const auto alone = estimate_catch_up(view, 0, waiting, prediction_);
    const double deadline = in_flight_deadline(view, alone.in_flight_completion_ns);
    const auto now = static_cast<double>(view.now_ns);
    std::uint32_t best = 0;
    double best_total = alone.total_latency_ns;
    for (const std::uint32_t j : catch_up_candidates(room)) {
      if (j == 0) continue;
      const auto plan = estimate_catch_up(view, j, waiting, prediction_);
      // Ties go to the larger catch-up: the same latency with more samples served.
      if (now + plan.in_flight_completion_ns <= deadline && plan.total_latency_ns <= best_total) {
        best = j;
        best_total = plan.total_latency_ns;
      }
    }
    return best;
  }

 private:
  double in_flight_deadline(const SchedulerView& view, double completion_if_alone_ns) const {
    return guard_deadlines_ ? guarded_deadline_ns(view, completion_if_alone_ns) : static_cast<double>(never_ns);
  }

  // The batch a network would start now: its waiting samples, up to max_batch.
  struct Group {
    std::uint32_t model = 0;
    std::uint32_t size = 0;
    double batch_cycles = 0.0;  // expected cycles until the whole batch is done
  };

  std::vector<Group> waiting_groups(const SchedulerView& view) const {
    std::vector<std::uint32_t> waiting(view.models.size(), 0);
    std::vector<std::uint32_t> order;  // models by their oldest waiting sample
    for (const auto& s : view.queue)
      if (waiting[s.model]++ == 0) order.push_back(s.model);
    std::vector<Group> groups;
    for (const auto m : order) {
      const std::uint32_t size = std::min(waiting[m], view.max_batch);
      groups.push_back({m, size, static_cast<double>(view.models[m].remaining_cycles(0, size, prediction_))});
    }
    return groups;
  }

  // Running group A before B delays B's samples by A's batch time and vice versa, so the order
  // with the lower expected total latency runs first the group that completes the most samples
  // per cycle (the c-mu rule). Ties keep the oldest sample's network first.
  std::uint32_t model_to_start(const SchedulerView& view) const {
    const auto groups = waiting_groups(view);
    const Group* best = &groups.front();
    for (const auto& g : groups)
      if (g.size * best->batch_cycles > best->size * g.batch_cycles) best = &g;
    return best->model;
  }

  // A batch of another network runs first (no merge; the running batch resumes after it) when
  // that lowers the expected total latency: its samples stop waiting for the running batch's
  // remaining work R, while the B in-flight samples wait for its batch time D plus the context
  // save and restore, and every other waiting sample waits for that save and restore too:
  // gain = size * R - B * (D + overhead) - others * overhead. The best positive gain is taken
  // if the in-flight samples still make their deadlines.
  Decision preempt_for_other_model(const SchedulerView& view) const {
    const BatchInfo& running = *view.running;
    if (view.preemptions_left == 0 || running.next_layer == 0) return Decision::keep_running();
    if (std::none_of(view.queue.begin(), view.queue.end(),
                     [&](const SampleInfo& s) { return s.model != running.model; }))
      return Decision::keep_running();
    const auto in_flight = static_cast<std::uint32_t>(running.samples.size());
    const ModelProfile& model = view.models[running.model];
    const double remaining = static_cast<double>(model.remaining_cycles(running.next_layer, in_flight, prediction_));
    const double alone_ns = view.ns_per_cycle * model.sample_remaining_cycles(running.next_layer, in_flight, prediction_);
    const double deadline = in_flight_deadline(view, alone_ns);
    const Group* best = nullptr;
    double best_gain = 0.0;
    const auto groups = waiting_groups(view);
    for (const auto& g : groups) {
      if (g.model == running.model) continue;
      const double overhead = static_cast<double>(view.preemption_overhead_cycles);
      const double delay = g.batch_cycles + overhead;
      // The context save and restore is work nobody needed: it delays every other waiting
      // sample too, which under overload is what makes preempting too often a loss.
      const double others = static_cast<double>(view.queue.size() - g.size);
      const double gain = g.size * remaining - in_flight * delay - others * overhead;
      if (gain <= best_gain) continue;
      if (static_cast<double>(view.now_ns) + view.ns_per_cycle * delay + alone_ns > deadline) continue;
      best = &g;
      best_gain = gain;
    }
    if (!best) return Decision::keep_running();
    return Decision::preempt(view.queued_of_model(best->model, best->size), false);
  }

  bool guard_deadlines_;
  bool cross_model_;
  Prediction prediction_;
};

}  // namespace

PolicyInfo exit_aware_info() {
  return {"exit_aware",
          "Fluid Batching (ICCAD'22): exit-aware choices of what to start, what to catch up and merge, and when "
          "another network runs first, minimising expected total latency within the in-flight deadlines",
          {ParameterSpec::real("slack_ms", 0.0, 0.0, 1e6,
                               "safety margin kept between the in-flight samples' expected completion and their "
                               "deadline"),
           ParameterSpec::boolean("guard_deadlines", true,
                                  "refuse a catch-up that makes an in-flight sample expected to meet its deadline "
                                  "miss it"),
           ParameterSpec::boolean("cross_model", true,
                                  "let a batch of another network preempt the running one when that lowers the "
                                  "expected total latency"),
           ParameterSpec::boolean("exit_blind", false,
                                  "price every plan as if no sample left early (LazyBatching's prediction): the "
                                  "exit-awareness ablation")},
          [](const ParameterValues& p) { return std::make_unique<ExitAware>(p); }};
}

}  // namespace npusim::scheduler::policies
