#pragma once
// Fold arithmetic of an R x C systolic array with the output-, weight- and input-stationary
// dataflows, in closed form. The schedule it counts is the one the cycle-stepped
// SystolicReference executes (systolic_reference.hpp); tests prove the two agree to the cycle.
// docs/npu-model.md ("Systolic arrays") derives every formula here.

#include <cstdint>

#include "npu_model/memory_schedule.hpp"
#include "npu_model/npu_config.hpp"
#include "npu_model/placement.hpp"

namespace npusim::npu {

// A GEMM as the array sees it: activations m x k times weights k x n (m = batch * R when a
// batch is R-batched: its samples' rows simply stream one after another).
struct SystolicGemm {
  std::uint64_t m = 1;
  std::uint64_t k = 1;
  std::uint64_t n = 1;
};

// Where a dataflow puts the GEMM: one dimension over the PE rows, one over the PE columns,
// and one streamed through time. OS: (m, n, k); WS: (k, n, m); IS: (k, m, n).
struct SystolicLayout {
  std::uint64_t over_rows = 1;
  std::uint64_t over_cols = 1;
  std::uint64_t streamed = 1;
};
SystolicLayout layout_of(Dataflow dataflow, const SystolicGemm& gemm);

// Folds: the GEMM is cut into ceil(over_rows / R) x ceil(over_cols / C) pieces that each fit
// the array, run one after another.
struct SystolicFolds {
  std::uint64_t row_folds = 0;
  std::uint64_t col_folds = 0;
  std::uint64_t count() const { return row_folds * col_folds; }
};
SystolicFolds folds_of(const SystolicConfig& array, const SystolicGemm& gemm);

// Cycles of the whole GEMM on the array, from the first operand entering to the last result
// leaving, folds back to back. A fold that uses h rows and w columns of the array takes
//   OS: T + h + w - 2     WS, IS: 2h + w + T - 2     (T = the streamed dimension)
// cycles; WS and IS first shift the stationary operand in (h cycles). O(1).
std::uint64_t systolic_array_cycles(const SystolicConfig& array, const SystolicGemm& gemm);

// SCALE-Sim's output size along one direction: ceil((in - filter + stride) / stride). It
// differs from the usual floor((in - filter) / stride) + 1 when the stride does not divide
// in - filter: SCALE-Sim then counts one more window, which overhangs the IFMAP edge.
std::uint64_t scalesim_output_size(std::uint64_t in, std::uint64_t filter, std::uint64_t stride);

// SCALE-Sim's lowering of a convolution (no padding; the topology file gives padded IFMAPs):
// m = output pixels, k = filter_h * filter_w * channels, n = filters.
struct ScaleSimConv {
  std::uint64_t ifmap_height = 1, ifmap_width = 1;
  std::uint64_t filter_height = 1, filter_width = 1;
  std::uint64_t channels = 1, filters = 1;
  std::uint64_t stride_height = 1, stride_width = 1;
};
SystolicGemm scalesim_conv_gemm(const ScaleSimConv& conv);

// What SCALE-Sim v2 reports in COMPUTE_REPORT.csv for the same GEMM run stall-free
// (InterfaceBandwidth CALC). Its folds always span the whole array (partial folds are padded
// with idle rows and columns), and "Total Cycles" is the index of the last cycle, one less
// than the count of cycles. O(1).
struct ScaleSimComputeReport {
  std::uint64_t total_cycles = 0;
  std::uint64_t stall_cycles = 0;
  double overall_util_pct = 0.0;       // MACs / (total_cycles * R * C), in %
  double mapping_efficiency_pct = 0.0; // mean over folds of the PEs a fold uses, in %
};
ScaleSimComputeReport scalesim_compute_report(const SystolicConfig& array, const SystolicGemm& gemm);

// A layer on the systolic array with its memory: folds fed through the DMA engine and channel
// of docs/memory-schedule.md §6, the stationary operand double-buffered, streamed operands
// fetched ahead in segments (docs/systolic-memory.md is the contract).
struct SystolicLayerTiming {
  std::uint64_t cycles = 0;          // the layer, first request to last result or write
  std::uint64_t compute_cycles = 0;  // the same folds with operands always on time
  TrafficBytes bytes;                // off-chip bytes by operand
};

// `groups` GEMMs of `gemm`'s shape, one after another, with the operands where `placement`
// puts them. With systolic.stall_free, cycles = compute_cycles = groups *
// systolic_array_cycles (SCALE-Sim's CALC convention) and only the bytes follow the schedule.
// Otherwise exact: equal to the cycle-stepped reference (systolic_memory_reference.hpp).
// O(folds + requests). Throws std::invalid_argument when a buffer cannot hold what one fold
// needs (docs/systolic-memory.md §8).
SystolicLayerTiming systolic_layer_timing(const Npu& npu, const SystolicGemm& gemm, std::uint64_t groups,
                                          const Placement& placement = {});

}  // namespace npusim::npu
