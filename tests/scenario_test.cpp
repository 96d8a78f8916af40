// Scenario files: shipped ones load, every mistake gets one line with file, line and path.

#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "sim/config_node.hpp"
#include "sim/scenario_yaml.hpp"

namespace npusim {
namespace {

class ScenarioFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("npusim_scenario_test_" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string error_of(const std::string& yaml) {
    const auto file = dir_ / "s.yaml";
    std::ofstream(file) << yaml;
    try {
      sim::load_scenario(file.string());
    } catch (const sim::ConfigError& e) {
      return std::string(e.what()).substr(file.string().size());
    }
    return "";
  }
  std::filesystem::path dir_;
};

TEST_F(ScenarioFiles, ShippedScenariosLoad) {
  const auto def = sim::load_scenario("default");
  EXPECT_EQ(def.devices.size(), 5u);
  EXPECT_EQ(def.models.size(), 2u);
  // The garden camera is tilted toward later exits: its final-exit share exceeds the model's.
  EXPECT_GT(def.devices[1].stream.exit_probabilities.back(), def.models.at("resnet56").exits.back().probability);
  const auto replay = sim::load_scenario(NPUSIM_SOURCE_DIR "/configs/scenarios/replay.yaml");
  traces::ArrivalStream stream(replay.streams(), replay.simulation.seed, replay.base_dir);
  int samples = 0;
  while (stream.next()) ++samples;
  EXPECT_EQ(samples, 8);  // every row of configs/traces/example.csv
}

const char* const head = "name: s\nscheduler: {policy: fcfs}\nsimulation: {seed: 1, samples: 10}\ndevices:\n";

TEST_F(ScenarioFiles, MistakesAreNamed) {
  EXPECT_EQ(error_of(std::string(head) + "    - {name: a, model: resnet56, arrival: {process: poisson, rate_hz: -3}, slo_ms: 5}\n"),
            ":5: devices[0].arrival.rate_hz = -3: allowed a rate in (0, 1e9] Hz");
  EXPECT_EQ(error_of(std::string(head) + "    - {name: a, model: resnet56, arrival: {process: poison, rate_hz: 3}, slo_ms: 5}\n"),
            ":5: devices[0].arrival.process = poison: allowed an arrival process: poisson, periodic, "
            "mmpp, on_off, piecewise, replay");
  EXPECT_EQ(error_of(std::string(head) + "    - {name: a, model: resnet56, arrival: {process: poisson, rate: 3}, slo_ms: 5}\n"),
            ":5: devices[0].arrival.rate is not a known key: allowed keys are process, rate_hz");
  EXPECT_EQ(error_of(std::string(head) + "    - {name: a, model: resnet56, arrival: {process: poisson, rate_hz: 3}, slo_ms: 5}\n"
                                         "    - {name: a, model: resnet56, arrival: {process: poisson, rate_hz: 3}, slo_ms: 5}\n"),
            ":6: devices[1].name = a: allowed a name no other device has");
  EXPECT_EQ(error_of(std::string(head) +
                     "    - {name: a, model: resnet56, arrival: {process: poisson, rate_hz: 3}, exits: {probabilities: [0.5, 0.5]}, slo_ms: 5}\n"),
            ":5: devices[0].exits.probabilities = 2 values: allowed 7 values, one per exit of resnet56");
  EXPECT_EQ(error_of(std::string(head) +
                     "    - name: a\n      slo_ms: 5\n      model: resnet56\n      arrival:\n        process: piecewise\n"
                     "        schedule:\n          - {until_ms: 100, rate_hz: 5}\n          - {until_ms: 50, rate_hz: 5}\n"),
            ":12: devices[0].arrival.schedule[1].until_ms = 50: allowed an end time after 100 ms, at most 1e12 ms");
  EXPECT_EQ(error_of("name: s\nscheduler: {policy: fcfs}\nsimulation: {samples: 5}\ndevices:\n"
                     "    - {name: a, model: resnet56, arrival: {process: poisson, rate_hz: 3}, slo_ms: 5}\n"),
            ":3: simulation.seed is missing: required key");
}

}  // namespace
}  // namespace npusim

