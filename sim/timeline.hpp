#pragma once
// A run's timeline in the Chrome trace-event JSON format, for Perfetto (ui.perfetto.dev) or
// chrome://tracing (docs/serving.md, "Seeing what happened"). Bounded: only what happens inside
// a window of simulated time is written.

#include <filesystem>
#include <string>
#include <vector>

#include "sim/run_report.hpp"
#include "sim/serving.hpp"

namespace npusim::sim {

// Tracks: the NPU (one slice per batch-layer with its batch size and mapping; preemptions,
// merges and resumes as instants), the off-chip channel (context saves and restores), exits
// (instants with the number leaving), drops, the FIFO length as a counter, and the NPU's power
// as a counter (watts: leakage, plus each layer's energy over its duration while it runs).
class ChromeTraceWriter final : public ServingObserver {
 public:
  // Events starting in [start_ms, end_ms) of simulated time are written.
  ChromeTraceWriter(const std::filesystem::path& file, const Scenario& scenario, double start_ms, double end_ms);
  void on_layer(const LayerRun& run) override;
  void on_preempt(std::int64_t time_ps, std::uint32_t suspended, std::uint32_t layer, std::uint32_t incoming,
                  bool merge, std::uint64_t save_cycles) override;
  void on_resume(std::int64_t time_ps, std::uint32_t batch, std::uint32_t layer, bool merge,
                 std::uint64_t restore_cycles) override;
  void on_complete(std::int64_t time_ps, const scheduler::SampleInfo& sample, std::uint32_t exit) override;
  void on_drop(std::int64_t time_ps, const scheduler::SampleInfo& sample) override;
  void on_queue_length(std::int64_t time_ps, std::size_t waiting) override;
  // Closes the JSON and renames the file into place.
  void commit();
  std::size_t events() const { return events_; }

 private:
  bool inside(std::int64_t time_ps) const { return time_ps >= start_ps_ && time_ps < end_ps_; }
  void event(const std::string& json);
  void power(std::int64_t time_ps, double watts);
  void flush_exits();

  AtomicFile file_;
  std::vector<const workloads::LoweredNetwork*> models_;
  std::vector<std::string> model_names_;
  std::vector<std::string> device_names_;
  const npu::Npu& npu_;
  std::int64_t start_ps_, end_ps_;
  std::size_t events_ = 0;
  // Completions at one instant and exit are one event.
  std::int64_t exit_time_ps_ = -1;
  std::uint32_t exit_model_ = 0, exit_index_ = 0, exit_count_ = 0;
};

}  // namespace npusim::sim
