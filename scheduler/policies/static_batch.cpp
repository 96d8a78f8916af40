// static_batch: Clipper / TF-Serving style batching. A batch forms from one model's queued
// samples and starts when it is full or its oldest sample has waited timeout_ms; it then runs
// to completion. Exits shrink it and nothing refills it.
#include <algorithm>
#include <cmath>

#include "scheduler/policies/builtin.hpp"

namespace npusim::scheduler::policies {
namespace {

class StaticBatch final : public Policy {
 public:
  explicit StaticBatch(const ParameterValues& p)
      : batch_size_(static_cast<std::uint32_t>(p.integer("batch_size"))),
        timeout_ns_(static_cast<std::int64_t>(std::llround(p.real("timeout_ms") * 1e6))) {}

  Decision decide(const SchedulerView& view) override {
    if (view.running) return Decision::keep_running();
    if (view.queue.empty()) return Decision::idle();
    const std::uint32_t size = batch_size_ == 0 ? view.max_batch : std::min(batch_size_, view.max_batch);
    // A full batch of any model goes first; models are visited in order of their oldest sample.
    std::vector<bool> seen(view.models.size(), false);
    for (const auto& sample : view.queue) {
      if (seen[sample.model]) continue;
      seen[sample.model] = true;
      auto positions = view.queued_of_model(sample.model, size);
      if (positions.size() == size) return Decision::start(std::move(positions));
    }
    const std::int64_t due_ns = view.queue.front().arrival_ns + timeout_ns_;
    if (view.now_ns >= due_ns) return Decision::start(oldest_model_batch(view, size));
    return Decision::idle(due_ns);
  }

 private:
  std::uint32_t batch_size_;
  std::int64_t timeout_ns_;
};

}  // namespace

PolicyInfo static_batch_info() {
  return {"static_batch",
          "Clipper/TF-Serving: wait for a full batch or a timeout, then run to completion; exits are never refilled",
          {ParameterSpec::integer("batch_size", 0, 0, 4096,
                                  "samples per batch; 0 means scheduler.max_batch (larger values are capped to it)"),
           ParameterSpec::real("timeout_ms", 5.0, 0.0, 1e6,
                               "longest wait of a batch's oldest sample before a partial batch starts")},
          [](const ParameterValues& p) { return std::make_unique<StaticBatch>(p); }};
}

}  // namespace npusim::scheduler::policies
