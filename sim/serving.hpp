#pragma once
// The serving system (docs/serving.md): device sources -> request FIFO -> batch formation ->
// NPU, with the Fluid Batching Engine's table choosing each layer's mapping, and a policy
// deciding at every layer boundary. A SystemC model advanced by events (arrivals, layer
// completions, context transfers), never by a ticking clock.

#include <cstdint>
#include <filesystem>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "npu_model/energy.hpp"
#include "npu_model/gemm.hpp"
#include "scheduler/policy.hpp"
#include "scheduler/registry.hpp"
#include "sim/metrics.hpp"
#include "sim/scenario_yaml.hpp"

namespace npusim::sim {

class RunMemo;  // sim/run_memo.hpp

// The simulator broke one of its own invariants (sample balance, a sample in two places).
// An internal fault, not a user error.
class SimulationError : public std::logic_error {
 public:
  using std::logic_error::logic_error;
};

struct LayerRun {
  std::int64_t start_ps = 0, end_ps = 0;
  std::uint32_t model = 0, layer = 0;
  npu::BatchMapping mapping;
  std::uint64_t cycles = 0;
  std::span<const scheduler::SampleInfo> samples;  // the batch; its size is the batch size
  double dynamic_energy_pj = 0;  // the layer's energy without leakage (docs/npu-model.md, "Energy")
};

// Watches a run as it happens (traces, per-sample files, tests). Callbacks come in simulated
// time order; spans are valid only during the call.
class ServingObserver {
 public:
  virtual ~ServingObserver() = default;
  virtual void on_layer(const LayerRun& /*run*/) {}
  // The running batch of `suspended` samples at `layer` is suspended for `incoming` samples.
  virtual void on_preempt(std::int64_t /*time_ps*/, std::uint32_t /*suspended*/, std::uint32_t /*layer*/,
                          std::uint32_t /*incoming*/, bool /*merge*/, std::uint64_t /*save_cycles*/) {}
  // A catch-up batch merged into the suspended one (merge) or a suspended batch resumed alone.
  virtual void on_resume(std::int64_t /*time_ps*/, std::uint32_t /*batch*/, std::uint32_t /*layer*/, bool /*merge*/,
                         std::uint64_t /*restore_cycles*/) {}
  virtual void on_complete(std::int64_t /*time_ps*/, const scheduler::SampleInfo& /*sample*/,
                           std::uint32_t /*exit*/) {}
  virtual void on_drop(std::int64_t /*time_ps*/, const scheduler::SampleInfo& /*sample*/) {}
  // The number of samples waiting in the FIFO changed.
  virtual void on_queue_length(std::int64_t /*time_ps*/, std::size_t /*waiting*/) {}
};

struct ExitCount {
  std::string model, exit;
  std::uint32_t decision_layer = 0;
  std::uint64_t completions = 0;
};

struct ServingStats {
  std::int64_t first_arrival_ps = 0, end_ps = 0;  // end: the last completion
  std::int64_t layer_busy_ps = 0;                  // the array running layers
  std::int64_t context_transfer_ps = 0;            // saving and restoring suspended batches
  std::uint64_t layers_run = 0, macs = 0;
  std::uint64_t preemptions = 0, merges = 0, resumes = 0;
  std::uint64_t context_spills = 0, context_bytes_moved = 0;
  std::uint64_t decisions = 0;        // decision points: layer boundaries, arrivals and wake-ups
  std::uint64_t decisions_asked = 0;  // those the policy answered; its horizon covered the rest
  std::uint64_t max_queue = 0;
  double peak_macs_per_ns = 0.0;
  std::vector<ExitCount> exits;          // every exit of every model, model by model
  std::vector<double> device_slo_ms;     // resolved SLO of each device
  std::vector<std::string> device_models;
  // Energy without leakage of the layers run and the context transfers (static_pj stays 0:
  // leakage depends on the span, which the report applies with static_mw), the transfers' share
  // of it, and each device's samples' share (a layer's energy split evenly over its batch).
  npu::EnergyParts dynamic_energy;
  double context_energy_pj = 0;
  std::vector<double> device_dynamic_energy_pj;
  double static_mw = 0;
};

struct ServingResult {
  MetricsCollector metrics;
  ServingStats stats;
};

// Runs a scenario to the end: arrivals stop at the scenario's sample count or duration, then
// everything admitted completes. Throws scheduler::PolicyError when the policy asks for
// something the system cannot do, SimulationError on a broken invariant, and whatever the
// arrival processes throw. Re-entrant: each call has its own SystemC context.
// A SystemC VCD trace of the FBE registers and the FIFO length. Values change in the file only
// inside [start_ps, end_ps) of simulated time, which bounds its size.
struct VcdTrace {
  std::filesystem::path file;  // empty: no trace
  std::int64_t start_ps = 0;
  std::int64_t end_ps = 1'000'000'000'000;  // 1 s
};

// How the engine runs a scenario; results never depend on it.
struct EngineOptions {
  // A policy that declares a horizon (scheduler::DecisionHorizon) is not asked at the layer
  // boundaries it covers, and the layers in between run as one timed step. Off: it is asked at
  // every boundary, as a plugin is. A VCD trace turns it off, to show every layer's registers.
  bool skip_decisions = true;
  // A directory of control-block tables kept between runs (TableCache); empty: every table is
  // built.
  std::filesystem::path table_cache;
  // Tables kept between the runs of this process (a sweep worker's), used with table_cache;
  // null: none. Results are the same either way.
  RunMemo* memo = nullptr;
};

ServingResult run_serving(const Scenario& scenario, const scheduler::PolicyRegistry& registry,
                          std::span<ServingObserver* const> observers = {}, const VcdTrace& vcd = {},
                          const EngineOptions& engine = {});

}  // namespace npusim::sim
