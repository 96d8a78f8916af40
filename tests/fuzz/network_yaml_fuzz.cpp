// Network YAML, as `npusim model FILE.yaml` reads and lowers it.
#include "sim/network_yaml.hpp"
#include "tests/fuzz/fuzz_support.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const npusim::fuzz::ScratchDir dir;
  const auto file = dir.write("network.yaml", data, size);
  npusim::fuzz::expect_typed_errors([&] { (void)npusim::sim::load_model(file.string()); });
  return 0;
}
