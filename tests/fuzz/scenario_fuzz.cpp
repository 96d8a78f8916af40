// Scenario YAML, through the path the CLI takes (npusim validate): load, compose, check, and
// write the resolved scenario back out.
#include "scheduler/registry.hpp"
#include "sim/scenario_yaml.hpp"
#include "tests/fuzz/fuzz_support.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const npusim::fuzz::ScratchDir dir;
  const auto file = dir.write("scenario.yaml", data, size);
  npusim::fuzz::expect_typed_errors([&] {
    npusim::scheduler::PolicyRegistry registry;
    npusim::scheduler::register_builtin_policies(registry);
    const auto scenario = npusim::sim::load_scenario(file.string(), {}, registry);
    (void)npusim::sim::resolved_yaml(scenario);
  });
  return 0;
}
