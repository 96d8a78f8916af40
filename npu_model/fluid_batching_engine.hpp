#pragma once
// The Fluid Batching Engine: its control-block table (batch size, layer) -> <B_R, B_P, k>,
// its register file (B_old, l_old, B_act, l), and a clocked SystemC module around them.

#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <systemc>

#include "npu_model/cost_model.hpp"
#include "npu_model/layer_lowering.hpp"
#include "npu_model/residency_plan.hpp"

namespace npusim::npu {

// Filled offline: for every batch size 1..max_batch and every layer, the allowed mapping with
// the fewest cycles (ties as in best_gemm_cost), with the operands where the residency plan for
// that batch size puts them. Immutable after build.
class ControlBlockTable {
 public:
  // `threads` > 1 builds batch sizes on that many threads; the table, and the exception thrown
  // (the smallest failing batch size's), are those of a build on one.
  static ControlBlockTable build(const Npu& npu, const std::vector<LayerWork>& layers,
                                 std::uint32_t max_batch, unsigned threads = 1);

  std::size_t layer_count() const { return layer_count_; }
  std::uint32_t max_batch() const { return max_batch_; }
  // Throws std::out_of_range for batch outside [1, max_batch] or layer >= layer_count.
  const LayerCost& entry(std::uint32_t batch, std::size_t layer) const;
  const BatchMapping& mapping(std::uint32_t batch, std::size_t layer) const {
    return entry(batch, layer).mapping;
  }
  // Activation bytes the residency plan holds on chip at the boundary before `layer` for a
  // batch of `batch`: what a batch suspended there must save. Same range checks as entry.
  std::uint64_t on_chip_bytes_before(std::uint32_t batch, std::size_t layer) const;

  // The table as bytes and back (control_block_bytes.cpp), for a cache of tables between runs.
  // from_bytes(to_bytes()) equals the table field for field. from_bytes takes only what to_bytes
  // of the same build wrote: it throws std::invalid_argument for bytes that are cut short, too
  // long, or hold a value no table holds, but does not detect a table altered field by field.
  std::string to_bytes() const;
  static ControlBlockTable from_bytes(std::string_view bytes);
  friend bool operator==(const ControlBlockTable&, const ControlBlockTable&) = default;

 private:
  std::size_t layer_count_ = 0;
  std::uint32_t max_batch_ = 0;
  std::size_t index(std::uint32_t batch, std::size_t layer) const;
  std::vector<LayerCost> entries_;  // layer-major: [layer * max_batch + batch - 1]
  std::vector<std::uint64_t> on_chip_bytes_;  // the same layout
};

class FbeProtocolError : public std::logic_error {
 public:
  using std::logic_error::logic_error;
};

// The FBE's register file and control rules, free of any simulation kernel so the serving
// model and the SystemC module share one definition. The hardware holds one suspended context
// (B_old, l_old); `depth` generalises that to a stack for design-space studies.
//  - start(B): with nothing active or suspended, B_act = B, l = 0.
//  - preempt(B_incr, merge) at a layer boundary: the active (B_act, l) is suspended and the
//    B_incr new samples run from layer 0 (B_act = B_incr, l = 0). With merge they catch up:
//    when l reaches the suspended l_old the two merge, B_act += B_old. Without merge they run
//    to the end and the suspended batch resumes after them. With restart (no merge) the
//    suspended batch's progress is discarded (PREMA's kill): l_old = 0, so it resumes from
//    layer 0.
//  - early_exit(B_exit): B_exit samples leave at the current layer; B_act -= B_exit.
//  - layer_done(): l += 1, then a catch-up run that reached l_old merges.
//  - layers_done(n): n layer_done()s with no exit between them, in one step. A merge may only
//    fall on the last of them.
//  - resume(): when B_act is 0 (everybody left) and a batch is suspended, it comes back:
//    B_act = B_old, l = l_old.
// Violations (more exits than samples, more suspended batches than `depth`, a merged batch
// above the table) throw FbeProtocolError.
class FbeRegisters {
 public:
  explicit FbeRegisters(std::uint32_t max_batch, std::uint32_t depth = 1) : max_batch_(max_batch), depth_(depth) {}
  void start(std::uint32_t batch);
  void preempt(std::uint32_t b_incr, bool merge = true, bool restart = false);
  void early_exit(std::uint32_t b_exit);
  void layer_done();
  void layers_done(std::uint32_t n);
  void resume();

  std::uint32_t active_batch() const { return b_act_; }
  std::uint32_t layer() const { return l_; }
  // The most recently suspended context (what the hardware registers show); 0 when none.
  std::uint32_t suspended_batch() const { return contexts_.empty() ? 0 : contexts_.back().batch; }
  std::uint32_t suspended_layer() const { return contexts_.empty() ? 0 : contexts_.back().layer; }
  std::size_t suspended_count() const { return contexts_.size(); }
  bool catching_up() const { return merging_; }

 private:
  struct Context {
    std::uint32_t batch, layer;
    bool merging;  // the suspended batch was itself a catch-up run
  };
  std::uint32_t merge_chain() const;

  std::uint32_t max_batch_;
  std::uint32_t depth_;
  std::uint32_t b_act_ = 0, l_ = 0;
  bool merging_ = false;  // the active batch merges into the top context at its layer
  std::vector<Context> contexts_;
};

// Clocked FBE. On each rising edge it applies, in this order, start (with b_start), early_exit
// (with b_exit), layer_done, resume (when B_act fell to 0 with a batch suspended) and preempt
// (with b_incr, merging), then drives the mapping for (B_act, l). Outputs are 0 when no samples are active or the network is finished.
SC_MODULE(FluidBatchingEngine) {
  sc_core::sc_in<bool> clk;
  sc_core::sc_in<bool> start, preempt, early_exit, layer_done;
  sc_core::sc_in<std::uint32_t> b_start, b_incr, b_exit;
  sc_core::sc_out<std::uint32_t> b_r, b_p, k, layer, active_batch;

  SC_HAS_PROCESS(FluidBatchingEngine);
  FluidBatchingEngine(sc_core::sc_module_name name, const ControlBlockTable& table);
  const FbeRegisters& registers() const { return registers_; }

 private:
  void on_rising_edge();
  const ControlBlockTable& table_;
  FbeRegisters registers_;
};

}  // namespace npusim::npu