namespace npusim {
namespace {

TEST_F(ScenarioFiles, PaperScenariosLoadAndTheExitProfileSourceIsChecked) {
  const auto home = sim::load_scenario(NPUSIM_SOURCE_DIR "/configs/paper/home.yaml");
  EXPECT_EQ(home.devices.size(), 8u);
  EXPECT_EQ(home.models.size(), 2u);
  EXPECT_FALSE(home.scheduler.exit_profile_from_devices);
  const auto informed = sim::load_scenario(NPUSIM_SOURCE_DIR "/configs/paper/home.yaml", {"scheduler.exit_profile=devices"});
  EXPECT_TRUE(informed.scheduler.exit_profile_from_devices);
  EXPECT_NE(sim::resolved_yaml(informed).find("exit_profile: devices"), std::string::npos);
  EXPECT_EQ(error_of("name: s\nscheduler: {policy: fcfs, exit_profile: guess}\nsimulation: {seed: 1, samples: 10}\n"
                     "devices:\n    - {name: a, model: resnet56, arrival: {process: poisson, rate_hz: 3}, slo_ms: 5}\n"),
            ":2: scheduler.exit_profile = guess: allowed an exit profile source: network, devices");
}

TEST_F(ScenarioFiles, IncludesComposeAndKeepTheirOwnLocations) {
  const auto put = [&](const std::string& name, const std::string& text) { std::ofstream(dir_ / name) << text; };
  put("cams.yaml",
      "devices:\n"
      "  - {name: cam, count: 2, arrival: {process: poisson, rate_hz: 20}, slo_ms: 30}\n"
      "scheduler:\n"
      "  policy: fcfs\n"
      "  static_batch: {timeout_ms: 3}\n");
  put("base.yaml",
      "include: cams.yaml\n"
      "model: resnet56\n"
      "scheduler: {policy: static_batch}\n"
      "simulation: {seed: 1, samples: 100}\n"
      "devices:\n"
      "  - {name: door, arrival: {process: periodic, fps: 10}, slo_ms: 25}\n");
  put("top.yaml", "include: [base.yaml]\ndevices:\n  - {name: extra, arrival: {process: poisson, rate_hz: 5}, slo_ms: 40}\n");
  const auto s = sim::load_scenario((dir_ / "top.yaml").string());
  // Device lists concatenate, includes first; mappings merge, the including file winning.
  std::vector<std::string> names;
  for (const auto& d : s.devices) names.push_back(d.stream.name);
  EXPECT_EQ(names, (std::vector<std::string>{"cam-0", "cam-1", "door", "extra"}));
  EXPECT_EQ(s.scheduler.policy, "static_batch");                // base.yaml over cams.yaml
  EXPECT_EQ(s.scheduler.parameters.real("timeout_ms"), 3.0);    // kept from cams.yaml
  EXPECT_EQ(s.simulation.samples, 100u);

  // An error inside an included file names that file and its line.
  put("cams.yaml", "devices:\n  - {name: cam, arrival: {process: poisson, rate_hz: -20}, slo_ms: 30}\n");
  try {
    sim::load_scenario((dir_ / "top.yaml").string());
    FAIL() << "no error";
  } catch (const sim::ConfigError& e) {
    EXPECT_EQ(std::string(e.what()), (dir_ / "cams.yaml").string() +
                                         ":2: devices[0].arrival.rate_hz = -20: allowed a rate in (0, 1e9] Hz");
  }
  put("cams.yaml", "include: top.yaml\n");
  try {
    sim::load_scenario((dir_ / "top.yaml").string());
    FAIL() << "no error";
  } catch (const sim::ConfigError& e) {
    EXPECT_EQ(std::string(e.what()), (dir_ / "cams.yaml").string() +
                                         ":1: include = top.yaml: allowed a file that does not include itself "
                                         "(top.yaml -> base.yaml -> cams.yaml -> top.yaml)");
  }
  put("cams.yaml", "include: nowhere.yaml\n");
  EXPECT_THROW(sim::load_scenario((dir_ / "top.yaml").string()), sim::ConfigError);
}

// --set of one key of an exclusive pair replaces the other, in whichever form the file has it.
TEST_F(ScenarioFiles, SettingOneOfAnExclusivePairReplacesTheOther) {
  const auto by_count = sim::load_scenario("default", {"simulation.samples=1000"});
  EXPECT_EQ(by_count.simulation.samples, 1000u);
  EXPECT_EQ(by_count.simulation.duration_s, 0.0);
  const auto back = sim::load_scenario("default", {"simulation.samples=1000", "simulation.duration_s=2"});
  EXPECT_EQ(back.simulation.samples, 0u);
  EXPECT_EQ(back.simulation.duration_s, 2.0);

  // In the embedded default, devices[1] (garden-cam) has exits.tilt and devices[2] (hall-cam) slo_factor.
  const auto plain = sim::load_scenario("default");
  ASSERT_TRUE(plain.devices[2].slo_factor.has_value());
  const auto replaced = sim::load_scenario(
      "default", {"devices[2].slo_ms=7", "devices[1].exits.probabilities=[0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.4]"});
  EXPECT_EQ(replaced.devices[2].slo_ms, 7.0);
  EXPECT_FALSE(replaced.devices[2].slo_factor.has_value());
  EXPECT_EQ(replaced.devices[1].stream.exit_probabilities.back(), 0.4);
  EXPECT_NE(plain.devices[1].stream.exit_probabilities.back(), 0.4);
  // Only the device named changes.
  EXPECT_TRUE(replaced.devices[3].slo_factor.has_value());

  // A file that gives both keys is still refused: only an override replaces.
  EXPECT_EQ(error_of("name: s\nscheduler: {policy: fcfs}\nsimulation: {seed: 1, samples: 10, duration_s: 3}\ndevices:\n"
                     "    - {name: a, model: resnet56, arrival: {process: poisson, rate_hz: 3}, slo_ms: 5}\n"),
            ":3: simulation: give exactly one of samples (arrivals to simulate) or duration_s (seconds of arrivals)");
}

TEST_F(ScenarioFiles, TheResolvedScenarioLoadsBackToTheSameScenario) {
  const auto original = sim::load_scenario("default", {"simulation.duration_s=5", "scheduler.max_batch=8"});
  const std::string text = sim::resolved_yaml(original);
  std::ofstream(dir_ / "resolved.yaml") << text;
  const auto again = sim::load_scenario((dir_ / "resolved.yaml").string());
  EXPECT_EQ(sim::resolved_yaml(again), text);
  EXPECT_EQ(again.scheduler.max_batch, 8u);
  EXPECT_EQ(again.devices.size(), original.devices.size());
  EXPECT_EQ(again.devices[1].stream.exit_probabilities, original.devices[1].stream.exit_probabilities);
}

}  // namespace
}  // namespace npusim
