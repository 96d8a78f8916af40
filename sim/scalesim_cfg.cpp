#include "sim/scalesim_cfg.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <fstream>
#include <map>
#include <sstream>
#include <vector>

#include <fmt/format.h>

#include "traces/input_file.hpp"

namespace npusim::sim {
namespace {

std::string trim(const std::string& text) {
  const auto begin = text.find_first_not_of(" \t\r");
  if (begin == std::string::npos) return "";
  return text.substr(begin, text.find_last_not_of(" \t\r") - begin + 1);
}

std::string lower(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(), [](unsigned char c) { return std::tolower(c); });
  return text;
}

struct KnownKey {
  const char* name;  // SCALE-Sim's spelling; matched case-insensitively like Python's configparser
  bool required;
};

struct KnownSection {
  const char* name;
  std::vector<KnownKey> keys;
};

// The keys SCALE-Sim v2 releases read. Required keys are the ones its read_conf_file reads
// unconditionally (Bandwidth is required only in USER mode, checked separately). The memory
// layout, bank and Ramulator keys are accepted so that SCALE-Sim's own example configs load,
// and do not change npusim's cycles (docs/config.md); any other key is a typo and an error.
const std::vector<KnownSection>& known_sections() {
  static const std::vector<KnownSection> sections = [] {
    // Older releases put the SRAM layout keys in [architecture_presets], newer ones in [layout].
    const std::vector<KnownKey> layout_keys{{"IfmapCustomLayout", false},      {"FilterCustomLayout", false},
                                            {"IfmapSRAMBankBandwidth", false}, {"IfmapSRAMBankNum", false},
                                            {"IfmapSRAMBankPort", false},      {"FilterSRAMBankBandwidth", false},
                                            {"FilterSRAMBankNum", false},      {"FilterSRAMBankPort", false}};
    std::vector<KnownSection> all{
      {"general", {{"run_name", true}}},
      {"architecture_presets",
       {{"ArrayHeight", true},
        {"ArrayWidth", true},
        {"IfmapSramSzkB", true},
        {"FilterSramSzkB", true},
        {"OfmapSramSzkB", true},
        {"IfmapOffset", true},
        {"FilterOffset", true},
        {"OfmapOffset", true},
        {"Dataflow", true},
        {"Bandwidth", false},
        {"MemoryBanks", false},
        {"ReadRequestBuffer", false},
        {"WriteRequestBuffer", false},
        {"OnChipMemoryBanks", false},
        {"OnChipMemoryBankPorts", false}}},
      {"layout", {}},
      {"run_presets",
       {{"InterfaceBandwidth", true},
        {"UseRamulatorTrace", false},
        {"SRAM_row_size", false},
        {"SRAM_bank_size", false},
        {"DRAM_row_size", false},
        {"DRAM_bank_size", false}}},
      {"network_presets", {{"TopologyCsvLoc", false}}},
      {"sparsity",
       {{"SparsitySupport", false},
        {"SparseRep", false},
        {"OptimizedMapping", false},
        {"BlockSize", false},
        {"RandomNumberGeneratorSeed", false}}},
    };
    for (auto& section : all)
      if (section.name == std::string("architecture_presets") || section.name == std::string("layout"))
        section.keys.insert(section.keys.end(), layout_keys.begin(), layout_keys.end());
    return all;
  }();
  return sections;
}

struct Entry {
  std::string value;
  int line = 0;
};

class CfgFile {
 public:
  CfgFile(std::istream& in, std::string source) : source_(std::move(source)) {
    std::string raw, section;
    int number = 0;
    while (std::getline(in, raw)) {
      ++number;
      const std::string line = trim(raw);
      if (line.empty() || line[0] == '#' || line[0] == ';') continue;
      if (line.front() == '[') {
        if (line.back() != ']')
          fail_at(number, fmt::format("{}: allowed a section header [NAME]", line));
        section = trim(line.substr(1, line.size() - 2));
        if (!find_section(section))
          fail_at(number, fmt::format("[{}]: unknown section: allowed {}", section, section_names()));
        if (entries_.count(section)) fail_at(number, fmt::format("[{}] appears twice", section));
        entries_[section];
        continue;
      }
      const auto delimiter = line.find_first_of("=:");
      if (delimiter == std::string::npos)
        fail_at(number, fmt::format("{}: allowed KEY = VALUE inside a [section]", line));
      if (section.empty())
        fail_at(number, fmt::format("{}: a key before any [section]: allowed {}", line, section_names()));
      const std::string key = trim(line.substr(0, delimiter));
      const std::string value = trim(line.substr(delimiter + 1));
      const KnownKey* known = find_key(section, key);
      if (!known)
        fail_at(number, fmt::format("[{}] {} = {}: unknown key: allowed {}", section, key, value, key_names(section)));
      auto& keys = entries_[section];
      if (keys.count(lower(key)))
        fail_at(number, fmt::format("[{}] {} is given twice (first on line {})", section, known->name,
                                    keys[lower(key)].line));
      keys[lower(key)] = {value, number};
    }
    for (const auto& s : known_sections())
      for (const auto& k : s.keys)
        if (k.required && !has(s.name, k.name))
          fail(fmt::format("{}: [{}] {} is missing: SCALE-Sim v2 requires it", source_, s.name, k.name));
  }

