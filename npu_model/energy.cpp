#include "npu_model/energy.hpp"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "npu_model/systolic.hpp"

namespace npusim::npu {
namespace {

std::uint64_t ceil_div(std::uint64_t a, std::uint64_t b) { return (a + b - 1) / b; }

struct SramPoint {
  double bytes, read64_pj;
};
constexpr SramPoint horowitz_sram[] = {{8.0 * 1024, 10.0}, {32.0 * 1024, 20.0}, {1024.0 * 1024, 100.0}};

double energy_or(const std::optional<double>& given, double fallback) { return given ? *given : fallback; }

void require_energy(const char* key, double value) {
  if (!std::isfinite(value) || value < 0.0)
    throw NpuConfigError(key, fmt::format("{}", value), "a finite number >= 0");
}

void require_energy(const char* key, const std::optional<double>& value) {
  if (value) require_energy(key, *value);
}

// Weight-tile loads into the PEs over the whole layer: one per step and (depth tile, column
// tile) of the step (docs/memory-schedule.md §5), summed in closed form over the loop nest.
std::uint64_t weight_tile_loads(const Npu& npu, const GemmShape& shape, const BatchMapping& mapping,
                                const Tiling& tiling) {
  const auto& g = npu.geometry(mapping.k);
  const FeatureMap f = feature_map_of(shape);
  const std::uint64_t r_blocks = tiling.band_samples > 1 ? ceil_div(mapping.b_r, tiling.band_samples)
                                                         : std::uint64_t{mapping.b_r} * ceil_div(f.out_height, tiling.band_rows);
  const auto pass_tiles = [&](std::uint64_t groups) {
    const EffectiveGemm e = effective_gemm(shape, mapping, groups);
    const std::uint64_t col_tiles = ceil_div(e.cols, g.tile_cols);
    if (e.blocks > 1) return r_blocks * ceil_div(e.depth, g.tile_depth) * col_tiles;
    const std::uint64_t chunk_channels = ceil_div(f.channels, tiling.channel_chunks);
    std::uint64_t depth_tiles = 0;
    for (std::uint64_t first = 0; first < f.channels; first += chunk_channels)
      depth_tiles += ceil_div(f.kernel_height * f.kernel_width * std::min(chunk_channels, f.channels - first), g.tile_depth);
    return r_blocks * depth_tiles * col_tiles;
  };
  const std::uint64_t packed = groups_per_pass(npu, shape, mapping);
  std::uint64_t loads = (shape.groups / packed) * pass_tiles(packed);
  if (shape.groups % packed) loads += pass_tiles(shape.groups % packed);
  return loads;
}

// (E6)-(E8): what every layer shares: the DMA writes each loaded byte into its buffer and
// reads each stored byte from it; results are read once from their accumulators and, when they
// stay on chip, written into the input buffer; a fused add reads its second operand once.
void add_shared_accesses(const Npu& npu, std::uint64_t outputs, const TrafficBytes& bytes, const Placement& placement,
                         OnChipAccesses& a) {
  const std::uint64_t e = npu.config().element_bytes;
  const std::uint64_t acc = npu.config().accumulator_bytes;
  a.input_write_bytes += bytes.input;
  a.weight_write_bytes += bytes.weight;
  a.output_read_bytes += bytes.output + bytes.psum / 2 + outputs * acc;
  a.output_write_bytes += bytes.psum - bytes.psum / 2 + bytes.epilogue;
  if (placement.output_on_chip) a.input_write_bytes += outputs * e;
  if (placement.epilogue == EpilogueOperand::on_chip) a.input_read_bytes += outputs * e;
  if (placement.epilogue == EpilogueOperand::off_chip) a.output_read_bytes += bytes.epilogue;
}

}  // namespace

EnergyParts& EnergyParts::operator+=(const EnergyParts& other) {
  mac_pj += other.mac_pj;
  sram_pj += other.sram_pj;
  dram_pj += other.dram_pj;
  vector_pj += other.vector_pj;
  static_pj += other.static_pj;
  return *this;
}

double process_scale(double node_nm, double supply_v) {
  const double voltage = supply_v / horowitz_supply_v;
  return node_nm / horowitz_node_nm * voltage * voltage;
}

double horowitz_sram_read64_pj(std::uint64_t bytes) {
  const double size = static_cast<double>(std::max<std::uint64_t>(bytes, 1));
  const std::size_t segment = size <= horowitz_sram[1].bytes ? 0 : 1;
  const SramPoint& lo = horowitz_sram[segment];
  const SramPoint& hi = horowitz_sram[segment + 1];
  const double slope = std::log(hi.read64_pj / lo.read64_pj) / std::log(hi.bytes / lo.bytes);
  return lo.read64_pj * std::pow(size / lo.bytes, slope);
}

std::uint64_t input_bank_bytes(const NpuConfig& config) { return config.buffers.input_bytes; }

namespace {
std::uint64_t pe_columns(const NpuConfig& config) {
  return config.array == ArrayKind::systolic ? config.systolic.cols : config.pe_count;
}
}  // namespace

std::uint64_t weight_bank_bytes(const NpuConfig& config) {
  return std::max<std::uint64_t>(1, config.buffers.weight_bytes / std::max<std::uint64_t>(1, pe_columns(config)));
}

std::uint64_t output_bank_bytes(const NpuConfig& config) {
  return std::max<std::uint64_t>(1, config.buffers.output_bytes / std::max<std::uint64_t>(1, pe_columns(config)));
}

EnergyTable resolve_energy(const NpuConfig& config) {
  const EnergyConfig& c = config.energy;
  if (!std::isfinite(c.node_nm) || c.node_nm < 1.0 || c.node_nm > 1000.0)
    throw NpuConfigError("energy.node_nm", fmt::format("{}", c.node_nm), "a number in [1, 1000]");
  if (!std::isfinite(c.supply_v) || c.supply_v < 0.1 || c.supply_v > 5.0)
    throw NpuConfigError("energy.supply_v", fmt::format("{}", c.supply_v), "a number in [0.1, 5]");
  require_energy("energy.mac_pj", c.mac_pj);
  require_energy("energy.vector_op_pj", c.vector_op_pj);
  require_energy("energy.input_buffer_pj_per_byte", c.input_buffer_pj_per_byte);
  require_energy("energy.weight_buffer_pj_per_byte", c.weight_buffer_pj_per_byte);
  require_energy("energy.output_buffer_pj_per_byte", c.output_buffer_pj_per_byte);
  require_energy("energy.dram_pj_per_byte", c.dram_pj_per_byte);
  require_energy("energy.static_mw", c.static_mw);
  const double scale = process_scale(c.node_nm, c.supply_v);
  const auto sram_pj_per_byte = [&](std::uint64_t bank_bytes) { return horowitz_sram_read64_pj(bank_bytes) / 8.0 * scale; };
  EnergyTable t;
  t.mac_pj = energy_or(c.mac_pj, (horowitz_mult8_pj + horowitz_add32_pj) * scale);
  t.vector_op_pj = energy_or(c.vector_op_pj, horowitz_add32_pj * scale);
  t.input_buffer_pj_per_byte = energy_or(c.input_buffer_pj_per_byte, sram_pj_per_byte(input_bank_bytes(config)));
  t.weight_buffer_pj_per_byte = energy_or(c.weight_buffer_pj_per_byte, sram_pj_per_byte(weight_bank_bytes(config)));
  t.output_buffer_pj_per_byte = energy_or(c.output_buffer_pj_per_byte, sram_pj_per_byte(output_bank_bytes(config)));
  t.dram_pj_per_byte = c.dram_pj_per_byte;
  t.static_mw = c.static_mw;
  return t;
}

OnChipAccesses dot_product_accesses(const Npu& npu, const GemmShape& shape, std::uint32_t batch,
                                    const BatchMapping& mapping, const Tiling& tiling,
                                    std::uint64_t compute_cycles, const TrafficBytes& bytes,
                                    const Placement& placement) {
  const auto& g = npu.geometry(mapping.k);
  const std::uint64_t e = npu.config().element_bytes;
  const std::uint64_t acc = npu.config().accumulator_bytes;
  OnChipAccesses a;
  // (E3) one t_p-wide im2col row per streaming cycle, broadcast to every PE.
  a.input_read_bytes = compute_cycles * g.tile_depth * e;
  // (E4) a t_p x t_c weight tile into the PEs each time a step starts streaming against it.
  a.weight_read_bytes = weight_tile_loads(npu, shape, mapping, tiling) * g.tile_depth * g.tile_cols * e;
  // (E5) each streaming cycle, every column's accumulator is read, added to and written back.
  a.output_read_bytes = compute_cycles * g.tile_cols * acc;
  a.output_write_bytes = compute_cycles * g.tile_cols * acc;
  const std::uint64_t outputs = std::uint64_t{batch} * shape.rows * shape.cols * shape.groups;
  add_shared_accesses(npu, outputs, bytes, placement, a);
  return a;
}

OnChipAccesses systolic_accesses(const Npu& npu, std::uint64_t m, std::uint64_t k, std::uint64_t n,
                                 std::uint64_t groups, const TrafficBytes& bytes, const Placement& placement) {
  const auto& array = npu.config().systolic;
  const std::uint64_t e = npu.config().element_bytes;
  const std::uint64_t acc = npu.config().accumulator_bytes;
  const SystolicFolds folds = folds_of(array, {m, k, n});
  OnChipAccesses a;
  // Each fold reads the operands it needs; the stationary operand once over all folds.
  switch (array.dataflow) {
    case Dataflow::output_stationary:
      a.input_read_bytes = m * k * folds.col_folds * e;
      a.weight_read_bytes = k * n * folds.row_folds * e;
      a.output_write_bytes = m * n * acc;
      break;
    case Dataflow::weight_stationary:
      a.input_read_bytes = m * k * folds.col_folds * e;
      a.weight_read_bytes = k * n * e;
      a.output_read_bytes = a.output_write_bytes = m * n * folds.row_folds * acc;
      break;
    case Dataflow::input_stationary:
      a.input_read_bytes = m * k * e;
      a.weight_read_bytes = k * n * folds.col_folds * e;
      a.output_read_bytes = a.output_write_bytes = m * n * folds.row_folds * acc;
      break;
  }
  a.input_read_bytes *= groups;
  a.weight_read_bytes *= groups;
  a.output_read_bytes *= groups;
  a.output_write_bytes *= groups;
  add_shared_accesses(npu, m * n * groups, bytes, placement, a);
  return a;
}

OnChipAccesses vector_accesses(const Npu& npu, std::uint64_t input_elements, std::uint64_t output_elements,
                               std::uint64_t operations, const TrafficBytes& bytes) {
  const std::uint64_t e = npu.config().element_bytes;
  OnChipAccesses a;
  a.input_read_bytes = input_elements * e + bytes.output;
  a.input_write_bytes = bytes.input + bytes.epilogue + output_elements * e;
  a.vector_ops = operations;
  return a;
}

EnergyParts price_energy(const Npu& npu, std::uint64_t macs, const OnChipAccesses& a, std::uint64_t offchip_bytes,
                         std::uint64_t cycles) {
  const EnergyTable& t = npu.energy();
  const auto bytes = [](std::uint64_t read, std::uint64_t written) {
    return static_cast<double>(read) + static_cast<double>(written);
  };
  EnergyParts parts;
  parts.mac_pj = static_cast<double>(macs) * t.mac_pj;
  parts.sram_pj = bytes(a.input_read_bytes, a.input_write_bytes) * t.input_buffer_pj_per_byte +
                  bytes(a.weight_read_bytes, a.weight_write_bytes) * t.weight_buffer_pj_per_byte +
                  bytes(a.output_read_bytes, a.output_write_bytes) * t.output_buffer_pj_per_byte;
  parts.dram_pj = static_cast<double>(offchip_bytes) * t.dram_pj_per_byte;
  parts.vector_pj = static_cast<double>(a.vector_ops) * t.vector_op_pj;
  parts.static_pj = static_energy_pj(npu, static_cast<double>(cycles) * 1.0e6 / npu.config().clock_mhz);
  return parts;
}

double static_energy_pj(const Npu& npu, double ps) { return npu.energy().static_mw * ps / 1000.0; }

EnergyParts context_transfer_energy(const Npu& npu, std::uint64_t bytes) {
  EnergyParts parts;
  parts.sram_pj = static_cast<double>(bytes) * npu.energy().input_buffer_pj_per_byte;
  parts.dram_pj = static_cast<double>(bytes) * npu.energy().dram_pj_per_byte;
  return parts;
}

}  // namespace npusim::npu
