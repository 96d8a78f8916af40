#include "npu_model/npu_config.hpp"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

namespace npusim::npu {

std::string to_string(BatchingMode mode) {
  switch (mode) {
    case BatchingMode::r_batching: return "r";
    case BatchingMode::p_batching: return "p";
    case BatchingMode::fluid: return "fluid";
  }
  return "?";
}

std::string to_string(ArrayKind kind) {
  return kind == ArrayKind::systolic ? "systolic" : "dot_product";
}

std::string to_string(Dataflow dataflow) {
  switch (dataflow) {
    case Dataflow::output_stationary: return "os";
    case Dataflow::weight_stationary: return "ws";
    case Dataflow::input_stationary: return "is";
  }
  return "?";
}

NpuConfigError::NpuConfigError(std::string key, std::string value, std::string allowed)
    : std::invalid_argument(fmt::format("{} = {}: allowed {}", key, value, allowed)),
      key_(std::move(key)),
      value_(std::move(value)),
      allowed_(std::move(allowed)) {}

std::uint32_t ceil_log2(std::uint64_t value) {
  std::uint32_t levels = 0;
  while ((std::uint64_t{1} << levels) < value) ++levels;
  return levels;
}

namespace {

void require_range(const char* key, std::uint64_t value, std::uint64_t low, std::uint64_t high) {
  if (value < low || value > high)
    throw NpuConfigError(key, std::to_string(value),
                         fmt::format("an integer in [{}, {}]", low, high));
}

std::string kib(std::uint64_t bytes) { return fmt::format("{}", static_cast<double>(bytes) / 1024.0); }

std::string join_factors(const std::vector<std::uint32_t>& factors) {
  return fmt::format("[{}]", fmt::join(factors, ", "));
}

}  // namespace

Npu Npu::validate(const NpuConfig& config) {
  require_range("clock_mhz", config.clock_mhz, 1, 10'000);
  require_range("pe_count", config.pe_count, 1, 4096);
  require_range("pe_width", config.pe_width, 1, 4096);
  require_range("input_rows", config.input_rows, 1, 65'536);
  require_range("vector_lanes", config.vector_lanes, 1, 65'536);
  if (config.element_bytes != 1 && config.element_bytes != 2 && config.element_bytes != 4)
    throw NpuConfigError("element_bytes", std::to_string(config.element_bytes), "1, 2 or 4");
  if (config.accumulator_bytes != 2 && config.accumulator_bytes != 4 &&
      config.accumulator_bytes != 8)
    throw NpuConfigError("accumulator_bytes", std::to_string(config.accumulator_bytes),
                         "2, 4 or 8");
  if (config.accumulator_bytes < config.element_bytes)
    throw NpuConfigError("accumulator_bytes", std::to_string(config.accumulator_bytes),
                         fmt::format("at least element_bytes ({})", config.element_bytes));

  const double bandwidth = config.offchip.bandwidth_gb_per_s;
  const double bandwidth_mbps = std::round(bandwidth * 1000.0);
  if (!(bandwidth > 0.0) || bandwidth > 100'000.0 ||
      std::fabs(bandwidth_mbps - bandwidth * 1000.0) > 1e-6 * std::max(1.0, bandwidth_mbps))
    throw NpuConfigError("offchip.bandwidth_gb_per_s", fmt::format("{}", bandwidth),
                         "a number in (0, 100000] with at most 3 decimals (1 MB/s steps)");
  require_range("offchip.latency_ns", config.offchip.latency_ns, 0, 1'000'000);
  require_range("offchip.queue_depth", config.offchip.queue_depth, 1, 1024);

  if (config.array == ArrayKind::systolic) return validate_systolic(config, bandwidth_mbps);

  if (config.modes.empty())
    throw NpuConfigError("batching.modes", "[]", "a non-empty list of r, p, fluid");
  if (std::find(config.modes.begin(), config.modes.end(), BatchingMode::r_batching) ==
      config.modes.end())
    throw NpuConfigError("batching.modes", "(no r)",
                         "a list that includes r: R-batching is the mode every layer can use");
  if (config.stack_factors.empty() || config.stack_factors.size() > max_stack_factors)
    throw NpuConfigError("batching.stack_factors", join_factors(config.stack_factors),
                         fmt::format("a list of 1 to {} factors", max_stack_factors));
  if (std::find(config.stack_factors.begin(), config.stack_factors.end(), 1u) ==
      config.stack_factors.end())
    throw NpuConfigError("batching.stack_factors", join_factors(config.stack_factors),
                         "a list that includes 1 (the unstacked array)");

  Npu npu(config);
  auto& factors = npu.config_.stack_factors;
  std::sort(factors.begin(), factors.end());
  if (std::adjacent_find(factors.begin(), factors.end()) != factors.end())
    throw NpuConfigError("batching.stack_factors", join_factors(config.stack_factors),
                         "distinct factors");
  for (auto mode : config.modes) npu.allowed_modes_mask_ |= 1u << static_cast<unsigned>(mode);

  const std::uint64_t input_capacity = config.buffers.input_bytes;
  const std::uint64_t weight_capacity = config.buffers.weight_bytes;
  const std::uint64_t output_capacity = config.buffers.output_bytes;
  constexpr std::uint64_t max_buffer_bytes = std::uint64_t{1} << 30;
  if (input_capacity > max_buffer_bytes)
    throw NpuConfigError("buffers.input_kib", kib(input_capacity), "at most 1048576 (1 GiB)");
  if (weight_capacity > max_buffer_bytes)
    throw NpuConfigError("buffers.weight_kib", kib(weight_capacity), "at most 1048576 (1 GiB)");
  if (output_capacity > max_buffer_bytes)
    throw NpuConfigError("buffers.output_kib", kib(output_capacity), "at most 1048576 (1 GiB)");
  // Whether a layer fits is the mapper's question (it names the buffer and the size that would
  // work); here a buffer only has to exist.
  for (const auto& [key, bytes] : {std::pair{"buffers.input_kib", input_capacity},
                                   std::pair{"buffers.weight_kib", weight_capacity},
                                   std::pair{"buffers.output_kib", output_capacity}})
    if (bytes == 0) throw NpuConfigError(key, kib(bytes), "more than 0");

  for (auto k : factors) {
    if (k == 0 || config.pe_count % k != 0 || config.input_rows % k != 0)
      throw NpuConfigError("batching.stack_factors", join_factors(config.stack_factors),
                           fmt::format("factors that divide pe_count ({}) and input_rows ({})",
                                       config.pe_count, config.input_rows));
    StackGeometry g;
    g.k = k;
    g.tile_rows = config.input_rows / k;
    g.tile_depth = config.pe_width * k;
    g.tile_cols = config.pe_count / k;
    g.pipeline_depth_cycles = 2 + ceil_log2(config.pe_width) + ceil_log2(k);
    npu.geometries_.push_back(g);
  }

  npu.energy_ = resolve_energy(config);
  npu.set_channel(bandwidth_mbps);
  return npu;
}

void Npu::set_channel(double bandwidth_mbps) {
  clock_mhz_ = config_.clock_mhz;
  bandwidth_mbps_ = static_cast<std::uint64_t>(bandwidth_mbps);
  latency_cycles_ = (std::uint64_t{config_.offchip.latency_ns} * config_.clock_mhz + 999) / 1000;
}

// A systolic array batches by streaming more rows (R-batching) and has no stackable PEs, so
// the batching section may only restate that.
Npu Npu::validate_systolic(const NpuConfig& config, double bandwidth_mbps) {
  require_range("systolic.rows", config.systolic.rows, 1, 4096);
  require_range("systolic.cols", config.systolic.cols, 1, 4096);
  if (config.modes != std::vector<BatchingMode>{BatchingMode::r_batching}) {
    std::vector<std::string> names;
    for (auto m : config.modes) names.push_back(to_string(m));
    throw NpuConfigError("batching.modes", fmt::format("[{}]", fmt::join(names, ", ")),
                         "[r] on a systolic array: batching streams more rows (R-batching)");
  }
  if (config.stack_factors != std::vector<std::uint32_t>{1})
    throw NpuConfigError("batching.stack_factors", join_factors(config.stack_factors),
                         "[1] on a systolic array: it has no stackable PEs");
  constexpr std::uint64_t max_buffer_bytes = std::uint64_t{1} << 30;
  const std::pair<const char*, std::uint64_t> buffers[] = {{"buffers.input_kib", config.buffers.input_bytes},
                                                           {"buffers.weight_kib", config.buffers.weight_bytes},
                                                           {"buffers.output_kib", config.buffers.output_bytes}};
  for (const auto& [key, bytes] : buffers)
    if (bytes == 0 || bytes > max_buffer_bytes)
      throw NpuConfigError(key, kib(bytes), "an integer in [1, 1048576] (up to 1 GiB)");
  Npu npu(config);
  npu.allowed_modes_mask_ = 1u << static_cast<unsigned>(BatchingMode::r_batching);
  npu.energy_ = resolve_energy(config);
  npu.set_channel(bandwidth_mbps);
  return npu;
}

bool Npu::allows(BatchingMode mode) const {
  return (allowed_modes_mask_ >> static_cast<unsigned>(mode)) & 1u;
}

bool Npu::allows_stack_factor(std::uint32_t k) const {
  if (is_systolic()) return k == 1;
  return std::any_of(geometries_.begin(), geometries_.end(),
                     [k](const StackGeometry& g) { return g.k == k; });
}

const StackGeometry& Npu::geometry(std::uint32_t k) const {
  for (const auto& g : geometries_)
    if (g.k == k) return g;
  throw std::out_of_range(fmt::format("stack factor {} is not allowed on NPU {}", k, config_.name));
}

}  // namespace npusim::npu
