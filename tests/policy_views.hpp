#pragma once
// Hand-built scheduler views for the policy tests: a four-layer network whose costs are simple
// enough to compute by hand, samples, and a builder of the view a policy sees at a decision.

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "scheduler/registry.hpp"

namespace npusim::policy_views {

using scheduler::Decision;
using scheduler::ModelProfile;
using scheduler::SampleInfo;
using scheduler::SchedulerView;

// Four layers; exit "early" after layer 1 takes half the samples, the final exit the rest.
// A layer costs fixed + per_sample * batch cycles.
inline ModelProfile four_layers(std::uint64_t fixed, std::uint64_t per_sample, std::uint32_t max_batch = 8) {
  return ModelProfile("four", 4, max_batch,
                      [=](std::uint32_t, std::uint32_t batch) { return fixed + per_sample * batch; },
                      {{"early", 1, 0.5}, {"final", 3, 0.5}});
}

// A built-in policy with the given parameters, defaults for the rest.
inline std::unique_ptr<scheduler::Policy> make(const std::string& name,
                                               const std::map<std::string, scheduler::ParameterValue>& given = {}) {
  scheduler::PolicyRegistry registry;
  scheduler::register_builtin_policies(registry);
  const auto* info = registry.find(name);
  return info->create(scheduler::ParameterValues(info->parameters, given));
}

inline SampleInfo sample(std::uint64_t id, std::int64_t arrival_ns, std::int64_t deadline_ns, std::uint32_t model = 0,
                         std::uint32_t priority = scheduler::medium_priority) {
  return {id, arrival_ns, deadline_ns, 0, model, priority};
}

// A view at `now_ns` of the queue, optionally with a running batch; 1 ns per cycle.
struct ViewBuilder {
  std::vector<ModelProfile> models;
  std::vector<SampleInfo> queue, running_samples;
  scheduler::BatchInfo running;
  bool has_running = false;
  SchedulerView view(std::int64_t now_ns, std::uint32_t max_batch = 8) {
    SchedulerView v;
    v.now_ns = now_ns;
    v.queue = queue;
    v.models = models;
    v.max_batch = max_batch;
    v.ns_per_cycle = 1.0;
    v.preemptions_left = 1;
    if (has_running) {
      running.samples = running_samples;
      v.running = &running;
      v.merge_room = max_batch - static_cast<std::uint32_t>(running_samples.size());
    }
    return v;
  }
};

}  // namespace npusim::policy_views
