#pragma once
// Pieces the npusim subcommands share: the error type for bad options and the parsing of
// comma-separated numbers and of --npu.

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "npu_model/npu_config.hpp"

namespace npusim::sim {

// A bad command-line value: reported like a config error, exit status 2.
class UsageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// `count` comma-separated positive integers up to 2^32; `form` names them in the error
// ("R,P,C").
std::vector<std::uint64_t> parse_positive_list(const std::string& option, const std::string& text,
                                               std::size_t count, const std::string& form);

// --npu FILE (NPU YAML or SCALE-Sim .cfg), or the embedded default when empty.
npu::Npu load_npu_option(const std::string& npu_file, const std::vector<std::string>& overrides);

// One line describing an NPU for reports: its name, array and memory.
std::string npu_label(const npu::Npu& npu);

}  // namespace npusim::sim
