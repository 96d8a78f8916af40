// ONNX models as `npusim model FILE.onnx` reads them: parsed, imported (shape inference, shape
// arithmetic, lowering) and lowered as a network. Seeds: small protobuf-encoded models.
#include <string>

#include "sim/network_yaml.hpp"
#include "tests/fuzz/fuzz_support.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const npusim::fuzz::ScratchDir dir;
  const auto file = dir.write("model.onnx", data, size);
  npusim::fuzz::expect_typed_errors([&] { (void)npusim::sim::load_model(file.string()); });
  return 0;
}
