#pragma once
// Seeded, portable random streams (xoshiro256** seeded by SplitMix64). Unlike the standard
// library's distributions, every draw here is specified, so a seed gives the same arrivals and
// exits on every compiler and platform.

#include <cstdint>

namespace npusim::traces {

class RandomStream {
 public:
  // Streams with different (seed, stream_id) pairs are independent for practical purposes;
  // use one stream per device and per purpose (arrivals, exits) so that adding a device does
  // not shift the draws of another.
  explicit RandomStream(std::uint64_t seed, std::uint64_t stream_id = 0);

  std::uint64_t next_u64();
  // Uniform integer in [0, bound), without modulo bias. Requires bound >= 1.
  std::uint64_t uniform_below(std::uint64_t bound);
  // Uniform in [low, high] inclusive. Requires low <= high.
  std::uint64_t uniform_between(std::uint64_t low, std::uint64_t high);
  // Uniform double in [0, 1) with 53 random bits.
  double uniform_unit();

 private:
  std::uint64_t state_[4];
};

}  // namespace npusim::traces