  bool has(const std::string& section, const std::string& key) const {
    const auto s = entries_.find(section);
    return s != entries_.end() && s->second.count(lower(key));
  }
  const Entry& entry(const std::string& section, const std::string& key) const {
    return entries_.at(section).at(lower(key));
  }
  const std::string& value(const std::string& section, const std::string& key) const {
    return entry(section, key).value;
  }

  [[noreturn]] void fail_value(const std::string& section, const std::string& key, const std::string& allowed) const {
    const Entry& e = entry(section, key);
    fail_at(e.line, fmt::format("[{}] {} = {}: allowed {}", section, key, e.value, allowed));
  }

  // An integer the way Python's int() reads it (surrounding blanks allowed), in [low, high].
  std::uint64_t integer(const std::string& section, const std::string& key, std::uint64_t low,
                        std::uint64_t high) const {
    const std::string& text = value(section, key);
    std::uint64_t number = 0;
    const char* first = text.data() + (!text.empty() && text[0] == '+' ? 1 : 0);
    const auto [end, ec] = std::from_chars(first, text.data() + text.size(), number);
    if (text.empty() || ec != std::errc{} || end != text.data() + text.size() || number < low || number > high)
      fail_value(section, key, fmt::format("an integer in [{}, {}]", low, high));
    return number;
  }

  std::size_t choice(const std::string& section, const std::string& key,
                     const std::vector<std::string>& choices) const {
    const auto it = std::find(choices.begin(), choices.end(), value(section, key));
    if (it == choices.end()) fail_value(section, key, fmt::format("one of {}", fmt::join(choices, ", ")));
    return static_cast<std::size_t>(it - choices.begin());
  }

  [[noreturn]] void fail_at(int line, const std::string& message) const {
    fail(fmt::format("{}:{}: {}", source_, line, message));
  }
  [[noreturn]] static void fail(const std::string& message) { throw ConfigError(message); }

 private:
  static const KnownSection* find_section(const std::string& name) {
    for (const auto& s : known_sections())
      if (name == s.name) return &s;
    return nullptr;
  }
  static const KnownKey* find_key(const std::string& section, const std::string& key) {
    for (const auto& k : find_section(section)->keys)
      if (lower(key) == lower(k.name)) return &k;
    return nullptr;
  }
  static std::string section_names() {
    std::vector<std::string> names;
    for (const auto& s : known_sections()) names.emplace_back(s.name);
    return fmt::format("{}", fmt::join(names, ", "));
  }
  static std::string key_names(const std::string& section) {
    std::vector<std::string> names;
    for (const auto& k : find_section(section)->keys) names.emplace_back(k.name);
    return fmt::format("{}", fmt::join(names, ", "));
  }

  std::string source_;
  std::map<std::string, std::map<std::string, Entry>> entries_;
};

}  // namespace

