// greedy_batch: an example policy loaded from a plugin. When the NPU is free it starts the
// oldest waiting sample's model with up to `batch_limit` of its queued samples; it never waits
// and never preempts.
#include <algorithm>
#include <memory>

#include "scheduler/registry.hpp"

namespace {

using namespace npusim::scheduler;

class GreedyBatch final : public Policy {
 public:
  explicit GreedyBatch(std::uint32_t batch_limit) : batch_limit_(batch_limit) {}

  Decision decide(const SchedulerView& view) override {
    if (view.running) return Decision::keep_running();
    if (view.queue.empty()) return Decision::idle();
    const std::size_t limit = std::min(batch_limit_, view.max_batch);
    return Decision::start(view.queued_of_model(view.queue.front().model, limit));
  }

 private:
  std::uint32_t batch_limit_;
};

}  // namespace

NPUSIM_POLICY_PLUGIN(registry) {
  registry.add({"greedy_batch",
                "example plugin: start the oldest model's waiting samples at once, run to completion",
                {ParameterSpec::integer("batch_limit", 8, 1, 1024, "most samples in one batch")},
                [](const ParameterValues& p) {
                  return std::make_unique<GreedyBatch>(static_cast<std::uint32_t>(p.integer("batch_limit")));
                }});
}
