#include "traces/random_stream.hpp"

#include <stdexcept>

namespace npusim::traces {
namespace {

std::uint64_t splitmix64(std::uint64_t& x) {
  std::uint64_t z = (x += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

__extension__ typedef unsigned __int128 uint128;

std::uint64_t rotl(std::uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

}  // namespace

RandomStream::RandomStream(std::uint64_t seed, std::uint64_t stream_id) {
  std::uint64_t mix = seed;
  const std::uint64_t salt = splitmix64(mix) ^ (stream_id * 0xD1B54A32D192ED03ull);
  std::uint64_t x = salt;
  for (auto& word : state_) word = splitmix64(x);
}

std::uint64_t RandomStream::next_u64() {
  const std::uint64_t result = rotl(state_[1] * 5, 7) * 9;
  const std::uint64_t t = state_[1] << 17;
  state_[2] ^= state_[0];
  state_[3] ^= state_[1];
  state_[1] ^= state_[2];
  state_[0] ^= state_[3];
  state_[2] ^= t;
  state_[3] = rotl(state_[3], 45);
  return result;
}

std::uint64_t RandomStream::uniform_below(std::uint64_t bound) {
  if (bound == 0) throw std::invalid_argument("uniform_below needs bound >= 1");
  // Lemire's multiply-and-reject method.
  uint128 product = static_cast<uint128>(next_u64()) * bound;
  auto low = static_cast<std::uint64_t>(product);
  if (low < bound) {
    const std::uint64_t threshold = (0 - bound) % bound;
    while (low < threshold) {
      product = static_cast<uint128>(next_u64()) * bound;
      low = static_cast<std::uint64_t>(product);
    }
  }
  return static_cast<std::uint64_t>(product >> 64);
}

std::uint64_t RandomStream::uniform_between(std::uint64_t low, std::uint64_t high) {
  if (low > high) throw std::invalid_argument("uniform_between needs low <= high");
  if (low == 0 && high == UINT64_MAX) return next_u64();
  return low + uniform_below(high - low + 1);
}

double RandomStream::uniform_unit() {
  return static_cast<double>(next_u64() >> 11) * 0x1.0p-53;
}

}  // namespace npusim::traces
