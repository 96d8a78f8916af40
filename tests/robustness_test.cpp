// Mutation fuzzing of every input format: thousands of randomly damaged copies of the shipped
// files must either load or fail with the typed, one-line user errors the CLI reports. Any
// other exception (or a crash) is a bug: the user would see "internal error".

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>

#include <gtest/gtest.h>

#include "sim/network_yaml.hpp"
#include "sim/npu_yaml.hpp"
#include "sim/scenario_yaml.hpp"
#include "sim/serving.hpp"
#include "sim/sweep.hpp"
#include "traces/random_stream.hpp"
#include "traces/trace_file.hpp"
#include "workloads/scalesim_csv.hpp"

namespace npusim {
namespace {

std::string read(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// One random edit: delete, duplicate or replace a span, or swap two lines.
std::string mutate(const std::string& text, traces::RandomStream& rng) {
  std::string out = text;
  const char alphabet[] = "0123456789-.:,[]{} \nabcxyz_#'\"";
  const int edits = static_cast<int>(rng.uniform_between(1, 3));
  for (int e = 0; e < edits && !out.empty(); ++e) {
    const std::size_t at = rng.uniform_below(out.size());
    const std::size_t len = std::min<std::size_t>(out.size() - at, rng.uniform_between(1, 8));
    switch (rng.uniform_below(4)) {
      case 0: out.erase(at, len); break;
      case 1: out.insert(at, out.substr(at, len)); break;
      case 2:
        for (std::size_t i = at; i < at + len; ++i) out[i] = alphabet[rng.uniform_below(sizeof(alphabet) - 1)];
        break;
      default: {
        const auto a = out.find('\n', at), b = a == std::string::npos ? a : out.find('\n', a + 1);
        if (b != std::string::npos) {
          const auto c = out.find('\n', b + 1);
          const std::string second = out.substr(a + 1, b - a), third = out.substr(b + 1, c == std::string::npos ? std::string::npos : c - b);
          out.replace(a + 1, second.size() + third.size(), third + second);
        }
      }
    }
  }
  return out;
}

// Runs `load` on `mutations` damaged copies (times NPUSIM_FUZZ_FACTOR, default 1, with
// NPUSIM_FUZZ_SEED mixed into the seed, for longer runs); only the user-error types may escape.
void fuzz(const std::string& original, int mutations, std::uint64_t seed,
          const std::function<void(const std::string&)>& load) {
  if (const char* factor = std::getenv("NPUSIM_FUZZ_FACTOR")) mutations *= std::stoi(factor);
  if (const char* extra = std::getenv("NPUSIM_FUZZ_SEED")) seed += 1000 * std::stoull(extra);
  traces::RandomStream rng(seed, 9);
  int loaded = 0, rejected = 0;
  for (int i = 0; i < mutations; ++i) {
    const std::string text = mutate(original, rng);
    try {
      load(text);
      ++loaded;
    } catch (const sim::ConfigError&) {
      ++rejected;
    } catch (const workloads::NetworkError&) {
      ++rejected;
    } catch (const traces::TraceFileError&) {
      ++rejected;
    } catch (const std::exception& e) {
      FAIL() << "untyped error " << typeid(e).name() << ": " << e.what() << "\n--- input ---\n" << text;
    }
  }
  EXPECT_GT(rejected, 0);  // the mutations do damage
  ::testing::Test::RecordProperty("loaded", loaded);
}

TEST(Robustness, DamagedNpuFiles) {
  fuzz(read(NPUSIM_SOURCE_DIR "/configs/npu/default.yaml"), 2000, 1, [](const std::string& text) {
    sim::load_npu(sim::ConfigNode::load_text(text, "npu.yaml"));
  });
}

TEST(Robustness, DamagedNetworkFiles) {
  fuzz(read(NPUSIM_SOURCE_DIR "/configs/models/inception_v3.yaml"), 300, 2, [](const std::string& text) {
    workloads::lower_network(sim::parse_network(sim::ConfigNode::load_text(text, "net.yaml"), "."));
  });
}

TEST(Robustness, DamagedScenarioFiles) {
  const auto dir = std::filesystem::temp_directory_path() / ("npusim_fuzz_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  fuzz(read(NPUSIM_SOURCE_DIR "/configs/scenarios/default.yaml"), 500, 3, [&](const std::string& text) {
    std::ofstream(dir / "s.yaml") << text;
    auto scenario = sim::load_scenario((dir / "s.yaml").string());
    // What loads must also serve: a short run, with the balance checked inside.
    scenario.simulation.samples = 200;
    scenario.simulation.duration_s = 0.0;
    scheduler::PolicyRegistry registry;
    scheduler::register_builtin_policies(registry);
    const auto result = sim::run_serving(scenario, registry);
    EXPECT_EQ(result.metrics.overall().arrived, 200u);
  });
  std::filesystem::remove_all(dir);
}

TEST(Robustness, DamagedSweepFiles) {
  const auto dir = std::filesystem::temp_directory_path() / ("npusim_fuzz_sweep_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  // The sweep's base scenario is found next to the damaged copy, as in configs/.
  std::filesystem::create_directories(dir / "sweeps");
  std::filesystem::copy_file(NPUSIM_SOURCE_DIR "/configs/scenarios/resnet50-bursty.yaml", dir / "base.yaml",
                             std::filesystem::copy_options::overwrite_existing);
  std::string original = read(NPUSIM_SOURCE_DIR "/configs/sweeps/policies-vs-load.yaml");
  const std::string from = "base: ../scenarios/resnet50-bursty.yaml";
  original.replace(original.find(from), from.size(), "base: ../base.yaml");
  fuzz(original, 150, 5, [&](const std::string& text) {
    std::ofstream(dir / "sweeps" / "s.yaml") << text;
    const auto plan = sim::load_sweep(dir / "sweeps" / "s.yaml");
    EXPECT_FALSE(plan.points.empty());
  });
  std::filesystem::remove_all(dir);
}

TEST(Robustness, DamagedTraceFiles) {
  const auto dir = std::filesystem::temp_directory_path() / ("npusim_fuzz_trace_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  fuzz(read(NPUSIM_SOURCE_DIR "/configs/traces/example.csv"), 2000, 4, [&](const std::string& text) {
    std::ofstream(dir / "t.csv") << text;
    auto replay = traces::open_replay(dir / "t.csv", "door-cam", "resnet56", 7, {"door-cam", "hall-cam"});
    while (replay->next()) {
    }
  });
  std::filesystem::remove_all(dir);
}

TEST(Robustness, DamagedScaleSimFiles) {
  const std::string csv =
      "Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, Strides,\n"
      "Conv1, 230, 230, 7, 7, 3, 64, 2,\nConv2, 114, 114, 3, 3, 64, 64, 1,\nFC, 112, 112, 112, 112, 64, 10, 1,\n";
  fuzz(csv, 2000, 5, [](const std::string& text) {
    std::istringstream in(text);
    workloads::NetworkDef net;
    net.source = "t.csv";
    workloads::import_scalesim_csv(in, "t.csv", net);
    net.exits.push_back({"final", net.layers.back().name, 1.0, {}, ""});
    workloads::lower_network(net);
  });
}

}  // namespace
}  // namespace npusim
