#include "traces/trace_file.hpp"

#include <algorithm>
#include <charconv>
#include <vector>

#include <fmt/format.h>

#include "traces/input_file.hpp"

namespace npusim::traces {
namespace {

std::vector<std::string> split_csv(const std::string& line) {
  std::vector<std::string> fields;
  std::size_t begin = 0;
  while (true) {
    const auto comma = line.find(',', begin);
    // Fields are taken as written: " 12" is not a time, and "cam " is not device "cam".
    std::string field = line.substr(begin, comma == std::string::npos ? std::string::npos : comma - begin);
    if (comma == std::string::npos && !field.empty() && field.back() == '\r') field.pop_back();
    fields.push_back(std::move(field));
    if (comma == std::string::npos) break;
    begin = comma + 1;
  }
  return fields;
}

}  // namespace

std::shared_ptr<const std::string> read_trace_file(const std::filesystem::path& file) {
  try {
    return std::make_shared<const std::string>(read_input_file(file));
  } catch (const InputFileError& e) {
    throw TraceFileError(e.what());
  }
}

TraceReader::TraceReader(const std::filesystem::path& file) : TraceReader(file, read_trace_file(file)) {}

TraceReader::TraceReader(const std::filesystem::path& file, std::shared_ptr<const std::string> text)
    : file_(file.string()), text_(std::move(text)) {
  std::string header;
  if (!next_line(header)) fail("empty file: expected the header arrival_ns,device,model,exit");
  ++line_;
  const auto fields = split_csv(header);
  const bool three = fields.size() == 3 && fields[0] == "arrival_ns" && fields[1] == "device" && fields[2] == "model";
  const bool four = fields.size() == 4 && fields[0] == "arrival_ns" && fields[1] == "device" &&
                    fields[2] == "model" && fields[3] == "exit";
  if (!three && !four) fail(fmt::format("header \"{}\": allowed arrival_ns,device,model[,exit]", printable(header)));
  columns_ = fields.size();
}

bool TraceReader::next_line(std::string& line) {
  if (position_ >= text_->size()) return false;
  const std::size_t end = std::min(text_->find('\n', position_), text_->size());
  line.assign(*text_, position_, end - position_);
  position_ = end + 1;
  return true;
}

void TraceReader::fail(const std::string& message) const {
  throw TraceFileError(fmt::format("{}:{}: {}", file_, line_, message));
}

std::optional<TraceRow> TraceReader::next() {
  std::string text;
  while (next_line(text)) {
    ++line_;
    if (text.empty() || text == "\r") continue;
    const auto fields = split_csv(text);
    if (fields.size() != columns_)
      fail(fmt::format("{} fields: allowed {} (the header's columns)", fields.size(), columns_));
    TraceRow row;
    row.line = line_;
    const std::string& time = fields[0];
    const auto [end, ec] = std::from_chars(time.data(), time.data() + time.size(), row.arrival_ns);
    if (ec != std::errc{} || end != time.data() + time.size() || time.empty())
      fail(fmt::format("arrival_ns = {}: allowed a whole number of nanoseconds", printable(time)));
    if (row.arrival_ns < 0) fail(fmt::format("arrival_ns = {}: allowed a time >= 0", time));
    if (row.arrival_ns > max_arrival_ns)
      fail(fmt::format("arrival_ns = {}: allowed at most {} ns (4e6 s: simulated time is 64-bit picoseconds)", time,
                       max_arrival_ns));
    if (row.arrival_ns < last_ns_)
      fail(fmt::format("arrival_ns = {} is earlier than the row before ({}): rows must be sorted by time",
                       row.arrival_ns, last_ns_));
    last_ns_ = row.arrival_ns;
    row.device = fields[1];
    row.model = fields[2];
    if (row.device.empty()) fail("device is empty");
    if (row.model.empty()) fail("model is empty");
    if (columns_ == 4 && !fields[3].empty()) {
      std::uint32_t exit = 0;
      const std::string& e = fields[3];
      const auto [exit_end, exit_ec] = std::from_chars(e.data(), e.data() + e.size(), exit);
      if (exit_ec != std::errc{} || exit_end != e.data() + e.size())
        fail(fmt::format("exit = {}: allowed an exit index (0 = first exit) or empty", printable(e)));
      row.exit = exit;
    }
    return row;
  }
  return std::nullopt;
}

namespace {

// The rename in commit() would replace whatever `file` is: a device node must stay one.
const std::filesystem::path& replaceable(const std::filesystem::path& file) {
  std::error_code ec;
  const auto status = std::filesystem::status(file, ec);
  if (std::filesystem::exists(status) && !std::filesystem::is_regular_file(status))
    throw TraceFileError(fmt::format("{}: exists and is not a regular file: allowed a regular file or a new path",
                                     file.string()));
  return file;
}

}  // namespace

TraceWriter::TraceWriter(const std::filesystem::path& file)
    : file_(replaceable(file)), partial_(file.string() + ".partial"), out_(partial_) {
  if (!out_) throw TraceFileError(fmt::format("{}: cannot be written", partial_.string()));
  out_ << "arrival_ns,device,model,exit\n";
}

TraceWriter::~TraceWriter() {
  if (!committed_) {
    out_.close();
    std::error_code ec;
    std::filesystem::remove(partial_, ec);
  }
}

void TraceWriter::write(std::int64_t arrival_ns, const std::string& device, const std::string& model,
                        std::optional<std::uint32_t> exit) {
  // A trace must read back: its times stay within what a replay accepts.
  if (arrival_ns < 0 || arrival_ns > max_arrival_ns)
    throw TraceFileError(fmt::format("{}: device {}: an arrival at {} ns: allowed 0 to {} ns (4e6 s of simulated "
                                     "time); the arrival process is too slow for this many samples",
                                     file_.string(), device, arrival_ns, max_arrival_ns));
  out_ << arrival_ns << ',' << device << ',' << model << ',';
  if (exit) out_ << *exit;
  out_ << '\n';
}

void TraceWriter::commit() {
  out_.close();
  if (!out_) throw TraceFileError(fmt::format("{}: writing failed", partial_.string()));
  std::filesystem::rename(partial_, file_);
  committed_ = true;
}

namespace {

class Replay final : public ArrivalProcess {
 public:
  Replay(const std::filesystem::path& file, std::shared_ptr<const std::string> text, std::string device,
         std::string model, std::uint32_t exit_count, std::set<std::string> known)
      : reader_(file, text ? std::move(text) : read_trace_file(file)), device_(std::move(device)), model_(std::move(model)), exit_count_(exit_count),
        known_(std::move(known)) {}

