#include "tests/fuzz/fuzz_support.hpp"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <vector>

#include "npu_model/cost_model.hpp"
#include "npu_model/gemm.hpp"
#include "scheduler/policy.hpp"
#include "sim/cli_support.hpp"
#include "sim/config_node.hpp"
#include "sim/run_report.hpp"
#include "sim/sweep.hpp"
#include "traces/arrival_process.hpp"
#include "traces/trace_file.hpp"
#include "workloads/network.hpp"

namespace npusim::fuzz {

ScratchDir::ScratchDir() {
  std::string pattern = (std::filesystem::temp_directory_path() / "npusim-fuzz-XXXXXX").string();
  std::vector<char> buffer(pattern.begin(), pattern.end());
  buffer.push_back('\0');
  if (::mkdtemp(buffer.data()) == nullptr) {
    std::perror("npusim fuzz: mkdtemp");
    std::abort();
  }
  path_ = buffer.data();
}

ScratchDir::~ScratchDir() {
  std::error_code ignored;
  std::filesystem::remove_all(path_, ignored);
}

std::filesystem::path ScratchDir::write(const std::string& name, const std::uint8_t* data, std::size_t size) const {
  const auto file = path_ / name;
  std::ofstream out(file, std::ios::binary);
  out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  out.close();
  if (!out) {
    std::perror("npusim fuzz: writing the input");
    std::abort();
  }
  return file;
}

// The same list as run_cli's catch clauses that give exit status 2 (sim/cli.cpp).
void expect_typed_errors(void (*parse)(const void* context), const void* context) {
  try {
    parse(context);
  } catch (const sim::ConfigError&) {
  } catch (const sim::UsageError&) {
  } catch (const npu::InvalidMapping&) {
  } catch (const npu::NoFeasibleTiling&) {
  } catch (const workloads::NetworkError&) {
  } catch (const traces::TraceFileError&) {
  } catch (const traces::ArrivalSpecError&) {
  } catch (const scheduler::PolicyError&) {
  } catch (const sim::SweepError&) {
  } catch (const sim::OutputError&) {
  } catch (const std::filesystem::filesystem_error&) {
  }
}

}  // namespace npusim::fuzz
