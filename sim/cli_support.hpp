#pragma once
// Pieces the npusim subcommands share: the error type for bad options, the parsing of
// comma-separated numbers and of --npu, and the report of a layer's memory traffic.

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "npu_model/cost_model.hpp"
#include "npu_model/npu_config.hpp"
#include "traces/input_file.hpp"

namespace npusim::sim {

// A bad command-line value: reported like a config error, exit status 2. what() stays one line
// whatever option text it quotes.
class UsageError : public std::runtime_error {
 public:
  explicit UsageError(const std::string& message) : std::runtime_error(traces::one_line(message)) {}
};

// `count` comma-separated positive integers up to 2^32; `form` names them in the error
// ("R,P,C").
std::vector<std::uint64_t> parse_positive_list(const std::string& option, const std::string& text,
                                               std::size_t count, const std::string& form);

// --npu FILE (NPU YAML or SCALE-Sim .cfg), or the embedded default when empty.
npu::Npu load_npu_option(const std::string& npu_file, const std::vector<std::string>& overrides);

// One line describing an NPU for reports: its name, array and memory.
std::string npu_label(const npu::Npu& npu);

// The memory-hierarchy figures of one layer's cost as a report shows them. The model fills
// them for GEMMs on the dot-product array only; a field it leaves unfilled is absent here
// rather than shown as a misleading 0, except where the vector path makes it plain (that path
// reads every input element and writes every output element once, in one request each).
struct MemoryReport {
  std::optional<npu::TrafficBytes> bytes;       // when the model splits offchip_bytes by operand
  std::optional<npu::Tiling> tiling;            // when the mapper chose one (dot-product GEMMs)
  std::optional<std::uint64_t> compulsory_bytes;
  std::optional<std::uint64_t> roofline_cycles;
  npu::Placement placement;           // where the residency plan put the operands
  bool fused_into_previous = false;   // an add or global pool run in an earlier GEMM's epilogue
};
MemoryReport memory_report(const npu::Npu& npu, const npu::LayerCost& cost, bool on_vector_path);

// `"bytes": {...}, "tiling": {...}, "compulsory_bytes": N, "roofline_cycles": N, "placement":
// {...}, "fused_into_previous": B`, each null when absent from the report.
std::string memory_report_json(const MemoryReport& report);

// `"sram_bytes": {"input_read": N, ...}, "vector_ops": N, "energy_pj": {"mac": X, "sram": X,
// "dram": X, "vector": X, "static": X, "total": X}`: the layer's counts and their energy
// (docs/npu-model.md, "Energy"), static being leakage over the layer's cycles.
std::string energy_json(const npu::Npu& npu, const npu::LayerCost& cost);

}  // namespace npusim::sim
