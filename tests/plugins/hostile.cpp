// Policies that misbehave in every way the engine must survive (tests/hostile_inputs_test.sh):
// each must end the run with one line naming the policy and this plugin, exit status 2.
#include <stdexcept>

#include "scheduler/registry.hpp"

namespace {

using npusim::scheduler::Decision;
using npusim::scheduler::ParameterValues;
using npusim::scheduler::Policy;
using npusim::scheduler::PolicyInfo;
using npusim::scheduler::SchedulerView;

// Starts the oldest sample and runs it; `misbehave` decides whenever the NPU is free.
template <typename Misbehave>
class Hostile final : public Policy {
 public:
  explicit Hostile(Misbehave misbehave) : misbehave_(misbehave) {}
  Decision decide(const SchedulerView& view) override {
    if (view.running) return Decision::keep_running();
    return misbehave_(view);
  }

 private:
  Misbehave misbehave_;
};

template <typename Misbehave>
PolicyInfo hostile(const char* name, Misbehave misbehave) {
  return {name, "misbehaves on purpose (tests only)", {},
          [misbehave](const ParameterValues&) { return std::make_unique<Hostile<Misbehave>>(misbehave); }};
}

}  // namespace

NPUSIM_POLICY_PLUGIN(registry) {
  registry.add(hostile("throws_int", [](const SchedulerView&) -> Decision { throw 42; }));
  registry.add(hostile("throws_std", [](const SchedulerView&) -> Decision {
    throw std::runtime_error("a plugin's message\nwith a second line");
  }));
  registry.add(hostile("bad_kind", [](const SchedulerView&) {
    Decision d = Decision::start({0});
    d.kind = static_cast<Decision::Kind>(7);
    return d;
  }));
  registry.add(hostile("idle_far", [](const SchedulerView&) { return Decision::idle(std::int64_t{1} << 62); }));
  registry.add(hostile("idle_creep", [](const SchedulerView& view) { return Decision::idle(view.now_ns + 1); }));
  registry.add(hostile("idle_forever", [](const SchedulerView&) { return Decision::idle(); }));
  registry.add({"throws_in_create", "its factory throws (tests only)", {},
                [](const ParameterValues&) -> std::unique_ptr<Policy> { throw 42; }});
}
