#pragma once
// Drives a cycle-stepped model from a SystemC clock: the reference models of the PE arrays
// share it, so each is a plain `tick()` per rising edge.

#include <cstdint>
#include <functional>

namespace npusim::npu {

struct ClockedRun {
  std::uint64_t period_ps = 0;     // the clock period as SystemC resolved it
  std::uint64_t simulated_ps = 0;  // SystemC time when the run ends: edges * period
};

// Calls `tick` once per rising edge of a `clock_mhz` clock, in a fresh SystemC context, until
// `finished()` holds after a tick. The first edge is cycle 0, so a model finishing after cycle
// c - 1 took c cycles and c periods.
ClockedRun run_clocked(std::uint32_t clock_mhz, const std::function<void()>& tick,
                       const std::function<bool()>& finished);

}  // namespace npusim::npu
