#include "traces/arrival_stream.hpp"

#include <algorithm>
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
    pending_exits_.emplace_back();
    if (const auto first = processes_.back()->next()) {
      pending_exits_.back() = first->exit;
      heap_.push_back({first->time_ns, i});
      std::push_heap(heap_.begin(), heap_.end(), [](const Pending& a, const Pending& b) { return b.before(a); });
    }
  }
}

void ArrivalStream::sink_root() {
  const std::size_t size = heap_.size();
  const Pending sinking = heap_[0];
  std::size_t at = 0;
  while (true) {
    std::size_t child = 2 * at + 1;
    if (child >= size) break;
    if (child + 1 < size && heap_[child + 1].before(heap_[child])) ++child;
    if (!heap_[child].before(sinking)) break;
    heap_[at] = heap_[child];
    at = child;
  }
  heap_[at] = sinking;
}

std::optional<Sample> ArrivalStream::next() {
  if (heap_.empty()) return std::nullopt;
  const Pending top = heap_[0];
  const std::optional<std::uint32_t> fixed_exit = pending_exits_[top.device];
  Sample sample;
  sample.id = next_id_++;
  sample.arrival_ns = top.time_ns;
  sample.device = top.device;
  // Draw for every sample, replayed or not, so a device's exit stream stays aligned with its
  // arrivals whatever the trace fixes.
  const std::uint32_t drawn = samplers_[top.device].sample(exit_rngs_[top.device]);
  sample.exit_from_trace = fixed_exit.has_value();
  sample.exit = fixed_exit.value_or(drawn);
  if (const auto following = processes_[top.device]->next()) {
    pending_exits_[top.device] = following->exit;
    heap_[0].time_ns = following->time_ns;
  } else {
    heap_[0] = heap_.back();
    heap_.pop_back();
  }
  if (!heap_.empty()) sink_root();
  return sample;
}

}  // namespace npusim::traces
