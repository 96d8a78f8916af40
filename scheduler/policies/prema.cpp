// prema: after PREMA (Choi and Rhu, HPCA'20). Waiting work earns tokens in proportion to its
// normalised waiting time; among the jobs whose tokens pass the threshold, the shortest
// predicted job runs first, and it may preempt the running batch at a layer boundary when it
// is shorter than what that batch has left. A job is the queued samples of one model (up to
// the batch limit); predictions are exit-blind, as PREMA knows nothing of exits.
#include <algorithm>

#include "scheduler/policies/builtin.hpp"

namespace npusim::scheduler::policies {
namespace {

class Prema final : public Policy {
 public:
  explicit Prema(const ParameterValues& p)
      : threshold_(p.real("token_threshold")), preemptive_(p.boolean("preemptive")) {}

  Decision decide(const SchedulerView& view) override {
    if (view.queue.empty()) return view.running ? Decision::keep_running() : Decision::idle();
    const Job job = pick(view);
    if (!view.running) return Decision::start(view.queued_of_model(job.model, view.max_batch));
    if (!preemptive_ || view.preemptions_left == 0 || job.tokens < threshold_) return Decision::keep_running();
    const auto& running = *view.running;
    const std::uint64_t running_left = view.models[running.model].remaining_cycles(
        running.next_layer, static_cast<std::uint32_t>(running.samples.size()), Prediction::exit_blind);
    if (job.length_cycles >= running_left) return Decision::keep_running();
    return Decision::preempt(view.queued_of_model(job.model, view.max_batch), false);
  }

 private:
  struct Job {
    std::uint32_t model = 0;
    double tokens = 0.0;
    std::uint64_t length_cycles = 0;
  };

  // Per model with waiting samples: tokens of its oldest sample (waiting time over the model's
  // isolated latency) and the predicted length of a batch of its queued samples.
  Job pick(const SchedulerView& view) const {
    std::vector<Job> jobs;
    std::vector<bool> seen(view.models.size(), false);
    std::vector<std::uint32_t> waiting(view.models.size(), 0);
    for (const auto& s : view.queue) ++waiting[s.model];
    for (const auto& s : view.queue) {
      if (seen[s.model]) continue;
      seen[s.model] = true;
      const auto& model = view.models[s.model];
      const double isolated_ns = view.ns_per_cycle * static_cast<double>(model.isolated_cycles());
      const auto batch = std::min(waiting[s.model], view.max_batch);
      jobs.push_back({s.model, static_cast<double>(view.now_ns - s.arrival_ns) / isolated_ns,
                      model.remaining_cycles(0, batch, Prediction::exit_blind)});
    }
    const bool any_ready = std::any_of(jobs.begin(), jobs.end(), [&](const Job& j) { return j.tokens >= threshold_; });
    const Job* best = nullptr;
    for (const auto& job : jobs) {
      if (any_ready) {
        if (job.tokens < threshold_) continue;
        if (!best || job.length_cycles < best->length_cycles) best = &job;
      } else if (!best || job.tokens > best->tokens) {
        best = &job;
      }
    }
    return *best;
  }

  double threshold_;
  bool preemptive_;
};

}  // namespace

PolicyInfo prema_info() {
  return {"prema",
          "PREMA (HPCA'20): token-based priority with shortest predicted job first, preemptive at layer boundaries",
          {ParameterSpec::real("token_threshold", 1.0, 0.0, 1e6,
                               "tokens (waiting time in units of the model's isolated latency) a job needs to be "
                               "scheduled ahead of shorter ones"),
           ParameterSpec::boolean("preemptive", true, "allow a ready, shorter job to preempt the running batch")},
          [](const ParameterValues& p) { return std::make_unique<Prema>(p); }};
}

}  // namespace npusim::scheduler::policies