  std::optional<ArrivalEvent> next() override {
    while (auto row = reader_.next()) {
      const std::string where = fmt::format("{}:{}", reader_.file(), row->line);
      if (!known_.count(row->device))
        throw TraceFileError(fmt::format("{}: device = {}: not a device of the scenario", where, printable(row->device)));
      if (row->device != device_) continue;
      if (row->model != model_)
        throw TraceFileError(fmt::format("{}: model = {}: device {} runs {} in the scenario", where, printable(row->model),
                                         device_, model_));
      if (row->exit && *row->exit >= exit_count_)
        throw TraceFileError(fmt::format("{}: exit = {}: allowed 0 to {} ({} has {} exits)", where, *row->exit,
                                         exit_count_ - 1, model_, exit_count_));
      return ArrivalEvent{row->arrival_ns, row->exit};
    }
    return std::nullopt;
  }

 private:
  TraceReader reader_;
  std::string device_, model_;
  std::uint32_t exit_count_;
  std::set<std::string> known_;
};

}  // namespace

std::unique_ptr<ArrivalProcess> open_replay(const std::filesystem::path& file, const std::string& device,
                                            const std::string& model, std::uint32_t exit_count,
                                            std::set<std::string> known_devices,
                                            std::shared_ptr<const std::string> text) {
  return std::make_unique<Replay>(file, std::move(text), device, model, exit_count, std::move(known_devices));
}

}  // namespace npusim::traces
