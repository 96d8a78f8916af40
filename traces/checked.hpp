#pragma once
// Arithmetic that reports overflow instead of wrapping (unsigned) or being undefined (signed).
// Simulated time is picoseconds in a signed 64-bit integer (about 106.7 days), and counts are
// 64-bit: inputs may be large enough to overflow either, so the code that combines them asks
// here and refuses the input when the answer is nullopt.

#include <concepts>
#include <cstdint>
#include <limits>
#include <optional>

namespace npusim::traces {

template <std::integral T>
constexpr std::optional<T> checked_add(T a, T b) {
  T sum{};
  if (__builtin_add_overflow(a, b, &sum)) return std::nullopt;
  return sum;
}

template <std::integral T>
constexpr std::optional<T> checked_sub(T a, T b) {
  T difference{};
  if (__builtin_sub_overflow(a, b, &difference)) return std::nullopt;
  return difference;
}

template <std::integral T>
constexpr std::optional<T> checked_mul(T a, T b) {
  T product{};
  if (__builtin_mul_overflow(a, b, &product)) return std::nullopt;
  return product;
}

// A double converted to int64 when it is finite and in range (a plain cast of anything else is
// undefined behaviour); nullopt otherwise.
constexpr std::optional<std::int64_t> checked_int64(double value) {
  // 2^63 is exact as a double; every double below it converts.
  constexpr double limit = 9223372036854775808.0;
  if (!(value >= -limit && value < limit)) return std::nullopt;
  return static_cast<std::int64_t>(value);
}

}  // namespace npusim::traces
