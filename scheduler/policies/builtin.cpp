#include "scheduler/policies/builtin.hpp"

namespace npusim::scheduler {

void register_builtin_policies(PolicyRegistry& registry) {
  registry.add(policies::fcfs_info());
  registry.add(policies::static_batch_info());
  registry.add(policies::lazy_batching_info());
  registry.add(policies::prema_info());
  registry.add(policies::edf_info());
  registry.add(policies::exit_aware_info());
  registry.add(policies::clairvoyant_info());
}

}  // namespace npusim::scheduler
