// The pieces the hostile-input handling rests on: checked arithmetic, the one input reader,
// and the name and message rules. tests/hostile_inputs_test.sh runs the CLI cases.
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>

#include <gtest/gtest.h>

#include "traces/checked.hpp"
#include "traces/input_file.hpp"

namespace npusim {
namespace {

using traces::checked_add;
using traces::checked_int64;
using traces::checked_mul;
using traces::checked_sub;

constexpr auto int64_max = std::numeric_limits<std::int64_t>::max();
constexpr auto int64_min = std::numeric_limits<std::int64_t>::min();
constexpr auto uint64_max = std::numeric_limits<std::uint64_t>::max();

TEST(CheckedArithmetic, SignedOverflowIsReportedNotWrapped) {
  EXPECT_EQ(checked_add<std::int64_t>(int64_max - 1, 1), int64_max);
  EXPECT_EQ(checked_add<std::int64_t>(int64_max, 1), std::nullopt);
  EXPECT_EQ(checked_add<std::int64_t>(int64_min, -1), std::nullopt);
  EXPECT_EQ(checked_sub<std::int64_t>(int64_min + 1, 1), int64_min);
  EXPECT_EQ(checked_sub<std::int64_t>(int64_min, 1), std::nullopt);
  EXPECT_EQ(checked_sub<std::int64_t>(0, int64_min), std::nullopt);
  // An idle until 2^62 ns is 2^62 * 1000 ps: past the range.
  EXPECT_EQ(checked_mul<std::int64_t>(std::int64_t{1} << 62, 1000), std::nullopt);
  EXPECT_EQ(checked_mul<std::int64_t>(9'223'372'036'854'775, 1000), 9'223'372'036'854'775'000);
  EXPECT_EQ(checked_mul<std::int64_t>(9'223'372'036'854'776, 1000), std::nullopt);
  EXPECT_EQ(checked_mul<std::int64_t>(-1, int64_min), std::nullopt);
}

TEST(CheckedArithmetic, UnsignedOverflowIsReportedNotWrapped) {
  EXPECT_EQ(checked_add<std::uint64_t>(uint64_max, 0), uint64_max);
  EXPECT_EQ(checked_add<std::uint64_t>(uint64_max, 1), std::nullopt);
  EXPECT_EQ(checked_sub<std::uint64_t>(0, 1), std::nullopt);
  // 2147483647^2 * 3 fits; times 2147483647 once more does not.
  const auto square = checked_mul<std::uint64_t>(2147483647, 2147483647);
  ASSERT_TRUE(square);
  EXPECT_EQ(checked_mul<std::uint64_t>(*square, 3), std::uint64_t{13835058042397261827u});
  EXPECT_EQ(checked_mul<std::uint64_t>(*square, 2147483647), std::nullopt);
  EXPECT_EQ(checked_add<std::uint32_t>(4'000'000'000u, 300'000'000u), std::nullopt);
}

TEST(CheckedArithmetic, DoublesConvertOnlyInRange) {
  EXPECT_EQ(checked_int64(1e18), std::int64_t{1'000'000'000'000'000'000});
  EXPECT_EQ(checked_int64(-9223372036854775808.0), int64_min);
  EXPECT_EQ(checked_int64(9223372036854775808.0), std::nullopt);
  EXPECT_EQ(checked_int64(1e300), std::nullopt);
  EXPECT_EQ(checked_int64(std::numeric_limits<double>::infinity()), std::nullopt);
  EXPECT_EQ(checked_int64(std::numeric_limits<double>::quiet_NaN()), std::nullopt);
}

class InputFile : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/npusim_input_file_XXXXXX";
    ASSERT_NE(::mkdtemp(pattern), nullptr);
    dir_ = pattern;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string refusal(const std::filesystem::path& file) {
    try {
      traces::read_input_file(file);
    } catch (const traces::InputFileError& e) {
      return e.what();
    }
    return "(accepted)";
  }
  std::filesystem::path dir_;
};

TEST_F(InputFile, ReadsARegularFileWhole) {
  const auto file = dir_ / "a.yaml";
  std::ofstream(file) << "a: 1\n";
  EXPECT_EQ(traces::read_input_file(file), "a: 1\n");
  std::filesystem::create_symlink(file, dir_ / "link.yaml");
  EXPECT_EQ(traces::read_input_file(dir_ / "link.yaml"), "a: 1\n");
}

TEST_F(InputFile, RefusesAnythingButARegularFile) {
  EXPECT_EQ(refusal("/dev/zero"), "/dev/zero: is a character device: allowed a regular file");
  std::filesystem::create_symlink("/dev/zero", dir_ / "zero");
  EXPECT_EQ(refusal(dir_ / "zero"), (dir_ / "zero").string() + ": is a character device: allowed a regular file");
  ASSERT_EQ(::mkfifo((dir_ / "fifo").c_str(), 0600), 0);
  EXPECT_EQ(refusal(dir_ / "fifo"), (dir_ / "fifo").string() + ": is a FIFO: allowed a regular file");
  EXPECT_EQ(refusal(dir_), dir_.string() + ": is a directory: allowed a regular file");
  EXPECT_EQ(refusal(dir_ / "missing"), (dir_ / "missing").string() + ": no such file");
}

TEST_F(InputFile, RefusesAFileAboveTheCap) {
  const auto file = dir_ / "big.yaml";
  std::ofstream(file).close();
  std::filesystem::resize_file(file, traces::max_input_bytes + 1);
  EXPECT_EQ(refusal(file), file.string() + ": is 67108865 bytes: allowed at most 67108864 bytes (64 MiB)");
  std::filesystem::resize_file(file, traces::max_input_bytes);
  EXPECT_EQ(traces::read_input_file(file).size(), traces::max_input_bytes);
}

TEST(Names, OnlyPrintableAsciiWithoutQuotesOrCommas) {
  EXPECT_TRUE(traces::is_valid_name("door-cam"));
  EXPECT_TRUE(traces::is_valid_name("../models/my net.yaml"));
  EXPECT_FALSE(traces::is_valid_name(""));
  EXPECT_FALSE(traces::is_valid_name("cam\"1"));
  EXPECT_FALSE(traces::is_valid_name("cam,1"));
  EXPECT_FALSE(traces::is_valid_name("cam\\1"));
  EXPECT_FALSE(traces::is_valid_name(" cam"));
  EXPECT_FALSE(traces::is_valid_name("cam\n"));
  EXPECT_FALSE(traces::is_valid_name(std::string("co\0nv", 5)));
  EXPECT_FALSE(traces::is_valid_name("caf\xC3\xA9"));
  EXPECT_FALSE(traces::is_valid_name(std::string(1025, 'a')));
}

TEST(Messages, StayOnOneLine) {
  EXPECT_EQ(traces::one_line("a\nb\r\x01 caf\xC3\xA9"), "a\\x0Ab\\x0D\\x01 caf\xC3\xA9");
  EXPECT_EQ(traces::printable(std::string("co\0nv\xFF", 6)), "co\\x00nv\\xFF");
  EXPECT_EQ(std::string(traces::InputFileError("x\ny").what()), "x\\x0Ay");
}

}  // namespace
}  // namespace npusim
