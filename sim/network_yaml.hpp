#pragma once
// Network files: the zoo (configs/models/*.yaml, compiled in), network YAML files, SCALE-Sim
// CSV files, and YAML overlays that add exits to a SCALE-Sim backbone. Format: docs/models.md.

#include <filesystem>
#include <string>
#include <vector>

#include "sim/config_node.hpp"
#include "workloads/network.hpp"

namespace npusim::sim {

struct ZooEntry {
  std::string name;
  std::string description;
};

// The networks compiled into the binary, sorted by name.
std::vector<ZooEntry> model_zoo();
bool is_zoo_model(const std::string& name);

struct ModelLoadOptions {
  // SCALE-Sim rows that do not chain are refused instead of joined by implicit steps (an
  // overlay's `strict: true` asks for the same).
  bool strict_scalesim = false;
};

// Parses a document whose only top-level key is `network`. Relative paths inside (a
// `scalesim_csv` file) are resolved against `base_dir`. Throws ConfigError.
workloads::NetworkDef parse_network(const ConfigNode& document, const std::filesystem::path& base_dir,
                                    const ModelLoadOptions& options = {});

// A zoo name, or a file: *.csv is a SCALE-Sim topology (a bare backbone whose only exit is the
// last layer, probability 1; an overlay adds early exits), anything else is YAML. Validates and lowers. Throws
// ConfigError (file problems, YAML errors) or workloads::NetworkError (graph problems).
workloads::LoweredNetwork load_model(const std::string& name_or_file, const ModelLoadOptions& options = {});

}  // namespace npusim::sim
