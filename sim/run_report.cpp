#include "sim/run_report.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

#include <fmt/format.h>
#include <fmt/ostream.h>

#include "sim/json.hpp"

namespace npusim::sim {
namespace {

// Times are int64 picoseconds or nanoseconds; their differences and scalings are taken in
// 128 bits, where they cannot overflow, so a report never shows a wrapped value. Below 2^63
// the result converts to the same double as the 64-bit arithmetic would give.
__extension__ typedef __int128 wide;

double ms(wide ps) { return static_cast<double>(ps) / 1e9; }
double ps_between(std::int64_t from_ps, std::int64_t to_ps) { return static_cast<double>(wide{to_ps} - wide{from_ps}); }
wide ns_to_ps(std::int64_t ns) { return wide{ns} * 1000; }

const char* file_kind(std::filesystem::file_type type) {
  switch (type) {
    case std::filesystem::file_type::directory: return "a directory";
    case std::filesystem::file_type::block: return "a block device";
    case std::filesystem::file_type::character: return "a character device";
    case std::filesystem::file_type::fifo: return "a FIFO";
    case std::filesystem::file_type::socket: return "a socket";
    default: return "not a regular file";
  }
}

std::string latency_json(const LatencyDistribution& d) {
  return fmt::format(R"({{"mean": {}, "p50": {}, "p90": {}, "p95": {}, "p99": {}, "max": {}, "exact": {}, "relative_error_bound": {}}})",
                     d.mean() / 1e6, d.percentile(50) / 1e6, d.percentile(90) / 1e6, d.percentile(95) / 1e6,
                     d.percentile(99) / 1e6, d.max() / 1e6, d.exact() ? "true" : "false", d.relative_error_bound());
}

std::string counts_json(const GroupMetrics& g) {
  return fmt::format(R"({{"arrived": {}, "completed": {}, "dropped": {}}})", g.arrived, g.completed, g.dropped);
}

std::string slo_json(const GroupMetrics& g) {
  return fmt::format(R"({{"satisfaction": {}, "within": {}, "tail_satisfaction": {}, "tail_windows": {}, "tail_windows_satisfied": {}}})",
                     g.slo_satisfaction(), g.within_slo, g.tail.satisfaction(), g.tail.windows(), g.tail.satisfied());
}

// The rates every report shows, over the span from the first arrival to the last completion
// (docs/metrics.md); zero for an empty span.
struct Rates {
  double span_s = 0.0, throughput_sps = 0.0, utilisation = 0.0, mac_utilisation = 0.0;
};

Rates rates(const ServingResult& result) {
  const auto& s = result.stats;
  const double span_ps = ps_between(s.first_arrival_ps, s.end_ps);
  Rates r;
  if (span_ps <= 0) return r;
  r.span_s = span_ps / 1e12;
  r.throughput_sps = static_cast<double>(result.metrics.overall().completed) / r.span_s;
  r.utilisation = static_cast<double>(s.layer_busy_ps) / span_ps;
  r.mac_utilisation = static_cast<double>(s.macs) / (s.peak_macs_per_ns * span_ps / 1000.0);
  return r;
}

// The run's energy (docs/metrics.md, "Energy"): the dynamic parts the engine counted, and
// leakage over the same span as the rates, split into the time the NPU ran layers or moved
// contexts (busy) and the rest (idle). Leakage is charged to devices by completed samples.
struct EnergySummary {
  npu::EnergyParts parts_pj;
  double context_pj = 0, static_busy_pj = 0, static_idle_pj = 0;
  double total_j = 0, per_sample_mj = 0, avg_power_w = 0;
  std::vector<double> device_mj_per_sample;
};

EnergySummary energy_summary(const ServingResult& result) {
  const auto& s = result.stats;
  const Rates r = rates(result);
  EnergySummary e;
  e.parts_pj = s.dynamic_energy;
  e.context_pj = s.context_energy_pj;
  const double span_ps = std::max(0.0, ps_between(s.first_arrival_ps, s.end_ps));
  const double busy_ps = std::min(span_ps, static_cast<double>(s.layer_busy_ps + s.context_transfer_ps));
  e.static_busy_pj = s.static_mw * busy_ps / 1000.0;
  e.static_idle_pj = s.static_mw * (span_ps - busy_ps) / 1000.0;
  e.parts_pj.static_pj = e.static_busy_pj + e.static_idle_pj;
  e.total_j = e.parts_pj.total_pj() / 1e12;
  const auto completed = result.metrics.overall().completed;
  e.per_sample_mj = completed ? e.total_j * 1e3 / static_cast<double>(completed) : 0.0;
  e.avg_power_w = r.span_s > 0 ? e.total_j / r.span_s : 0.0;
  for (std::size_t d = 0; d < s.device_dynamic_energy_pj.size(); ++d) {
    const auto device_completed = result.metrics.devices()[d].completed;
    const double leakage_pj =
        completed ? e.parts_pj.static_pj * static_cast<double>(device_completed) / static_cast<double>(completed) : 0.0;
    e.device_mj_per_sample.push_back(
        device_completed ? (s.device_dynamic_energy_pj[d] + leakage_pj) / 1e9 / static_cast<double>(device_completed)
                         : 0.0);
  }
  return e;
}

std::string energy_json(const EnergySummary& e) {
  const auto j = [](double pj) { return pj / 1e12; };
  return fmt::format(
      R"({{"total_j": {}, "per_sample_mj": {}, "avg_power_w": {}, "mac_j": {}, "sram_j": {}, "dram_j": {}, "vector_j": {}, "static_j": {}, "of_which": {{"context_transfer_j": {}, "static_busy_j": {}, "static_idle_j": {}}}}})",
      e.total_j, e.per_sample_mj, e.avg_power_w, j(e.parts_pj.mac_pj), j(e.parts_pj.sram_pj), j(e.parts_pj.dram_pj),
      j(e.parts_pj.vector_pj), j(e.parts_pj.static_pj), j(e.context_pj), j(e.static_busy_pj), j(e.static_idle_pj));
}

}  // namespace

void require_replaceable(const std::filesystem::path& path) {
  std::error_code ec;
  const auto type = std::filesystem::status(path, ec).type();
  if (type == std::filesystem::file_type::not_found || type == std::filesystem::file_type::regular) return;
  if (type == std::filesystem::file_type::none)
    throw OutputError(fmt::format("cannot write {}: {}", path.string(), ec.message()));
  throw OutputError(fmt::format("cannot write {}: it is {}; an output may only replace a regular file or create a new one",
                                path.string(), file_kind(type)));
}

AtomicFile::DescriptorBuffer::DescriptorBuffer() : buffer_(buffer_bytes) {
  setp(buffer_.data(), buffer_.data() + buffer_.size());
}

AtomicFile::DescriptorBuffer::~DescriptorBuffer() {
  if (fd_ >= 0) ::close(fd_);
}

bool AtomicFile::DescriptorBuffer::drain() {
  const char* next = pbase();
  while (next < pptr() && error_ == 0) {
    const ssize_t n = ::write(fd_, next, static_cast<std::size_t>(pptr() - next));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) error_ = n < 0 ? errno : EIO;
    else next += n;
  }
  setp(buffer_.data(), buffer_.data() + buffer_.size());
  return error_ == 0;
}

