#pragma once
// The vector path: pooling and element-wise layers that do not run in a GEMM's epilogue. The
// contract is docs/vector-path.md; this is its fast evaluation, proven equal to the cycle-stepped
// reference (vector_reference.hpp).

#include <cstdint>

#include "npu_model/cost_model.hpp"
#include "npu_model/placement.hpp"

namespace npusim::npu {

// What the vector unit computes. `unshaped` carries counts only (a concatenation: no work).
enum class VectorKind { unshaped, pooling, add };

// Work for the vector path, per sample. The first three fields are the counts reports use; the
// rest is the shape the chunked schedule walks (docs/vector-path.md §1). Pooling reads one
// H x W x C map through a K_h x K_w window; add reads two H x W x C maps (kernel, stride and
// padding are then ignored).
struct VectorWork {
  std::uint64_t input_elements = 0;  // of every operand
  std::uint64_t output_elements = 0;
  std::uint64_t operations = 0;  // one op = one element-wise add/max/compare
  VectorKind kind = VectorKind::unshaped;
  std::uint32_t height = 0, width = 0, channels = 0;
  std::uint32_t kernel_height = 1, kernel_width = 1;
  std::uint32_t stride_height = 1, stride_width = 1;
  std::uint32_t padding_height = 0, padding_width = 0;
  friend bool operator==(const VectorWork&, const VectorWork&) = default;
};

// How a layer is cut into chunks and how far ahead its loads run (docs/vector-path.md §3).
struct VectorTiling {
  std::uint64_t channel_block = 1;    // channels per chunk (the last block may have fewer)
  std::uint64_t prefetch_chunks = 0;  // d: the load of chunk j sits at stream slot j - d
  friend bool operator==(const VectorTiling&, const VectorTiling&) = default;
};

// The tiling the vector path uses (docs/vector-path.md §4): the widest channel block that
// double-buffers (else the widest that fits once), then the largest prefetch the input buffer
// guarantees room for. Throws NoFeasibleTiling naming the buffer and the smallest size that
// works when not even one channel fits, std::invalid_argument for unshaped work with elements.
VectorTiling choose_vector_tiling(const Npu& npu, const VectorWork& work, std::uint32_t batch,
                                  const Placement& placement = {});

// The largest prefetch distance with which every load of `channel_block`-wide chunks finds room
// (docs/vector-path.md §4), capped at max(chunks per sample, queue depth). Throws
// NoFeasibleTiling if one chunk does not fit.
std::uint64_t max_prefetch_chunks(const Npu& npu, const VectorWork& work, std::uint32_t batch,
                                  const Placement& placement, std::uint64_t channel_block);

// Cycles, compute cycles and bytes of `batch` samples under the chosen tiling. Mapping reported
// as <batch, 1, 1>. Work with no elements and no ops (unshaped) costs nothing.
LayerCost vector_cost(const Npu& npu, const VectorWork& work, std::uint32_t batch,
                      const Placement& placement = {});

// The same under a given tiling. Throws NoFeasibleTiling if a chunk does not fit or the
// prefetch distance exceeds max_prefetch_chunks.
LayerCost vector_cost_tiled(const Npu& npu, const VectorWork& work, std::uint32_t batch,
                            const Placement& placement, const VectorTiling& tiling);

}  // namespace npusim::npu
