#include "sim/npu_yaml.hpp"

#include <algorithm>
#include <cmath>
#include <map>

#include <fmt/format.h>

#include "sim/embedded_configs.hpp"
#include "sim/scalesim_cfg.hpp"

namespace npusim::sim {
namespace {

npu::BatchingMode parse_mode(const ConfigNode& item) {
  static const std::vector<std::string> modes{"r", "p", "fluid"};
  static constexpr npu::BatchingMode values[] = {npu::BatchingMode::r_batching, npu::BatchingMode::p_batching,
                                                 npu::BatchingMode::fluid};
  return values[item.as_choice(modes, "a batching mode")];
}

npu::ArrayKind parse_array(const ConfigNode& item) {
  return item.as_choice({"dot_product", "systolic"}, "an array kind") == 1 ? npu::ArrayKind::systolic
                                                                          : npu::ArrayKind::dot_product;
}

npu::Dataflow parse_dataflow(const ConfigNode& item) {
  static constexpr npu::Dataflow values[] = {npu::Dataflow::output_stationary, npu::Dataflow::weight_stationary,
                                             npu::Dataflow::input_stationary};
  return values[item.as_choice({"os", "ws", "is"}, "a dataflow")];
}

// Keys that describe only one kind of array. Giving them for the other kind is a mistake the
// user should hear about rather than a value silently ignored.
const std::vector<std::string> dot_product_only_keys{"pe_count", "pe_width", "input_rows"};

void check_array_specific_keys(const ConfigNode& node, const npu::NpuConfig& config) {
  if (config.array == npu::ArrayKind::systolic) {
    for (const auto& key : dot_product_only_keys)
      if (node.has(key))
        node.at(key).fail_here(
            "applies to array: dot_product; a systolic array is sized by systolic.rows and systolic.cols");
  } else if (node.has("systolic")) {
    node.at("systolic").fail_here("applies to array: systolic (this NPU's array is dot_product)");
  }
}

// Keys that were renamed. A file that still has one is refused with the new name: the generic
// unknown-key error would leave the user to guess which allowed key it became.
struct RenamedKey {
  const char* section;  // below `npu`
  const char* old_key;
  const char* new_path;
  const char* reason;
};
constexpr RenamedKey renamed_keys[] = {
    {"offchip", "bandwidth_gbps", "offchip.bandwidth_gb_per_s", "bandwidth is in gigabytes per second"},
};

void refuse_renamed_keys(const ConfigNode& node) {
  for (const auto& renamed : renamed_keys) {
    if (!node.has(renamed.section) || !node.at(renamed.section).has(renamed.old_key)) continue;
    const ConfigNode old = node.at(renamed.section).at(renamed.old_key);
    throw ConfigError(fmt::format("{}: {} = {}: renamed: {}; use {}.{} = {}", old.where(), old.path(),
                                  old.display_value(), renamed.reason, node.path(), renamed.new_path,
                                  old.display_value()));
  }
}

// The actions an energy table may price: the `energy` keys that are energies.
struct EnergyAction {
  const char* name;
  std::optional<double> npu::EnergyConfig::*optional_field;
  double npu::EnergyConfig::*field;
};
constexpr EnergyAction energy_actions[] = {
    {"mac_pj", &npu::EnergyConfig::mac_pj, nullptr},
    {"vector_op_pj", &npu::EnergyConfig::vector_op_pj, nullptr},
    {"input_buffer_pj_per_byte", &npu::EnergyConfig::input_buffer_pj_per_byte, nullptr},
    {"weight_buffer_pj_per_byte", &npu::EnergyConfig::weight_buffer_pj_per_byte, nullptr},
    {"output_buffer_pj_per_byte", &npu::EnergyConfig::output_buffer_pj_per_byte, nullptr},
    {"dram_pj_per_byte", nullptr, &npu::EnergyConfig::dram_pj_per_byte},
    {"static_mw", nullptr, &npu::EnergyConfig::static_mw},
};

double read_energy_value(const ConfigNode& node) {
  const double value = node.as_double();
  if (!std::isfinite(value) || value < 0.0) node.fail(node.display_value(), "a finite number >= 0");
  return value;
}

// An energy table file (docs/config.md, "Energy tables"): one mapping `energy_table` of action
// names to energies, read relative to the file that names it. Keys given beside `table` in the
// `energy` section win over the table's.
void read_energy_table(const ConfigNode& node, npu::EnergyConfig& energy) {
  std::filesystem::path file = node.as_string();
  const std::filesystem::path from = node.source_file();
  if (file.is_relative() && !from.empty() && from.string().front() != '<') file = from.parent_path() / file;
  const ConfigNode document = ConfigNode::load_file(file);
  document.expect_keys({"energy_table"});
  const ConfigNode table = document.at("energy_table");
  std::vector<std::string> names;
  for (const auto& action : energy_actions) names.emplace_back(action.name);
  table.expect_keys(names);
  for (const auto& action : energy_actions) {
    if (!table.has(action.name)) continue;
    const double value = read_energy_value(table.at(action.name));
    if (action.optional_field) energy.*action.optional_field = value;
    else energy.*action.field = value;
  }
  energy.table = file.string();
}

std::string show_energy(double value) { return fmt::format("{:.4g}", value); }

}  // namespace

const std::vector<NpuKey>& npu_keys() {
  using C = npu::NpuConfig;
  const auto u32 = [](std::uint32_t C::*field) {
    return [field](const ConfigNode& n, C& c) { c.*field = n.as_uint32(); };
  };
  const auto show_u32 = [](std::uint32_t C::*field) {
    return [field](const C& c) { return std::to_string(c.*field); };
  };
  const auto kib = [](std::uint64_t npu::BufferConfig::*field) {
    return [field](const ConfigNode& n, C& c) { c.buffers.*field = std::uint64_t{n.as_uint32()} * 1024; };
  };
  const auto show_kib = [](std::uint64_t npu::BufferConfig::*field) {
    return [field](const C& c) { return std::to_string(c.buffers.*field / 1024); };
  };
  // A field that is a double or an optional one (a default derived when absent).
  const auto read_energy = [](auto npu::EnergyConfig::*field) {
    return [field](const ConfigNode& n, C& c) { c.energy.*field = read_energy_value(n); };
  };
  const auto show_resolved = [](double npu::EnergyTable::*field) {
    return [field](const C& c) { return show_energy(npu::resolve_energy(c).*field); };
  };
  static const std::vector<NpuKey> keys{
      {"name", "string", "", "appears in reports", [](const ConfigNode& n, C& c) { c.name = n.as_name(); },
       [](const C& c) { return c.name; }},
      {"clock_mhz", "integer", "MHz", "NPU clock", u32(&C::clock_mhz), show_u32(&C::clock_mhz)},
      {"array", "dot_product or systolic", "", "the PE array: fluid-batching dot-product PEs or a systolic array",
       [](const ConfigNode& n, C& c) { c.array = parse_array(n); },
       [](const C& c) { return npu::to_string(c.array); }},
      {"pe_count", "integer", "PEs", "T_C: processing elements, each holding one weight column", u32(&C::pe_count),
       show_u32(&C::pe_count)},
      {"pe_width", "integer", "multipliers", "T_P: the dot-product width of a PE", u32(&C::pe_width),
       show_u32(&C::pe_width)},
      {"input_rows", "integer", "rows", "T_R: rows of the input tile broadcast to every PE", u32(&C::input_rows),
       show_u32(&C::input_rows)},
      {"systolic.rows", "integer", "PEs", "systolic array height (SCALE-Sim ArrayHeight)",
       [](const ConfigNode& n, C& c) { c.systolic.rows = n.as_uint32(); },
       [](const C& c) { return std::to_string(c.systolic.rows); }},
      {"systolic.cols", "integer", "PEs", "systolic array width (SCALE-Sim ArrayWidth)",
       [](const ConfigNode& n, C& c) { c.systolic.cols = n.as_uint32(); },
       [](const C& c) { return std::to_string(c.systolic.cols); }},
      {"systolic.dataflow", "os, ws or is", "", "output-, weight- or input-stationary",
       [](const ConfigNode& n, C& c) { c.systolic.dataflow = parse_dataflow(n); },
       [](const C& c) { return npu::to_string(c.systolic.dataflow); }},
      {"systolic.stall_free", "boolean", "", "memory never stalls the array (SCALE-Sim's InterfaceBandwidth CALC)",
       [](const ConfigNode& n, C& c) { c.systolic.stall_free = n.as_choice({"false", "true"}, "a boolean") == 1; },
       [](const C& c) { return c.systolic.stall_free ? std::string("true") : std::string("false"); }},
      {"element_bytes", "integer", "bytes", "activation and weight size", u32(&C::element_bytes),
       show_u32(&C::element_bytes)},
      {"accumulator_bytes", "integer", "bytes", "accumulator size", u32(&C::accumulator_bytes),
       show_u32(&C::accumulator_bytes)},
      {"vector_lanes", "integer", "ops/cycle", "pooling and element-wise throughput", u32(&C::vector_lanes),
       show_u32(&C::vector_lanes)},
      {"buffers.input_kib", "integer", "KiB", "input buffer", kib(&npu::BufferConfig::input_bytes),
       show_kib(&npu::BufferConfig::input_bytes)},
      {"buffers.weight_kib", "integer", "KiB", "weight buffer", kib(&npu::BufferConfig::weight_bytes),
       show_kib(&npu::BufferConfig::weight_bytes)},
      {"buffers.output_kib", "integer", "KiB", "output (accumulator) buffer", kib(&npu::BufferConfig::output_bytes),
       show_kib(&npu::BufferConfig::output_bytes)},
      {"offchip.bandwidth_gb_per_s", "number", "GB/s", "off-chip channel bandwidth (10^9 bytes/s)",
       [](const ConfigNode& n, C& c) { c.offchip.bandwidth_gb_per_s = n.as_double(); },
       [](const C& c) { return fmt::format("{}", c.offchip.bandwidth_gb_per_s); }},
      {"offchip.latency_ns", "integer", "ns", "off-chip request latency",
       [](const ConfigNode& n, C& c) { c.offchip.latency_ns = n.as_uint32(); },
       [](const C& c) { return std::to_string(c.offchip.latency_ns); }},
      {"offchip.queue_depth", "integer", "requests", "requests the DMA engine keeps outstanding",
       [](const ConfigNode& n, C& c) { c.offchip.queue_depth = n.as_uint32(); },
       [](const C& c) { return std::to_string(c.offchip.queue_depth); }},
      {"fuse_epilogue", "boolean", "", "run an element-wise add in the epilogue of the GEMM before it",
       [](const ConfigNode& n, C& c) { c.fuse_epilogue = n.as_choice({"false", "true"}, "a boolean") == 1; },
       [](const C& c) { return c.fuse_epilogue ? std::string("true") : std::string("false"); }},
      {"keep_activations_on_chip", "boolean", "", "activations stay in the input buffer for the layers that read them",
       [](const ConfigNode& n, C& c) { c.keep_activations_on_chip = n.as_choice({"false", "true"}, "a boolean") == 1; },
       [](const C& c) { return c.keep_activations_on_chip ? std::string("true") : std::string("false"); }},
      {"batching.modes", "list of r, p, fluid", "", "batch layouts the hardware supports (r is required)",
       [](const ConfigNode& n, C& c) {
         c.modes.clear();
         for (const auto& item : n.as_list()) c.modes.push_back(parse_mode(item));
       },
       [](const C& c) {
         std::vector<std::string> names;
         for (auto m : c.modes) names.push_back(npu::to_string(m));
         return fmt::format("[{}]", fmt::join(names, ", "));
       }},
      {"batching.stack_factors", "list of integers", "", "k values of the stackable PEs (1 is required)",
       [](const ConfigNode& n, C& c) {
         c.stack_factors.clear();
         for (const auto& item : n.as_list()) c.stack_factors.push_back(item.as_uint32());
       },
       [](const C& c) { return fmt::format("[{}]", fmt::join(c.stack_factors, ", ")); }},
      {"energy.table", "file name", "", "an energy table (energy_table: action -> energy); keys beside it win",
       [](const ConfigNode& n, C& c) { read_energy_table(n, c.energy); },
       [](const C& c) { return c.energy.table.empty() ? std::string("none") : c.energy.table; }},
      {"energy.node_nm", "number", "nm", "process node the default energies are scaled to",
       [](const ConfigNode& n, C& c) { c.energy.node_nm = n.as_double(); },
       [](const C& c) { return show_energy(c.energy.node_nm); }},
      {"energy.supply_v", "number", "V", "supply voltage the default energies are scaled to",
       [](const ConfigNode& n, C& c) { c.energy.supply_v = n.as_double(); },
       [](const C& c) { return show_energy(c.energy.supply_v); }},
      {"energy.mac_pj", "number", "pJ", "one multiply-accumulate (default: 8-bit mult + 32-bit add, scaled)",
       read_energy(&npu::EnergyConfig::mac_pj), show_resolved(&npu::EnergyTable::mac_pj)},
      {"energy.vector_op_pj", "number", "pJ", "one vector-path add, max or compare (default: 32-bit add, scaled)",
       read_energy(&npu::EnergyConfig::vector_op_pj), show_resolved(&npu::EnergyTable::vector_op_pj)},
      {"energy.input_buffer_pj_per_byte", "number", "pJ/byte", "input buffer byte read or written (default: by capacity)",
       read_energy(&npu::EnergyConfig::input_buffer_pj_per_byte),
       show_resolved(&npu::EnergyTable::input_buffer_pj_per_byte)},
      {"energy.weight_buffer_pj_per_byte", "number", "pJ/byte", "weight buffer byte (default: by bank capacity)",
       read_energy(&npu::EnergyConfig::weight_buffer_pj_per_byte),
       show_resolved(&npu::EnergyTable::weight_buffer_pj_per_byte)},
      {"energy.output_buffer_pj_per_byte", "number", "pJ/byte", "accumulator buffer byte (default: by bank capacity)",
       read_energy(&npu::EnergyConfig::output_buffer_pj_per_byte),
       show_resolved(&npu::EnergyTable::output_buffer_pj_per_byte)},
      {"energy.dram_pj_per_byte", "number", "pJ/byte", "a byte over the off-chip channel (default: LPDDR4)",
       read_energy(&npu::EnergyConfig::dram_pj_per_byte), show_resolved(&npu::EnergyTable::dram_pj_per_byte)},
      {"energy.static_mw", "number", "mW", "leakage of the NPU, busy or idle",
       read_energy(&npu::EnergyConfig::static_mw), show_resolved(&npu::EnergyTable::static_mw)},
  };
  return keys;
}

// Reads the keys the table declares; the table also decides which keys are known.
npu::NpuConfig parse_npu_config(const ConfigNode& node) {
  npu::NpuConfig config;
  std::vector<std::string> top, sections;
  std::map<std::string, std::vector<std::string>> members;
  for (const auto& key : npu_keys()) {
    const std::string path = key.path;
    const auto dot = path.find('.');
    if (dot == std::string::npos) {
      top.push_back(path);
      continue;
    }
    const std::string section = path.substr(0, dot);
    if (std::find(sections.begin(), sections.end(), section) == sections.end()) {
      sections.push_back(section);
      top.push_back(section);
    }
    members[section].push_back(path.substr(dot + 1));
  }
  refuse_renamed_keys(node);
  node.expect_keys(top);
  for (const auto& section : sections)
    if (node.has(section)) node.at(section).expect_keys(members[section]);
  for (const auto& key : npu_keys()) {
    const std::string path = key.path;
    const auto dot = path.find('.');
    if (dot == std::string::npos) {
      if (node.has(path)) key.read(node.at(path), config);
    } else if (node.has(path.substr(0, dot)) && node.at(path.substr(0, dot)).has(path.substr(dot + 1))) {
      key.read(node.at(path.substr(0, dot)).at(path.substr(dot + 1)), config);
    }
  }
  check_array_specific_keys(node, config);
  // A systolic array batches only by streaming rows; that is its default, not an error.
  if (config.array == npu::ArrayKind::systolic && !node.has("batching")) {
    config.modes = {npu::BatchingMode::r_batching};
    config.stack_factors = {1};
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
  if (is_scalesim_cfg(file)) {
    if (!overrides.empty())
      throw ConfigError(fmt::format("--set {}: npu overrides apply to npu YAML, not to the SCALE-Sim config {}: edit "
                                    "it, or describe the NPU in YAML (array: systolic)",
                                    overrides.front(), file.string()));
    return load_scalesim_cfg(file);
  }
  return load_with_overrides(ConfigNode::load_file(file), overrides);
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
      return load_with_overrides(ConfigNode::load_embedded_text(preset.text, fmt::format("<embedded configs/npu/{}.yaml>", name)),
                                 overrides);
  throw ConfigError(fmt::format("{} is not an NPU preset: allowed {}", name, fmt::join(npu_presets(), ", ")));
}

}  // namespace npusim::sim
