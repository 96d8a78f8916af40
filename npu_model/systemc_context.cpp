#include "npu_model/systemc_context.hpp"

namespace npusim::npu {

ScopedSystemCContext::ScopedSystemCContext() : previous_(sc_core::sc_curr_simcontext) {
  // Kernel notices ("stopped by user", "tracing timescale unit set") are not news, and they
  // would land in the middle of a command's output.
  sc_core::sc_report_handler::set_actions(sc_core::SC_INFO, sc_core::SC_DO_NOTHING);
  context_ = new sc_core::sc_simcontext();
  sc_core::sc_curr_simcontext = context_;
  sc_core::sc_default_global_context = context_;
}

ScopedSystemCContext::~ScopedSystemCContext() {
  delete context_;
  sc_core::sc_curr_simcontext = previous_;
  sc_core::sc_default_global_context = previous_;
}

}  // namespace npusim::npu
