#pragma once
// Fixed-width little-endian fields, for the control-block table's bytes and the files of the
// table cache (sim/table_cache.hpp): every number takes 8 bytes; a section is its length, then
// its bytes.

#include <bit>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>

#include <fmt/format.h>

namespace npusim::npu {

class ByteWriter {
 public:
  void u64(std::uint64_t v) {
    for (int i = 0; i < 8; ++i) bytes_.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  }
  void i64(std::int64_t v) { u64(static_cast<std::uint64_t>(v)); }
  void u32(std::uint32_t v) { u64(v); }
  void flag(bool v) { u64(v ? 1 : 0); }
  void real(double v) { u64(std::bit_cast<std::uint64_t>(v)); }
  template <typename E>
    requires std::is_enum_v<E>
  void enumeration(E v) {
    u64(static_cast<std::uint64_t>(v));
  }
  void section(std::string_view v) {
    u64(v.size());
    bytes_.append(v);
  }
  void optional_real(const std::optional<double>& v) {
    flag(v.has_value());
    real(v.value_or(0.0));
  }
  // Bytes as they are, with no length before them (a magic line).
  void raw(std::string_view v) { bytes_.append(v); }
  std::string_view written() const { return bytes_; }
  std::string take() { return std::move(bytes_); }

 private:
  std::string bytes_;
};

// Reads what ByteWriter wrote. Throws std::invalid_argument, naming `what` and the offset, for
// bytes that end before a field, or a value out of its field's range.
class ByteReader {
 public:
  ByteReader(std::string_view bytes, std::string_view what) : bytes_(bytes), what_(what) {}
  std::uint64_t u64() {
    const std::string_view field = raw(8);
    std::uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v |= std::uint64_t{static_cast<unsigned char>(field[i])} << (8 * i);
    return v;
  }
  std::uint32_t u32() {
    const std::uint64_t v = u64();
    if (v > 0xffffffffu) fail("a 32-bit field", v);
    return static_cast<std::uint32_t>(v);
  }
  bool flag() {
    const std::uint64_t v = u64();
    if (v > 1) fail("a flag", v);
    return v == 1;
  }
  double real() { return std::bit_cast<double>(u64()); }
  template <typename E>
    requires std::is_enum_v<E>
  E enumeration(E last) {
    const std::uint64_t v = u64();
    if (v > static_cast<std::uint64_t>(last)) fail("an enumeration", v);
    return static_cast<E>(v);
  }
  std::string_view section() {
    const std::uint64_t length = u64();
    if (length > bytes_.size() - at_) end_before(length);  // before narrowing it to size_t
    return raw(static_cast<std::size_t>(length));
  }
  std::string_view raw(std::size_t length) {
    if (length > bytes_.size() - at_) end_before(length);
    const std::string_view v = bytes_.substr(at_, length);
    at_ += length;
    return v;
  }
  void finish() const {
    if (at_ != bytes_.size())
      throw std::invalid_argument(fmt::format("{} go on past their end: {} of {} bytes read", what_, at_, bytes_.size()));
  }

 private:
  [[noreturn]] void end_before(std::uint64_t length) const {
    throw std::invalid_argument(fmt::format("{} end at byte {}: a field needs {}", what_, at_, length));
  }
  [[noreturn]] void fail(const char* field, std::uint64_t value) const {
    throw std::invalid_argument(fmt::format("{} hold {} for {} at byte {}", what_, value, field, at_ - 8));
  }
  std::string_view bytes_, what_;
  std::size_t at_ = 0;
};

}  // namespace npusim::npu
