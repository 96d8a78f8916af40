#include "npu_model/fluid_batching_engine.hpp"

#include <fmt/format.h>

namespace npusim::npu {

namespace {

bool same_work(const LayerWork& a, const LayerWork& b) {
  if (a.on_vector_path != b.on_vector_path) return false;
  if (a.on_vector_path)
    return a.vector.input_elements == b.vector.input_elements && a.vector.output_elements == b.vector.output_elements &&
           a.vector.operations == b.vector.operations;
  return a.gemm == b.gemm;
}

}  // namespace

ControlBlockTable ControlBlockTable::build(const Npu& npu, const std::vector<LayerWork>& layers,
                                           std::uint32_t max_batch) {
  if (max_batch == 0) throw std::invalid_argument("control-block table needs max_batch >= 1");
  ControlBlockTable table;
  table.layer_count_ = layers.size();
  table.max_batch_ = max_batch;
  table.entries_.reserve(layers.size() * max_batch);
  // Networks repeat their blocks: a shape seen before costs what it cost then.
  std::vector<std::size_t> first_of(layers.size());
  for (std::size_t i = 0; i < layers.size(); ++i) {
    first_of[i] = i;
    for (std::size_t j = 0; j < i; ++j)
      if (same_work(layers[j], layers[i])) {
        first_of[i] = j;
        break;
      }
  }
  for (std::size_t i = 0; i < layers.size(); ++i)
    for (std::uint32_t batch = 1; batch <= max_batch; ++batch)
      table.entries_.push_back(first_of[i] == i ? best_layer_cost(npu, layers[i], batch)
                                                : table.entries_[first_of[i] * max_batch + batch - 1]);
  return table;
}

const LayerCost& ControlBlockTable::entry(std::uint32_t batch, std::size_t layer) const {
  if (batch == 0 || batch > max_batch_ || layer >= layer_count_)
    throw std::out_of_range(fmt::format(
        "control block has batch 1..{} and layers 0..{}; asked for batch {} layer {}",
        max_batch_, layer_count_ == 0 ? 0 : layer_count_ - 1, batch, layer));
  return entries_[layer * max_batch_ + batch - 1];
}

void FbeRegisters::start(std::uint32_t batch) {
  if (b_act_ != 0 || !contexts_.empty())
    throw FbeProtocolError(fmt::format("start: a batch of {} is active and {} suspended", b_act_, contexts_.size()));
  if (batch == 0 || batch > max_batch_)
    throw FbeProtocolError(fmt::format("start: batch {} outside 1..{}", batch, max_batch_));
  b_act_ = batch;
  l_ = 0;
}

// The active batch plus every suspended batch it merges into on the way back.
std::uint32_t FbeRegisters::merge_chain() const {
  std::uint32_t total = b_act_;
  bool merging = merging_;
  for (auto it = contexts_.rbegin(); merging && it != contexts_.rend(); ++it) {
    total += it->batch;
    merging = it->merging;
  }
  return total;
}

void FbeRegisters::preempt(std::uint32_t b_incr, bool merge) {
  if (contexts_.size() >= depth_)
    throw FbeProtocolError(fmt::format("preempt: {} batches are already suspended (depth {})", contexts_.size(), depth_));
  if (b_act_ == 0 || l_ == 0)
    throw FbeProtocolError("preempt: nothing to suspend (no active batch past layer 0)");
  const std::uint64_t grows_to = merge ? std::uint64_t{b_incr} + merge_chain() : b_incr;
  if (b_incr == 0 || grows_to > max_batch_)
    throw FbeProtocolError(fmt::format("preempt: B_incr {} with B_act {} exceeds the table's batch {}",
                                       b_incr, b_act_, max_batch_));
  contexts_.push_back({b_act_, l_, merging_});
  b_act_ = b_incr;
  l_ = 0;
  merging_ = merge;
}

void FbeRegisters::early_exit(std::uint32_t b_exit) {
  if (b_exit > b_act_)
    throw FbeProtocolError(fmt::format("early exit: B_exit {} exceeds B_act {}", b_exit, b_act_));
  b_act_ -= b_exit;
}

void FbeRegisters::layer_done() {
  ++l_;
  if (merging_ && b_act_ > 0 && l_ == contexts_.back().layer) {
    b_act_ += contexts_.back().batch;
    merging_ = contexts_.back().merging;
    contexts_.pop_back();
  }
}

void FbeRegisters::resume() {
  if (b_act_ != 0 || contexts_.empty())
    throw FbeProtocolError(fmt::format("resume: B_act is {} with {} suspended", b_act_, contexts_.size()));
  b_act_ = contexts_.back().batch;
  l_ = contexts_.back().layer;
  merging_ = contexts_.back().merging;
  contexts_.pop_back();
}

FluidBatchingEngine::FluidBatchingEngine(sc_core::sc_module_name name,
                                         const ControlBlockTable& table)
    : sc_core::sc_module(name), table_(table), registers_(table.max_batch()) {
  SC_METHOD(on_rising_edge);
  sensitive << clk.pos();
  dont_initialize();
}

void FluidBatchingEngine::on_rising_edge() {
  if (start.read()) registers_.start(b_start.read());
  if (early_exit.read()) registers_.early_exit(b_exit.read());
  if (layer_done.read()) registers_.layer_done();
  // A catch-up run whose samples all left hands the NPU back to the batch it interrupted.
  if (registers_.active_batch() == 0 && registers_.suspended_count() > 0) registers_.resume();
  if (preempt.read()) registers_.preempt(b_incr.read());
  const std::uint32_t batch = registers_.active_batch();
  const std::uint32_t l = registers_.layer();
  layer.write(l);
  active_batch.write(batch);
  if (batch == 0 || l >= table_.layer_count()) {
    b_r.write(0);
    b_p.write(0);
    k.write(0);
    return;
  }
  const BatchMapping& m = table_.mapping(batch, l);
  b_r.write(m.b_r);
  b_p.write(m.b_p);
  k.write(m.k);
}

}  // namespace npusim::npu
