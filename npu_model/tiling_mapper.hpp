#pragma once
// The mapper: for one (layer, batch mapping, placement), the tiling whose memory schedule
// (memory_schedule.hpp) takes the fewest cycles, ties broken by fewer off-chip bytes.

#include <cstdint>

#include "npu_model/gemm.hpp"
#include "npu_model/memory_schedule.hpp"
#include "npu_model/npu_config.hpp"
#include "npu_model/placement.hpp"

namespace npusim::npu {

// Bytes no schedule can avoid moving, by operand: the weights once, the input lines some output
// reads once, the outputs once, a fused add's off-chip operand once; an operand on chip moves
// nothing. The mapper also uses them to see whether an operand fits.
TrafficBytes compulsory_traffic(const Npu& npu, const GemmShape& shape, std::uint32_t batch,
                                const Placement& placement = {});

// The bytes of a layer's input, weights and outputs, each moved once, as `placement` leaves
// them: an operand on chip moves nothing, a fused add's off-chip operand (shaped like the
// outputs) moves once.
TrafficBytes placed_once(TrafficBytes operands, const Placement& placement);

struct MapperChoice {
  ScheduleResult result;
  Tiling tiling;
  bool found = false;  // false: no candidate fits (or every one would exceed give_up_above)
};

// Exhaustive over a candidate set that depends on the layer and mapping only, never on the
// buffer sizes or the bandwidth: with more buffer every candidate is as fast or faster and more
// of them fit, and with more bandwidth every candidate is as fast or faster, so the choice can
// only get better (the monotonicity tests rely on this).
// Candidates that would take more than `give_up_above` cycles are dropped, and so, without being
// walked, are those whose floor (outline_schedule) cannot beat the best so far. The placement
// is honoured: the input gets the input buffer less the reserved bytes, and an input already on
// chip is never made resident nor prefetched (no tiling fits if the whole of it does not).
MapperChoice choose_tiling(const Npu& npu, const GemmShape& shape, std::uint32_t batch, const BatchMapping& mapping,
                           std::uint64_t give_up_above = ~std::uint64_t{0}, const Placement& placement = {});

}  // namespace npusim::npu