AtomicFile::DescriptorBuffer::int_type AtomicFile::DescriptorBuffer::overflow(int_type c) {
  if (fd_ < 0 || !drain()) return traits_type::eof();
  if (traits_type::eq_int_type(c, traits_type::eof())) return traits_type::not_eof(c);
  *pptr() = traits_type::to_char_type(c);
  pbump(1);
  return c;
}

int AtomicFile::DescriptorBuffer::sync() { return fd_ >= 0 && drain() ? 0 : -1; }

void AtomicFile::DescriptorBuffer::discard() {
  setp(buffer_.data(), buffer_.data() + buffer_.size());
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

bool AtomicFile::DescriptorBuffer::close() {
  if (fd_ < 0) return error_ == 0;
  drain();
  if (::close(fd_) != 0 && error_ == 0) error_ = errno;
  fd_ = -1;
  return error_ == 0;
}

AtomicFile::AtomicFile(std::filesystem::path file) : file_(std::move(file)), partial_(file_.string() + ".partial") {
  require_replaceable(file_);
  // O_EXCL makes sure that what is opened is the regular file created here, never a FIFO or
  // device slipped in under the name, and every write goes through that descriptor. Anything
  // already there is looked at only then: a partial file left by a killed run is stale and
  // goes; another kind of file is an error.
  const auto create = [&] { return ::open(partial_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666); };
  int fd = create();
  if (fd < 0 && errno == EEXIST) {
    require_replaceable(partial_);
    std::error_code ignored;
    std::filesystem::remove(partial_, ignored);
    fd = create();
  }
  if (fd < 0) throw OutputError(fmt::format("cannot write {}: {}", file_.string(), std::strerror(errno)));
  buffer_.attach(fd);
}

AtomicFile::~AtomicFile() {
  if (committed_) return;
  buffer_.discard();
  std::error_code ignored;
  std::filesystem::remove(partial_, ignored);
}

void AtomicFile::commit() {
  out_.flush();
  const bool written = buffer_.close() && !out_.fail();
  if (!written)
    throw OutputError(fmt::format("cannot write {}: {}", file_.string(),
                                  buffer_.error() != 0 ? std::strerror(buffer_.error()) : "a write or the close failed"));
  // Checked again: the path may have become something else while the file was written.
  require_replaceable(file_);
  std::error_code ec;
  std::filesystem::rename(partial_, file_, ec);
  if (ec) throw OutputError(fmt::format("cannot write {}: {}", file_.string(), ec.message()));
  committed_ = true;
}

std::string csv_field(std::string_view value) {
  if (value.find_first_of(",\"\r\n") == std::string_view::npos) return std::string(value);
  std::string out = "\"";
  for (const char c : value) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

std::string summary_json(const Scenario& scenario, const ServingResult& result) {
  const auto& all = result.metrics.overall();
  const auto& s = result.stats;
  const Rates r = rates(result);
  std::string out = "{\n";
  out += fmt::format("  \"scenario\": {},\n  \"source\": {},\n  \"policy\": {},\n  \"seed\": {},\n",
                     json_string(scenario.name), json_string(scenario.source), json_string(scenario.scheduler.policy),
                     scenario.simulation.seed);
  out += fmt::format("  \"samples\": {},\n", counts_json(all));
  out += fmt::format("  \"latency_ms\": {},\n", latency_json(all.latency_ns));
  out += fmt::format("  \"slo\": {},\n", slo_json(all));
  // The latency distribution at 1 %, 2 %, ..., 99 % and 99.9 %, for CDF plots.
  std::string percents, values;
  for (int i = 1; i <= 100; ++i) {
    const double q = i <= 99 ? i : 99.9;
    percents += fmt::format("{}{}", i > 1 ? ", " : "", q);
    values += fmt::format("{}{}", i > 1 ? ", " : "", all.latency_ns.percentile(q) / 1e6);
  }
  out += fmt::format("  \"latency_cdf\": {{\"percent\": [{}], \"ms\": [{}]}},\n", percents, values);
  out += fmt::format("  \"tail_definition\": {{\"percentile\": {}, \"window_ms\": {}}},\n", scenario.metrics.tail_percentile,
                     scenario.metrics.tail_window_ms);
  out += fmt::format("  \"throughput_sps\": {},\n", r.throughput_sps);
  out += fmt::format("  \"simulated_ms\": {},\n", ms(wide{s.end_ps} - wide{s.first_arrival_ps}));
  out += fmt::format(
      "  \"npu\": {{\"name\": {}, \"utilisation\": {}, \"mac_utilisation\": {}, \"busy_ms\": {}, \"context_transfer_ms\": "
      "{}, \"layers_run\": {}, \"macs\": {}}},\n",
      json_string(scenario.npu.config().name), r.utilisation, r.mac_utilisation, ms(s.layer_busy_ps),
      ms(s.context_transfer_ps), s.layers_run, s.macs);
  out += fmt::format("  \"preemptions\": {},\n  \"merges\": {},\n  \"resumes\": {},\n", s.preemptions, s.merges, s.resumes);
  out += fmt::format("  \"context_spills\": {},\n  \"context_bytes_moved\": {},\n  \"decisions\": {},\n  \"max_queue\": {},\n",
                     s.context_spills, s.context_bytes_moved, s.decisions, s.max_queue);
  const EnergySummary energy = energy_summary(result);
  out += fmt::format("  \"energy\": {},\n", energy_json(energy));
  out += "  \"exits\": [";
  for (std::size_t i = 0; i < s.exits.size(); ++i) {
    const auto& e = s.exits[i];
    out += fmt::format("{}\n    {{\"model\": {}, \"exit\": {}, \"layer\": {}, \"completions\": {}}}", i ? "," : "",
                       json_string(e.model), json_string(e.exit), e.decision_layer, e.completions);
  }
  out += "\n  ],\n  \"per_device\": [";
  for (std::size_t d = 0; d < scenario.devices.size(); ++d) {
    const auto& g = result.metrics.devices()[d];
    out += fmt::format("{}\n    {{\"name\": {}, \"model\": {}, \"slo_ms\": {}, \"samples\": {}, \"latency_ms\": {}, \"slo\": {}, "
                       "\"energy_mj_per_sample\": {}}}",
                       d ? "," : "", json_string(scenario.devices[d].stream.name), json_string(s.device_models[d]),
                       s.device_slo_ms[d], counts_json(g), latency_json(g.latency_ns), slo_json(g),
                       energy.device_mj_per_sample[d]);
  }
  out += "\n  ]\n}\n";
  return out;
}

std::vector<std::pair<std::string, std::string>> summary_fields(const ServingResult& result) {
  const auto& all = result.metrics.overall();
  const auto& s = result.stats;
  const auto& l = all.latency_ns;
  const Rates r = rates(result);
  const EnergySummary energy = energy_summary(result);
  const auto num = [](double v) { return fmt::format("{}", v); };
  return {
      {"samples.arrived", std::to_string(all.arrived)},
      {"samples.completed", std::to_string(all.completed)},
      {"samples.dropped", std::to_string(all.dropped)},
      {"latency_ms.mean", num(l.mean() / 1e6)},
      {"latency_ms.p50", num(l.percentile(50) / 1e6)},
      {"latency_ms.p90", num(l.percentile(90) / 1e6)},
      {"latency_ms.p95", num(l.percentile(95) / 1e6)},
      {"latency_ms.p99", num(l.percentile(99) / 1e6)},
      {"latency_ms.max", num(l.max() / 1e6)},
      {"slo.satisfaction", num(all.slo_satisfaction())},
      {"slo.tail_satisfaction", num(all.tail.satisfaction())},
      {"throughput_sps", num(r.throughput_sps)},
      {"npu.utilisation", num(r.utilisation)},
      {"npu.mac_utilisation", num(r.mac_utilisation)},
      {"preemptions", std::to_string(s.preemptions)},
      {"merges", std::to_string(s.merges)},
      {"context_spills", std::to_string(s.context_spills)},
      {"simulated_ms", num(ms(wide{s.end_ps} - wide{s.first_arrival_ps}))},
      {"energy.per_sample_mj", num(energy.per_sample_mj)},
      {"energy.avg_power_w", num(energy.avg_power_w)},
  };
}

std::string metrics_csv(const ServingResult& result) {
  std::string header, row;
  for (const auto& [name, value] : summary_fields(result)) {
    header += (header.empty() ? "" : ",") + name;
    row += (row.empty() ? "" : ",") + value;
  }
  return header + "\n" + row + "\n";
}

void print_summary(std::ostream& out, const Scenario& scenario, const ServingResult& result) {
  const auto& all = result.metrics.overall();
  const auto& s = result.stats;
  const auto& l = all.latency_ns;
  const Rates r = rates(result);
  fmt::print(out, "scenario {} | policy {} | NPU {} | seed {}\n", scenario.name, scenario.scheduler.policy,
             scenario.npu.config().name, scenario.simulation.seed);
  fmt::print(out, "samples     {} arrived, {} completed, {} dropped over {:.3f} s ({:.1f} samples/s)\n", all.arrived,
             all.completed, all.dropped, r.span_s, r.throughput_sps);
  fmt::print(out, "latency ms  mean {:.3f}  p50 {:.3f}  p90 {:.3f}  p95 {:.3f}  p99 {:.3f}  max {:.3f}{}\n", l.mean() / 1e6,
             l.percentile(50) / 1e6, l.percentile(90) / 1e6, l.percentile(95) / 1e6, l.percentile(99) / 1e6, l.max() / 1e6,
             l.exact() ? "" : "  (percentiles within 0.1%)");
  fmt::print(out, "SLO         {:.2f} % of samples within SLO; tail: {:.2f} % of {} windows ({} ms) meet it at p{}\n",
             100.0 * all.slo_satisfaction(), 100.0 * all.tail.satisfaction(), all.tail.windows(),
             scenario.metrics.tail_window_ms, scenario.metrics.tail_percentile);
  fmt::print(out, "NPU         {:.1f} % busy, {:.1f} % MAC utilisation; {} preemptions, {} merges, {} context spills\n",
             100.0 * r.utilisation, 100.0 * r.mac_utilisation,
             s.preemptions, s.merges, s.context_spills);
  const EnergySummary energy = energy_summary(result);
  const double total_pj = energy.parts_pj.total_pj();
  const auto share = [total_pj](double pj) { return total_pj > 0 ? 100.0 * pj / total_pj : 0.0; };
  fmt::print(out, "energy      {:.4f} mJ/sample, {:.4f} W average, {:.3f} J; MAC {:.1f} %, SRAM {:.1f} %, DRAM {:.1f} %, "
             "vector {:.1f} %, static {:.1f} %\n",
             energy.per_sample_mj, energy.avg_power_w, energy.total_j, share(energy.parts_pj.mac_pj),
             share(energy.parts_pj.sram_pj), share(energy.parts_pj.dram_pj), share(energy.parts_pj.vector_pj),
             share(energy.parts_pj.static_pj));
  fmt::print(out, "{:<16} {:<12} {:>8} {:>9} {:>9} {:>8} {:>9} {:>9} {:>7} {:>9}\n", "device", "model", "slo_ms", "arrived",
             "completed", "dropped", "mean_ms", "p99_ms", "slo_%", "mJ/sample");
  for (std::size_t d = 0; d < scenario.devices.size(); ++d) {
    const auto& g = result.metrics.devices()[d];
    fmt::print(out, "{:<16} {:<12} {:>8.2f} {:>9} {:>9} {:>8} {:>9.3f} {:>9.3f} {:>7.2f} {:>9.4f}\n",
               scenario.devices[d].stream.name, s.device_models[d], s.device_slo_ms[d], g.arrived, g.completed, g.dropped,
               g.latency_ns.mean() / 1e6, g.latency_ns.percentile(99) / 1e6, 100.0 * g.slo_satisfaction(),
               energy.device_mj_per_sample[d]);
  }
  // One line per network: how many samples left at each of its exits.
  std::string line, model;
  for (const auto& e : s.exits) {
    if (e.model != model) {
      if (!line.empty()) fmt::print(out, "{}\n", line);
      line = fmt::format("{:<12}{}:", model.empty() ? "exits" : "", e.model);
      model = e.model;
    }
    line += fmt::format(" {} {}", e.exit, e.completions);
  }
  if (!line.empty()) fmt::print(out, "{}\n", line);
}

SampleCsvWriter::SampleCsvWriter(const std::filesystem::path& file, const Scenario& scenario)
    : file_(file), scenario_(scenario) {
  for (const auto& [name, network] : scenario.models) model_names_.push_back(name);
  file_.stream() << "sample,device,model,arrival_ns,completion_ns,latency_ms,exit,slo_ms,within_slo,status\n";
}

void SampleCsvWriter::on_complete(std::int64_t time_ps, const scheduler::SampleInfo& sample, std::uint32_t exit) {
  const double latency_ms = static_cast<double>(wide{time_ps} - ns_to_ps(sample.arrival_ns)) / 1e9;
  const double slo_ms = ps_between(sample.arrival_ns, sample.deadline_ns) / 1e6;
  const auto& network = scenario_.models.at(model_names_[sample.model]);
  fmt::print(file_.stream(), "{},{},{},{},{},{},{},{},{},completed\n", sample.id,
             csv_field(scenario_.devices[sample.device].stream.name), csv_field(model_names_[sample.model]),
             sample.arrival_ns, time_ps / 1000, latency_ms, csv_field(network.exits[exit].name), slo_ms,
             wide{time_ps} <= ns_to_ps(sample.deadline_ns) ? 1 : 0);
}

void SampleCsvWriter::on_drop(std::int64_t time_ps, const scheduler::SampleInfo& sample) {
  fmt::print(file_.stream(), "{},{},{},{},{},,,{},0,dropped\n", sample.id,
             csv_field(scenario_.devices[sample.device].stream.name), csv_field(model_names_[sample.model]),
             sample.arrival_ns, time_ps / 1000, ps_between(sample.arrival_ns, sample.deadline_ns) / 1e6);
}

}  // namespace npusim::sim
