#pragma once
// The network-level residency plan: which activations stay in the input buffer between the
// layers that produce and read them, and which element-wise adds and global pools run in the
// epilogue of the GEMM before them (docs/npu-model.md §4, "Fusion and residency").

#include <cstddef>
#include <cstdint>
#include <vector>

#include "npu_model/layer_lowering.hpp"
#include "npu_model/placement.hpp"

namespace npusim::npu {

struct PlannedLayer {
  Placement placement;
  // An element-wise add or a global pool that runs in the epilogue of the GEMM before it
  // (directly, or through a fused add): it costs nothing here.
  bool fused_into_previous = false;
  // When fused_into_previous: the GEMM whose epilogue does this layer's work.
  std::size_t epilogue_host = 0;
};

struct ResidencyPlan {
  std::vector<PlannedLayer> layers;
  // [layer]: bytes of activations in the input buffer at the boundary before the layer: what a
  // batch suspended there must save to make room, and restore before it goes on.
  std::vector<std::uint64_t> on_chip_bytes_before;
};

// The plan for `batch` samples of a network's layers (in execution order, with their inputs
// set). Fusion and residency follow the NPU's fuse_epilogue and keep_activations_on_chip;
// `allow_residency = false` turns residency off whatever the NPU says (the fallback when a
// planned layer finds no tiling in the room left to it). Layers without inputs (costed on
// their own) get the default placement.
ResidencyPlan plan_residency(const Npu& npu, const std::vector<LayerWork>& layers, std::uint32_t batch,
                             bool allow_residency = true);

}  // namespace npusim::npu
