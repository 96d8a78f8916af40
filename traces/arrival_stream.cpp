#include "traces/arrival_stream.hpp"

#include <map>
#include <memory>
#include <set>

#include "traces/trace_file.hpp"

namespace npusim::traces {
namespace {

constexpr std::uint64_t arrival_purpose = 1;
constexpr std::uint64_t exit_purpose = 2;

std::uint64_t stream_id(std::uint32_t device, std::uint64_t purpose) {
  return (std::uint64_t{device} << 8) | purpose;
}

}  // namespace

ArrivalStream::ArrivalStream(std::vector<DeviceStream> devices, std::uint64_t seed,
                             const std::filesystem::path& base_dir)
    : devices_(std::move(devices)) {
  std::set<std::string> names;
  for (const auto& d : devices_) names.insert(d.name);
  // Every device replaying a file reads its own rows from one shared copy of it.
  std::map<std::filesystem::path, std::shared_ptr<const std::string>> traces;
  for (std::uint32_t i = 0; i < devices_.size(); ++i) {
    const DeviceStream& d = devices_[i];
    samplers_.emplace_back(d.exit_probabilities);
    exit_rngs_.emplace_back(seed, stream_id(i, exit_purpose));
    if (d.arrival.kind == ProcessKind::replay) {
      validate(d.arrival);
      const auto file = base_dir / d.arrival.file;
      auto& text = traces[file];
      if (!text) text = read_trace_file(file);
      processes_.push_back(open_replay(file, d.name, d.model, static_cast<std::uint32_t>(d.exit_probabilities.size()),
                                       names, text));
    } else {
      processes_.push_back(make_process(d.arrival, RandomStream(seed, stream_id(i, arrival_purpose))));
    }
    pending_events_.emplace_back();
    refill(i);
  }
}

void ArrivalStream::refill(std::uint32_t device) {
  pending_events_[device] = processes_[device]->next();
  if (pending_events_[device]) queue_.push({pending_events_[device]->time_ns, device});
}

std::optional<Sample> ArrivalStream::next() {
  if (queue_.empty()) return std::nullopt;
  const Pending top = queue_.top();
  queue_.pop();
  const ArrivalEvent event = *pending_events_[top.device];
  Sample sample;
  sample.id = next_id_++;
  sample.arrival_ns = event.time_ns;
  sample.device = top.device;
  // Draw for every sample, replayed or not, so a device's exit stream stays aligned with its
  // arrivals whatever the trace fixes.
  const std::uint32_t drawn = samplers_[top.device].sample(exit_rngs_[top.device]);
  sample.exit_from_trace = event.exit.has_value();
  sample.exit = event.exit.value_or(drawn);
  refill(top.device);
  return sample;
}

}  // namespace npusim::traces
