#pragma once
// A directory of FBE control-block tables kept between runs (docs/sweeps.md, "The table
// cache"), so that the points of a sweep that share an NPU, a network and max_batch build that
// table once. Building one costs 0.1 to 0.5 s; a sweep point of a few thousand samples spends
// most of its time there.

#include <cstdint>
#include <filesystem>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "npu_model/fluid_batching_engine.hpp"
#include "sim/run_memo.hpp"

namespace npusim::sim {

class TableCacheError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The GNU build IDs of the loaded objects that hold the code deciding a table (the executable
// alone when linked statically), or "" when one of them has none.
std::string code_build_id();

// Contract: get() returns exactly the table `build` returns for its inputs, whatever the
// directory holds. A stored table is used only when its file names the same build of npusim
// (code_build_id) and the same key (npu::control_block_key), and its checksum holds; any
// other file is ignored and replaced. Without a build ID nothing is read or stored. Files are
// written under a name of their own and renamed into place, so runs sharing the directory never
// read a partial one; a table that cannot be stored is built again by the next process (with a
// RunMemo, not by later runs of this one). With a RunMemo,
// a table this process has read or built before comes from memory (a hit), and each one read
// or built is kept there.
class TableCache {
 public:
  // When a table get() builds is written to its file: at once, or by store_built() (with a
  // memo only), so that a caller with other work to start first keeps the writing off its path.
  enum class Store { at_once, when_asked };

  // Creates `dir` if needed. Throws TableCacheError naming it when it cannot, or when it is not
  // a directory. `memo`, if given, must outlive the cache.
  explicit TableCache(std::filesystem::path dir, RunMemo* memo = nullptr, Store store = Store::at_once);

  npu::ControlBlockTable get(const npu::NpuConfig& npu, const std::vector<npu::LayerWork>& layers,
                             std::uint32_t max_batch, const std::function<npu::ControlBlockTable()>& build);

  // Store::when_asked: writes the files of the tables built so far that the memo still holds.
  void store_built();

  std::uint64_t hits() const { return hits_; }
  std::uint64_t misses() const { return misses_; }
  // The file that holds, or would hold, the table for these inputs.
  std::filesystem::path file_for(const npu::NpuConfig& npu, const std::vector<npu::LayerWork>& layers,
                                 std::uint32_t max_batch) const;

 private:
  std::filesystem::path file_for_key(const std::string& key) const;
  void store(const std::string& key, const npu::ControlBlockTable& table) const;

  std::filesystem::path dir_;
  std::string build_id_;
  RunMemo* memo_;
  Store store_;
  std::vector<std::string> unstored_;  // keys of tables built and not yet written
  std::uint64_t hits_ = 0, misses_ = 0;
};

}  // namespace npusim::sim
