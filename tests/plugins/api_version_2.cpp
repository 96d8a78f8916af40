// A plugin that says it was built for policy API 2, before SchedulerView::queue_index was
// appended: the loader must still load it, since 3 only appended to the view. Its policy reads
// only what API 2 had.
#include "scheduler/registry.hpp"

namespace {

using namespace npusim::scheduler;

class OldestFirst final : public Policy {
 public:
  Decision decide(const SchedulerView& view) override {
    if (view.running) return Decision::keep_running();
    if (view.queue.empty()) return Decision::idle();
    return Decision::start({0});
  }
};

}  // namespace

extern "C" int npusim_policy_api_version() { return 2; }
extern "C" void npusim_register_policies(PolicyRegistry& registry) {
  registry.add({"oldest_first_v2", "test plugin built for policy API 2: one sample at a time, oldest first", {},
                [](const ParameterValues&) { return std::make_unique<OldestFirst>(); }});
}
