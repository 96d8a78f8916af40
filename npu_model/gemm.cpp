#include "npu_model/gemm.hpp"

#include <algorithm>

#include <fmt/format.h>

namespace npusim::npu {

BatchingMode mode_of(const BatchMapping& mapping) {
  if (mapping.b_p == 1) return BatchingMode::r_batching;
  if (mapping.b_r == 1) return BatchingMode::p_batching;
  return BatchingMode::fluid;
}

std::string to_string(const BatchMapping& mapping) {
  return fmt::format("<{},{},{}>", mapping.b_r, mapping.b_p, mapping.k);
}

namespace {

__extension__ typedef unsigned __int128 wide;

// Keeps every byte and cycle count of the cost model far from 64-bit overflow.
constexpr wide max_matrix_elements = wide{1} << 40;
constexpr wide max_macs = wide{1} << 62;

}  // namespace

std::string mapping_violation(const Npu& npu, const GemmShape& shape, std::uint32_t batch,
                              const BatchMapping& mapping) {
  if (batch == 0) return "batch must be at least 1";
  if (shape.rows == 0 || shape.depth == 0 || shape.cols == 0 || shape.groups == 0)
    return "R, P, C and groups must be at least 1";
  if (mapping.b_p == 0 || mapping.b_p > batch)
    return fmt::format("b_p = {} must be in [1, batch = {}]", mapping.b_p, batch);
  const std::uint32_t needed_rows = (batch + mapping.b_p - 1) / mapping.b_p;
  if (mapping.b_r != needed_rows)
    return fmt::format("b_r = {} must be ceil(batch / b_p) = {} for batch {} and b_p {}",
                       mapping.b_r, needed_rows, batch, mapping.b_p);
  if (!npu.allows(mode_of(mapping)))
    return fmt::format("batching mode {} is not enabled on NPU {}", to_string(mode_of(mapping)),
                       npu.config().name);
  if (!npu.allows_stack_factor(mapping.k))
    return fmt::format("stack factor k = {} is not in batching.stack_factors {}", mapping.k,
                       fmt::format("[{}]", fmt::join(npu.config().stack_factors, ", ")));
  const std::uint64_t lanes = std::uint64_t{mapping.k} * npu.config().pe_width;
  if (mapping.b_p > 1 && mapping.b_p * shape.depth > lanes)
    return fmt::format("b_p * P = {} * {} exceeds k * T_P = {} lanes", mapping.b_p, shape.depth,
                       lanes);
  const wide rows = wide{mapping.b_r} * shape.rows, depth = wide{mapping.b_p} * shape.depth,
             cols = wide{mapping.b_p} * shape.cols;
  if (rows * depth > max_matrix_elements || depth * cols > max_matrix_elements ||
      rows * cols > max_matrix_elements ||
      wide{batch} * shape.rows * shape.depth * shape.cols * shape.groups > max_macs)
    return "the layer is too large to model (limits: 2^40 elements per matrix, 2^62 MACs)";
  return {};
}

std::uint64_t groups_per_pass(const Npu& npu, const GemmShape& shape, const BatchMapping& mapping) {
  // Packing uses the block-diagonal weight buffer logic of P-batching; without it (a baseline
  // NPU restricted to R-batching) groups run one by one.
  if (!npu.allows(BatchingMode::p_batching)) return 1;
  const std::uint64_t lanes = std::uint64_t{mapping.k} * npu.config().pe_width;
  const std::uint64_t fit = lanes / (std::uint64_t{mapping.b_p} * shape.depth);
  return std::max<std::uint64_t>(1, std::min(shape.groups, fit));
}

FeatureMap feature_map_of(const GemmShape& shape) {
  const ConvWindow& w = shape.window;
  if (w.in_height == 0) return {shape.rows, 1, shape.depth, 1, 1, 1, 1, 0, 0, shape.rows, 1};
  FeatureMap f{w.in_height, w.in_width, 0, w.kernel_height, w.kernel_width, w.stride_height,
               w.stride_width, w.padding_height, w.padding_width, 0, 0};
  const std::uint64_t taps = f.kernel_height * f.kernel_width;
  const std::uint64_t padded_h = f.height + 2 * f.padding_height, padded_w = f.width + 2 * f.padding_width;
  if (taps == 0 || f.stride_height == 0 || f.stride_width == 0 || f.kernel_height > padded_h ||
      f.kernel_width > padded_w || shape.depth % taps != 0)
    throw std::invalid_argument(fmt::format("window {}x{} kernel does not fit a {}x{} input of depth {}",
                                            f.kernel_height, f.kernel_width, f.height, f.width, shape.depth));
  f.channels = shape.depth / taps;
  f.out_height = (padded_h - f.kernel_height) / f.stride_height + 1;
  f.out_width = (padded_w - f.kernel_width) / f.stride_width + 1;
  if (f.out_height * f.out_width != shape.rows)
    throw std::invalid_argument(fmt::format("window gives {}x{} outputs, not R = {}", f.out_height,
                                            f.out_width, shape.rows));
  return f;
}

void require_legal(const Npu& npu, const GemmShape& shape, std::uint32_t batch,
                   const BatchMapping& mapping) {
  if (auto reason = mapping_violation(npu, shape, batch, mapping); !reason.empty())
    throw InvalidMapping(fmt::format("mapping {} is illegal: {}", to_string(mapping), reason));
}

}  // namespace npusim::npu
