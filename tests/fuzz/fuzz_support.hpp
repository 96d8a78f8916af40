#pragma once
// Shared by the libFuzzer harnesses (docs/testing.md). A parser that reads only paths gets the
// input through a file in a private directory made for that input. A parser may throw the
// errors npusim's CLI reports as bad input (exit status 2); anything else escapes the harness
// and libFuzzer reports it, as it does crashes, sanitizer reports and hangs.

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>

namespace npusim::fuzz {

// A directory under $TMPDIR (or /tmp), removed with everything in it on destruction.
class ScratchDir {
 public:
  ScratchDir();
  ~ScratchDir();
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  // Writes the bytes to NAME in the directory; aborts if it cannot (not the parser's fault).
  std::filesystem::path write(const std::string& name, const std::uint8_t* data, std::size_t size) const;
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

// Calls parse() and swallows exactly the typed errors of bad input.
void expect_typed_errors(void (*parse)(const void* context), const void* context);

template <typename F>
void expect_typed_errors(const F& parse) {
  expect_typed_errors([](const void* f) { (*static_cast<const F*>(f))(); }, &parse);
}

}  // namespace npusim::fuzz
