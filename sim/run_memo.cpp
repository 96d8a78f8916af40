#include "sim/run_memo.hpp"

#include <algorithm>

namespace npusim::sim {

const workloads::LoweredNetwork& RunMemo::zoo_model(const std::string& name,
                                                    const std::function<workloads::LoweredNetwork()>& load) {
  if (const auto it = zoo_.find(name); it != zoo_.end()) return it->second;
  return zoo_.emplace(name, load()).first->second;
}

const npu::ControlBlockTable* RunMemo::table(const std::string& key) const {
  const auto it = std::find_if(tables_.begin(), tables_.end(), [&](const auto& entry) { return entry.first == key; });
  return it == tables_.end() ? nullptr : &it->second;
}

void RunMemo::keep_table(const std::string& key, const npu::ControlBlockTable& table) {
  if (this->table(key)) return;
  if (tables_.size() == kept_tables) tables_.pop_front();
  tables_.emplace_back(key, table);
}

}  // namespace npusim::sim
