#include "npu_model/clocked_run.hpp"

#include <memory>

#include <systemc>

#include "npu_model/systemc_context.hpp"

namespace npusim::npu {
namespace {

SC_MODULE(ClockedModel) {
  sc_core::sc_in<bool> clk;
  const std::function<void()>* tick = nullptr;
  const std::function<bool()>* finished = nullptr;

  SC_CTOR(ClockedModel) {
    SC_METHOD(on_rising_edge);
    sensitive << clk.pos();
    dont_initialize();
  }

  void on_rising_edge() {
    (*tick)();
    if ((*finished)()) sc_core::sc_stop();
  }
};

}  // namespace

ClockedRun run_clocked(std::uint32_t clock_mhz, const std::function<void()>& tick,
                       const std::function<bool()>& finished) {
  ScopedSystemCContext context;
  const sc_core::sc_time period(1.0e6 / clock_mhz, sc_core::SC_PS);
  auto clock = std::make_unique<sc_core::sc_clock>("clk", period);
  auto model = std::make_unique<ClockedModel>("model");
  model->clk(*clock);
  model->tick = &tick;
  model->finished = &finished;
  sc_core::sc_start();
  // The last edge fires at (cycles - 1) periods; the run ends one period later.
  ClockedRun run;
  run.period_ps = period.value();
  run.simulated_ps = (sc_core::sc_time_stamp() + period).value();
  model.reset();
  clock.reset();
  return run;
}

}  // namespace npusim::npu
