#pragma once
// `npusim cost`: the cycles of one layer (--gemm or --conv) or of every layer of a SCALE-Sim
// topology file, under npusim's own cycle count or SCALE-Sim v2's (--convention scalesim).

#include <cstdint>
#include <iosfwd>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

namespace npusim::sim {

struct CostOptions {
  std::string npu_file;
  std::vector<std::string> overrides;
  std::string gemm;      // R,P,C
  std::string conv;      // H,W,Fh,Fw,C,K,S (SCALE-Sim's layer semantics: no padding)
  std::string topology;  // a SCALE-Sim topology CSV
  std::uint32_t batch = 1;
  std::string mapping;
  std::uint32_t groups = 1;
  std::string convention = "npusim";
  bool json = false;
};

// Declares the subcommand and its options on `app`, writing into `options`.
CLI::App* add_cost_command(CLI::App& app, CostOptions& options);

// Throws UsageError, ConfigError, NetworkError or InvalidMapping for bad input; writes nothing
// before the whole answer is known.
void run_cost(const CostOptions& options, std::ostream& out);

}  // namespace npusim::sim
