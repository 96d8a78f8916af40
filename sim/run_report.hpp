#pragma once
// What a run leaves behind (docs/metrics.md): summary.json, an optional per-sample CSV, and a
// readable summary for the terminal. Files appear complete or not at all.

#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <ostream>
#include <string>

#include "sim/serving.hpp"

namespace npusim::sim {

// An output file or directory that cannot be written: the user's to fix (a path, a
// permission, a full disk). what() is one line naming it.
class OutputError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A file written under NAME.partial and renamed to NAME by commit(); removed if never
// committed. Throws OutputError naming the file when it cannot be written.
class AtomicFile {
 public:
  explicit AtomicFile(std::filesystem::path file);
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;
  std::ostream& stream() { return out_; }
  void commit();

 private:
  std::filesystem::path file_, partial_;
  std::ofstream out_;
  bool committed_ = false;
};

std::string summary_json(const Scenario& scenario, const ServingResult& result);

// The headline metrics as flat (name, value) pairs, names as dotted summary.json paths
// (latency_ms.p99, slo.tail_satisfaction, npu.utilisation, ...). Values print exactly as in
// summary.json. The sweep's results.csv columns.
std::vector<std::pair<std::string, std::string>> summary_fields(const ServingResult& result);
// Those pairs as a two-line CSV: a header and one row.
std::string metrics_csv(const ServingResult& result);
void print_summary(std::ostream& out, const Scenario& scenario, const ServingResult& result);

// One row per sample, in completion (or drop) order:
// sample,device,model,arrival_ns,completion_ns,latency_ms,exit,slo_ms,within_slo,status
class SampleCsvWriter final : public ServingObserver {
 public:
  SampleCsvWriter(const std::filesystem::path& file, const Scenario& scenario);
  void on_complete(std::int64_t time_ps, const scheduler::SampleInfo& sample, std::uint32_t exit) override;
  void on_drop(std::int64_t time_ps, const scheduler::SampleInfo& sample) override;
  void commit() { file_.commit(); }

 private:
  AtomicFile file_;
  const Scenario& scenario_;
  std::vector<std::string> model_names_;
};

}  // namespace npusim::sim
