#pragma once
// What the runs of one process may share when it runs several in turn, as a sweep worker does
// (up to 1,000 points): NPU presets and zoo networks parsed (and lowered) once, and FBE
// control-block tables read from the table cache once. Parsing ResNet-50's network again and
// reading, checking and decoding its table file were about 40 % of a 2,000-sample sweep point's
// time, and parsing the NPU preset 5 % (docs/sweeps.md).
//
// Contract: an entry is keyed by all that it is made from, so a run handed a RunMemo gets
// objects equal to those a fresh parse or read would give, and its results are byte for byte
// those of a run without one. An NPU preset or a zoo network is keyed by its name (both are
// compiled in; a preset with npu.* overrides is never kept); a
// table by npu::control_block_key, which names the NPU, every layer's work and max_batch. At
// most `kept_tables` tables, and at most `kept_table_entries` (layer, batch size) entries in
// all, are kept, the least recently used dropped first, so a sweep over many NPUs or large
// batches does not grow a worker without bound. Not for concurrent use: one per thread or
// process.

#include <cstddef>
#include <deque>
#include <functional>
#include <map>
#include <string>
#include <utility>

#include "npu_model/fluid_batching_engine.hpp"
#include "npu_model/npu_config.hpp"
#include "workloads/network.hpp"

namespace npusim::sim {

class RunMemo {
 public:
  static constexpr std::size_t kept_tables = 8;
  // About 30 MB: ResNet-50 at batch 1..32 has 60 x 32 = 1,920 entries.
  static constexpr std::size_t kept_table_entries = 65'536;

  // The NPU preset `name`, without overrides: `load` runs the first time only.
  const npu::Npu& npu_preset(const std::string& name, const std::function<npu::Npu()>& load);
  // The zoo network `name`: `load` runs the first time only.
  const workloads::LoweredNetwork& zoo_model(const std::string& name,
                                             const std::function<workloads::LoweredNetwork()>& load);
  // The table kept under `key` (now the most recently used), or null. The pointer is valid
  // until the memo next changes.
  const npu::ControlBlockTable* table(const std::string& key);
  // Keeps a copy of `table` under `key`, unless it alone exceeds kept_table_entries.
  void keep_table(const std::string& key, const npu::ControlBlockTable& table);
  std::size_t tables_kept() const { return tables_.size(); }
  std::size_t zoo_models_kept() const { return zoo_.size(); }
  std::size_t npu_presets_kept() const { return npu_presets_.size(); }

 private:
  std::map<std::string, npu::Npu> npu_presets_;
  std::map<std::string, workloads::LoweredNetwork> zoo_;
  std::deque<std::pair<std::string, npu::ControlBlockTable>> tables_;  // least recently used first
  std::size_t table_entries_ = 0;
};

}  // namespace npusim::sim
