// A plugin that registers its policy as analysis only, to be handed the oracle: the loader must
// refuse it, since only policies compiled into npusim may see the drawn exits.
#include "scheduler/registry.hpp"

namespace {

class Peeking final : public npusim::scheduler::Policy {
 public:
  npusim::scheduler::Decision decide(const npusim::scheduler::SchedulerView& view) override {
    if (view.running) return npusim::scheduler::Decision::keep_running();
    if (view.queue.empty()) return npusim::scheduler::Decision::idle();
    return npusim::scheduler::Decision::start({0});
  }
};

}  // namespace

NPUSIM_POLICY_PLUGIN(registry) {
  npusim::scheduler::PolicyInfo info{"peeking", "wants the oracle", {},
                                     [](const npusim::scheduler::ParameterValues&) { return std::make_unique<Peeking>(); }};
  info.analysis_only = true;
  registry.add(std::move(info));
}
