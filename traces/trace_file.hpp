#pragma once
// The trace CSV (docs/traces.md): header "arrival_ns,device,model,exit", one sample per row,
// sorted by arrival time; exit may be empty (or the column absent) to let the scenario draw it.

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>

#include "traces/arrival_process.hpp"
#include "traces/input_file.hpp"

namespace npusim::traces {

// A trace file problem. what() is one line starting "<file>:<line>: ".
class TraceFileError : public std::runtime_error {
 public:
  explicit TraceFileError(const std::string& message) : std::runtime_error(one_line(message)) {}
};

struct TraceRow {
  std::int64_t arrival_ns = 0;
  std::string device;
  std::string model;
  std::optional<std::uint32_t> exit;
  std::size_t line = 0;
};

// Yields rows one at a time from the file read whole (traces/input_file.hpp: a regular file of
// at most 64 MiB). Rejects (TraceFileError): a file that is not a regular file or too large, a
// missing or wrong header, a wrong field count, a bad, padded or negative time, a time earlier
// than the row before, a bad exit index.
class TraceReader {
 public:
  explicit TraceReader(const std::filesystem::path& file);
  // Reads `text`, the content of `file` as read_trace_file gave it, which readers of the same
  // file share.
  TraceReader(const std::filesystem::path& file, std::shared_ptr<const std::string> text);
  std::optional<TraceRow> next();
  const std::string& file() const { return file_; }

 private:
  bool next_line(std::string& line);
  [[noreturn]] void fail(const std::string& message) const;
  std::string file_;
  std::shared_ptr<const std::string> text_;
  std::size_t position_ = 0;
  std::size_t line_ = 0;
  std::size_t columns_ = 0;
  std::int64_t last_ns_ = 0;
};

// Writes to "<file>.partial" and renames it to <file> on commit(), so an interrupted run never
// leaves a file that looks complete. Destroying an uncommitted writer deletes the partial file.
class TraceWriter {
 public:
  explicit TraceWriter(const std::filesystem::path& file);
  ~TraceWriter();
  TraceWriter(const TraceWriter&) = delete;
  TraceWriter& operator=(const TraceWriter&) = delete;
  void write(std::int64_t arrival_ns, const std::string& device, const std::string& model,
             std::optional<std::uint32_t> exit);
  void commit();

 private:
  std::filesystem::path file_, partial_;
  std::ofstream out_;
  bool committed_ = false;
};

// The whole content of a trace file, through traces/input_file.hpp (TraceFileError for a file
// that is not a regular file or is too large). Devices replaying one file share it.
std::shared_ptr<const std::string> read_trace_file(const std::filesystem::path& file);

// Replays the rows of one device. Every row's device must be in `known_devices` and a row of
// this device must name `model`; its exit, if given, must be below `exit_count`. `text` is the
// file's content from read_trace_file, or null to read it here.
std::unique_ptr<ArrivalProcess> open_replay(const std::filesystem::path& file, const std::string& device,
                                            const std::string& model, std::uint32_t exit_count,
                                            std::set<std::string> known_devices,
                                            std::shared_ptr<const std::string> text = nullptr);

}  // namespace npusim::traces
