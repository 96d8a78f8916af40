#include "sim/scenario_yaml.hpp"

#include <cmath>
#include <limits>
#include <set>

#include <fmt/format.h>

#include "sim/config_node.hpp"
#include "sim/embedded_configs.hpp"
#include "sim/network_yaml.hpp"

namespace npusim::sim {
namespace {

traces::ArrivalSpec parse_arrival(const ConfigNode& node) {
  using traces::ProcessKind;
  traces::ArrivalSpec spec;
  spec.kind = static_cast<ProcessKind>(node.at("process").as_choice(traces::process_kind_names(), "an arrival process"));
  const auto number = [&](std::string_view key, double& out, bool required) {
    if (node.has(key)) out = node.at(key).as_double();
    else if (required) node.at(key);  // reports the missing key
  };
  // Each process declares its keys (anything else is an error) and reads them.
  switch (spec.kind) {
    case ProcessKind::poisson:
      node.expect_keys({"process", "rate_hz"});
      number("rate_hz", spec.rate_hz, true);
      break;
    case ProcessKind::periodic:
      node.expect_keys({"process", "fps", "jitter_ms", "phase_ms"});
      number("fps", spec.fps, true);
      number("jitter_ms", spec.jitter_ms, false);
      number("phase_ms", spec.phase_ms, false);
      break;
    case ProcessKind::mmpp:
      node.expect_keys({"process", "rate_hz", "peak_factor", "burst_ms", "gap_ms"});
      number("rate_hz", spec.rate_hz, true);
      number("peak_factor", spec.peak_factor, true);
      number("burst_ms", spec.burst_ms, true);
      number("gap_ms", spec.gap_ms, true);
      break;
    case ProcessKind::on_off:
      node.expect_keys({"process", "rate_hz", "burst_ms", "gap_ms"});
      number("rate_hz", spec.rate_hz, true);
      number("burst_ms", spec.burst_ms, true);
      number("gap_ms", spec.gap_ms, true);
      break;
    case ProcessKind::piecewise:
      node.expect_keys({"process", "schedule"});
      for (const auto& item : node.at("schedule").as_list()) {
        item.expect_keys({"until_ms", "rate_hz"});
        traces::RateSegment segment;
        segment.rate_hz = item.at("rate_hz").as_double();
        segment.until_ms = item.has("until_ms") ? item.at("until_ms").as_double()
                                                : std::numeric_limits<double>::infinity();
        spec.schedule.push_back(segment);
      }
      break;
    case ProcessKind::replay:
      node.expect_keys({"process", "file"});
      spec.file = node.at("file").as_string();
      break;
  }
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

}  // namespace

const std::string& default_scenario_yaml() {
  static const std::string text{embedded::default_scenario_yaml};
  return text;
}

Scenario load_scenario(const std::string& file_or_default, const std::vector<std::string>& overrides) {
  const bool embedded = file_or_default == "default";
  ConfigNode document = embedded
                                  ? ConfigNode::load_text(default_scenario_yaml(), "<embedded configs/scenarios/default.yaml>")
                                  : ConfigNode::load_file(file_or_default);
  for (const auto& assignment : overrides) document.apply_override(assignment);
  document.expect_keys({"scenario"});
  const ConfigNode node = document.at("scenario");
  node.expect_keys({"name", "seed", "devices"});
  Scenario scenario;
  scenario.source = document.source();
  scenario.base_dir = embedded ? std::filesystem::path(".") : std::filesystem::path(file_or_default).parent_path();
  scenario.name = node.at("name").as_string();
  scenario.seed = node.at("seed").as_uint64();
  const auto devices = node.at("devices").as_list();
  if (devices.empty()) node.at("devices").fail("[]", "a list of at least one device");
  std::set<std::string> names;
  for (const auto& d : devices) {
    d.expect_keys({"name", "model", "arrival", "exits"});
    traces::DeviceStream device;
    device.name = d.at("name").as_string();
    if (device.name.empty() || device.name.find(',') != std::string::npos)
      d.at("name").fail(device.name, "a non-empty name without commas");
    if (!names.insert(device.name).second) d.at("name").fail(device.name, "a name no other device has");
    device.model = d.at("model").as_string();
    if (device.model.find(',') != std::string::npos) d.at("model").fail(device.model, "a model name without commas");
    if (!scenario.models.count(device.model))
      scenario.models.emplace(device.model, load_model(resolve_model(device.model, scenario.base_dir)));
    const auto& model = scenario.models.at(device.model);
    device.arrival = parse_arrival(d.at("arrival"));
    device.exit_probabilities = d.has("exits") ? parse_exit_profile(d.at("exits"), model) : model.exit_probabilities();
    scenario.devices.push_back(std::move(device));
  }
  return scenario;
}

}  // namespace npusim::sim
