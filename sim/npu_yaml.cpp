#include "sim/npu_yaml.hpp"

#include <fmt/format.h>

#include "sim/embedded_configs.hpp"

namespace npusim::sim {
namespace {

void read_optional(const ConfigNode& node, std::string_view key, std::uint32_t& out) {
  if (node.has(key)) out = node.at(key).as_uint32();
}

void read_kib(const ConfigNode& node, std::string_view key, std::uint64_t& bytes) {
  if (node.has(key)) bytes = std::uint64_t{node.at(key).as_uint32()} * 1024;
}

npu::BatchingMode parse_mode(const ConfigNode& item) {
  static const std::vector<std::string> modes{"r", "p", "fluid"};
  static constexpr npu::BatchingMode values[] = {npu::BatchingMode::r_batching, npu::BatchingMode::p_batching,
                                                 npu::BatchingMode::fluid};
  return values[item.as_choice(modes, "a batching mode")];
}

}  // namespace

npu::NpuConfig parse_npu_config(const ConfigNode& node) {
  node.expect_keys({"name", "clock_mhz", "pe_count", "pe_width", "input_rows", "element_bytes",
                    "accumulator_bytes", "vector_lanes", "buffers", "offchip", "batching"});
  npu::NpuConfig config;
  if (node.has("name")) config.name = node.at("name").as_string();
  read_optional(node, "clock_mhz", config.clock_mhz);
  read_optional(node, "pe_count", config.pe_count);
  read_optional(node, "pe_width", config.pe_width);
  read_optional(node, "input_rows", config.input_rows);
  read_optional(node, "element_bytes", config.element_bytes);
  read_optional(node, "accumulator_bytes", config.accumulator_bytes);
  read_optional(node, "vector_lanes", config.vector_lanes);
  if (node.has("buffers")) {
    const ConfigNode buffers = node.at("buffers");
    buffers.expect_keys({"input_kib", "weight_kib", "output_kib"});
    read_kib(buffers, "input_kib", config.buffers.input_bytes);
    read_kib(buffers, "weight_kib", config.buffers.weight_bytes);
    read_kib(buffers, "output_kib", config.buffers.output_bytes);
  }
  if (node.has("offchip")) {
    const ConfigNode offchip = node.at("offchip");
    offchip.expect_keys({"bandwidth_gbps", "latency_ns"});
    if (offchip.has("bandwidth_gbps"))
      config.offchip.bandwidth_gbps = offchip.at("bandwidth_gbps").as_double();
    read_optional(offchip, "latency_ns", config.offchip.latency_ns);
  }
  if (node.has("batching")) {
    const ConfigNode batching = node.at("batching");
    batching.expect_keys({"modes", "stack_factors"});
    if (batching.has("modes")) {
      config.modes.clear();
      for (const auto& item : batching.at("modes").as_list()) config.modes.push_back(parse_mode(item));
    }
    if (batching.has("stack_factors")) {
      config.stack_factors.clear();
      for (const auto& item : batching.at("stack_factors").as_list())
        config.stack_factors.push_back(item.as_uint32());
    }
  }
  return config;
}

npu::Npu load_npu(const ConfigNode& document) {
  document.expect_keys({"npu"});
  return load_npu_section(document.at("npu"));
}

npu::Npu load_npu_section(const ConfigNode& node) {
  const npu::NpuConfig config = parse_npu_config(node);
  try {
    return npu::Npu::validate(config);
  } catch (const npu::NpuConfigError& e) {
    throw ConfigError(fmt::format("{}: npu.{} = {}: allowed {}", node.deepest(e.key()).where(), e.key(),
                                  e.value(), e.allowed()));
  }
}

namespace {

npu::Npu load_with_overrides(ConfigNode document, const std::vector<std::string>& overrides) {
  for (const auto& assignment : overrides) document.apply_override(assignment);
  return load_npu(document);
}

}  // namespace

npu::Npu load_npu_file(const std::filesystem::path& file, const std::vector<std::string>& overrides) {
  return load_with_overrides(ConfigNode::load_file(file), overrides);
}

const std::string& default_npu_yaml() {
  static const std::string text{embedded::default_npu_yaml};
  return text;
}

npu::Npu default_npu(const std::vector<std::string>& overrides) {
  return load_npu_preset("default", overrides);
}

std::vector<std::string> npu_presets() {
  std::vector<std::string> names;
  for (const auto& preset : embedded::npu_presets) names.emplace_back(preset.name);
  return names;
}

bool is_npu_preset(const std::string& name) {
  for (const auto& preset : embedded::npu_presets)
    if (name == preset.name) return true;
  return false;
}

npu::Npu load_npu_preset(const std::string& name, const std::vector<std::string>& overrides) {
  for (const auto& preset : embedded::npu_presets)
    if (name == preset.name)
      return load_with_overrides(ConfigNode::load_text(preset.text, fmt::format("<embedded configs/npu/{}.yaml>", name)),
                                 overrides);
  throw ConfigError(fmt::format("{} is not an NPU preset: allowed {}", name, fmt::join(npu_presets(), ", ")));
}

}  // namespace npusim::sim
