#include "traces/input_file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

namespace npusim::traces {
namespace {

const char* kind_of(mode_t mode) {
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISSOCK(mode)) return "a socket";
  return "not a regular file";
}

[[noreturn]] void refuse(const std::string& file, const std::string& why) {
  throw InputFileError(fmt::format("{}: {}", file, why));
}

std::string mib(std::uint64_t bytes) { return fmt::format("{} MiB", bytes >> 20); }

void check_regular(const std::string& file, const struct stat& st, std::uint64_t max_bytes) {
  if (!S_ISREG(st.st_mode)) refuse(file, fmt::format("is {}: allowed a regular file", kind_of(st.st_mode)));
  if (static_cast<std::uint64_t>(st.st_size) > max_bytes)
    refuse(file, fmt::format("is {} bytes: allowed at most {} bytes ({})", st.st_size, max_bytes, mib(max_bytes)));
}

// Closes the descriptor on every path out, exceptions included.
struct Descriptor {
  int fd;
  ~Descriptor() { ::close(fd); }
};

}  // namespace

std::string read_input_file(const std::filesystem::path& path) { return read_input_file(path, max_input_bytes); }

std::string read_input_file(const std::filesystem::path& path, std::uint64_t max_bytes) {
  const std::string file = path.string();
  if (file.empty()) refuse("\"\"", "an empty file name: allowed a regular file");
  // stat follows symlinks, so a link to /dev/zero is judged by what it points at; the type is
  // known before open, which would block on a FIFO without a writer.
  struct stat st {};
  if (::stat(file.c_str(), &st) != 0) {
    const int error = errno;
    refuse(file, error == ENOENT ? std::string("no such file") : fmt::format("cannot be read ({})", std::strerror(error)));
  }
  check_regular(file, st, max_bytes);
  // O_NONBLOCK: if the path was swapped for a FIFO after stat, open still returns at once.
  const Descriptor in{::open(file.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY)};
  if (in.fd < 0) refuse(file, fmt::format("cannot be opened ({})", std::strerror(errno)));
  if (::fstat(in.fd, &st) != 0) refuse(file, fmt::format("cannot be read ({})", std::strerror(errno)));
  check_regular(file, st, max_bytes);
  std::string text;
  text.reserve(static_cast<std::size_t>(st.st_size));
  char buffer[1 << 16];
  while (true) {
    const ssize_t got = ::read(in.fd, buffer, sizeof buffer);
    if (got == 0) break;
    if (got < 0) {
      if (errno == EINTR) continue;
      refuse(file, fmt::format("cannot be read ({})", std::strerror(errno)));
    }
    // A file that grows while being read is held to the same cap.
    if (text.size() + static_cast<std::size_t>(got) > max_bytes)
      refuse(file, fmt::format("is larger than {} bytes ({}): allowed at most that", max_bytes, mib(max_bytes)));
    text.append(buffer, static_cast<std::size_t>(got));
  }
  return text;
}

std::string printable(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (const char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte < 0x20 || byte > 0x7E) out += fmt::format("\\x{:02X}", byte);
    else out += c;
  }
  return out;
}

}  // namespace npusim::traces
