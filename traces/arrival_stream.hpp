#pragma once
// The scenario's samples in arrival order: every device's process merged, each sample's exit
// drawn at arrival. State is one pending arrival per device: memory does not grow with the
// number of samples.

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "traces/arrival_process.hpp"
#include "traces/exit_sampler.hpp"
#include "traces/random_stream.hpp"

namespace npusim::traces {

struct DeviceStream {
  std::string name;
  std::string model;
  ArrivalSpec arrival;                     // replay: file relative to the scenario's folder
  std::vector<double> exit_probabilities;  // this device's, after any profile
};

struct Sample {
  std::uint64_t id = 0;  // 0, 1, 2, ... in arrival order
  std::int64_t arrival_ns = 0;
  std::uint32_t device = 0;
  std::uint32_t exit = 0;        // index into the model's exits; the last is the final exit
  bool exit_from_trace = false;  // fixed by a replayed trace rather than drawn
};

class ArrivalStream {
 public:
  // Devices get independent random streams from (seed, device index), so adding a device does
  // not change the samples of the others. Throws what the processes throw (ArrivalSpecError,
  // TraceFileError).
  ArrivalStream(std::vector<DeviceStream> devices, std::uint64_t seed, const std::filesystem::path& base_dir);

  // The next sample; ties in time go to the lower device index. nullopt when every process
  // has ended.
  std::optional<Sample> next();
  const std::vector<DeviceStream>& devices() const { return devices_; }

 private:
  // Each device's next arrival, a binary min-heap by time, then device: the earliest is the root.
  // A device's next arrival takes its place at the root and sinks, one pass instead of a pop
  // and a push.
  struct Pending {
    std::int64_t time_ns;
    std::uint32_t device;
    bool before(const Pending& o) const { return time_ns != o.time_ns ? time_ns < o.time_ns : device < o.device; }
  };
  void sink_root();

  std::vector<DeviceStream> devices_;
  std::vector<std::unique_ptr<ArrivalProcess>> processes_;
  std::vector<ExitSampler> samplers_;
  std::vector<RandomStream> exit_rngs_;
  std::vector<std::optional<std::uint32_t>> pending_exits_;  // per device: what its trace fixes
  std::vector<Pending> heap_;
  std::uint64_t next_id_ = 0;
};

}  // namespace npusim::traces
