#pragma once
// The unit of work the PE array executes, and how a batch of samples is laid out on it.

#include <cstdint>
#include <stdexcept>
#include <string>

#include "npu_model/npu_config.hpp"

namespace npusim::npu {

// The convolution window a GEMM comes from, so the array can form im2col rows on chip from
// feature-map lines. in_height == 0 means a plain GEMM: R rows of P elements, read as the
// window H = R, W = 1, C_g = P with a 1x1 kernel (docs/memory-schedule.md §1).
struct ConvWindow {
  std::uint32_t in_height = 0, in_width = 1;
  std::uint32_t kernel_height = 1, kernel_width = 1;
  std::uint32_t stride_height = 1, stride_width = 1;
  std::uint32_t padding_height = 0, padding_width = 0;
  friend bool operator==(const ConvWindow&, const ConvWindow&) = default;
};

// One sample's layer as a GEMM: activations R x P times weights P x C, `groups` times with
// different weights (grouped and depthwise convolution: R x P_g times P_g x C_g per group).
struct GemmShape {
  std::uint64_t rows = 1;     // R
  std::uint64_t depth = 1;    // P
  std::uint64_t cols = 1;     // C
  std::uint64_t groups = 1;
  ConvWindow window;
  friend bool operator==(const GemmShape&, const GemmShape&) = default;
};

// The window resolved: every field set, for a plain GEMM too. R = out_height * out_width and
// P = kernel_height * kernel_width * channels hold.
struct FeatureMap {
  std::uint64_t height = 1, width = 1, channels = 1;  // input, per group: H, W, C_g
  std::uint64_t kernel_height = 1, kernel_width = 1;
  std::uint64_t stride_height = 1, stride_width = 1;
  std::uint64_t padding_height = 0, padding_width = 0;
  std::uint64_t out_height = 1, out_width = 1;
};
// Throws std::invalid_argument when the window does not produce R rows of depth P.
FeatureMap feature_map_of(const GemmShape& shape);

// <B_R, B_P, k>: samples stacked B_R deep along R and B_P wide along P (block-diagonal
// weights), on the array stacked by factor k.
struct BatchMapping {
  std::uint32_t b_r = 1;
  std::uint32_t b_p = 1;
  std::uint32_t k = 1;
  friend bool operator==(const BatchMapping&, const BatchMapping&) = default;
};

BatchingMode mode_of(const BatchMapping& mapping);
std::string to_string(const BatchMapping& mapping);

class InvalidMapping : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

// A mapping is legal for `batch` samples of `shape` on `npu` when:
//  - 1 <= b_p <= batch and b_r = ceil(batch / b_p) (the grid has no empty row or column);
//  - its mode (r: b_p = 1; p: b_r = 1, b_p > 1; fluid: both > 1) and k are allowed;
//  - b_p > 1 only if b_p * P <= k * T_P: P-batching fills idle lanes of one P tile.
// Returns an empty string when legal, else the reason.
std::string mapping_violation(const Npu& npu, const GemmShape& shape, std::uint32_t batch,
                              const BatchMapping& mapping);
void require_legal(const Npu& npu, const GemmShape& shape, std::uint32_t batch,
                   const BatchMapping& mapping);

// How many groups of a grouped layer one pass packs side by side along P, next to the B_P
// sample slots (block-diagonal weights, one block per sample slot and group): as many as fit
// the k * T_P lanes, at least 1. The layer runs in ceil(groups / packed) passes. Packing needs
// the block-diagonal buffer logic of P-batching: on an NPU without mode p it is always 1.
std::uint64_t groups_per_pass(const Npu& npu, const GemmShape& shape, const BatchMapping& mapping);

// The GEMM the array really runs in one pass of `packed` groups for a mapped batch.
struct EffectiveGemm {
  std::uint64_t rows = 0;   // B_R * R
  std::uint64_t depth = 0;  // B_P * packed * P
  std::uint64_t cols = 0;   // B_P * packed * C
  std::uint64_t blocks = 1; // B_P * packed diagonal blocks (1: a plain GEMM)
};

inline EffectiveGemm effective_gemm(const GemmShape& shape, const BatchMapping& mapping,
                                    std::uint64_t packed = 1) {
  const std::uint64_t blocks = mapping.b_p * packed;
  return {mapping.b_r * shape.rows, blocks * shape.depth, blocks * shape.cols, blocks};
}

}  // namespace npusim::npu
