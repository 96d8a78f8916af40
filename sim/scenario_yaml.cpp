#include "sim/scenario_yaml.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <set>

#include <fmt/format.h>

#include "sim/config_node.hpp"
#include "sim/embedded_configs.hpp"
#include "sim/network_yaml.hpp"
#include "sim/npu_yaml.hpp"
#include "sim/run_memo.hpp"

namespace npusim::sim {
namespace {

// The numeric keys of each arrival process, in the order they are written; piecewise and
// replay have structured keys of their own. Parsing and `npusim validate` share this table.
struct ArrivalField {
  const char* key;
  double traces::ArrivalSpec::*member;
  bool required;
};

const std::vector<ArrivalField>& arrival_fields(traces::ProcessKind kind) {
  using traces::ArrivalSpec;
  using traces::ProcessKind;
  static const std::vector<ArrivalField> poisson{{"rate_hz", &ArrivalSpec::rate_hz, true}};
  static const std::vector<ArrivalField> periodic{{"fps", &ArrivalSpec::fps, true},
                                                  {"jitter_ms", &ArrivalSpec::jitter_ms, false},
                                                  {"phase_ms", &ArrivalSpec::phase_ms, false}};
  static const std::vector<ArrivalField> mmpp{{"rate_hz", &ArrivalSpec::rate_hz, true},
                                              {"peak_factor", &ArrivalSpec::peak_factor, true},
                                              {"burst_ms", &ArrivalSpec::burst_ms, true},
                                              {"gap_ms", &ArrivalSpec::gap_ms, true}};
  static const std::vector<ArrivalField> on_off{{"rate_hz", &ArrivalSpec::rate_hz, true},
                                                {"burst_ms", &ArrivalSpec::burst_ms, true},
                                                {"gap_ms", &ArrivalSpec::gap_ms, true}};
  static const std::vector<ArrivalField> none;
  switch (kind) {
    case ProcessKind::poisson: return poisson;
    case ProcessKind::periodic: return periodic;
    case ProcessKind::mmpp: return mmpp;
    case ProcessKind::on_off: return on_off;
    default: return none;
  }
}

traces::ArrivalSpec parse_arrival(const ConfigNode& node) {
  using traces::ProcessKind;
  traces::ArrivalSpec spec;
  spec.kind = static_cast<ProcessKind>(node.at("process").as_choice(traces::process_kind_names(), "an arrival process"));
  // Each process declares its keys (anything else is an error) and reads them.
  std::vector<std::string> keys{"process"};
  for (const auto& field : arrival_fields(spec.kind)) keys.emplace_back(field.key);
  if (spec.kind == ProcessKind::piecewise) keys.emplace_back("schedule");
  if (spec.kind == ProcessKind::replay) keys.emplace_back("file");
  node.expect_keys(keys);
  for (const auto& field : arrival_fields(spec.kind)) {
    if (node.has(field.key)) spec.*field.member = node.at(field.key).as_double();
    else if (field.required) node.at(field.key);  // reports the missing key
  }
  if (spec.kind == ProcessKind::piecewise) {
    for (const auto& item : node.at("schedule").as_list()) {
      item.expect_keys({"until_ms", "rate_hz"});
      traces::RateSegment segment;
      segment.rate_hz = item.at("rate_hz").as_double();
      segment.until_ms = item.has("until_ms") ? item.at("until_ms").as_double() : std::numeric_limits<double>::infinity();
      spec.schedule.push_back(segment);
    }
  }
  if (spec.kind == ProcessKind::replay) spec.file = node.at("file").as_string();
  try {
    traces::validate(spec);
  } catch (const traces::ArrivalSpecError& e) {
    throw ConfigError(fmt::format("{}: {}.{} = {}: allowed {}", node.deepest(e.key()).where(), node.path(), e.key(),
                                  e.value(), e.allowed()));
  }
  return spec;
}

std::vector<double> parse_exit_profile(const ConfigNode& node, const workloads::LoweredNetwork& model) {
  node.expect_keys({"tilt", "probabilities"});
  const auto base = model.exit_probabilities();
  if (node.has("tilt") == node.has("probabilities"))
    node.fail_here("give exactly one of tilt (shift toward later exits if > 0) or probabilities (one per exit)");
  if (node.has("tilt")) {
    const ConfigNode tilt = node.at("tilt");
    const double value = tilt.as_double();
    if (!(std::fabs(value) <= 50.0)) tilt.fail(tilt.display_value(), "a number in [-50, 50]");
    return traces::tilt_exit_probabilities(base, value);
  }
  const ConfigNode list = node.at("probabilities");
  std::vector<double> p;
  for (const auto& item : list.as_list()) p.push_back(item.as_double());
  if (p.size() != base.size())
    list.fail(fmt::format("{} values", p.size()), fmt::format("{} values, one per exit of {}", base.size(), model.name));
  try {
    traces::ExitSampler check(p);
  } catch (const std::invalid_argument& e) {
    list.fail_here(e.what());
  }
  return p;
}

std::string resolve_model(const std::string& name, const std::filesystem::path& base_dir) {
  return is_zoo_model(name) ? name : (base_dir / name).string();
}

bool starts_with_npu(const std::string& assignment) { return assignment.rfind("npu.", 0) == 0; }

// The pairs of which a scenario gives exactly one: --set of one replaces the other
// (docs/config.md, "Overrides").
const std::vector<ExclusiveKeys>& scenario_exclusive_keys() {
  static const std::vector<ExclusiveKeys> pairs{{"simulation", "samples", "duration_s"},
                                                {"devices[]", "slo_ms", "slo_factor"},
                                                {"devices[].exits", "tilt", "probabilities"}};
  return pairs;
}

// `npu:` is a preset name, a file (relative to the scenario) holding an `npu:` section, or the
// section itself. Overrides of npu.* keys apply to whichever it is. A preset without overrides
// comes from `memo` when there is one: presets are compiled in.
npu::Npu parse_npu(ConfigNode document, const std::vector<std::string>& npu_overrides,
                   const std::filesystem::path& base_dir, RunMemo* memo) {
  const auto preset = [&](const std::string& name, const std::vector<std::string>& overrides) {
    if (!memo || !overrides.empty()) return sim::load_npu_preset(name, overrides);
    return memo->npu_preset(name, [&] { return sim::load_npu_preset(name, overrides); });
  };
  if (!document.has("npu")) return preset("default", npu_overrides);
  const ConfigNode node = document.at("npu");
  if (node.display_value() == "<map>") {
    for (const auto& assignment : npu_overrides) document.apply_override(assignment);
    return load_npu_section(document.at("npu"));
  }
  const std::string name = node.as_string();
  const std::filesystem::path file = base_dir / name;
  if (std::filesystem::is_regular_file(file)) return load_npu_file(file, npu_overrides);
  if (is_npu_preset(name)) return preset(name, npu_overrides);
  // A FIFO, a device or a directory: the reader says which, without reading it.
  std::error_code ec;
  if (std::filesystem::exists(file, ec)) return load_npu_file(file, npu_overrides);
  node.fail(name, fmt::format("an NPU preset ({}), a file relative to the scenario, or an npu mapping",
                              fmt::join(npu_presets(), ", ")));
}

scheduler::ParameterValue parse_parameter(const ConfigNode& node, const scheduler::ParameterSpec& spec) {
  using scheduler::ParameterType;
  scheduler::ParameterValue value;
  switch (spec.type) {
    case ParameterType::integer: {
      const double number = node.as_double();
      if (number != std::floor(number) || std::fabs(number) > 9e15) node.fail(node.display_value(), spec.allowed());
      value = static_cast<std::int64_t>(number);
      break;
    }
    case ParameterType::real: value = node.as_double(); break;
    case ParameterType::boolean: value = node.as_choice({"false", "true"}, "a boolean") == 1; break;
    case ParameterType::choice: value = spec.choices[node.as_choice(spec.choices, "one of")]; break;
  }
  if (!spec.accepts(value)) node.fail(node.display_value(), spec.allowed());
  return value;
}

// Every policy section present is checked against its policy's declarations, so a sweep may
// keep parameters for policies it switches between.
SchedulerConfig parse_scheduler(const ConfigNode& node, scheduler::PolicyRegistry& registry,
                                const std::filesystem::path& base_dir) {
  static const std::vector<std::string> own_keys{"policy", "max_batch", "plugins", "exit_profile"};
  std::vector<std::string> plugins;
  if (node.has("plugins")) {
    for (const auto& item : node.at("plugins").as_list()) {
      const std::string file = item.as_string();
      const std::filesystem::path path = std::filesystem::path(file).is_absolute() ? std::filesystem::path(file) : base_dir / file;
      try {
        registry.load_plugin(path);
        plugins.push_back(std::filesystem::absolute(path).lexically_normal().string());
      } catch (const scheduler::PolicyError& e) {
        item.fail(file, fmt::format("a policy plugin that loads ({})", e.what()));
      }
    }
  }
  SchedulerConfig config;
  config.plugins = plugins;
  config.policy = node.at("policy").as_string();
  if (!registry.find(config.policy))
    node.at("policy").fail(config.policy, fmt::format("a registered policy: {}", fmt::join(registry.names(), ", ")));
  if (node.has("max_batch")) {
    const ConfigNode max_batch = node.at("max_batch");
    config.max_batch = max_batch.as_uint32();
    if (config.max_batch < 1 || config.max_batch > 1024) max_batch.fail(max_batch.display_value(), "1 to 1024 samples");
  }
  if (node.has("exit_profile"))
    config.exit_profile_from_devices = node.at("exit_profile").as_choice({"network", "devices"}, "an exit profile source") == 1;
  std::map<std::string, scheduler::ParameterValue> chosen;
  for (const auto& key : node.keys()) {
    if (std::find(own_keys.begin(), own_keys.end(), key) != own_keys.end()) continue;
    const auto* info = registry.find(key);
    if (!info)
      node.at(key).fail_here(fmt::format("not a known key: allowed keys are {}, or a policy's parameter section: {}",
                                         fmt::join(own_keys, ", "), fmt::join(registry.names(), ", ")));
    const ConfigNode section = node.at(key);
    std::map<std::string, scheduler::ParameterValue> given;
    for (const auto& name : section.keys()) {
      const auto spec = std::find_if(info->parameters.begin(), info->parameters.end(),
                                     [&](const scheduler::ParameterSpec& p) { return p.name == name; });
      if (spec == info->parameters.end()) {
        std::vector<std::string> declared;
        for (const auto& p : info->parameters) declared.push_back(p.name);
        section.at(name).fail_here(fmt::format("not a parameter of policy {}: allowed {}", key,
                                               declared.empty() ? "none" : fmt::format("{}", fmt::join(declared, ", "))));
      }
      given[name] = parse_parameter(section.at(name), *spec);
    }
    if (key == config.policy) chosen = given;
  }
  config.parameters = scheduler::ParameterValues(registry.find(config.policy)->parameters, chosen);
  return config;
}

double positive(const ConfigNode& node, double max, const std::string& unit) {
  const double value = node.as_double();
  if (!(value > 0.0 && value <= max)) node.fail(node.display_value(), fmt::format("a number in (0, {}] {}", max, unit));
  return value;
}

std::vector<DeviceConfig> parse_devices(const ConfigNode& list, const ConfigNode& document, Scenario& scenario,
                                        RunMemo* memo) {
  const auto devices = list.as_list();
  if (devices.empty()) list.fail("[]", "a list of at least one device");
  std::set<std::string> names;
  std::vector<DeviceConfig> out;
  for (const auto& d : devices) {
    d.expect_keys({"name", "model", "count", "arrival", "exits", "slo_ms", "slo_factor", "priority"});
    DeviceConfig device;
    std::string name = d.at("name").as_name();
    if (!d.has("model") && !document.has("model"))
      d.fail_here("no model: give the device a model, or the scenario a top-level model");
    const ConfigNode model_node = d.has("model") ? d.at("model") : document.at("model");
    const std::string model_name = model_node.as_name();
    if (!scenario.models.count(model_name))
      scenario.models.emplace(model_name, memo && is_zoo_model(model_name)
                                              ? memo->zoo_model(model_name, [&] { return load_model(model_name); })
                                              : load_model(resolve_model(model_name, scenario.base_dir)));
    const auto& model = scenario.models.at(model_name);
    device.stream.model = model_name;
    device.stream.arrival = parse_arrival(d.at("arrival"));
    device.stream.exit_probabilities =
        d.has("exits") ? parse_exit_profile(d.at("exits"), model) : model.exit_probabilities();
    if (d.has("slo_ms") == d.has("slo_factor"))
      d.fail_here("give exactly one of slo_ms (absolute) or slo_factor (times the model's isolated batch-1 latency)");
    if (d.has("slo_ms")) device.slo_ms = positive(d.at("slo_ms"), 1e9, "ms");
    else device.slo_factor = positive(d.at("slo_factor"), 1e6, "times the isolated latency");
    if (d.has("priority")) {
      const ConfigNode priority = d.at("priority");
      const double level = priority.as_double();
      if (level != scheduler::low_priority && level != scheduler::medium_priority && level != scheduler::high_priority)
        priority.fail(priority.display_value(), "a priority level: 1 (low), 3 (medium) or 9 (high)");
      device.priority = static_cast<std::uint32_t>(level);
    }
    std::uint32_t count = 1;
    if (d.has("count")) {
      count = d.at("count").as_uint32();
      if (count < 1 || count > 4096) d.at("count").fail(d.at("count").display_value(), "1 to 4096 copies of the device");
    }
    for (std::uint32_t copy = 0; copy < count; ++copy) {
      DeviceConfig instance = device;
      instance.stream.name = count == 1 ? name : fmt::format("{}-{}", name, copy);
      if (!names.insert(instance.stream.name).second) d.at("name").fail(instance.stream.name, "a name no other device has");
      out.push_back(std::move(instance));
    }
  }
  return out;
}

// Arrivals must fall within traces::max_arrival_ns. A random process is only known to on
// average, so this refuses a sample count the devices' mean rate cannot deliver in time; the
// run refuses an unlucky draw past it. A replayed trace's times are checked row by row.
void check_arrival_range(const Scenario& scenario, const ConfigNode& samples) {
  double rate_hz = 0.0;
  for (const auto& d : scenario.devices) {
    if (d.stream.arrival.kind == traces::ProcessKind::replay) return;
    rate_hz += traces::mean_rate_hz(d.stream.arrival);
  }
  const double range_s = static_cast<double>(traces::max_arrival_ns) / 1e9;
  const double count = static_cast<double>(scenario.simulation.samples);
  if (count <= rate_hz * range_s) return;
  const double fits = std::floor(rate_hz * range_s);
  const std::string why = fmt::format(
      "at the devices' mean arrival rate of {:.6g} Hz in all, they would arrive after {:.0f} s, the simulated time "
      "arrivals may use (time is 64-bit picoseconds)",
      rate_hz, range_s);
  samples.fail(samples.display_value(), fits >= 1.0 ? fmt::format("at most {:.0f} samples: {}", fits, why)
                                                    : fmt::format("a higher arrival rate: {}", why));
}

}  // namespace

const std::string& default_scenario_yaml() {
  static const std::string text{embedded::default_scenario_yaml};
  return text;
}

std::string to_string(DropPolicy policy) { return policy == DropPolicy::newest ? "newest" : "oldest"; }

std::vector<traces::DeviceStream> Scenario::streams() const {
  std::vector<traces::DeviceStream> out;
  for (const auto& d : devices) out.push_back(d.stream);
  return out;
}

Scenario load_scenario(const std::string& file_or_default, const std::vector<std::string>& overrides,
                       scheduler::PolicyRegistry& registry, RunMemo* memo) {
  const bool embedded = file_or_default == "default";
  ConfigNode document = embedded ? ConfigNode::load_embedded_text(default_scenario_yaml(), "<embedded configs/scenarios/default.yaml>")
                                 : ConfigNode::load_composed(file_or_default);
  std::vector<std::string> npu_overrides;
  for (const auto& assignment : overrides) {
    if (starts_with_npu(assignment)) npu_overrides.push_back(assignment);
    else document.apply_override(assignment, scenario_exclusive_keys());
  }
  document.expect_keys({"name", "npu", "model", "devices", "scheduler", "serving", "simulation", "metrics"});
  Scenario scenario;
  scenario.source = document.source();
  scenario.base_dir = embedded ? std::filesystem::path(".") : std::filesystem::path(file_or_default).parent_path();
  if (document.has("name")) {
    scenario.name = document.at("name").as_name();
  } else {
    scenario.name = std::filesystem::path(file_or_default).stem().string();
    if (!traces::is_valid_name(scenario.name))
      throw ConfigError(fmt::format("{}: the scenario's name (its file name without .yaml) = {}: allowed {}, or a name: key",
                                    document.source(), traces::printable(scenario.name), traces::name_rule));
  }
  scenario.npu = parse_npu(document, npu_overrides, scenario.base_dir, memo);
  scenario.devices = parse_devices(document.at("devices"), document, scenario, memo);

  const ConfigNode scheduler_node = document.at("scheduler");
  scenario.scheduler = parse_scheduler(scheduler_node, registry, scenario.base_dir);

  if (document.has("serving")) {
    const ConfigNode node = document.at("serving");
    node.expect_keys({"fifo_capacity", "drop", "preemption_depth", "context_buffer_kib"});
    auto& serving = scenario.serving;
    if (node.has("fifo_capacity")) {
      serving.fifo_capacity = node.at("fifo_capacity").as_uint64();
      if (serving.fifo_capacity < 1 || serving.fifo_capacity > 100'000'000)
        node.at("fifo_capacity").fail(node.at("fifo_capacity").display_value(), "1 to 100000000 samples");
    }
    if (node.has("drop")) serving.drop = static_cast<DropPolicy>(node.at("drop").as_choice({"newest", "oldest"}, "a drop policy"));
    if (node.has("preemption_depth")) {
      serving.preemption_depth = node.at("preemption_depth").as_uint32();
      if (serving.preemption_depth > 64)
        node.at("preemption_depth").fail(node.at("preemption_depth").display_value(), "0 (no preemption) to 64");
    }
    if (node.has("context_buffer_kib")) {
      const ConfigNode kib = node.at("context_buffer_kib");
      const std::uint64_t value = kib.as_uint64();
      if (value > (std::uint64_t{1} << 30)) kib.fail(kib.display_value(), "0 to 1073741824 KiB");
      serving.context_buffer_bytes = value * 1024;
    }
  }

  const ConfigNode simulation = document.at("simulation");
  simulation.expect_keys({"seed", "samples", "duration_s"});
  scenario.simulation.seed = simulation.at("seed").as_uint64();
  if (simulation.has("samples") == simulation.has("duration_s"))
    simulation.fail_here("give exactly one of samples (arrivals to simulate) or duration_s (seconds of arrivals)");
  if (simulation.has("samples")) {
    const ConfigNode samples = simulation.at("samples");
    scenario.simulation.samples = samples.as_uint64();
    if (scenario.simulation.samples < 1 || scenario.simulation.samples > 1'000'000'000'000ULL)
      samples.fail(samples.display_value(), "1 to 1e12 samples");
    check_arrival_range(scenario, samples);
  } else {
    scenario.simulation.duration_s = positive(simulation.at("duration_s"), 1e6, "s");
  }

  if (document.has("metrics")) {
    const ConfigNode node = document.at("metrics");
    node.expect_keys({"tail_window_ms", "tail_percentile", "exact_percentile_samples"});
    auto& metrics = scenario.metrics;
    if (node.has("tail_window_ms")) metrics.tail_window_ms = positive(node.at("tail_window_ms"), 1e9, "ms");
    if (node.has("tail_percentile")) metrics.tail_percentile = positive(node.at("tail_percentile"), 100.0, "percent");
    if (node.has("exact_percentile_samples")) {
      const ConfigNode limit = node.at("exact_percentile_samples");
      metrics.exact_percentile_samples = limit.as_uint64();
      if (metrics.exact_percentile_samples > 100'000'000)
        limit.fail(limit.display_value(), "0 to 100000000 samples kept for exact percentiles");
    }
  }
  return scenario;
}

namespace {

// Doubles in their shortest form that reads back to the same value (0.06, not 0.0599...).
std::string num(double value) { return fmt::format("{}", value); }

void emit_npu(YAML::Emitter& out, const npu::NpuConfig& c) {
  out << YAML::Key << "npu" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "name" << YAML::Value << c.name;
  out << YAML::Key << "clock_mhz" << YAML::Value << c.clock_mhz;
  out << YAML::Key << "array" << YAML::Value << npu::to_string(c.array);
  if (c.array == npu::ArrayKind::systolic) {
    out << YAML::Key << "systolic" << YAML::Value << YAML::Flow << YAML::BeginMap;
    out << YAML::Key << "rows" << YAML::Value << c.systolic.rows;
    out << YAML::Key << "cols" << YAML::Value << c.systolic.cols;
    out << YAML::Key << "dataflow" << YAML::Value << npu::to_string(c.systolic.dataflow);
    out << YAML::Key << "stall_free" << YAML::Value << c.systolic.stall_free << YAML::EndMap;
  } else {
    out << YAML::Key << "pe_count" << YAML::Value << c.pe_count;
    out << YAML::Key << "pe_width" << YAML::Value << c.pe_width;
    out << YAML::Key << "input_rows" << YAML::Value << c.input_rows;
  }
  out << YAML::Key << "element_bytes" << YAML::Value << c.element_bytes;
  out << YAML::Key << "accumulator_bytes" << YAML::Value << c.accumulator_bytes;
  out << YAML::Key << "vector_lanes" << YAML::Value << c.vector_lanes;
  out << YAML::Key << "buffers" << YAML::Value << YAML::Flow << YAML::BeginMap;
  out << YAML::Key << "input_kib" << YAML::Value << c.buffers.input_bytes / 1024;
  out << YAML::Key << "weight_kib" << YAML::Value << c.buffers.weight_bytes / 1024;
  out << YAML::Key << "output_kib" << YAML::Value << c.buffers.output_bytes / 1024 << YAML::EndMap;
  out << YAML::Key << "offchip" << YAML::Value << YAML::Flow << YAML::BeginMap;
  out << YAML::Key << "bandwidth_gb_per_s" << YAML::Value << num(c.offchip.bandwidth_gb_per_s);
  out << YAML::Key << "latency_ns" << YAML::Value << c.offchip.latency_ns;
  out << YAML::Key << "queue_depth" << YAML::Value << c.offchip.queue_depth << YAML::EndMap;
  out << YAML::Key << "fuse_epilogue" << YAML::Value << c.fuse_epilogue;
  out << YAML::Key << "keep_activations_on_chip" << YAML::Value << c.keep_activations_on_chip;
  out << YAML::Key << "batching" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "modes" << YAML::Value << YAML::Flow << YAML::BeginSeq;
  for (auto m : c.modes) out << npu::to_string(m);
  out << YAML::EndSeq << YAML::Key << "stack_factors" << YAML::Value << YAML::Flow << YAML::BeginSeq;
  for (auto k : c.stack_factors) out << k;
  out << YAML::EndSeq << YAML::EndMap;
  // Energies as given (a table's values included); those left out stay derived on reload.
  const npu::EnergyConfig& e = c.energy;
  out << YAML::Key << "energy" << YAML::Value << YAML::Flow << YAML::BeginMap;
  out << YAML::Key << "node_nm" << YAML::Value << num(e.node_nm);
  out << YAML::Key << "supply_v" << YAML::Value << num(e.supply_v);
  for (const auto& [key, value] : {std::pair{"mac_pj", e.mac_pj}, std::pair{"vector_op_pj", e.vector_op_pj},
                                   std::pair{"input_buffer_pj_per_byte", e.input_buffer_pj_per_byte},
                                   std::pair{"weight_buffer_pj_per_byte", e.weight_buffer_pj_per_byte},
                                   std::pair{"output_buffer_pj_per_byte", e.output_buffer_pj_per_byte}})
    if (value) out << YAML::Key << key << YAML::Value << num(*value);
  out << YAML::Key << "dram_pj_per_byte" << YAML::Value << num(e.dram_pj_per_byte);
  out << YAML::Key << "static_mw" << YAML::Value << num(e.static_mw) << YAML::EndMap;
  out << YAML::EndMap;
}

void emit_arrival(YAML::Emitter& out, const traces::ArrivalSpec& a, const std::filesystem::path& base_dir) {
  using traces::ProcessKind;
  out << YAML::Key << "arrival" << YAML::Value << YAML::Flow << YAML::BeginMap;
  out << YAML::Key << "process" << YAML::Value << traces::to_string(a.kind);
  const auto put = [&](const char* key, double value) { out << YAML::Key << key << YAML::Value << num(value); };
  for (const auto& field : arrival_fields(a.kind)) put(field.key, a.*field.member);
  if (a.kind == ProcessKind::piecewise) {
    out << YAML::Key << "schedule" << YAML::Value << YAML::BeginSeq;
    for (const auto& segment : a.schedule) {
      out << YAML::BeginMap;
      if (std::isfinite(segment.until_ms)) put("until_ms", segment.until_ms);
      put("rate_hz", segment.rate_hz);
      out << YAML::EndMap;
    }
    out << YAML::EndSeq;
  }
  if (a.kind == ProcessKind::replay)
    out << YAML::Key << "file" << YAML::Value << std::filesystem::absolute(base_dir / a.file).lexically_normal().string();
  out << YAML::EndMap;
}

}  // namespace

std::string resolved_yaml(const Scenario& s) {
  YAML::Emitter out;
  out << YAML::BeginMap;
  out << YAML::Key << "name" << YAML::Value << s.name;
  emit_npu(out, s.npu.config());
  out << YAML::Key << "devices" << YAML::Value << YAML::BeginSeq;
  for (const auto& d : s.devices) {
    out << YAML::BeginMap;
    out << YAML::Key << "name" << YAML::Value << d.stream.name;
    out << YAML::Key << "model" << YAML::Value
        << (is_zoo_model(d.stream.model) ? d.stream.model
                                         : std::filesystem::absolute(s.base_dir / d.stream.model).lexically_normal().string());
    emit_arrival(out, d.stream.arrival, s.base_dir);
    out << YAML::Key << "exits" << YAML::Value << YAML::Flow << YAML::BeginMap << YAML::Key << "probabilities"
        << YAML::Value << YAML::Flow << YAML::BeginSeq;
    for (const double p : d.stream.exit_probabilities) out << num(p);
    out << YAML::EndSeq << YAML::EndMap;
    if (d.slo_ms) out << YAML::Key << "slo_ms" << YAML::Value << num(*d.slo_ms);
    else out << YAML::Key << "slo_factor" << YAML::Value << num(*d.slo_factor);
    out << YAML::Key << "priority" << YAML::Value << d.priority;
    out << YAML::EndMap;
  }
  out << YAML::EndSeq;
  out << YAML::Key << "scheduler" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "policy" << YAML::Value << s.scheduler.policy;
  out << YAML::Key << "max_batch" << YAML::Value << s.scheduler.max_batch;
  out << YAML::Key << "exit_profile" << YAML::Value << (s.scheduler.exit_profile_from_devices ? "devices" : "network");
  if (!s.scheduler.plugins.empty()) out << YAML::Key << "plugins" << YAML::Value << YAML::Flow << s.scheduler.plugins;
  if (!s.scheduler.parameters.all().empty()) {
    out << YAML::Key << s.scheduler.policy << YAML::Value << YAML::BeginMap;
    for (const auto& [name, value] : s.scheduler.parameters.all()) {
      out << YAML::Key << name << YAML::Value;
      if (const auto* i = std::get_if<std::int64_t>(&value)) out << *i;
      else if (const auto* d = std::get_if<double>(&value)) out << num(*d);
      else if (const auto* word = std::get_if<std::string>(&value)) out << *word;
      else out << std::get<bool>(value);
    }
    out << YAML::EndMap;
  }
  out << YAML::EndMap;
  out << YAML::Key << "serving" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "fifo_capacity" << YAML::Value << s.serving.fifo_capacity;
  out << YAML::Key << "drop" << YAML::Value << to_string(s.serving.drop);
  out << YAML::Key << "preemption_depth" << YAML::Value << s.serving.preemption_depth;
  out << YAML::Key << "context_buffer_kib" << YAML::Value
      << s.serving.context_buffer_bytes.value_or(0) / 1024;
  out << YAML::EndMap;
  out << YAML::Key << "simulation" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "seed" << YAML::Value << s.simulation.seed;
  if (s.simulation.samples > 0) out << YAML::Key << "samples" << YAML::Value << s.simulation.samples;
  else out << YAML::Key << "duration_s" << YAML::Value << num(s.simulation.duration_s);
  out << YAML::EndMap;
  out << YAML::Key << "metrics" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "tail_window_ms" << YAML::Value << num(s.metrics.tail_window_ms);
  out << YAML::Key << "tail_percentile" << YAML::Value << num(s.metrics.tail_percentile);
  out << YAML::Key << "exact_percentile_samples" << YAML::Value << s.metrics.exact_percentile_samples;
  out << YAML::EndMap << YAML::EndMap;
  return std::string(out.c_str()) + "\n";
}

Scenario load_scenario(const std::string& file_or_default, const std::vector<std::string>& overrides) {
  scheduler::PolicyRegistry registry;
  scheduler::register_builtin_policies(registry);
  return load_scenario(file_or_default, overrides, registry);
}

}  // namespace npusim::sim
