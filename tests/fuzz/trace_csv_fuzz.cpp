// Trace CSV (docs/traces.md), read row by row as a replay reads it.
#include "tests/fuzz/fuzz_support.hpp"
#include "traces/trace_file.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const npusim::fuzz::ScratchDir dir;
  const auto file = dir.write("trace.csv", data, size);
  npusim::fuzz::expect_typed_errors([&] {
    npusim::traces::TraceReader reader(file);
    while (reader.next()) {
    }
  });
  return 0;
}
