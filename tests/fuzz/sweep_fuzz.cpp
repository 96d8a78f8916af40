// Sweep YAML, as `npusim sweep FILE --dry-run` checks and expands it.
#include "sim/sweep.hpp"
#include "tests/fuzz/fuzz_support.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const npusim::fuzz::ScratchDir dir;
  const auto file = dir.write("sweep.yaml", data, size);
  npusim::fuzz::expect_typed_errors([&] { (void)npusim::sim::load_sweep(file); });
  return 0;
}
