#pragma once
// The toy NPU of the hand-worked timing tests: every number is easy. 4 PEs x 4 lanes, T_R = 4,
// 1 GHz, 1 GB/s = 1 byte per cycle, 10 ns = 10 cycles of latency, int8 data, int32
// accumulators; pipeline depth D = 1 multiply + log2(4) = 2 adder levels + 1 accumulate = 4.
// Each test sets the buffers, the queue depth and the stack factors it works with.

#include "npu_model/npu_config.hpp"

namespace npusim::testing {

inline npu::NpuConfig toy_npu_config(std::uint64_t input_bytes, std::uint64_t weight_bytes,
                                     std::uint64_t output_bytes, std::uint32_t queue_depth) {
  npu::NpuConfig c;
  c.name = "toy";
  c.clock_mhz = 1000;
  c.pe_count = 4;
  c.pe_width = 4;
  c.input_rows = 4;
  c.element_bytes = 1;
  c.accumulator_bytes = 4;
  c.vector_lanes = 4;
  c.buffers.input_bytes = input_bytes;
  c.buffers.weight_bytes = weight_bytes;
  c.buffers.output_bytes = output_bytes;
  c.offchip.bandwidth_gb_per_s = 1.0;
  c.offchip.latency_ns = 10;
  c.offchip.queue_depth = queue_depth;
  return c;
}

}  // namespace npusim::testing
