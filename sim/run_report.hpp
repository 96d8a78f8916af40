#pragma once
// What a run leaves behind (docs/metrics.md): summary.json, an optional per-sample CSV, and a
// readable summary for the terminal. Files appear complete or not at all.

#include <filesystem>
#include <stdexcept>
#include <streambuf>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include "sim/serving.hpp"

namespace npusim::sim {

// An output file or directory that cannot be written: the user's to fix (a path, a
// permission, a full disk). what() is one line naming it.
class OutputError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Throws OutputError unless `path` is absent or (after following links) a regular file: an
// output never replaces a directory, a device, a FIFO or a socket (docs/cli.md, "Outputs").
void require_replaceable(const std::filesystem::path& path);

// A file written under NAME.partial and renamed to NAME by commit(); removed if never
// committed. NAME and NAME.partial must be absent or regular files. Every write, the flush
// and the close are checked: commit() throws OutputError naming the file when any failed,
// and then NAME is left as it was.
class AtomicFile {
 public:
  explicit AtomicFile(std::filesystem::path file);
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;
  std::ostream& stream() { return out_; }
  void commit();

 private:
  // Writes to the descriptor that created NAME.partial, never to whatever the name may point at
  // by the time of a second open. A write that fails sets the stream's badbit and keeps errno.
  class DescriptorBuffer : public std::streambuf {
   public:
    static constexpr std::size_t buffer_bytes = 64 * 1024;
    DescriptorBuffer();
    ~DescriptorBuffer() override;
    DescriptorBuffer(const DescriptorBuffer&) = delete;
    DescriptorBuffer& operator=(const DescriptorBuffer&) = delete;
    void attach(int fd) { fd_ = fd; }
    // Writes what is buffered and closes; false (errno kept in error()) when any write failed.
    bool close();
    // Closes without writing what is buffered: the file is about to be removed.
    void discard();
    int error() const { return error_; }

   protected:
    int_type overflow(int_type c) override;
    int sync() override;

   private:
    bool drain();
    int fd_ = -1;
    int error_ = 0;
    std::vector<char> buffer_;
  };

  std::filesystem::path file_, partial_;
  DescriptorBuffer buffer_;
  std::ostream out_{&buffer_};
  bool committed_ = false;
};

// One CSV field per RFC 4180: as it is, or in double quotes (with each " doubled) when it
// holds a comma, a double quote, a CR or an LF.
std::string csv_field(std::string_view value);

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
