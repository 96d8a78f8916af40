#pragma once
// What the runs of one process may share when it runs several in turn, as a sweep worker does
// (up to 100 points): zoo networks parsed and lowered once, and FBE control-block tables read
// from the table cache once. Reading ResNet-50's table file, checking it and decoding it, and
// parsing its network, were a fifth of a short sweep point's time (docs/sweeps.md).
//
// Contract: an entry is keyed by all that it is made from, so a run handed a RunMemo gets
// objects equal to those a fresh parse or read would give, and its results are byte for byte
// those of a run without one. A zoo network is keyed by its name (the zoo is compiled in); a
// table by npu::control_block_key, which names the NPU, every layer's work and max_batch. At
// most `kept_tables` tables are kept, the oldest dropped first, so a sweep over many NPUs does
// not grow a worker without bound. Not for concurrent use: one per thread or process.

#include <cstddef>
#include <deque>
#include <functional>
#include <map>
#include <string>
#include <utility>

#include "npu_model/fluid_batching_engine.hpp"
#include "workloads/network.hpp"

namespace npusim::sim {

class RunMemo {
 public:
  static constexpr std::size_t kept_tables = 8;

  // The zoo network `name`: `load` runs the first time only.
  const workloads::LoweredNetwork& zoo_model(const std::string& name,
                                             const std::function<workloads::LoweredNetwork()>& load);
  // The table kept under `key`, or null.
  const npu::ControlBlockTable* table(const std::string& key) const;
  void keep_table(const std::string& key, const npu::ControlBlockTable& table);
  std::size_t tables_kept() const { return tables_.size(); }

 private:
  std::map<std::string, workloads::LoweredNetwork> zoo_;
  std::deque<std::pair<std::string, npu::ControlBlockTable>> tables_;  // oldest first
};

}  // namespace npusim::sim
