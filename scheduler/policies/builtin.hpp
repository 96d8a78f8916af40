#pragma once
// The built-in policies, one file each. Adding a policy: write its file with a *_info()
// function and list it in builtin.cpp.

#include "scheduler/policies/common.hpp"
#include "scheduler/registry.hpp"

namespace npusim::scheduler::policies {

PolicyInfo fcfs_info();
PolicyInfo static_batch_info();
PolicyInfo lazy_batching_info();
PolicyInfo prema_info();
PolicyInfo edf_info();
PolicyInfo exit_aware_info();
PolicyInfo clairvoyant_info();  // analysis only

}  // namespace npusim::scheduler::policies
