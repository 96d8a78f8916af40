// static_batch: Clipper's adaptive batching (Crankshaw et al., NSDI'17), with TF-Serving's
// fixed batch as an option. Each network has its own batch size, tuned by AIMD on the batches
// it ran; a batch starts when that many samples of a network wait, or, partial, when its
// oldest sample has waited timeout_ms or (SLO-aware) when waiting longer would make that sample
// miss its deadline given the predicted time of the batch. A batch runs to completion: exits
// shrink it and nothing refills it. docs/policies.md writes the rules out.
#include <algorithm>
#include <cmath>
#include <optional>

#include "scheduler/policies/builtin.hpp"

namespace npusim::scheduler::policies {
namespace {

class StaticBatch final : public Policy, public DecisionHorizon, public ArrivalObservation {
 public:
  bool observes_arrivals(const SchedulerView&) const override { return false; }
  explicit StaticBatch(const ParameterValues& p)
      : batch_size_(static_cast<std::uint32_t>(p.integer("batch_size"))),
        aimd_(p.boolean("aimd")),
        additive_step_(static_cast<std::uint32_t>(p.integer("additive_step"))),
        backoff_factor_(p.real("backoff_factor")),
        timeout_ns_(static_cast<std::int64_t>(std::llround(p.real("timeout_ms") * 1e6))),
        slo_aware_(p.boolean("slo_aware_timeout")) {}

  Decision decide(const SchedulerView& view) override {
    if (view.running) return Decision::keep_running();
    if (started_) learn_from_finished_batch(view);
    if (view.queue.empty()) return Decision::idle();
    const std::uint32_t cap = batch_cap(view);
    if (batch_size_by_model_.empty()) batch_size_by_model_.assign(view.models.size(), aimd_ ? 1 : cap);
    // A full batch of any network goes first; networks are visited in order of their oldest sample.
    seen_.assign(view.models.size(), false);
    std::optional<std::uint32_t> due_model;
    std::int64_t earliest_due_ns = never_ns;
    for (const auto& oldest : view.queue) {
      if (seen_[oldest.model]) continue;
      seen_[oldest.model] = true;
      const std::uint32_t size = std::min(batch_size_by_model_[oldest.model], cap);
      auto& positions = queued_of_model(view, oldest.model, size, positions_);
      if (positions.size() == size) return start(view, positions_in_spare(view, positions));
      const std::int64_t due_ns = partial_batch_due_ns(view, oldest, static_cast<std::uint32_t>(positions.size()));
      if (due_ns < earliest_due_ns) {
        earliest_due_ns = due_ns;
        due_model = oldest.model;
      }
    }
    if (view.now_ns >= earliest_due_ns)
      return start(view, positions_in_spare(view, queued_of_model(view, *due_model,
                                                                  std::min(batch_size_by_model_[*due_model], cap),
                                                                  positions_)));
    return Decision::idle(earliest_due_ns);
  }

  // A batch runs to completion: nothing wakes it.
  Horizon horizon(const SchedulerView&) const override { return Horizon::until_batch_changes(); }

 private:
  std::uint32_t batch_cap(const SchedulerView& view) const {
    return batch_size_ == 0 ? view.max_batch : std::min(batch_size_, view.max_batch);
  }

  // When a partial batch of `waiting` samples whose oldest is `oldest` must start: after the
  // fixed timeout, and, SLO-aware, no later than the oldest sample's deadline less the
  // predicted (exit-blind: Clipper knows nothing of exits) time of that batch.
  std::int64_t partial_batch_due_ns(const SchedulerView& view, const SampleInfo& oldest, std::uint32_t waiting) const {
    const std::int64_t fixed_ns = oldest.arrival_ns + timeout_ns_;
    if (!slo_aware_) return fixed_ns;
    const auto batch_cycles = view.models[oldest.model].remaining_cycles(0, waiting, Prediction::exit_blind);
    return std::min(fixed_ns, oldest.deadline_ns - view.ns_from_cycles(static_cast<double>(batch_cycles)));
  }

  Decision start(const SchedulerView& view, std::vector<std::uint32_t> positions) {
    std::int64_t tightest_slo_ns = never_ns;
    for (const auto p : positions)
      tightest_slo_ns = std::min(tightest_slo_ns, view.queue[p].deadline_ns - view.queue[p].arrival_ns);
    started_ = StartedBatch{view.queue[positions.front()].model, view.now_ns, tightest_slo_ns};
    return Decision::start(std::move(positions));
  }

  // The batch this policy started has finished (nothing runs, and it never preempts): AIMD on
  // its processing time, as Clipper measures it, against the tightest SLO among its samples.
  void learn_from_finished_batch(const SchedulerView& view) {
    const StartedBatch batch = *started_;
    started_.reset();
    if (!aimd_) return;
    std::uint32_t& size = batch_size_by_model_[batch.model];
    if (view.now_ns - batch.start_ns <= batch.slo_ns)
      size = std::min(size + additive_step_, batch_cap(view));
    else
      size = std::max(1u, static_cast<std::uint32_t>(std::floor(size * (1.0 - backoff_factor_))));
  }

  struct StartedBatch {
    std::uint32_t model = 0;
    std::int64_t start_ns = 0;
    std::int64_t slo_ns = 0;
  };

  std::uint32_t batch_size_;
  bool aimd_;
  std::uint32_t additive_step_;
  double backoff_factor_;
  std::int64_t timeout_ns_;
  bool slo_aware_;
  std::vector<std::uint32_t> batch_size_by_model_;  // AIMD's current size, per network
  std::optional<StartedBatch> started_;
  // decide's, kept to reuse their memory.
  std::vector<bool> seen_;
  std::vector<std::uint32_t> positions_;
};

}  // namespace

PolicyInfo static_batch_info() {
  return {"static_batch",
          "Clipper (NSDI'17): per-network AIMD batch size, a partial batch starts after timeout_ms or when waiting "
          "longer would make its oldest sample miss its SLO; runs to completion, exits are never refilled",
          {ParameterSpec::integer("batch_size", 0, 0, 4096,
                                  "the largest batch AIMD may reach, or with aimd off the fixed batch size; 0 means "
                                  "scheduler.max_batch (larger values are capped to it)"),
           ParameterSpec::boolean("aimd", true,
                                  "adapt each network's batch size: + additive_step after a batch that met its SLO, "
                                  "x (1 - backoff_factor) after one that missed (off: TF-Serving's fixed batch_size)"),
           ParameterSpec::integer("additive_step", 1, 1, 4096, "samples added to the batch size after a batch that met its SLO"),
           ParameterSpec::real("backoff_factor", 0.1, 0.0, 0.99,
                               "share of the batch size removed after a batch that missed its SLO (Clipper: 10 %)"),
           ParameterSpec::real("timeout_ms", 0.0, 0.0, 1e6,
                               "longest wait of a partial batch's oldest sample (0: Clipper's default, no delayed "
                               "batching)"),
           ParameterSpec::boolean("slo_aware_timeout", true,
                                  "start a partial batch earlier when waiting longer would make its oldest sample miss "
                                  "its SLO, given the batch's predicted time")},
          [](const ParameterValues& p) { return std::make_unique<StaticBatch>(p); }};
}

}  // namespace npusim::scheduler::policies
