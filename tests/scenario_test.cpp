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
