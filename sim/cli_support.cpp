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

MemoryReport memory_report(const npu::Npu& npu, const npu::LayerCost& cost, bool on_vector_path) {
  MemoryReport report;
  // Systolic arrays and the vector path leave the split at zero; a split that does not add up
  // to the total is no split at all.
  if (cost.bytes.total() == cost.offchip_bytes) report.bytes = cost.bytes;
  const bool gemm_on_dot_product = !on_vector_path && !npu.is_systolic();
  if (gemm_on_dot_product && !cost.fused_into_previous) report.tiling = cost.tiling;
  report.placement = cost.placement;
  report.fused_into_previous = cost.fused_into_previous;
  if (cost.compulsory_bytes > 0 || cost.offchip_bytes == 0)
    report.compulsory_bytes = cost.compulsory_bytes;
  else if (on_vector_path)
    report.compulsory_bytes = cost.offchip_bytes;
  if (cost.roofline_cycles > 0 || cost.cycles == 0)
    report.roofline_cycles = cost.roofline_cycles;
  else if (on_vector_path)
    report.roofline_cycles = std::max(cost.compute_cycles, npu.data_cycles(cost.offchip_bytes));
  return report;
}

std::string memory_report_json(const MemoryReport& r) {
  const auto number = [](const std::optional<std::uint64_t>& v) {
    return v ? std::to_string(*v) : std::string("null");
  };
  const std::string bytes =
      r.bytes ? fmt::format("{{\"input\": {}, \"weight\": {}, \"output\": {}, \"psum\": {}, \"epilogue\": {}}}",
                            r.bytes->input, r.bytes->weight, r.bytes->output, r.bytes->psum, r.bytes->epilogue)
              : "null";
  std::string tiling = "null";
  if (r.tiling) {
    const npu::Tiling& t = *r.tiling;
    tiling = fmt::format(
        "{{\"order\": \"{}\", \"band_rows\": {}, \"band_samples\": {}, \"col_block\": {}, \"channel_chunks\": {}, "
        "\"input_resident\": {}, \"weights_resident\": {}, \"input_prefetch\": {}, \"weight_prefetch\": {}}}",
        npu::to_string(t.order), t.band_rows, t.band_samples, t.col_block, t.channel_chunks, t.input_resident,
        t.weights_resident, t.input_prefetch, t.weight_prefetch);
  }
  const char* const epilogue[] = {"none", "on_chip", "off_chip"};
  const npu::Placement& p = r.placement;
  const std::string placement = fmt::format(
      "{{\"input_on_chip\": {}, \"output_on_chip\": {}, \"epilogue\": \"{}\", \"reserved_input_bytes\": {}}}",
      p.input_on_chip, p.output_on_chip, epilogue[static_cast<int>(p.epilogue)], p.reserved_input_bytes);
  return fmt::format("\"bytes\": {}, \"tiling\": {}, \"compulsory_bytes\": {}, \"roofline_cycles\": {}, "
                     "\"placement\": {}, \"fused_into_previous\": {}",
                     bytes, tiling, number(r.compulsory_bytes), number(r.roofline_cycles), placement,
                     r.fused_into_previous);
}

std::string energy_json(const npu::Npu& npu, const npu::LayerCost& cost) {
  const npu::OnChipAccesses& a = cost.on_chip;
  const npu::EnergyParts e = npu::layer_energy(npu, cost);
  return fmt::format(
      "\"sram_bytes\": {{\"input_read\": {}, \"input_write\": {}, \"weight_read\": {}, \"weight_write\": {}, "
      "\"output_read\": {}, \"output_write\": {}}}, \"vector_ops\": {}, \"energy_pj\": {{\"mac\": {}, \"sram\": {}, "
      "\"dram\": {}, \"vector\": {}, \"static\": {}, \"total\": {}}}",
      a.input_read_bytes, a.input_write_bytes, a.weight_read_bytes, a.weight_write_bytes, a.output_read_bytes,
      a.output_write_bytes, a.vector_ops, e.mac_pj, e.sram_pj, e.dram_pj, e.vector_pj, e.static_pj, e.total_pj());
}

}  // namespace npusim::sim
