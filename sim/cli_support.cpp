#include "sim/cli_support.hpp"

#include <algorithm>
#include <charconv>

#include <fmt/format.h>

#include "sim/npu_yaml.hpp"

namespace npusim::sim {

std::vector<std::uint64_t> parse_positive_list(const std::string& option, const std::string& text,
                                               std::size_t count, const std::string& form) {
  std::vector<std::uint64_t> values;
  std::size_t begin = 0;
  while (begin <= text.size()) {
    const std::size_t comma = std::min(text.find(',', begin), text.size());
    std::uint64_t value = 0;
    const char* first = text.data() + begin;
    const char* last = text.data() + comma;
    const auto [end, ec] = std::from_chars(first, last, value);
    if (ec != std::errc{} || end != last || first == last || value == 0 || value > (1ull << 32))
      throw UsageError(fmt::format("{} {}: allowed {} (positive integers up to 2^32)", option, text, form));
    values.push_back(value);
    begin = comma + 1;
  }
  if (values.size() != count)
    throw UsageError(fmt::format("{} {}: allowed {} ({} comma-separated positive integers)", option,
                                 text, form, count));
  return values;
}

npu::Npu load_npu_option(const std::string& npu_file, const std::vector<std::string>& overrides) {
  return npu_file.empty() ? default_npu(overrides) : load_npu_file(npu_file, overrides);
}

std::string npu_label(const npu::Npu& npu) {
  const auto& c = npu.config();
  const std::string memory = npu.is_systolic() && c.systolic.stall_free
                                 ? std::string("stall-free memory")
                                 : fmt::format("{} GB/s", c.offchip.bandwidth_gb_per_s);
  if (npu.is_systolic())
    return fmt::format("{} (systolic {}x{}, {}, {} MHz, {})", c.name, c.systolic.rows, c.systolic.cols,
                       npu::to_string(c.systolic.dataflow), c.clock_mhz, memory);
  return fmt::format("{} ({} PEs x {} lanes, T_R {}, {} MHz, {})", c.name, c.pe_count, c.pe_width,
                     c.input_rows, c.clock_mhz, memory);
}

}  // namespace npusim::sim
