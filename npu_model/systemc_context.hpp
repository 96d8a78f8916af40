#pragma once
// SystemC keeps its simulation context in process-wide pointers. A ScopedSystemCContext gives
// one simulation a fresh context and restores the previous one when it ends, so simulations can
// run one after another in one process (DRAMSys's test-fixture pattern). Create it before any
// SystemC object of the run and destroy those objects first.

#include <systemc>

namespace npusim::npu {

class ScopedSystemCContext {
 public:
  ScopedSystemCContext();
  ~ScopedSystemCContext();
  ScopedSystemCContext(const ScopedSystemCContext&) = delete;
  ScopedSystemCContext& operator=(const ScopedSystemCContext&) = delete;

 private:
  sc_core::sc_simcontext* previous_;
  sc_core::sc_simcontext* context_;
};

}  // namespace npusim::npu
