#include "sim/cli.hpp"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <memory>
#include <optional>
#include <ostream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "npu_model/cost_model.hpp"
#include "npu_model/fluid_batching_engine.hpp"
#include "workloads/control_blocks.hpp"
#include "npu_model/layer_lowering.hpp"
#include "sim/cli_support.hpp"
#include "sim/config_node.hpp"
#include "sim/cost_command.hpp"
#include "sim/json.hpp"
#include "sim/model_report.hpp"
#include "sim/network_yaml.hpp"
#include "sim/npu_yaml.hpp"
#include "sim/run_memo.hpp"
#include "sim/run_report.hpp"
#include "sim/serving.hpp"
#include "sim/sweep.hpp"
#include "sim/table_cache.hpp"
#include "sim/timeline.hpp"
#include "sim/scenario_yaml.hpp"
#include "traces/trace_file.hpp"

namespace npusim::sim {
namespace {

struct TableOptions {
  std::string npu_file;
  std::vector<std::string> overrides;
  std::string model = "resnet56";
  std::uint32_t max_batch = 8;
  bool json = false;
};

// The FBE's control-block table for every layer of `net`, batches 1..max_batch.
npu::ControlBlockTable control_blocks(const npu::Npu& npu, const workloads::LoweredNetwork& net,
                                      std::uint32_t max_batch) {
  if (max_batch == 0 || max_batch > 256) throw UsageError(fmt::format("--max-batch {}: allowed 1 to 256", max_batch));
  return workloads::control_block_table(npu, net, max_batch);
}

// A cell of the text table: the mapping, for a dot-product GEMM the loop order (W: weights
// outer, I: inputs outer), and the cycles; "fused" for an add or a global pool run in the
// epilogue of a GEMM above it.
std::string table_cell(const npu::LayerCost& cost, const MemoryReport& memory) {
  if (cost.fused_into_previous) return "fused";
  const std::string order =
      memory.tiling ? (memory.tiling->order == npu::LoopOrder::weights_outer ? " W" : " I") : "";
  return fmt::format("{}{} {}", npu::to_string(cost.mapping), order, cost.cycles);
}

void run_table(const TableOptions& o, std::ostream& out) {
  const npu::Npu npu = load_npu_option(o.npu_file, o.overrides);
  const auto net = load_model(o.model);
  const auto table = control_blocks(npu, net, o.max_batch);
  const auto memory = [&](std::uint32_t batch, std::size_t layer) {
    return memory_report(npu, table.entry(batch, layer), net.layers[layer].work.on_vector_path);
  };
  std::vector<std::uint32_t> batches;
  for (std::uint32_t b = 1; b <= o.max_batch; b *= 2) batches.push_back(b);
  if (batches.back() != o.max_batch) batches.push_back(o.max_batch);

  std::ostringstream text;
  if (o.json) {
    text << fmt::format("{{\"npu\": {}, \"network\": {}, \"layers\": [", json_string(npu.config().name),
                        json_string(net.name));
    for (std::size_t l = 0; l < net.layers.size(); ++l) {
      text << (l ? ", " : "") << fmt::format("{{\"name\": {}, \"entries\": [", json_string(net.layers[l].name));
      for (std::uint32_t b = 1; b <= o.max_batch; ++b) {
        const auto& e = table.entry(b, l);
        text << (b > 1 ? ", " : "")
             << fmt::format("{{\"batch\": {}, \"b_r\": {}, \"b_p\": {}, \"k\": {}, \"cycles\": {}, "
                            "\"compute_cycles\": {}, \"stall_cycles\": {}, \"offchip_bytes\": {}, {}, {}}}",
                            b, e.mapping.b_r, e.mapping.b_p, e.mapping.k, e.cycles, e.compute_cycles, e.stall_cycles,
                            e.offchip_bytes, memory_report_json(memory(b, l)), energy_json(npu, e));
      }
      text << "]}";
    }
    text << "]}\n";
    out << text.str();
    return;
  }
  constexpr int cell = 22;
  text << fmt::format("control-block table: {} on {}\n", net.name, npu_label(npu));
  text << "each cell: <B_R,B_P,k>, the loop order of a GEMM on a dot-product array (W weights outer, I inputs "
          "outer) and the cycles for the whole batch; vector-path layers show <B,1,1>; \"fused\": an add or a global "
          "pool run in the epilogue of a GEMM above\n";
  text << fmt::format("{:<28}", "layer");
  for (auto b : batches) text << fmt::format(" {:>{}}", fmt::format("batch {}", b), cell);
  text << "\n";
  std::vector<std::uint64_t> totals(batches.size(), 0);
  for (std::size_t l = 0; l < net.layers.size(); ++l) {
    text << fmt::format("{:<28}", net.layers[l].name);
    for (std::size_t i = 0; i < batches.size(); ++i) {
      const auto& e = table.entry(batches[i], l);
      totals[i] += e.cycles;
      text << fmt::format(" {:>{}}", table_cell(e, memory(batches[i], l)), cell);
    }
    text << "\n";
  }
  text << fmt::format("{:<28}", "all layers, cycles");
  for (auto t : totals) text << fmt::format(" {:>{}}", t, cell);
  text << "\n" << fmt::format("{:<28}", "cycles per sample");
  for (std::size_t i = 0; i < batches.size(); ++i) text << fmt::format(" {:>{}}", totals[i] / batches[i], cell);
  text << "\n";
  out << text.str();
}

struct ModelOptions {
  std::string model;
  std::string npu_file;
  std::vector<std::string> overrides;
  std::optional<std::uint32_t> max_batch;
  bool json = false;
  bool strict = false;
};

// A whole network at one batch size, every layer (exit classifiers included) run under its
// control-block entry.
struct NetworkCost {
  std::uint32_t batch = 0;
  std::uint64_t cycles = 0;  // the whole batch through every layer
  double cycles_per_sample = 0;
  double mac_utilisation = 0;
  // Sum of the layers' roofline bounds; absent when the model gives none for some layer.
  std::optional<std::uint64_t> roofline_cycles;
  std::optional<double> roofline_ratio() const {
    if (!roofline_cycles || *roofline_cycles == 0) return std::nullopt;
    return static_cast<double>(cycles) / static_cast<double>(*roofline_cycles);
  }
  // A sample's share of the batch's energy (leakage over the layers' cycles included): through
  // every layer, and up to the layer where each exit decides (docs/npu-model.md §10).
  double energy_pj_per_sample = 0;
  std::vector<std::pair<std::string, double>> energy_pj_per_sample_to_exit;
};

NetworkCost network_cost(const npu::Npu& npu, const workloads::LoweredNetwork& net,
                         const npu::ControlBlockTable& table, std::uint32_t batch) {
  NetworkCost c{.batch = batch, .roofline_cycles = 0};
  for (std::size_t l = 0; l < net.layers.size(); ++l) {
    const auto& entry = table.entry(batch, l);
    c.cycles += entry.cycles;
    const auto roofline = memory_report(npu, entry, net.layers[l].work.on_vector_path).roofline_cycles;
    c.roofline_cycles = roofline && c.roofline_cycles ? std::optional(*c.roofline_cycles + *roofline) : std::nullopt;
  }
  c.cycles_per_sample = static_cast<double>(c.cycles) / batch;
  std::vector<double> energy_through;  // per sample, through layer l
  for (std::size_t l = 0; l < net.layers.size(); ++l)
    energy_through.push_back((l ? energy_through.back() : 0.0) +
                             npu::layer_energy(npu, table.entry(batch, l)).total_pj() / batch);
  c.energy_pj_per_sample = energy_through.empty() ? 0.0 : energy_through.back();
  for (const auto& exit : net.exits) {
    c.energy_pj_per_sample_to_exit.emplace_back(exit.name, energy_through[exit.decided_after()]);
  }
  if (c.cycles > 0)
    c.mac_utilisation = static_cast<double>(net.total_macs) * batch /
                        (static_cast<double>(c.cycles) * static_cast<double>(npu.macs_per_cycle()));
  return c;
}

std::string network_cost_json(const NetworkCost& c) {
  const auto ratio = c.roofline_ratio();
  std::vector<std::string> exits;
  for (const auto& [name, pj] : c.energy_pj_per_sample_to_exit) exits.push_back(fmt::format("{}: {}", json_string(name), pj));
  return fmt::format("{{\"batch\": {}, \"cycles\": {}, \"cycles_per_sample\": {}, \"mac_utilisation\": {}, "
                     "\"roofline_cycles\": {}, \"cycles_over_roofline\": {}, \"energy_pj_per_sample\": {}, "
                     "\"energy_pj_per_sample_to_exit\": {{{}}}}}",
                     c.batch, c.cycles, c.cycles_per_sample, c.mac_utilisation,
                     c.roofline_cycles ? std::to_string(*c.roofline_cycles) : "null",
                     ratio ? fmt::format("{}", *ratio) : "null", c.energy_pj_per_sample, fmt::join(exits, ", "));
}

std::string network_cost_text(const NetworkCost& c) {
  const auto ratio = c.roofline_ratio();
  std::string exits;
  for (const auto& [name, pj] : c.energy_pj_per_sample_to_exit) exits += fmt::format(" {} {:.2f}", name, pj / 1e6);
  return fmt::format("  batch {:>3}: {:.1f} cycles per sample, MAC utilisation {:.4f}, {}\n"
                     "             energy per sample {:.2f} uJ through every layer; to each exit, uJ:{}\n",
                     c.batch, c.cycles_per_sample, c.mac_utilisation,
                     ratio ? fmt::format("{:.3f}x the roofline bound ({} cycles for the batch)", *ratio,
                                         *c.roofline_cycles)
                           : std::string("no roofline bound (the model gives none on this NPU)"),
                     c.energy_pj_per_sample / 1e6, exits);
}

void run_model(const ModelOptions& o, std::ostream& out) {
  if (o.npu_file.empty() && (o.max_batch || !o.overrides.empty()))
    throw UsageError(fmt::format("model: {} only with --npu FILE", o.max_batch ? "--max-batch" : "--set"));
  const auto net = load_model(o.model, {.strict_scalesim = o.strict});
  if (o.npu_file.empty()) {
    out << (o.json ? model_json(net) : model_text(net));
    return;
  }
  const npu::Npu npu = load_npu_option(o.npu_file, o.overrides);
  const std::uint32_t max_batch = o.max_batch.value_or(16);
  const auto table = control_blocks(npu, net, max_batch);
  std::vector<NetworkCost> costs{network_cost(npu, net, table, 1)};
  if (max_batch > 1) costs.push_back(network_cost(npu, net, table, max_batch));
  if (o.json) {
    // model_json prints one object; the NPU's figures become its last keys.
    std::string json = model_json(net);
    const auto close = json.rfind('}');
    if (close == std::string::npos) throw std::logic_error("model_json printed no JSON object");
    std::vector<std::string> entries;
    for (const auto& c : costs) entries.push_back(network_cost_json(c));
    json.replace(close, std::string::npos,
                 fmt::format(", \"npu\": {}, \"max_batch\": {}, \"npu_cost\": [{}]}}\n",
                             json_string(npu.config().name), max_batch, fmt::join(entries, ", ")));
    out << json;
    return;
  }
  std::ostringstream text;
  text << model_text(net);
  text << fmt::format("on {}, every layer (exit classifiers included) under its control-block entry:\n",
                      npu_label(npu));
  for (const auto& c : costs) text << network_cost_text(c);
  out << text.str();
}

void describe_policies(const std::vector<std::string>& plugins, std::ostream& out) {
  scheduler::PolicyRegistry registry;
  scheduler::register_builtin_policies(registry);
  for (const auto& plugin : plugins) {
    try {
      registry.load_plugin(plugin);
    } catch (const scheduler::PolicyError& e) {
      throw UsageError(fmt::format("--plugin {}: {}", plugin, e.what()));
    }
  }
  std::ostringstream text;
  for (const auto& policy : registry.policies()) {
    text << fmt::format("{:<14} {}{}{}\n", policy.name, policy.analysis_only ? "[analysis only] " : "", policy.summary,
                        policy.origin == "built-in" ? "" : fmt::format(" (from {})", policy.origin));
    for (const auto& p : policy.parameters)
      text << fmt::format("  scheduler.{}.{} ({}, default {}, {}): {}\n", policy.name, p.name, scheduler::to_string(p.type),
                          scheduler::to_string(p.default_value), p.allowed(), p.description);
  }
  out << text.str();
}

// Every NPU key with its type, unit and the default NPU's value, then the presets.
void describe_npu(std::ostream& out) {
  const npu::NpuConfig defaults = default_npu().config();
  std::ostringstream text;
  std::size_t width = 0;
  for (const auto& key : npu_keys()) width = std::max(width, std::string_view(key.path).size());
  for (const auto& key : npu_keys())
    text << fmt::format("npu.{:<{}} {:<23} default {:<13} {}{}\n", key.path, width, key.type, key.show(defaults),
                        key.meaning, std::string(key.unit).empty() ? "" : fmt::format(" ({})", key.unit));
  text << "presets (npu: NAME in a scenario, or --npu configs/npu/NAME.yaml):";
  for (const auto& name : npu_presets()) text << " " << name;
  text << "\n";
  out << text.str();
}

void run_describe(const std::string& what, const std::vector<std::string>& plugins, std::ostream& out) {
  if (!plugins.empty() && what != "policies") throw UsageError("--plugin: only with describe policies");
  if (what == "policies") return describe_policies(plugins, out);
  if (what == "npu") return describe_npu(out);
  if (what != "models") throw UsageError(fmt::format("describe {}: allowed models, policies, npu", what));
  std::ostringstream text;
  for (const auto& entry : model_zoo()) text << fmt::format("{:<14} {}\n", entry.name, entry.description);
  out << text.str();
}

struct RunOptions {
  std::string scenario;
  std::vector<std::string> overrides;
  std::string out_dir;
  bool samples_csv = false;
  std::string trace_file;
  std::string trace_window = "0:1000";
  std::string vcd_file;
  bool ask_every_boundary = false;
  std::string table_cache;
};

// "START:END" in ms of simulated time.
std::pair<double, double> parse_window(const std::string& text) {
  const auto colon = text.find(':');
  const std::string usage = fmt::format("--trace-window {}: allowed START_MS:END_MS with 0 <= START < END", text);
  if (colon == std::string::npos) throw UsageError(usage);
  double start = 0, end = 0;
  try {
    std::size_t used = 0;
    start = std::stod(text.substr(0, colon), &used);
    if (used != colon) throw UsageError(usage);
    end = std::stod(text.substr(colon + 1), &used);
    if (used != text.size() - colon - 1) throw UsageError(usage);
  } catch (const std::logic_error&) {
    throw UsageError(usage);
  }
  if (!(start >= 0 && end > start && end <= 1e9)) throw UsageError(usage);
  return {start, end};
}

// On a terminal, a long run shows how far it is: samples done and simulated time, redrawn at
// most every half second of wall time.
class RunProgress final : public ServingObserver {
 public:
  RunProgress(std::ostream& log, std::uint64_t samples, double duration_s)
      : log_(log), samples_(samples), duration_s_(duration_s), last_(std::chrono::steady_clock::now()) {}
  void on_complete(std::int64_t time_ps, const scheduler::SampleInfo&, std::uint32_t) override {
    if (++done_ % 1024 != 0) return;
    const auto now = std::chrono::steady_clock::now();
    if (now - last_ < std::chrono::milliseconds(500)) return;
    last_ = now;
    const double simulated_s = static_cast<double>(time_ps) / 1e12;
    const std::string line = samples_ ? fmt::format("run: {} of {} samples done", done_, samples_)
                                      : fmt::format("run: {} samples done, {:.0f} of {} s simulated", done_,
                                                    simulated_s, duration_s_);
    log_ << "\r" << line << "   " << std::flush;
    drawn_ = true;
  }
  ~RunProgress() override {
    if (drawn_) log_ << "\r" << std::string(60, ' ') << "\r" << std::flush;
  }

