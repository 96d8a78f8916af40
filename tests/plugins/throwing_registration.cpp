// A plugin whose registration throws something that is not a std::exception: the loader must
// turn it into a PolicyError naming this file.
#include "scheduler/registry.hpp"

NPUSIM_POLICY_PLUGIN(registry) {
  (void)registry;
  throw 42;
}
