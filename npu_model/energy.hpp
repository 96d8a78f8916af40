#pragma once
// The energy model (docs/npu-model.md, "Energy"): the on-chip accesses a layer makes, counted
// from the cost model's own schedule (its streaming cycles, tiling and off-chip bytes), and
// their price under the NPU's per-action energies. Energy never feeds back into timing.

#include <cstdint>

#include "npu_model/gemm.hpp"
#include "npu_model/memory_schedule.hpp"
#include "npu_model/npu_config.hpp"
#include "npu_model/placement.hpp"

namespace npusim::npu {

// Bytes read and written in each on-chip buffer, and the vector unit's operations, for one
// layer of a batch. The rules that produce them are equations (E3)-(E10) of docs/npu-model.md §10.
struct OnChipAccesses {
  std::uint64_t input_read_bytes = 0, input_write_bytes = 0;
  std::uint64_t weight_read_bytes = 0, weight_write_bytes = 0;
  std::uint64_t output_read_bytes = 0, output_write_bytes = 0;  // the accumulator buffer
  std::uint64_t vector_ops = 0;
  friend bool operator==(const OnChipAccesses&, const OnChipAccesses&) = default;
};

// Energy by part, in picojoules. static_pj is leakage over the time the parts cover.
struct EnergyParts {
  double mac_pj = 0, sram_pj = 0, dram_pj = 0, vector_pj = 0, static_pj = 0;
  double total_pj() const { return mac_pj + sram_pj + dram_pj + vector_pj + static_pj; }
  EnergyParts& operator+=(const EnergyParts& other);
};

// Horowitz, ISSCC 2014, 45 nm at 0.9 V.
inline constexpr double horowitz_node_nm = 45.0;
inline constexpr double horowitz_supply_v = 0.9;
inline constexpr double horowitz_mult8_pj = 0.2;
inline constexpr double horowitz_add32_pj = 0.1;

// Dynamic energy from 45 nm, 0.9 V to `node_nm` at `supply_v`: (node / 45) * (V / 0.9)^2, the
// classical C V^2 rule with capacitance proportional to feature size.
double process_scale(double node_nm, double supply_v);

// A 64-bit read of an SRAM of `bytes` at 45 nm, 0.9 V: Horowitz's 10 pJ (8 KB), 20 pJ (32 KB) and
// 100 pJ (1 MB), joined log-log and extended past both ends with the nearest segment's slope.
double horowitz_sram_read64_pj(std::uint64_t bytes);

// Bytes of one bank of each buffer, for the capacity rule: the input buffer is one bank that
// broadcasts a row; the weight and accumulator buffers have one bank per PE column (T_C on the
// dot-product array, the columns of a systolic one).
std::uint64_t input_bank_bytes(const NpuConfig& config);
std::uint64_t weight_bank_bytes(const NpuConfig& config);
std::uint64_t output_bank_bytes(const NpuConfig& config);

// Accesses of `batch` samples of `shape` on the dot-product array under `mapping` and `tiling`,
// given the schedule's streaming cycles and off-chip bytes. Requires a legal mapping and a
// tiling the schedule accepted.
OnChipAccesses dot_product_accesses(const Npu& npu, const GemmShape& shape, std::uint32_t batch,
                                    const BatchMapping& mapping, const Tiling& tiling,
                                    std::uint64_t compute_cycles, const TrafficBytes& bytes,
                                    const Placement& placement);

// Accesses of `groups` GEMMs of m x k times k x n on a systolic array (one fold after another),
// given their off-chip bytes.
OnChipAccesses systolic_accesses(const Npu& npu, std::uint64_t m, std::uint64_t k, std::uint64_t n,
                                 std::uint64_t groups, const TrafficBytes& bytes, const Placement& placement);

// Accesses of a vector-path layer (all its elements, the batch's): it reads every input element
// once from the input buffer and writes every output element there once; the DMA writes what it
// loads into that buffer and reads what it stores from it.
OnChipAccesses vector_accesses(const Npu& npu, std::uint64_t input_elements, std::uint64_t output_elements,
                               std::uint64_t operations, const TrafficBytes& bytes);

// Prices counts: macs * mac, accessed bytes * their buffer's energy, off-chip bytes * DRAM, ops *
// vector op, and leakage over `cycles` of the NPU clock.
EnergyParts price_energy(const Npu& npu, std::uint64_t macs, const OnChipAccesses& accesses,
                         std::uint64_t offchip_bytes, std::uint64_t cycles);

// Leakage over `ps` picoseconds: static_mw * ps / 1000 pJ.
double static_energy_pj(const Npu& npu, double ps);

// A context of `bytes` saved to or restored from off-chip memory: the bytes cross the channel
// and are read from (save) or written to (restore) the input buffer once.
EnergyParts context_transfer_energy(const Npu& npu, std::uint64_t bytes);

}  // namespace npusim::npu
