// SCALE-Sim .cfg files, as --npu FILE.cfg reads them.
#include "sim/scalesim_cfg.hpp"
#include "tests/fuzz/fuzz_support.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const npusim::fuzz::ScratchDir dir;
  const auto file = dir.write("npu.cfg", data, size);
  npusim::fuzz::expect_typed_errors([&] { (void)npusim::sim::load_scalesim_cfg(file); });
  return 0;
}
