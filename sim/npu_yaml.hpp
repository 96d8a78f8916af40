#pragma once
// The `npu:` section of a configuration file, parsed into npu::NpuConfig and validated into
// an npu::Npu. Every key is optional and defaults to configs/npu/default.yaml.

#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "npu_model/npu_config.hpp"
#include "sim/config_node.hpp"

namespace npusim::sim {

// One key of the `npu` section: how it is read and described. The table drives parsing, the
// unknown-key checks and `npusim describe npu`.
struct NpuKey {
  const char* path;  // below `npu`, e.g. "buffers.input_kib"
  const char* type;
  const char* unit;
  const char* meaning;
  std::function<void(const ConfigNode&, npu::NpuConfig&)> read;
  std::function<std::string(const npu::NpuConfig&)> show;  // the value in a config, as YAML
};
const std::vector<NpuKey>& npu_keys();

// Parses the mapping at `npu_node` (the value of the `npu` key). Throws ConfigError on unknown
// keys and values of the wrong type.
npu::NpuConfig parse_npu_config(const ConfigNode& npu_node);

// Parses and validates a whole document whose only top-level key is `npu`. Range and
// cross-field errors from npu::Npu::validate are reported at the offending key's line.
npu::Npu load_npu(const ConfigNode& document);
// Parses and validates the mapping at `npu_node`, reporting errors at its keys.
npu::Npu load_npu_section(const ConfigNode& npu_node);
// `overrides` are --set assignments ("npu.pe_count=32") applied before parsing. A file ending
// in .cfg is a SCALE-Sim v2 config (scalesim_cfg.hpp), which takes no overrides.
npu::Npu load_npu_file(const std::filesystem::path& file, const std::vector<std::string>& overrides = {});
// The NPU described by configs/npu/default.yaml, compiled into the binary.
npu::Npu default_npu(const std::vector<std::string>& overrides = {});
// The presets compiled into the binary: configs/npu/NAME.yaml, by NAME, sorted.
std::vector<std::string> npu_presets();
bool is_npu_preset(const std::string& name);
// Throws ConfigError for an unknown name (listing the presets) or a bad override.
npu::Npu load_npu_preset(const std::string& name, const std::vector<std::string>& overrides = {});

}  // namespace npusim::sim