bool is_scalesim_cfg(const std::filesystem::path& file) { return lower(file.extension().string()) == ".cfg"; }

npu::Npu parse_scalesim_cfg(std::istream& in, const std::string& source) {
  const CfgFile cfg(in, source);
  const std::string arch = "architecture_presets";
  npu::NpuConfig config;
  config.name = cfg.value("general", "run_name");
  if (!traces::is_valid_name(config.name)) cfg.fail_value("general", "run_name", std::string(traces::name_rule));
  config.array = npu::ArrayKind::systolic;
  config.modes = {npu::BatchingMode::r_batching};
  config.stack_factors = {1};
  config.systolic.rows = static_cast<std::uint32_t>(cfg.integer(arch, "ArrayHeight", 1, 4096));
  config.systolic.cols = static_cast<std::uint32_t>(cfg.integer(arch, "ArrayWidth", 1, 4096));
  static constexpr npu::Dataflow dataflows[] = {npu::Dataflow::output_stationary, npu::Dataflow::weight_stationary,
                                                npu::Dataflow::input_stationary};
  config.systolic.dataflow = dataflows[cfg.choice(arch, "Dataflow", {"os", "ws", "is"})];
  config.buffers.input_bytes = cfg.integer(arch, "IfmapSramSzkB", 1, 1 << 20) * 1024;
  config.buffers.weight_bytes = cfg.integer(arch, "FilterSramSzkB", 1, 1 << 20) * 1024;
  config.buffers.output_bytes = cfg.integer(arch, "OfmapSramSzkB", 1, 1 << 20) * 1024;
  for (const char* offset : {"IfmapOffset", "FilterOffset", "OfmapOffset"})
    cfg.integer(arch, offset, 0, std::uint64_t{1} << 62);
  // SCALE-Sim words are 1 byte and it has no clock: one cycle is 1 ns here, so W words per
  // cycle are W GB/s, and memory has no latency beyond its bandwidth.
  config.element_bytes = 1;
  config.offchip.latency_ns = 0;
  // SCALE-Sim runs every layer on its own, operands to and from DRAM: no fusion, no residency.
  config.fuse_epilogue = false;
  config.keep_activations_on_chip = false;
  const bool user_bandwidth = cfg.choice("run_presets", "InterfaceBandwidth", {"CALC", "USER"}) == 1;
  config.systolic.stall_free = !user_bandwidth;
  if (user_bandwidth) {
    if (!cfg.has(arch, "Bandwidth"))
      CfgFile::fail(fmt::format("{}: [{}] Bandwidth is missing: SCALE-Sim v2 requires it with InterfaceBandwidth "
                                "USER",
                                source, arch));
    const std::string& list = cfg.value(arch, "Bandwidth");
    const std::string first = trim(list.substr(0, list.find(',')));
    std::uint64_t words = 0;
    const auto [end, ec] = std::from_chars(first.data(), first.data() + first.size(), words);
    if (first.empty() || ec != std::errc{} || end != first.data() + first.size() || words == 0 || words > 100'000)
      cfg.fail_value(arch, "Bandwidth", "words per cycle: integers in [1, 100000], comma-separated");
    config.offchip.bandwidth_gb_per_s = static_cast<double>(words) * config.clock_mhz / 1000.0;
  }
  if (cfg.has("sparsity", "SparsitySupport") && lower(cfg.value("sparsity", "SparsitySupport")) != "false")
    cfg.fail_value("sparsity", "SparsitySupport", "false (npusim does not model sparse arrays)");
  try {
    return npu::Npu::validate(config);
  } catch (const npu::NpuConfigError& e) {
    throw ConfigError(fmt::format("{}: {}", source, e.what()));
  }
}

npu::Npu load_scalesim_cfg(const std::filesystem::path& file) {
  std::string text;
  try {
    text = traces::read_input_file(file);
  } catch (const traces::InputFileError& e) {
    throw ConfigError(e.what());
  }
  std::istringstream in(text);
  return parse_scalesim_cfg(in, file.string());
}

}  // namespace npusim::sim
