// NPU YAML, as --npu FILE.yaml reads it.
#include "sim/npu_yaml.hpp"
#include "tests/fuzz/fuzz_support.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const npusim::fuzz::ScratchDir dir;
  const auto file = dir.write("npu.yaml", data, size);
  npusim::fuzz::expect_typed_errors([&] { (void)npusim::sim::load_npu_file(file); });
  return 0;
}
