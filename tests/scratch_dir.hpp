#pragma once
// A fixture with a directory of its own for each test, under the system's temporary directory:
// empty when the test starts, removed when it ends.

#include <unistd.h>

#include <filesystem>
#include <string>

#include <gtest/gtest.h>

namespace npusim::testing {

class ScratchDirTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* test = ::testing::UnitTest::GetInstance()->current_test_info();
    std::string name = std::string("npusim_") + test->test_suite_name() + "_" + std::to_string(::getpid()) + "_" +
                       test->name();
    for (auto& ch : name) ch = ch == '/' ? '_' : ch;
    dir_ = std::filesystem::temp_directory_path() / name;
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::filesystem::path dir_;
};

}  // namespace npusim::testing
