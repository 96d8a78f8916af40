// prema: after PREMA (Choi and Rhu, HPCA'20). A job is the waiting samples of one network. It
// earns tokens at its samples' priority times their waiting time in units of the network's
// isolated latency; the threshold is the highest priority level some job's tokens reach, and
// among the jobs at or above it the shortest predicted one runs (the running batch competes
// with the tokens it had when it started). To make room it drains, checkpoints or kills the
// running batch, whichever delays the priority-weighted samples least. Predictions are
// exit-blind: PREMA knows nothing of exits. docs/policies.md writes the rules out.
#include <algorithm>
#include <array>
#include <optional>
#include <span>

#include "scheduler/policies/builtin.hpp"

namespace npusim::scheduler::policies {
namespace {

constexpr std::array<std::uint32_t, 3> priority_levels{low_priority, medium_priority, high_priority};

class Prema final : public Policy, public DecisionHorizon, public ArrivalObservation {
 public:
  bool observes_arrivals(const SchedulerView&) const override { return false; }
  explicit Prema(const ParameterValues& p)
      : fixed_threshold_(p.real("token_threshold")),
        preemptive_(p.boolean("preemptive")),
        checkpoint_(p.boolean("checkpoint")),
        kill_(p.boolean("kill")) {}

  Decision decide(const SchedulerView& view) override {
    follow_engine(view);
    if (view.queue.empty()) return view.running ? Decision::keep_running() : Decision::idle();
    const std::span<const Job> jobs = waiting_jobs(view);
    double most_tokens = 0.0;
    for (const auto& job : jobs) most_tokens = std::max(most_tokens, job.tokens);
    if (view.running) most_tokens = std::max(most_tokens, batch_tokens_.back());
    const double threshold = token_threshold(most_tokens);
    const Job* shortest = nullptr;
    for (const auto& job : jobs)
      if (job.tokens >= threshold && (!shortest || job.length_cycles < shortest->length_cycles)) shortest = &job;
    if (!view.running) {
      // Only a fixed threshold can leave no candidate: the job with the most tokens goes.
      if (!shortest)
        shortest = &*std::max_element(jobs.begin(), jobs.end(), [](const Job& a, const Job& b) { return a.tokens < b.tokens; });
      batch_tokens_.push_back(shortest->tokens);
      return Decision::start(positions_in_spare(view, shortest->positions));
    }
    const BatchInfo& running = *view.running;
    const auto running_left = view.models[running.model].remaining_cycles(
        running.next_layer, static_cast<std::uint32_t>(running.samples.size()), Prediction::exit_blind);
    // The running batch stays when it is a candidate at least as short as the best waiting one.
    if (!shortest || (batch_tokens_.back() >= threshold && running_left <= shortest->length_cycles))
      return Decision::keep_running();
    if (!preemptive_ || view.preemptions_left == 0 || running.next_layer == 0) return Decision::keep_running();
    const Mechanism mechanism = choose_mechanism(view, *shortest);
    if (mechanism == Mechanism::drain) return Decision::keep_running();
    batch_tokens_.push_back(shortest->tokens);
    if (mechanism == Mechanism::kill) return Decision::preempt_restarting(positions_in_spare(view, shortest->positions));
    return Decision::preempt(positions_in_spare(view, shortest->positions), false);
  }

  // Tokens grow with time, so a waiting job may pass the running batch at any boundary; only
  // a non-preemptive PREMA, or an empty queue, lets it run unasked.
  Horizon horizon(const SchedulerView& view) const override {
    return preemptive_ ? Horizon::only_legal_answer(view) : Horizon::until_batch_changes();
  }


 private:
  enum class Mechanism { drain, checkpoint, kill };

  struct Job {
    std::uint32_t model = 0;
    double tokens = 0.0;
    std::uint64_t length_cycles = 0;
    double priority_sum = 0.0;
    std::vector<std::uint32_t> positions;  // the batch: most tokens first, at most max_batch
  };

  // Each mechanism's added latency, weighted by the priorities of the samples it delays:
  //  drain:      the job's samples wait for the running batch to finish:   P_job * R
  //  checkpoint: the batch waits for the job and its context transfers:    P_run * (D + O)
  //  kill:       the batch waits for the job and reruns its layers so far: P_run * (D + W)
  // The least wins; ties prefer drain, then checkpoint (no work lost).
  Mechanism choose_mechanism(const SchedulerView& view, const Job& job) const {
    const BatchInfo& running = *view.running;
    const ModelProfile& model = view.models[running.model];
    const auto batch = static_cast<std::uint32_t>(running.samples.size());
    double running_priority = 0.0;
    for (const auto& s : running.samples) running_priority += s.priority;
    const auto left = static_cast<double>(model.remaining_cycles(running.next_layer, batch, Prediction::exit_blind));
    const auto done = static_cast<double>(model.catch_up_cycles(batch, running.next_layer, Prediction::exit_blind));
    const auto length = static_cast<double>(job.length_cycles);
    Mechanism best = Mechanism::drain;
    double least = job.priority_sum * left;
    const double checkpoint_cost = running_priority * (length + static_cast<double>(view.preemption_overhead_cycles));
    if (checkpoint_ && checkpoint_cost < least) {
      best = Mechanism::checkpoint;
      least = checkpoint_cost;
    }
    if (kill_ && running_priority * (length + done) < least) best = Mechanism::kill;
    return best;
  }

