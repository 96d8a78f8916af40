// SCALE-Sim topology CSV, both ways the CLI reads one: as a network (`npusim model FILE.csv`,
// imported and lowered) and as rows to price (`npusim cost --topology FILE.csv`).
#include <sstream>
#include <string>

#include "sim/network_yaml.hpp"
#include "tests/fuzz/fuzz_support.hpp"
#include "workloads/scalesim_csv.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const npusim::fuzz::ScratchDir dir;
  const auto file = dir.write("topology.csv", data, size);
  npusim::fuzz::expect_typed_errors([&] { (void)npusim::sim::load_model(file.string()); });
  npusim::fuzz::expect_typed_errors([&] {
    std::istringstream in(std::string(reinterpret_cast<const char*>(data), size));
    (void)npusim::workloads::read_scalesim_topology(in, file.string());
  });
  return 0;
}
