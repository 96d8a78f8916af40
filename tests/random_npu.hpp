#pragma once
// Random small NPUs, GEMMs and legal mappings for property tests. Small enough that the
// cycle-stepped reference runs a case in milliseconds, varied enough to reach every regime of
// the schedule: single/double buffering, resident/streamed weights, edge tiles, stacking.

#include <algorithm>
#include <vector>

#include "npu_model/gemm.hpp"
#include "npu_model/npu_config.hpp"
#include "npu_model/int_matrix.hpp"
#include "npu_model/placement.hpp"
#include "traces/random_stream.hpp"

namespace npusim::testing {

struct RandomCase {
  npu::NpuConfig config;
  npu::GemmShape shape;
  std::uint32_t batch = 1;
  npu::BatchMapping mapping;
};

inline RandomCase random_case(traces::RandomStream& rng) {
  RandomCase c;
  auto& n = c.config;
  n.name = "random";
  const std::uint32_t sizes[] = {1, 2, 3, 4, 6, 8};
  n.pe_count = sizes[rng.uniform_below(6)];
  n.pe_width = static_cast<std::uint32_t>(rng.uniform_between(1, 8));
  n.input_rows = sizes[rng.uniform_below(6)];
  n.clock_mhz = static_cast<std::uint32_t>(rng.uniform_between(100, 2000));
  n.element_bytes = 1u << rng.uniform_below(3);
  n.accumulator_bytes = std::max(n.element_bytes, 4u);
  n.offchip.bandwidth_gb_per_s = static_cast<double>(rng.uniform_between(100, 20'000)) / 1000.0;
  n.offchip.latency_ns = static_cast<std::uint32_t>(rng.uniform_below(40));
  // One NPU in five is the R-batching baseline (no P/fluid batching, no group packing).
  if (rng.uniform_below(5) == 0) n.modes = {npu::BatchingMode::r_batching};
  n.stack_factors.clear();
  for (std::uint32_t k = 1; k <= 8; ++k)
    if (n.pe_count % k == 0 && n.input_rows % k == 0 && (k == 1 || rng.uniform_below(2)))
      n.stack_factors.push_back(k);
  // Buffers of one to a few tiles, so that single buffering and streamed weights both occur.
  const std::uint64_t input_tile = std::uint64_t{n.input_rows} * n.pe_width * n.element_bytes;
  const std::uint64_t weight_tile = std::uint64_t{n.pe_width} * n.pe_count * n.element_bytes;
  const std::uint64_t output_tile = std::uint64_t{n.input_rows} * n.pe_count * n.accumulator_bytes;
  n.buffers.input_bytes = input_tile * rng.uniform_between(1, 3) + rng.uniform_below(input_tile);
  n.buffers.weight_bytes = weight_tile * rng.uniform_between(1, 6) + rng.uniform_below(weight_tile);
  n.buffers.output_bytes = output_tile * rng.uniform_between(1, 3) + rng.uniform_below(output_tile);
  c.shape.rows = rng.uniform_between(1, 24);
  // Half the layers have a small P, where P-batching and fluid mappings become legal.
  c.shape.depth = rng.uniform_below(2) ? rng.uniform_between(1, 6) : rng.uniform_between(1, 40);
  c.shape.cols = rng.uniform_between(1, 20);
  c.batch = static_cast<std::uint32_t>(rng.uniform_between(1, 5));
  c.shape.groups = rng.uniform_below(2) ? 1 : rng.uniform_between(2, 6);
  return c;
}

// Every legal mapping of `batch` samples of `shape` on `npu`.
inline std::vector<npu::BatchMapping> legal_mappings(const npu::Npu& npu, const npu::GemmShape& shape,
                                                     std::uint32_t batch) {
  std::vector<npu::BatchMapping> legal;
  for (auto k : npu.config().stack_factors)
    for (std::uint32_t b_p = 1; b_p <= batch; ++b_p) {
      const npu::BatchMapping m{(batch + b_p - 1) / b_p, b_p, k};
      if (npu::mapping_violation(npu, shape, batch, m).empty()) legal.push_back(m);
    }
  return legal;
}

// Picks a legal mapping of `batch` samples of `shape` uniformly among all legal ones.
inline npu::BatchMapping random_legal_mapping(const npu::Npu& npu, const npu::GemmShape& shape, std::uint32_t batch,
                                              traces::RandomStream& rng) {
  const auto legal = legal_mappings(npu, shape, batch);
  return legal[rng.uniform_below(legal.size())];
}

inline npu::BatchMapping random_legal_mapping(const npu::Npu& npu, const RandomCase& c, traces::RandomStream& rng) {
  return random_legal_mapping(npu, c.shape, c.batch, rng);
}

// Per-group weights (P x C each) and per-sample, per-group inputs (R x P each).
struct RandomOperands {
  std::vector<npu::IntMatrix> weights;
  std::vector<std::vector<npu::IntMatrix>> inputs;
};

inline npu::IntMatrix random_matrix(traces::RandomStream& rng, std::uint64_t rows, std::uint64_t cols);

inline RandomOperands random_operands(traces::RandomStream& rng, const npu::GemmShape& shape, std::uint32_t batch) {
  RandomOperands o;
  for (std::uint64_t g = 0; g < shape.groups; ++g) o.weights.push_back(random_matrix(rng, shape.depth, shape.cols));
  o.inputs.resize(batch);
  for (auto& sample : o.inputs)
    for (std::uint64_t g = 0; g < shape.groups; ++g) sample.push_back(random_matrix(rng, shape.rows, shape.depth));
  return o;
}

inline npu::IntMatrix random_matrix(traces::RandomStream& rng, std::uint64_t rows, std::uint64_t cols) {
  npu::IntMatrix m(static_cast<Eigen::Index>(rows), static_cast<Eigen::Index>(cols));
  for (Eigen::Index i = 0; i < m.rows(); ++i)
    for (Eigen::Index j = 0; j < m.cols(); ++j)
      m(i, j) = static_cast<std::int64_t>(rng.uniform_below(255)) - 127;
  return m;
}

// A random placement (docs/memory-schedule.md §10) for `batch` samples of `shape` on `config`:
// each flag on in about a third of the cases, a fused add in two thirds (half of them off
// chip), a reservation in a third. The input buffer grows by the reservation, and with the
// input on chip to hold the whole tensor beside it, so a feasible case stays feasible.
inline npu::Placement random_placement(traces::RandomStream& rng, npu::NpuConfig& config, const npu::GemmShape& shape,
                                       std::uint32_t batch) {
  npu::Placement p;
  p.input_on_chip = rng.uniform_below(3) == 0;
  p.output_on_chip = rng.uniform_below(3) == 0;
  const npu::EpilogueOperand epilogues[] = {npu::EpilogueOperand::none, npu::EpilogueOperand::on_chip,
                                            npu::EpilogueOperand::off_chip};
  p.epilogue = epilogues[rng.uniform_below(3)];
  const npu::FeatureMap f = npu::feature_map_of(shape);
  const std::uint64_t tensor = batch * f.height * f.width * f.channels * shape.groups * config.element_bytes;
  if (rng.uniform_below(3) == 0) p.reserved_input_bytes = rng.uniform_between(1, tensor);
  auto& input = config.buffers.input_bytes;
  if (p.input_on_chip) input = std::max(input, tensor);
  input += p.reserved_input_bytes;
  return p;
}

}  // namespace npusim::testing