  // PREMA: a task's tokens start at its priority and grow by priority x its slowdown while it
  // waits, slowdown being the waiting time over its isolated latency.
  static double tokens(const SchedulerView& view, const SampleInfo& sample, std::int64_t until_ns) {
    const double isolated_ns =
        view.ns_per_cycle * static_cast<double>(view.models[sample.model].isolated_cycles());
    return sample.priority * (1.0 + static_cast<double>(until_ns - sample.arrival_ns) / isolated_ns);
  }

  // PREMA's threshold: the highest priority level that some job's tokens reach, so a job that
  // has waited long enough to pass a level competes only with jobs that passed it too.
  double token_threshold(double most_tokens) const {
    if (fixed_threshold_ > 0.0) return fixed_threshold_;
    double threshold = priority_levels.front();
    for (const auto level : priority_levels)
      if (most_tokens >= level) threshold = level;
    return threshold;
  }

  // One job per network with samples waiting, by network. A device's samples share its
  // priority and network, so its older ones hold more tokens: the queue index merges the devices'
  // lists in O(d log queue) instead of sorting the queue (SchedulerView::ordered_of_model). The
  // jobs' memory is kept from call to call.
  std::span<const Job> waiting_jobs(const SchedulerView& view) {
    const SampleOrder more_tokens = [&view](const SampleInfo& a, const SampleInfo& b) {
      return tokens(view, a, view.now_ns) > tokens(view, b, view.now_ns);
    };
    std::size_t count = 0;
    for (std::uint32_t m = 0; m < view.models.size(); ++m) {
      if (view.waiting_of_model(m) == 0) continue;
      if (jobs_.size() == count) jobs_.emplace_back();
      Job& job = jobs_[count++];
      view.ordered_of_model(m, view.max_batch, more_tokens, job.positions);
      job.model = m;
      job.tokens = tokens(view, view.queue[job.positions.front()], view.now_ns);
      job.length_cycles =
          view.models[m].remaining_cycles(0, static_cast<std::uint32_t>(job.positions.size()), Prediction::exit_blind);
      job.priority_sum = 0.0;
      for (const auto p : job.positions) job.priority_sum += view.queue[p].priority;
    }
    return {jobs_.data(), count};
  }

  // The tokens of the running batch and of each suspended one, as they were when it started:
  // a batch that ran has stopped waiting. The engine pops a batch when it completes; a batch
  // this policy did not start (a hand-built view) is credited with its tokens now.
  void follow_engine(const SchedulerView& view) {
    const std::size_t batches = view.suspended.size() + (view.running ? 1 : 0);
    if (batch_tokens_.size() > batches) batch_tokens_.resize(batches);
    while (batch_tokens_.size() < batches) {
      const BatchInfo& batch =
          batch_tokens_.size() < view.suspended.size() ? view.suspended[batch_tokens_.size()] : *view.running;
      double most = 0.0;
      for (const auto& s : batch.samples) most = std::max(most, tokens(view, s, view.now_ns));
      batch_tokens_.push_back(most);
    }
  }

  double fixed_threshold_;
  bool preemptive_;
  bool checkpoint_;
  bool kill_;
  std::vector<double> batch_tokens_;  // suspended batches oldest first, then the running one
  std::vector<Job> jobs_;             // waiting_jobs' answer, and the memory of earlier ones past it
};

}  // namespace

PolicyInfo prema_info() {
  return {"prema",
          "PREMA (HPCA'20): tokens grow with priority x normalised waiting time; shortest predicted job among those "
          "past the threshold; drains, checkpoints or kills the running batch, whichever costs least",
          {ParameterSpec::real("token_threshold", 0.0, 0.0, 1e6,
                               "tokens a job needs to be a candidate; 0: PREMA's own, the highest priority level "
                               "(1, 3, 9) some job's tokens reach"),
           ParameterSpec::boolean("preemptive", true, "allow preemption at layer boundaries (off: always drain)"),
           ParameterSpec::boolean("checkpoint", true,
                                  "allow checkpoint: suspend the running batch, saving its context, resume it after"),
           ParameterSpec::boolean("kill", true,
                                  "allow kill: drop the running batch's progress; it reruns from layer 0 after")},
          [](const ParameterValues& p) { return std::make_unique<Prema>(p); }};
}

}  // namespace npusim::scheduler::policies
