#pragma once
// SCALE-Sim v2 configuration files (.cfg) as systolic NPUs. The file is an INI file with the
// sections [general], [architecture_presets] and [run_presets] (plus [network_presets] and
// [layout] and [sparsity], accepted and not used). docs/config.md lists how each key maps.

#include <filesystem>
#include <istream>
#include <string>

#include "npu_model/npu_config.hpp"
#include "sim/config_node.hpp"

namespace npusim::sim {

// True for a path ending in ".cfg" (any case).
bool is_scalesim_cfg(const std::filesystem::path& file);

// Reads a SCALE-Sim v2 config. Throws ConfigError with one line naming `source`, the line, the
// section and key, the value and what is allowed: for an unknown section or key, a missing key
// SCALE-Sim requires, a non-numeric or out-of-range number, an unknown dataflow or bandwidth
// mode, and sparsity (not modelled).
npu::Npu parse_scalesim_cfg(std::istream& in, const std::string& source);
npu::Npu load_scalesim_cfg(const std::filesystem::path& file);

}  // namespace npusim::sim
