#pragma once
// Scenario files (docs/traces.md): the devices, their models, arrival processes and exit
// profiles, and the seed. `default` names the scenario compiled into the binary
// (configs/scenarios/default.yaml).

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "traces/arrival_stream.hpp"
#include "workloads/network.hpp"

namespace npusim::sim {

struct Scenario {
  std::string name;
  std::string source;  // file, or <embedded ...>
  std::uint64_t seed = 0;
  std::filesystem::path base_dir;  // replay files and model files are relative to it
  std::vector<traces::DeviceStream> devices;
  std::map<std::string, workloads::LoweredNetwork> models;  // by the name devices use
};

// Throws ConfigError (one line: file:line: path = value: allowed ...) or NetworkError.
// `overrides` are --set assignments ("scenario.seed=7") applied before parsing.
Scenario load_scenario(const std::string& file_or_default, const std::vector<std::string>& overrides = {});
const std::string& default_scenario_yaml();

}  // namespace npusim::sim
