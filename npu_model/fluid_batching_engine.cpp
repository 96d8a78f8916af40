#include "npu_model/fluid_batching_engine.hpp"

#include <algorithm>
#include <atomic>
#include <exception>
#include <thread>

#include <fmt/format.h>

namespace npusim::npu {

namespace {

bool same_work(const LayerWork& a, const LayerWork& b) {
  if (a.on_vector_path != b.on_vector_path) return false;
  return a.on_vector_path ? a.vector == b.vector : a.gemm == b.gemm;
}

// The costs of every layer for one batch size under `plan`. Networks repeat their blocks: a
// layer with the work and placement of an earlier one costs what that one cost.
std::vector<LayerCost> costs_under(const Npu& npu, const std::vector<LayerWork>& layers, std::uint32_t batch,
                                   const ResidencyPlan& plan) {
  std::vector<LayerCost> costs;
  costs.reserve(layers.size());
  for (std::size_t i = 0; i < layers.size(); ++i) {
    const PlannedLayer& planned = plan.layers[i];
    if (planned.fused_into_previous) {
      // The epilogue still does the layer's operations; they cost no cycles, but energy.
      costs.push_back(LayerCost{.mapping = {batch, 1, 1},
                                .fused_into_previous = true,
                                .on_chip = {.vector_ops = batch * layers[i].vector.operations}});
      continue;
    }
    std::size_t same = i;
    for (std::size_t j = 0; j < i && same == i; ++j)
      if (!plan.layers[j].fused_into_previous && plan.layers[j].placement == planned.placement &&
          same_work(layers[j], layers[i]))
        same = j;
    if (same != i) {
      costs.push_back(costs[same]);
      continue;
    }
    try {
      costs.push_back(best_layer_cost(npu, layers[i], batch, planned.placement));
    } catch (const NoFeasibleTiling& e) {
      throw NoFeasibleTiling(fmt::format("layer {} at batch {}: {}", layers[i].name, batch, e.what()));
    }
  }
  return costs;
}

}  // namespace

ControlBlockTable ControlBlockTable::build(const Npu& npu, const std::vector<LayerWork>& layers,
                                           std::uint32_t max_batch, unsigned threads) {
  if (max_batch == 0) throw std::invalid_argument("control-block table needs max_batch >= 1");
  ControlBlockTable table;
  table.layer_count_ = layers.size();
  table.max_batch_ = max_batch;
  table.entries_.resize(layers.size() * max_batch);
  table.on_chip_bytes_.resize(layers.size() * max_batch);
  // Each batch size writes its own entries, so batch sizes build apart.
  const auto build_batch = [&](std::uint32_t batch) {
    ResidencyPlan plan = plan_residency(npu, layers, batch);
    std::vector<LayerCost> costs;
    try {
      costs = costs_under(npu, layers, batch, plan);
    } catch (const NoFeasibleTiling&) {
      // The plan left some layer too little room to stream its operands: that batch size runs
      // with every activation through DRAM (fusion stays).
      plan = plan_residency(npu, layers, batch, false);
      costs = costs_under(npu, layers, batch, plan);
    }
    for (std::size_t i = 0; i < layers.size(); ++i) {
      table.entries_[table.index(batch, i)] = std::move(costs[i]);
      table.on_chip_bytes_[table.index(batch, i)] = plan.on_chip_bytes_before[i];
    }
  };
  // One path for any thread count: the calling thread is one of them, and the error thrown is
  // the smallest failing batch size's, as an ascending build on one thread would throw.
  const unsigned workers = std::clamp<unsigned>(threads, 1, max_batch);
  std::vector<std::exception_ptr> failures(std::size_t{max_batch} + 1);
  {
    // Largest batch sizes first, each to the next free thread: they take longest.
    std::atomic<std::uint64_t> taken{0};
    const auto build_some = [&] {
      for (std::uint64_t i = taken++; i < max_batch; i = taken++) {
        const auto batch = static_cast<std::uint32_t>(max_batch - i);
        try {
          build_batch(batch);
        } catch (...) {
          failures[batch] = std::current_exception();
        }
      }
    };
    std::vector<std::jthread> pool;
    for (unsigned w = 1; w < workers; ++w) pool.emplace_back(build_some);
    build_some();
  }
  for (const auto& failure : failures)
    if (failure) std::rethrow_exception(failure);
  return table;
}

std::size_t ControlBlockTable::index(std::uint32_t batch, std::size_t layer) const {
  if (batch == 0 || batch > max_batch_ || layer >= layer_count_)
    throw std::out_of_range(fmt::format(
        "control block has batch 1..{} and layers 0..{}; asked for batch {} layer {}",
        max_batch_, layer_count_ == 0 ? 0 : layer_count_ - 1, batch, layer));
  return layer * max_batch_ + batch - 1;
}

const LayerCost& ControlBlockTable::entry(std::uint32_t batch, std::size_t layer) const {
  return entries_[index(batch, layer)];
}

std::uint64_t ControlBlockTable::on_chip_bytes_before(std::uint32_t batch, std::size_t layer) const {
  return on_chip_bytes_[index(batch, layer)];
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

void FbeRegisters::preempt(std::uint32_t b_incr, bool merge, bool restart) {
  if (contexts_.size() >= depth_)
    throw FbeProtocolError(fmt::format("preempt: {} batches are already suspended (depth {})", contexts_.size(), depth_));
  if (b_act_ == 0 || l_ == 0)
    throw FbeProtocolError("preempt: nothing to suspend (no active batch past layer 0)");
  const std::uint64_t grows_to = merge ? std::uint64_t{b_incr} + merge_chain() : b_incr;
  if (b_incr == 0 || grows_to > max_batch_)
    throw FbeProtocolError(fmt::format("preempt: B_incr {} with B_act {} exceeds the table's batch {}",
                                       b_incr, b_act_, max_batch_));
  if (merge && restart) throw FbeProtocolError("preempt: a catch-up run cannot merge into a batch that restarts");
  contexts_.push_back({b_act_, restart ? 0u : l_, merging_});
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

void FbeRegisters::layers_done(std::uint32_t n) {
  if (n == 0) return;
  if (merging_ && b_act_ > 0 && contexts_.back().layer > l_ && contexts_.back().layer < l_ + n)
    throw FbeProtocolError(fmt::format("layers done: {} layers from l = {} pass the merge at l_old = {}", n, l_,
                                       contexts_.back().layer));
  l_ += n - 1;
  layer_done();
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
