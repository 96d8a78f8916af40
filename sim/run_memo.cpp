#include "sim/run_memo.hpp"

#include <algorithm>

namespace npusim::sim {
namespace {

std::size_t entries_of(const npu::ControlBlockTable& table) { return table.layer_count() * table.max_batch(); }

}  // namespace

const npu::Npu& RunMemo::npu_preset(const std::string& name, const std::function<npu::Npu()>& load) {
  if (const auto it = npu_presets_.find(name); it != npu_presets_.end()) return it->second;
  return npu_presets_.emplace(name, load()).first->second;
}

const workloads::LoweredNetwork& RunMemo::zoo_model(const std::string& name,
                                                    const std::function<workloads::LoweredNetwork()>& load) {
  if (const auto it = zoo_.find(name); it != zoo_.end()) return it->second;
  return zoo_.emplace(name, load()).first->second;
}

const npu::ControlBlockTable* RunMemo::table(const std::string& key) {
  const auto it = std::find_if(tables_.begin(), tables_.end(), [&](const auto& entry) { return entry.first == key; });
  if (it == tables_.end()) return nullptr;
  if (it + 1 != tables_.end()) {
    auto used = std::move(*it);
    tables_.erase(it);
    tables_.push_back(std::move(used));
  }
  return &tables_.back().second;
}

void RunMemo::keep_table(const std::string& key, const npu::ControlBlockTable& table) {
  const std::size_t entries = entries_of(table);
  if (entries > kept_table_entries || this->table(key)) return;
  while (!tables_.empty() && (tables_.size() == kept_tables || table_entries_ + entries > kept_table_entries)) {
    table_entries_ -= entries_of(tables_.front().second);
    tables_.pop_front();
  }
  tables_.emplace_back(key, table);
  table_entries_ += entries;
}

}  // namespace npusim::sim
