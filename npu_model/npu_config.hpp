#pragma once
// NPU hardware description: the plain, user-facing struct (NpuConfig) and the validated,
// immutable runtime object (Npu) that the cost model, the reference model and the FBE use.

#include <array>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace npusim::npu {

enum class BatchingMode { r_batching, p_batching, fluid };

// Name used in YAML and reports: "r", "p", "fluid".
std::string to_string(BatchingMode mode);

// The PE array: the dot-product array of the fluid-batching NPU (T_C PEs of T_P lanes), or an
// R x C systolic array (docs/npu-model.md, "Systolic arrays").
enum class ArrayKind { dot_product, systolic };
// Which operand stays in the systolic PEs: outputs, weights or inputs.
enum class Dataflow { output_stationary, weight_stationary, input_stationary };

// Names used in YAML and reports: "dot_product", "systolic"; "os", "ws", "is".
std::string to_string(ArrayKind kind);
std::string to_string(Dataflow dataflow);

struct SystolicConfig {
  std::uint32_t rows = 64;  // PE rows (SCALE-Sim's ArrayHeight)
  std::uint32_t cols = 64;  // PE columns (SCALE-Sim's ArrayWidth)
  Dataflow dataflow = Dataflow::weight_stationary;
  // Memory never stalls the array: operands are always in the scratchpads on time (SCALE-Sim's
  // InterfaceBandwidth CALC). Off: the off-chip channel bounds each layer (cost_model.hpp).
  bool stall_free = false;
};

// Capacities in bytes (YAML gives them in KiB: buffers.input_kib and friends).
struct BufferConfig {
  std::uint64_t input_bytes = 512 * 1024;
  std::uint64_t weight_bytes = 1024 * 1024;
  std::uint64_t output_bytes = 512 * 1024;
};

struct OffchipConfig {
  double bandwidth_gb_per_s = 25.6;  // GB/s (10^9 bytes per second)
  std::uint32_t latency_ns = 100;
  // Requests the DMA engine keeps outstanding at once (docs/memory-schedule.md §6).
  std::uint32_t queue_depth = 16;
};

// Energy per action (docs/npu-model.md, "Energy"). An unset action takes its default: the
// Horowitz (ISSCC 2014) 45 nm, 0.9 V figure scaled to node_nm and supply_v, or for a buffer
// the figure for the capacity of one of its banks. All in picojoules unless the name says.
struct EnergyConfig {
  double node_nm = 16.0;
  double supply_v = 0.8;
  std::optional<double> mac_pj;        // one 8-bit multiply and its 32-bit accumulate
  std::optional<double> vector_op_pj;  // one element-wise add, max or compare
  std::optional<double> input_buffer_pj_per_byte;   // a byte read or written
  std::optional<double> weight_buffer_pj_per_byte;
  std::optional<double> output_buffer_pj_per_byte;
  double dram_pj_per_byte = 108.0;  // a byte over the off-chip channel, either way
  double static_mw = 40.0;          // leakage of the whole NPU, busy or idle
  std::string table;                // the table file the values came from, if any
};

// The per-action energies in force, every one resolved.
struct EnergyTable {
  double mac_pj = 0, vector_op_pj = 0;
  double input_buffer_pj_per_byte = 0, weight_buffer_pj_per_byte = 0, output_buffer_pj_per_byte = 0;
  double dram_pj_per_byte = 0;
  double static_mw = 0;
};

// Everything a user can set. Plain data: no invariants are assumed until Npu::validate.
struct NpuConfig {
  std::string name = "default";
  std::uint32_t clock_mhz = 1000;
  ArrayKind array = ArrayKind::dot_product;
  SystolicConfig systolic;            // used when array == systolic
  std::uint32_t pe_count = 64;        // T_C
  std::uint32_t pe_width = 64;        // T_P
  std::uint32_t input_rows = 64;      // T_R
  std::uint32_t element_bytes = 1;
  std::uint32_t accumulator_bytes = 4;
  std::uint32_t vector_lanes = 64;
  BufferConfig buffers;
  OffchipConfig offchip;
  std::vector<BatchingMode> modes{BatchingMode::r_batching, BatchingMode::p_batching,
                                  BatchingMode::fluid};
  std::vector<std::uint32_t> stack_factors{1, 2, 4};
  // An element-wise add right after the GEMM that produces one of its operands runs in that
  // GEMM's epilogue (docs/npu-model.md §4, "Fusion and residency").
  bool fuse_epilogue = true;
  // Activations stay in the input buffer for the layers that read them, where they fit.
  bool keep_activations_on_chip = true;
  EnergyConfig energy;
};