 private:
  std::ostream& log_;
  std::uint64_t samples_;
  double duration_s_;
  std::uint64_t done_ = 0;
  bool drawn_ = false;
  std::chrono::steady_clock::time_point last_;
};

// The file SystemC writes for --vcd FILE: it appends ".vcd" unless the name has it.
std::filesystem::path vcd_path(const std::filesystem::path& file) {
  return file.extension() == ".vcd" ? file : std::filesystem::path(file.string() + ".vcd");
}

void run_scenario(const RunOptions& o, std::ostream& out, std::ostream& err, RunMemo* memo) {
  scheduler::PolicyRegistry registry;
  scheduler::register_builtin_policies(registry);
  const Scenario scenario = load_scenario(o.scenario, o.overrides, registry, memo);
  if (o.samples_csv && o.out_dir.empty()) throw UsageError("--samples-csv needs --out DIR");
  const auto [trace_start_ms, trace_end_ms] = parse_window(o.trace_window);
  const std::filesystem::path dir(o.out_dir);
  bool created = false;
  if (!o.out_dir.empty()) {
    const bool existed = std::filesystem::exists(dir);
    if (existed && !std::filesystem::is_directory(dir))
      throw UsageError(fmt::format("--out {}: exists and is not a directory", o.out_dir));
    // Checked before anything is removed or created: an output never replaces a directory,
    // device or FIFO that happens to carry one of the names. A directory made here holds none
    // (a sweep makes one per point, and each look costs a system call).
    const auto require_outputs_replaceable = [&] {
      for (const char* name : {"metrics.csv", "summary.json", "samples.csv", "scenario.yaml"}) {
        require_replaceable(dir / name);
        require_replaceable(dir / (std::string(name) + ".partial"));
      }
    };
    if (existed) require_outputs_replaceable();
    created = std::filesystem::create_directories(dir);
    if (!created) {
      if (!existed) require_outputs_replaceable();  // made by another process meanwhile
      // A result from an earlier run must not pass for this one's if this one fails.
      for (const char* name : {"metrics.csv", "summary.json", "samples.csv", "scenario.yaml"})
        std::filesystem::remove(dir / name);
    }
  }
  if (!o.trace_file.empty()) {
    require_replaceable(o.trace_file);
    require_replaceable(o.trace_file + ".partial");
  }
  // SystemC writes the VCD itself; it writes to a partial name that is renamed after the run,
  // like every other output.
  const std::filesystem::path vcd_file = o.vcd_file.empty() ? "" : vcd_path(o.vcd_file);
  const std::filesystem::path vcd_partial = o.vcd_file.empty() ? "" : vcd_file.string() + ".partial.vcd";
  if (!o.vcd_file.empty()) {
    require_replaceable(vcd_file);
    require_replaceable(vcd_partial);
  }
  try {
    std::unique_ptr<SampleCsvWriter> csv;
    std::unique_ptr<ChromeTraceWriter> timeline;
    std::unique_ptr<RunProgress> progress;
    std::vector<ServingObserver*> observers;
    if (::isatty(STDERR_FILENO)) {
      progress = std::make_unique<RunProgress>(err, scenario.simulation.samples, scenario.simulation.duration_s);
      observers.push_back(progress.get());
    }
    if (o.samples_csv) {
      csv = std::make_unique<SampleCsvWriter>(dir / "samples.csv", scenario);
      observers.push_back(csv.get());
    }
    if (!o.trace_file.empty()) {
      timeline = std::make_unique<ChromeTraceWriter>(o.trace_file, scenario, trace_start_ms, trace_end_ms);
      observers.push_back(timeline.get());
    }
    const VcdTrace vcd{vcd_partial, static_cast<std::int64_t>(trace_start_ms * 1e9),
                       static_cast<std::int64_t>(trace_end_ms * 1e9)};
    const ServingResult result =
        run_serving(scenario, registry, observers, vcd,
                    {.skip_decisions = !o.ask_every_boundary, .table_cache = o.table_cache, .memo = memo});
    progress.reset();
    if (!o.vcd_file.empty()) {
      require_replaceable(vcd_file);
      std::filesystem::rename(vcd_partial, vcd_file);
    }
    if (timeline) timeline->commit();
    std::ostringstream text;
    print_summary(text, scenario, result);
    if (!o.out_dir.empty()) {
      if (csv) csv->commit();
      // The scenario exactly as run, so a result can be reproduced from its own directory.
      AtomicFile resolved(dir / "scenario.yaml");
      resolved.stream() << "# " << scenario.source << ", resolved by npusim run\n" << resolved_yaml(scenario);
      resolved.commit();
      AtomicFile summary(dir / "summary.json");
      summary.stream() << summary_json(scenario, result);
      summary.commit();
      // Written last: a sweep takes its presence as "this point is done".
      AtomicFile metrics(dir / "metrics.csv");
      metrics.stream() << metrics_csv(result);
      metrics.commit();
      text << fmt::format("wrote {}{}\n", (dir / "summary.json").string(),
                          csv ? fmt::format(" and {}", (dir / "samples.csv").string()) : "");
    }
    out << text.str();
  } catch (...) {
    std::error_code ignored;
    if (!o.vcd_file.empty()) std::filesystem::remove(vcd_partial, ignored);
    if (created) std::filesystem::remove_all(dir, ignored);
    throw;
  }
}

struct TraceOptions {
  std::string scenario;
  std::vector<std::string> overrides;
  std::uint64_t samples = 0;
  std::string out_file;
};

void run_trace(const TraceOptions& o, std::ostream& out) {
  if (o.samples == 0) throw UsageError("--samples 0: allowed at least 1 sample");
  const Scenario scenario = load_scenario(o.scenario, o.overrides);
  traces::ArrivalStream stream(scenario.streams(), scenario.simulation.seed, scenario.base_dir);
  // TraceWriter renames FILE.partial over FILE; neither may be anything but a regular file.
  require_replaceable(o.out_file);
  require_replaceable(o.out_file + ".partial");
  traces::TraceWriter writer(o.out_file);
  std::uint64_t written = 0;
  std::int64_t last_ns = 0;
  while (written < o.samples) {
    const auto sample = stream.next();
    if (!sample) break;
    const auto& device = scenario.devices[sample->device].stream;
    writer.write(sample->arrival_ns, device.name, device.model, sample->exit);
    last_ns = sample->arrival_ns;
    ++written;
  }
  require_replaceable(o.out_file);
  writer.commit();
  out << fmt::format("wrote {} samples from {} devices of scenario {} ({:.3f} s of arrivals) to {}{}\n", written,
                     scenario.devices.size(), scenario.name, static_cast<double>(last_ns) / 1e9, o.out_file,
                     written < o.samples ? " (every arrival process ended before --samples)" : "");
}

// Checks a scenario (plugins included) and prints it fully resolved.
void run_validate(const std::string& file, const std::vector<std::string>& overrides, std::ostream& out) {
  scheduler::PolicyRegistry registry;
  scheduler::register_builtin_policies(registry);
  const Scenario scenario = load_scenario(file, overrides, registry);
  out << "# " << scenario.source << ", resolved by npusim validate: every default written out\n"
      << resolved_yaml(scenario);
}

struct SweepCliOptions {
  std::string file;
  std::vector<std::string> overrides;
  std::string out_dir;
  unsigned jobs = 0;
  std::string backend = "local";
  bool resume = false;
  std::size_t points_per_task = 0;
  std::vector<std::string> slurm_options;
  bool dry_run = false;
};

// A sweep point in a forked copy of this process: the command line the point's own process
// would get, on this process's standard streams, which the sweep has pointed at /dev/null and
// the point's error file.
int run_point_in_process(const std::vector<std::string>& args, RunMemo& memo) {
  std::vector<const char*> argv{"npusim"};
  for (const auto& a : args) argv.push_back(a.c_str());
  return run_cli(static_cast<int>(argv.size()), argv.data(), std::cout, std::cerr, &memo);
}

// Exit status 3 when the sweep ran but some points failed (their errors are in results.csv).
int run_sweep_command(const SweepCliOptions& o, std::ostream& out, std::ostream& err) {
  if (o.out_dir.empty() && !o.dry_run) throw UsageError("sweep: --out DIR is required (or --dry-run)");
  SweepOptions options;
  options.out_dir = o.out_dir;
  options.jobs = o.jobs > 0 ? o.jobs : std::max(1u, std::thread::hardware_concurrency());
  options.backend = o.backend == "slurm" ? SweepBackend::slurm : SweepBackend::local;
  options.resume = o.resume;
  options.points_per_task = o.points_per_task;
  options.slurm_options = o.slurm_options;
  if (!o.slurm_options.empty() && options.backend != SweepBackend::slurm)
    throw UsageError("--slurm-option: only with --backend slurm");
  options.npusim = std::filesystem::read_symlink("/proc/self/exe");
  options.run_point = run_point_in_process;
  options.progress = ::isatty(STDERR_FILENO) != 0;
  // The plan is checked on as many threads as points would run on: --jobs 1 keeps a login
  // node's other cores free, and a Slurm driver (whose jobs are the cluster's) uses one thread
  // unless told.
  const unsigned check_threads = options.backend == SweepBackend::local ? options.jobs : std::max(1u, o.jobs);
  const SweepPlan plan = load_sweep(o.file, o.overrides, check_threads);
  if (o.dry_run) {
    // The expansion only: how many points, and what each sets. Nothing is written.
    std::ostringstream text;
    text << fmt::format("sweep {}: {} points over {} (base {})\n", plan.name, plan.points.size(),
                        plan.parameters.empty() ? "no axes" : fmt::format("{}", fmt::join(plan.parameters, ", ")),
                        plan.base);
    const std::size_t shown = std::min<std::size_t>(plan.points.size(), 10);
    for (std::size_t i = 0; i < shown; ++i)
      text << fmt::format("  point {}: {}\n", plan.points[i].index, fmt::join(plan.points[i].values, ", "));
    if (shown < plan.points.size()) text << fmt::format("  ... and {} more\n", plan.points.size() - shown);
    out << text.str();
    return 0;
  }
  const SweepOutcome outcome = run_sweep(plan, options, err);
  std::vector<std::string> resumed;
  if (outcome.reused) resumed.push_back(fmt::format("{} finished before this run", outcome.reused));
  if (outcome.rerun) resumed.push_back(fmt::format("{} re-run: their results were damaged or empty", outcome.rerun));
  out << fmt::format("sweep {}: {} points, {} ok, {} failed{}; results in {}\n", plan.name, outcome.total,
                     outcome.succeeded, outcome.failed,
                     resumed.empty() ? "" : fmt::format(" ({})", fmt::join(resumed, ", ")),
                     (options.out_dir / "results.csv").string());
  for (const auto& line : outcome.first_errors) out << "  failed: " << line << "\n";
  if (outcome.failed > outcome.first_errors.size())
    out << fmt::format("  ... and {} more (see results.csv)\n", outcome.failed - outcome.first_errors.size());
  return outcome.failed > 0 ? 3 : 0;
}

// Bad input: one line, exit status 2.
int user_error(std::ostream& err, const std::string& message) {
  err << "npusim: error: " << message << "\n";
  return 2;
}

int run_command(int argc, const char* const* argv, std::ostream& out, std::ostream& err, RunMemo* memo) {
  CLI::App app{"npusim: cycle-level simulator of an edge NPU serving early-exit DNNs"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "npusim 0.1.0");

  CostOptions cost;
  auto* cost_cmd = add_cost_command(app, cost);

  TableOptions table;
  auto* table_cmd = app.add_subcommand("table", "FBE control-block table for a network");
  table_cmd->add_option("--npu", table.npu_file, "NPU YAML or SCALE-Sim .cfg file (default: embedded default)");
  table_cmd->add_option("--model", table.model, "Zoo name, network YAML, SCALE-Sim CSV or ONNX model (default resnet56)");
  table_cmd->add_option("--max-batch", table.max_batch, "Largest batch in the table (default 8)");
  table_cmd->add_flag("--json", table.json, "Print the whole table as one JSON object");
  table_cmd->add_option("--set", table.overrides, "Override an NPU key: npu.KEY=VALUE (repeatable)");

  ModelOptions model;
  auto* model_cmd = app.add_subcommand("model", "A network as lowered: layers, GEMM shapes, exits, totals");
  model_cmd->add_option("model", model.model, "Zoo name, network YAML file, SCALE-Sim CSV or ONNX model")->required();
  model_cmd->add_option("--npu", model.npu_file,
                        "NPU YAML or SCALE-Sim .cfg file: also print the whole network's cycles per sample, MAC "
                        "utilisation and roofline ratio at batch 1 and the largest batch");
  model_cmd->add_option("--max-batch", model.max_batch, "With --npu: the largest batch (default 16)");
  model_cmd->add_option("--set", model.overrides, "With --npu: override an NPU key: npu.KEY=VALUE (repeatable)");
  model_cmd->add_flag("--json", model.json, "Print one JSON object");
  model_cmd->add_flag("--strict", model.strict,
                      "SCALE-Sim topology: refuse rows that do not chain instead of joining them by implicit steps");

  TraceOptions trace;
  auto* trace_cmd = app.add_subcommand("trace", "Write the arrival stream a scenario generates as a trace CSV");
  trace_cmd->add_option("scenario", trace.scenario, "Scenario YAML file, or 'default'")->required();
  trace_cmd->add_option("--samples", trace.samples, "Number of samples to write")->required();
  trace_cmd->add_option("--out", trace.out_file, "Output CSV file (written atomically)")->required();
  trace_cmd->add_option("--set", trace.overrides, "Override a scenario key: PATH=VALUE (repeatable)");

  RunOptions run;
  auto* run_cmd = app.add_subcommand("run", "Simulate a scenario: devices stream samples to the NPU under a policy");
  run_cmd->add_option("scenario", run.scenario, "Scenario YAML file, or 'default'")->required();
  run_cmd->add_option("--set", run.overrides, "Override any scenario key: PATH=VALUE, e.g. scheduler.policy=edf (repeatable)");
  run_cmd->add_option("--out", run.out_dir, "Directory for summary.json (and samples.csv)");
  run_cmd->add_flag("--samples-csv", run.samples_csv, "Also write one row per sample to DIR/samples.csv");
  run_cmd->add_option("--trace", run.trace_file, "Write a Chrome trace-event timeline (open it in Perfetto)");
  run_cmd->add_option("--trace-window", run.trace_window, "Simulated time the timeline covers: START_MS:END_MS (default 0:1000)");
  run_cmd->add_option("--vcd", run.vcd_file, "Write a SystemC VCD trace of the FBE registers and the FIFO length (same window)");
  run_cmd->add_flag("--no-decision-skipping", run.ask_every_boundary,
                    "Ask the policy at every layer boundary, even those its horizon covers (same results, slower)");
  run_cmd->add_option("--table-cache", run.table_cache,
                      "Keep the FBE tables in DIR and reuse them in later runs of this build (same results, faster start)");

  std::string validate_file;
  std::vector<std::string> validate_overrides;
  auto* validate_cmd = app.add_subcommand("validate", "Check a scenario and print it fully resolved");
  validate_cmd->add_option("scenario", validate_file, "Scenario YAML file, or 'default'")->required();
  validate_cmd->add_option("--set", validate_overrides, "Override a scenario key: PATH=VALUE (repeatable)");

  SweepCliOptions sweep;
  auto* sweep_cmd = app.add_subcommand("sweep", "Run every point of a sweep file, locally or on Slurm");
  sweep_cmd->add_option("sweep", sweep.file, "Sweep YAML file")->required();
  sweep_cmd->add_option("--out", sweep.out_dir, "Directory for results.csv and each point's results");
  sweep_cmd->add_flag("--dry-run", sweep.dry_run, "Check the sweep and list its points without running them");
  sweep_cmd->add_option("--jobs", sweep.jobs, "Local points run in parallel (default: the number of cores)");
  sweep_cmd->add_option("--backend", sweep.backend, "local or slurm")->check(CLI::IsMember({"local", "slurm"}));
  sweep_cmd->add_flag("--resume", sweep.resume, "Finish a sweep in --out, skipping its finished points");
  sweep_cmd->add_option("--points-per-task", sweep.points_per_task, "Slurm: points per array task (default: 1, or enough for 1000 tasks)");
  sweep_cmd->add_option("--set", sweep.overrides, "Override a scenario key in every point: PATH=VALUE (repeatable)");
  sweep_cmd->add_option("--slurm-option", sweep.slurm_options,
                        "Slurm: an sbatch option, e.g. --slurm-option=--partition=short (repeatable)")
      ->allow_extra_args(false);

  std::string task_dir;
  std::size_t task_index = 0;
  auto* task_cmd = app.add_subcommand("sweep-task", "One Slurm array task of a sweep (used by --backend slurm)");
  task_cmd->group("");  // internal: not listed in --help
  task_cmd->add_option("dir", task_dir, "The sweep's --out directory")->required();
  task_cmd->add_option("--task", task_index, "The array task index")->required();

  std::string describe_what;
  auto* describe_cmd = app.add_subcommand("describe", "List what is built in");
  describe_cmd->add_option("what", describe_what, "models, policies or npu")->required();
  std::vector<std::string> describe_plugins;
  describe_cmd->add_option("--plugin", describe_plugins, "policies: also list the policies of this plugin (repeatable)");

  try {
    app.parse(argc, argv);
    if (cost_cmd->parsed()) run_cost(cost, out);
    if (table_cmd->parsed()) run_table(table, out);
    if (model_cmd->parsed()) run_model(model, out);
    if (describe_cmd->parsed()) run_describe(describe_what, describe_plugins, out);
    if (trace_cmd->parsed()) run_trace(trace, out);
    if (run_cmd->parsed()) run_scenario(run, out, err, memo);
    if (validate_cmd->parsed()) run_validate(validate_file, validate_overrides, out);
    if (sweep_cmd->parsed()) return run_sweep_command(sweep, out, err);
    if (task_cmd->parsed()) run_sweep_task(task_dir, task_index, std::filesystem::read_symlink("/proc/self/exe"),
                                                  run_point_in_process);
    return 0;
  } catch (const CLI::Success& e) {  // --help and --version
    return app.exit(e, out, err);
  } catch (const CLI::ParseError& e) {
    std::string message = e.what();
    for (auto& ch : message)
      if (ch == '\n') ch = ' ';
    return user_error(err, message + " (see npusim --help)");
  } catch (const ConfigError& e) {
    return user_error(err, e.what());
  } catch (const UsageError& e) {
    return user_error(err, e.what());
  } catch (const npu::InvalidMapping& e) {
    return user_error(err, e.what());
  } catch (const npu::NoFeasibleTiling& e) {
    return user_error(err, e.what());
  } catch (const workloads::NetworkError& e) {
    return user_error(err, e.what());
  } catch (const traces::TraceFileError& e) {
    return user_error(err, e.what());
  } catch (const traces::ArrivalSpecError& e) {
    return user_error(err, e.what());
  } catch (const scheduler::PolicyError& e) {
    return user_error(err, e.what());
  } catch (const SweepError& e) {
    return user_error(err, e.what());
  } catch (const OutputError& e) {
    return user_error(err, e.what());
  } catch (const TableCacheError& e) {
    return user_error(err, e.what());
  } catch (const std::filesystem::filesystem_error& e) {
    // Creating or clearing an output directory: a path or permission the user gave.
    return user_error(err, fmt::format("{}: {}", e.path1().string(), e.code().message()));
  } catch (const std::exception& e) {
    // Not the user's fault: say so, and keep exit status 2 for bad input only.
    err << "npusim: internal error: " << e.what() << "\n";
    return 1;
  }
}

}  // namespace

int run_cli(int argc, const char* const* argv, std::ostream& out, std::ostream& err, RunMemo* memo) {
  const int status = run_command(argc, argv, out, err, memo);
  if (status == 2) return status;
  // Output that never arrived (a full disk, a closed pipe, > /dev/full) is a failure, not a
  // success with nothing printed. Flushing std::cout flushes the C stdout beneath it.
  errno = 0;
  out.flush();
  if (out) return status;
  // errno names the reason when the flush itself failed; a write that failed earlier, in the
  // middle of the command, left no reason behind.
  return user_error(err, fmt::format("cannot write standard output: {}",
                                     errno != 0 ? std::strerror(errno) : "a write failed"));
}

}  // namespace npusim::sim
