#include "sim/timeline.hpp"

#include <fmt/format.h>
#include <fmt/ostream.h>

#include "sim/json.hpp"

namespace npusim::sim {
namespace {

// Trace-event timestamps are microseconds.
std::string us(std::int64_t ps) { return fmt::format("{}", static_cast<double>(ps) / 1e6); }

constexpr int npu_track = 1, channel_track = 2, exit_track = 3, drop_track = 4;

}  // namespace

ChromeTraceWriter::ChromeTraceWriter(const std::filesystem::path& file, const Scenario& scenario, double start_ms,
                                     double end_ms)
    : file_(file), npu_(scenario.npu),
      start_ps_(static_cast<std::int64_t>(start_ms * 1e9)), end_ps_(static_cast<std::int64_t>(end_ms * 1e9)) {
  for (const auto& [name, network] : scenario.models) {
    model_names_.push_back(name);
    models_.push_back(&network);
  }
  for (const auto& d : scenario.devices) device_names_.push_back(d.stream.name);
  file_.stream() << "{\"displayTimeUnit\": \"ns\", \"otherData\": {\"scenario\": " << json_string(scenario.name)
                 << ", \"policy\": " << json_string(scenario.scheduler.policy) << "},\n\"traceEvents\": [\n";
  file_.stream() << R"({"ph": "M", "pid": 1, "name": "process_name", "args": {"name": "npusim"}})";
  for (const auto& [tid, name] : {std::pair{npu_track, "NPU"}, std::pair{channel_track, "off-chip channel (contexts)"},
                                  std::pair{exit_track, "exits"}, std::pair{drop_track, "drops"}})
    file_.stream() << fmt::format(",\n{{\"ph\": \"M\", \"pid\": 1, \"tid\": {}, \"name\": \"thread_name\", \"args\": "
                                  "{{\"name\": \"{}\"}}}}",
                                  tid, name);
}

void ChromeTraceWriter::event(const std::string& json) {
  file_.stream() << ",\n" << json;
  ++events_;
}

void ChromeTraceWriter::on_layer(const LayerRun& run) {
  if (!inside(run.start_ps)) return;
  const auto& layer = models_[run.model]->layers[run.layer];
  event(fmt::format(R"({{"ph": "X", "pid": 1, "tid": {}, "ts": {}, "dur": {}, "name": {}, "cat": "layer", )"
                    R"("args": {{"model": {}, "layer": {}, "batch": {}, "mapping": "<{},{},{}>", "cycles": {}}}}})",
                    npu_track, us(run.start_ps), us(run.end_ps - run.start_ps), json_string(layer.name),
                    json_string(model_names_[run.model]), run.layer, run.samples.size(), run.mapping.b_r,
                    run.mapping.b_p, run.mapping.k, run.cycles));
  // The layer's energy spread evenly over it, on top of leakage; a fused layer takes no time
  // and shows no step (its energy is in the summary).
  const std::int64_t duration_ps = run.end_ps - run.start_ps;
  if (duration_ps <= 0) return;
  const double static_w = npu_.energy().static_mw / 1000.0;
  power(run.start_ps, static_w + run.dynamic_energy_pj / static_cast<double>(duration_ps));
  if (inside(run.end_ps)) power(run.end_ps, static_w);
}

void ChromeTraceWriter::power(std::int64_t time_ps, double watts) {
  event(fmt::format(R"({{"ph": "C", "pid": 1, "ts": {}, "name": "NPU power", "args": {{"watts": {}}}}})", us(time_ps),
                    watts));
}

void ChromeTraceWriter::on_preempt(std::int64_t time_ps, std::uint32_t suspended, std::uint32_t layer,
                                   std::uint32_t incoming, bool merge, std::uint64_t save_cycles) {
  if (!inside(time_ps)) return;
  event(fmt::format(R"({{"ph": "i", "s": "t", "pid": 1, "tid": {}, "ts": {}, "name": "preempt", "cat": "scheduler", )"
                    R"("args": {{"suspended_batch": {}, "at_layer": {}, "incoming": {}, "merge": {}}}}})",
                    npu_track, us(time_ps), suspended, layer, incoming, merge ? "true" : "false"));
  if (save_cycles > 0)
    event(fmt::format(R"({{"ph": "X", "pid": 1, "tid": {}, "ts": {}, "dur": {}, "name": "save context", )"
                      R"("cat": "context", "args": {{"cycles": {}}}}})",
                      channel_track, us(time_ps), us(npu_.cycles_to_ps(save_cycles)), save_cycles));
}

void ChromeTraceWriter::on_resume(std::int64_t time_ps, std::uint32_t batch, std::uint32_t layer, bool merge,
                                  std::uint64_t restore_cycles) {
  if (!inside(time_ps)) return;
  event(fmt::format(R"({{"ph": "i", "s": "t", "pid": 1, "tid": {}, "ts": {}, "name": "{}", "cat": "scheduler", )"
                    R"("args": {{"batch": {}, "at_layer": {}}}}})",
                    npu_track, us(time_ps), merge ? "merge" : "resume", batch, layer));
  if (restore_cycles > 0)
    event(fmt::format(R"({{"ph": "X", "pid": 1, "tid": {}, "ts": {}, "dur": {}, "name": "restore context", )"
                      R"("cat": "context", "args": {{"cycles": {}}}}})",
                      channel_track, us(time_ps), us(npu_.cycles_to_ps(restore_cycles)), restore_cycles));
}

void ChromeTraceWriter::flush_exits() {
  if (exit_count_ == 0) return;
  const auto& exit = models_[exit_model_]->exits[exit_index_];
  event(fmt::format(R"({{"ph": "i", "s": "t", "pid": 1, "tid": {}, "ts": {}, "name": {}, "cat": "exit", )"
                    R"("args": {{"model": {}, "samples": {}}}}})",
                    exit_track, us(exit_time_ps_), json_string(exit.name), json_string(model_names_[exit_model_]),
                    exit_count_));
  exit_count_ = 0;
}

void ChromeTraceWriter::on_complete(std::int64_t time_ps, const scheduler::SampleInfo& sample, std::uint32_t exit) {
  if (!inside(time_ps)) return;
  if (time_ps != exit_time_ps_ || sample.model != exit_model_ || exit != exit_index_) flush_exits();
  exit_time_ps_ = time_ps;
  exit_model_ = sample.model;
  exit_index_ = exit;
  ++exit_count_;
}

void ChromeTraceWriter::on_drop(std::int64_t time_ps, const scheduler::SampleInfo& sample) {
  if (!inside(time_ps)) return;
  event(fmt::format(R"({{"ph": "i", "s": "t", "pid": 1, "tid": {}, "ts": {}, "name": "drop", "cat": "fifo", )"
                    R"("args": {{"sample": {}, "device": {}}}}})",
                    drop_track, us(time_ps), sample.id, json_string(device_names_[sample.device])));
}

void ChromeTraceWriter::on_queue_length(std::int64_t time_ps, std::size_t waiting) {
  if (!inside(time_ps)) return;
  event(fmt::format(R"({{"ph": "C", "pid": 1, "ts": {}, "name": "FIFO length", "args": {{"waiting": {}}}}})",
                    us(time_ps), waiting));
}

void ChromeTraceWriter::commit() {
  flush_exits();
  file_.stream() << "\n]}\n";
  file_.commit();
}

}  // namespace npusim::sim
