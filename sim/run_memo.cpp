#include "sim/run_memo.hpp"

#include <algorithm>

namespace npusim::sim {
namespace {

std::size_t entries_of(const npu::ControlBlockTable& table) { return table.layer_count() * table.max_batch(); }

// The entry `name` of `kept`, loaded the first time only.
template <typename T>
const T& kept_or_loaded(std::map<std::string, T>& kept, const std::string& name, const std::function<T()>& load) {
  if (const auto it = kept.find(name); it != kept.end()) return it->second;
  return kept.emplace(name, load()).first->second;
}

}  // namespace

const npu::Npu& RunMemo::npu_preset(const std::string& name, const std::function<npu::Npu()>& load) {
  return kept_or_loaded(npu_presets_, name, load);
}

const workloads::LoweredNetwork& RunMemo::zoo_model(const std::string& name,
                                                    const std::function<workloads::LoweredNetwork()>& load) {
  return kept_or_loaded(zoo_, name, load);
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
