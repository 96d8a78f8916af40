#pragma once
// Scenario files (docs/config.md): the NPU, the devices with their models, arrival processes,
// exit profiles and SLOs, the scheduler and its parameters, the serving system around the NPU,
// the run length and seed, and the metrics. `default` names the scenario compiled into the
// binary (configs/scenarios/default.yaml).

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "npu_model/npu_config.hpp"
#include "scheduler/parameters.hpp"
#include "scheduler/registry.hpp"
#include "traces/arrival_stream.hpp"
#include "workloads/network.hpp"

namespace npusim::sim {

class RunMemo;  // sim/run_memo.hpp

struct DeviceConfig {
  traces::DeviceStream stream;
  // Exactly one is set: an absolute SLO, or a multiple of the model's isolated batch-1
  // latency on the scenario's NPU.
  std::optional<double> slo_ms;
  std::optional<double> slo_factor;
  // Its samples' priority for policies that weigh devices (PREMA): 1 (low), 3 (medium) or 9 (high).
  std::uint32_t priority = scheduler::medium_priority;
};

enum class DropPolicy { newest, oldest };  // which sample a full FIFO drops
std::string to_string(DropPolicy policy);

struct ServingConfig {
  std::uint64_t fifo_capacity = 4096;  // waiting samples; arrivals beyond it are dropped
  DropPolicy drop = DropPolicy::newest;
  std::uint32_t preemption_depth = 1;  // suspended batches the FBE registers hold at once
  // A dedicated on-chip buffer for suspended contexts; unset: none, every context the residency
  // plan holds on chip is saved off chip.
  std::optional<std::uint64_t> context_buffer_bytes;
};

struct SchedulerConfig {
  std::string policy;
  std::uint32_t max_batch = 16;
  // Where the policies' exit probabilities come from: the network file (the profile measured
  // offline) or the mean of the network's devices' profiles (a profile measured on this
  // deployment's data).
  bool exit_profile_from_devices = false;
  std::vector<std::string> plugins;       // as loaded: resolved paths
  scheduler::ParameterValues parameters;  // of `policy`, defaults filled in
};

struct SimulationConfig {
  std::uint64_t seed = 0;
  std::uint64_t samples = 0;  // stop arrivals after this many (0: not set)
  double duration_s = 0.0;    // stop arrivals at this time (0: not set); exactly one is set
};

struct MetricsConfig {
  double tail_window_ms = 1000.0;
  double tail_percentile = 95.0;
  std::uint64_t exact_percentile_samples = 100'000;  // per group; beyond: bounded-memory estimator
};

struct Scenario {
  std::string name;
  std::string source;              // file, or <embedded ...>
  std::filesystem::path base_dir;  // replay files, model, NPU and plugin files are relative to it
  npu::Npu npu = npu::Npu::validate(npu::NpuConfig{});
  std::vector<DeviceConfig> devices;
  std::map<std::string, workloads::LoweredNetwork> models;  // by the name devices use
  SchedulerConfig scheduler;
  ServingConfig serving;
  SimulationConfig simulation;
  MetricsConfig metrics;

  std::vector<traces::DeviceStream> streams() const;
};

// Loads, composes and validates a scenario. `overrides` are --set assignments
// ("scheduler.policy=edf", "npu.pe_count=32") applied before parsing. Plugins named in
// scheduler.plugins are loaded into `registry`, which must hold the built-in policies and
// outlive every policy made from it. With `memo`, NPU presets (without npu.* overrides) and zoo
// networks parsed by earlier loads in this process are taken from it (and kept there); the
// scenario is the same. Throws ConfigError (one
// line: file:line: path = value: allowed ...) or workloads::NetworkError.
Scenario load_scenario(const std::string& file_or_default, const std::vector<std::string>& overrides,
                       scheduler::PolicyRegistry& registry, RunMemo* memo = nullptr);
// For callers that need only the arrivals (npusim trace): the built-in policies suffice.
Scenario load_scenario(const std::string& file_or_default, const std::vector<std::string>& overrides = {});
const std::string& default_scenario_yaml();

// The scenario fully resolved, as a scenario file: includes and overrides applied, every
// default written out, devices expanded, exit profiles as probabilities, files as absolute
// paths. Loading it gives the same scenario (npusim validate prints it).
std::string resolved_yaml(const Scenario& scenario);

}  // namespace npusim::sim
