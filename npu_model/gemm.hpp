#pragma once
// The unit of work the PE array executes, and how a batch of samples is laid out on it.

#include <cstdint>
#include <stdexcept>
#include <string>

#include "npu_model/npu_config.hpp"

namespace npusim::npu {

// One sample's layer as a GEMM: activations R x P times weights P x C, `groups` times with
// different weights (grouped and depthwise convolution: R x P_g times P_g x C_g per group).
struct GemmShape {
  std::uint64_t rows = 1;     // R
  std::uint64_t depth = 1;    // P
  std::uint64_t cols = 1;     // C
  std::uint64_t groups = 1;
  friend bool operator==(const GemmShape&, const GemmShape&) = default;
};

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
