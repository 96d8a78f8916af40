#pragma once
// The one way npusim reads an input file (YAML, CSV, SCALE-Sim .cfg, trace): regular files
// only, whatever a symlink points at, at most max_input_bytes, and never blocking. A device
// such as /dev/zero, a FIFO or a directory gets one line instead of a hang.

#include <cstdint>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <string_view>

namespace npusim::traces {

// 64 MiB: far above any real configuration, network or trace here, and small enough that a
// wrong file costs a fraction of a second.
inline constexpr std::uint64_t max_input_bytes = std::uint64_t{64} << 20;

// `text` with control characters (newline, NUL, ...) written as \xNN and other bytes kept: the
// error types apply it to their whole message, which must stay one line whatever it quotes.
// Inline, so libraries that do not link this one (the scheduler) can use it.
inline std::string one_line(std::string_view text) {
  static constexpr char hex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(text.size());
  for (const char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte < 0x20 || byte == 0x7F) {
      out += "\\x";
      out += hex[byte >> 4];
      out += hex[byte & 0xF];
    } else {
      out += c;
    }
  }
  return out;
}

// What is wrong with an input file. what() is one line "<file>: <reason>: allowed ...".
class InputFileError : public std::runtime_error {
 public:
  explicit InputFileError(const std::string& message) : std::runtime_error(one_line(message)) {}
};

// The whole content of `file`. Throws InputFileError when it does not exist, is not a regular
// file after following symlinks (directory, device, FIFO, socket), is larger than
// max_input_bytes, or cannot be read.
std::string read_input_file(const std::filesystem::path& file);
// The same with another cap, for formats that carry data in bulk (an ONNX model's weights).
std::string read_input_file(const std::filesystem::path& file, std::uint64_t max_bytes);

// Names that reach outputs (devices, models, layers, exits, NPUs, scenarios, policies) are
// held to printable ASCII, so every CSV field and JSON string they land in stays well formed:
// 1 to 128 characters from 0x20 to 0x7E except " , \, not starting or ending with a space.
inline constexpr std::string_view name_rule =
    "a name of 1 to 1024 printable ASCII characters without \", \\ or commas, not starting or ending with a space";
inline bool is_valid_name(std::string_view name) {
  if (name.empty() || name.size() > 1024 || name.front() == ' ' || name.back() == ' ') return false;
  for (const char c : name)
    if (c < 0x20 || c > 0x7E || c == '"' || c == ',' || c == '\\') return false;
  return true;
}

// `text` with every byte outside printable ASCII written as \xNN: how a message quotes a name
// or value that broke the rules.
std::string printable(std::string_view text);

}  // namespace npusim::traces
