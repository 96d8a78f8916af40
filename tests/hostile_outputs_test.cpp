// What npusim writes stays well-formed whatever names it is given: CSV fields per RFC 4180,
// JSON strings valid UTF-8 with control characters escaped; and an output replaces only a
// regular file, with every write checked.

#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "sim/json.hpp"
#include "sim/run_report.hpp"
#include "scratch_dir.hpp"

namespace npusim {
namespace {

// RFC 4180 read back: the fields of one record, or a failure for malformed text. Written here
// rather than borrowed, so the writer is checked against the grammar, not against itself.
std::vector<std::string> parse_csv_record(const std::string& text) {
  std::vector<std::string> fields(1);
  bool quoted = false, was_quoted = false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (quoted) {
      if (c != '"') fields.back() += c;
      else if (i + 1 < text.size() && text[i + 1] == '"') fields.back() += text[++i];
      else quoted = false;
    } else if (c == '"') {
      EXPECT_TRUE(fields.back().empty() && !was_quoted) << "a quote inside an unquoted field: " << text;
      quoted = was_quoted = true;
    } else if (c == ',') {
      fields.emplace_back();
      was_quoted = false;
    } else {
      EXPECT_FALSE(was_quoted) << "text after a closing quote: " << text;
      EXPECT_TRUE(c != '\n' && c != '\r') << "a line break outside quotes: " << text;
      fields.back() += c;
    }
  }
  EXPECT_FALSE(quoted) << "an unclosed quote: " << text;
  return fields;
}

TEST(CsvField, PlainTextStaysAsItIs) {
  EXPECT_EQ(sim::csv_field("door-cam"), "door-cam");
  EXPECT_EQ(sim::csv_field(""), "");
  EXPECT_EQ(sim::csv_field("caméra 2"), "caméra 2");
}

TEST(CsvField, QuotesCommasQuotesAndLineBreaks) {
  EXPECT_EQ(sim::csv_field("a,b"), "\"a,b\"");
  EXPECT_EQ(sim::csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
  EXPECT_EQ(sim::csv_field("two\nlines"), "\"two\nlines\"");
  EXPECT_EQ(sim::csv_field("cr\rhere"), "\"cr\rhere\"");
  EXPECT_EQ(sim::csv_field("\""), "\"\"\"\"");
}

TEST(CsvField, EveryHostileNameReadsBackAsOneField) {
  const std::vector<std::string> names{"a,b", "\"", "\"\"", ",", "x\ny", "\r\n", "\"a\",\"b\"", "tab\there",
                                       std::string("nul\0byte", 8), "\xff\xfe"};
  for (const auto& name : names) {
    const std::string record = "1," + sim::csv_field(name) + ",3";
    const auto fields = parse_csv_record(record);
    ASSERT_EQ(fields.size(), 3u) << record;
    EXPECT_EQ(fields[1], name) << record;
  }
}

// A JSON string is valid when it is valid UTF-8 with no raw control character; checked
// byte by byte here, independently of the escaper.
bool valid_json_string_text(const std::string& s) {
  if (s.size() < 2 || s.front() != '"' || s.back() != '"') return false;
  for (std::size_t i = 1; i + 1 < s.size();) {
    const auto b = static_cast<unsigned char>(s[i]);
    if (b < 0x20 || b == 0x7f) return false;
    if (b == '\\') {
      if (i + 2 >= s.size()) return false;
      const char e = s[i + 1];
      if (e == 'u') {
        if (i + 6 >= s.size()) return false;
        for (int k = 2; k < 6; ++k)
          if (!std::isxdigit(static_cast<unsigned char>(s[i + static_cast<std::size_t>(k)]))) return false;
        i += 6;
      } else if (std::string("\"\\/bfnrt").find(e) != std::string::npos) {
        i += 2;
      } else {
        return false;
      }
      continue;
    }
    if (b == '"') return false;
    std::size_t n = b < 0x80 ? 1 : (b & 0xe0) == 0xc0 ? 2 : (b & 0xf0) == 0xe0 ? 3 : (b & 0xf8) == 0xf0 ? 4 : 0;
    if (n == 0 || (n == 2 && b < 0xc2) || (n == 4 && b > 0xf4) || i + n >= s.size()) return false;
    std::uint32_t cp = n == 1 ? b : n == 2 ? b & 0x1fu : n == 3 ? b & 0x0fu : b & 0x07u;
    for (std::size_t k = 1; k < n; ++k) {
      const auto c = static_cast<unsigned char>(s[i + k]);
      if ((c & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (c & 0x3fu);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) || (cp >= 0xd800 && cp <= 0xdfff))
      return false;
    i += n;
  }
  return true;
}

TEST(JsonString, EscapesQuotesBackslashesAndControlCharacters) {
  EXPECT_EQ(sim::json_string("cam"), "\"cam\"");
  EXPECT_EQ(sim::json_string("a\"b\\c"), "\"a\\\"b\\\\c\"");
  EXPECT_EQ(sim::json_string("l1\nl2\r\t"), "\"l1\\nl2\\r\\t\"");
  EXPECT_EQ(sim::json_string(std::string("\0\x01\x1f\x7f", 4)), "\"\\u0000\\u0001\\u001f\\u007f\"");
}

TEST(JsonString, KeepsValidUtf8) {
  EXPECT_EQ(sim::json_string("caméra"), "\"caméra\"");
  EXPECT_EQ(sim::json_string("\xe2\x82\xac"), "\"\xe2\x82\xac\"");              // U+20AC
  EXPECT_EQ(sim::json_string("\xf0\x9f\x93\xb7"), "\"\xf0\x9f\x93\xb7\"");      // U+1F4F7
  EXPECT_EQ(sim::json_string("\xf4\x8f\xbf\xbf"), "\"\xf4\x8f\xbf\xbf\"");      // U+10FFFF
}

TEST(JsonString, ReplacesEachInvalidByte) {
  EXPECT_EQ(sim::json_string("a\xff" "b"), "\"a\\ufffdb\"");
  EXPECT_EQ(sim::json_string("\x80"), "\"\\ufffd\"");                    // a stray continuation byte
  EXPECT_EQ(sim::json_string("\xc3"), "\"\\ufffd\"");                    // cut short at the end
  EXPECT_EQ(sim::json_string("\xc3(x"), "\"\\ufffd(x\"");                // cut short by ASCII
  EXPECT_EQ(sim::json_string("\xc0\xaf"), "\"\\ufffd\\ufffd\"");         // overlong '/'
  EXPECT_EQ(sim::json_string("\xe0\x80\xaf"), "\"\\ufffd\\ufffd\\ufffd\"");  // overlong, 3 bytes
  EXPECT_EQ(sim::json_string("\xed\xa0\x80"), "\"\\ufffd\\ufffd\\ufffd\"");  // a UTF-16 surrogate
  EXPECT_EQ(sim::json_string("\xf4\x90\x80\x80"), "\"\\ufffd\\ufffd\\ufffd\\ufffd\"");  // past U+10FFFF
}

TEST(JsonString, AnyBytesGiveValidJson) {
  // Every single byte, every pair of bytes, and runs of bytes from a fixed generator.
  for (int a = 0; a < 256; ++a) {
    const std::string one(1, static_cast<char>(a));
    ASSERT_TRUE(valid_json_string_text(sim::json_string(one))) << a;
    for (int b = 0; b < 256; ++b) {
      const std::string two{static_cast<char>(a), static_cast<char>(b)};
      ASSERT_TRUE(valid_json_string_text(sim::json_string(two))) << a << " " << b;
    }
  }
  std::uint64_t x = 88172645463325252ull;
  for (int run = 0; run < 20000; ++run) {
    std::string text;
    for (int i = 0; i < 12; ++i) {
      x ^= x << 13, x ^= x >> 7, x ^= x << 17;
      text += static_cast<char>(x & 0xff);
    }
    ASSERT_TRUE(valid_json_string_text(sim::json_string(text)));
  }
}

using Scratch = testing::ScratchDirTest;

using AtomicFileTest = Scratch;

TEST_F(AtomicFileTest, ReplacesARegularFileAndLeavesNoPartial) {
  const auto file = dir_ / "out.txt";
  std::ofstream(file) << "old\n";
  sim::AtomicFile out(file);
  out.stream() << "new\n";
  out.commit();
  std::ifstream in(file);
  std::stringstream text;
  text << in.rdbuf();
  EXPECT_EQ(text.str(), "new\n");
  EXPECT_FALSE(std::filesystem::exists(dir_ / "out.txt.partial"));
}

TEST_F(AtomicFileTest, RefusesADirectoryAFifoAndADevice) {
  std::filesystem::create_directory(dir_ / "a-directory");
  ASSERT_EQ(::mkfifo((dir_ / "a-fifo").c_str(), 0600), 0);
  for (const auto& target : {dir_ / "a-directory", dir_ / "a-fifo", std::filesystem::path("/dev/null")}) {
    try {
      sim::AtomicFile out(target);
      ADD_FAILURE() << target << " was accepted";
    } catch (const sim::OutputError& e) {
      EXPECT_NE(std::string(e.what()).find(target.string()), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("regular file"), std::string::npos) << e.what();
    }
  }
  EXPECT_TRUE(std::filesystem::is_fifo(dir_ / "a-fifo"));
  EXPECT_TRUE(std::filesystem::is_directory(dir_ / "a-directory"));
  EXPECT_FALSE(std::filesystem::exists(dir_ / "a-fifo.partial"));
}

TEST_F(AtomicFileTest, RefusesAFifoInPlaceOfThePartialFile) {
  ASSERT_EQ(::mkfifo((dir_ / "out.txt.partial").c_str(), 0600), 0);
  EXPECT_THROW(sim::AtomicFile(dir_ / "out.txt"), sim::OutputError);
  EXPECT_TRUE(std::filesystem::is_fifo(dir_ / "out.txt.partial"));
}

TEST_F(AtomicFileTest, ATargetThatBecomesADirectoryIsNotReplaced) {
  const auto file = dir_ / "out.txt";
  sim::AtomicFile out(file);
  out.stream() << "text\n";
  std::filesystem::create_directory(file);
  EXPECT_THROW(out.commit(), sim::OutputError);
  EXPECT_TRUE(std::filesystem::is_directory(file));
}

TEST_F(AtomicFileTest, AFailedWriteIsReportedAtCommitAndNothingIsRenamed) {
  const auto file = dir_ / "out.txt";
  std::ofstream(file) << "old\n";
  {
    sim::AtomicFile out(file);
    out.stream() << "half";
    out.stream().setstate(std::ios::badbit);  // as a write to a full disk leaves it
    EXPECT_THROW(out.commit(), sim::OutputError);
  }
  std::ifstream in(file);
  std::stringstream text;
  text << in.rdbuf();
  EXPECT_EQ(text.str(), "old\n");
  EXPECT_FALSE(std::filesystem::exists(dir_ / "out.txt.partial"));
}

// A write the system refuses, here past a file-size limit as on a full disk, is reported at
// commit with the system's reason; the target keeps its bytes and no partial file is left.
TEST_F(AtomicFileTest, AWriteTheSystemRefusesIsReportedWithItsReason) {
  const auto file = dir_ / "out.txt";
  std::ofstream(file) << "old\n";
  rlimit saved{};
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &saved), 0);
  if (saved.rlim_max != RLIM_INFINITY && saved.rlim_max < 4096) GTEST_SKIP() << "file-size limit below 4 KiB";
  // Restores the limit and the signal's handler however the block below ends: other tests may
  // run in this process after this one (by hand, or with --gtest_repeat).
  struct Restore {
    rlimit limit;
    void (*handler)(int);
    ~Restore() {
      EXPECT_EQ(::setrlimit(RLIMIT_FSIZE, &limit), 0);
      std::signal(SIGXFSZ, handler);
    }
  };
  std::string message;
  {
    const Restore restore{saved, std::signal(SIGXFSZ, SIG_IGN)};  // the write fails with EFBIG instead
    rlimit small = saved;
    small.rlim_cur = 4096;
    ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &small), 0);
    sim::AtomicFile out(file);
    out.stream() << std::string(200'000, 'x');  // past 64 KiB: written before the commit
    try {
      out.commit();
    } catch (const sim::OutputError& e) {
      message = e.what();
    }
  }
  EXPECT_EQ(message, "cannot write " + file.string() + ": " + std::strerror(EFBIG));
  std::ifstream in(file);
  std::stringstream text;
  text << in.rdbuf();
  EXPECT_EQ(text.str(), "old\n");
  EXPECT_FALSE(std::filesystem::exists(dir_ / "out.txt.partial"));
}

}  // namespace
}  // namespace npusim