// Thrown by Npu::validate. `key` is the dotted path relative to the `npu` section
// (e.g. "buffers.weight_kib"), so a loader can prefix its file and section.
class NpuConfigError : public std::invalid_argument {
 public:
  NpuConfigError(std::string key, std::string value, std::string allowed);
  const std::string& key() const { return key_; }
  const std::string& value() const { return value_; }
  const std::string& allowed() const { return allowed_; }

 private:
  std::string key_, value_, allowed_;
};

// The array as seen by one stack factor k: (k*T_P)-wide x (T_C/k) PEs, input tile T_R/k rows.
struct StackGeometry {
  std::uint32_t k = 1;
  std::uint32_t tile_rows = 0;         // T_R / k
  std::uint32_t tile_depth = 0;        // k * T_P
  std::uint32_t tile_cols = 0;         // T_C / k
  // 1 multiply + ceil(log2 T_P) PE adder levels + ceil(log2 k) stacking adder levels +
  // 1 accumulate: a row issued in cycle t is in its accumulator after cycle t + depth - 1.
  std::uint32_t pipeline_depth_cycles = 0;
};

// Validated NPU. Invariants: every field of the config is in range, each stack factor divides
// T_C and T_R, every buffer has at least one byte (whether a layer fits is the mapper's
// question), and R-batching with k=1 is allowed. A
// systolic NPU allows exactly R-batching with k = 1 and has no stack geometries.
class Npu {
 public:
  static constexpr std::size_t max_stack_factors = 8;

  // Throws NpuConfigError naming the first offending key.
  static Npu validate(const NpuConfig& config);

  const NpuConfig& config() const { return config_; }
  std::uint64_t latency_cycles() const { return latency_cycles_; }
  std::uint64_t bandwidth_mbps() const { return bandwidth_mbps_; }
  bool allows(BatchingMode mode) const;
  bool allows_stack_factor(std::uint32_t k) const;
  // Geometry for an allowed stack factor; throws std::out_of_range otherwise.
  const StackGeometry& geometry(std::uint32_t k) const;
  const std::vector<StackGeometry>& geometries() const { return geometries_; }

  // The off-chip channel keeps requests outstanding: a request issued at cycle t has its data
  // on the bus from t + latency at the earliest, and the bus carries one request's data at a
  // time, in issue order. data_cycles is how long `bytes` occupy the bus:
  // ceil(bytes * clock / bandwidth); zero bytes issue no request.
  std::uint64_t data_cycles(std::uint64_t bytes) const {
    return (bytes * clock_mhz_ + bandwidth_mbps_ - 1) / bandwidth_mbps_;
  }
  // A lone request on an idle channel: latency + data cycles (0 for no bytes).
  std::uint64_t transfer_cycles(std::uint64_t bytes) const {
    return bytes == 0 ? 0 : latency_cycles_ + data_cycles(bytes);
  }
  // Time of `cycles` in picoseconds: ceil(cycles * 10^6 / clock_MHz), exact whenever the clock
  // period is a whole number of picoseconds. Holds for anything under 10^13 cycles.
  std::int64_t cycles_to_ps(std::uint64_t cycles) const {
    return static_cast<std::int64_t>((cycles * 1'000'000 + clock_mhz_ - 1) / clock_mhz_);
  }
  bool is_systolic() const { return config_.array == ArrayKind::systolic; }
  const EnergyTable& energy() const { return energy_; }
  std::uint64_t macs_per_cycle() const {
    if (is_systolic()) return std::uint64_t{config_.systolic.rows} * config_.systolic.cols;
    return std::uint64_t{config_.pe_count} * config_.pe_width;
  }

 private:
  explicit Npu(NpuConfig config) : config_(std::move(config)) {}
  static Npu validate_systolic(const NpuConfig& config, double bandwidth_mbps);
  void set_channel(double bandwidth_mbps);
  NpuConfig config_;
  std::uint64_t clock_mhz_ = 0;
  std::uint64_t latency_cycles_ = 0;
  std::uint64_t bandwidth_mbps_ = 0;
  std::uint32_t allowed_modes_mask_ = 0;
  std::vector<StackGeometry> geometries_;
  EnergyTable energy_;
};

// The energies of `config` with every default filled in (energy.hpp has the rules). Throws
// NpuConfigError for a negative or non-finite energy, or a node or supply out of range.
EnergyTable resolve_energy(const NpuConfig& config);

std::uint32_t ceil_log2(std::uint64_t value);

}  // namespace npusim::npu
