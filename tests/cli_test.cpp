// The command-line contract, exercised on the real binary.

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "scratch_dir.hpp"

namespace npusim {
namespace {

struct CliResult {
  int status = -1;
  std::string out, err;
};

std::string slurp(const std::filesystem::path& file) {
  std::ifstream in(file);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

class Cli : public testing::ScratchDirTest {
 protected:
  CliResult run(const std::string& args) {
    const auto out = dir_ / "stdout", err = dir_ / "stderr";
    // No SYSTEMC_DISABLE_COPYRIGHT_MESSAGE here on purpose: the CLI must silence SystemC itself.
    const std::string command = "env -u SYSTEMC_DISABLE_COPYRIGHT_MESSAGE " NPUSIM_CLI_PATH " " +
                                args + " >" + out.string() + " 2>" + err.string();
    const int raw = std::system(command.c_str());
    return {WIFEXITED(raw) ? WEXITSTATUS(raw) : -1, slurp(out), slurp(err)};
  }

  std::filesystem::path write(const std::string& name, const std::string& text) {
    const auto file = dir_ / name;
    std::ofstream(file) << text;
    return file;
  }

  void expect_one_line_error(const CliResult& r, const std::string& needle) {
    EXPECT_EQ(r.status, 2);
    EXPECT_EQ(r.out, "");
    ASSERT_FALSE(r.err.empty());
    EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << "more than one line: " << r.err;
    EXPECT_EQ(r.err.rfind("npusim: error: ", 0), 0u) << r.err;
    EXPECT_NE(r.err.find(needle), std::string::npos) << r.err;
  }
};

std::string json_value(const std::string& json, const std::string& key) {
  const auto at = json.find("\"" + key + "\": ");
  if (at == std::string::npos) return "<missing>";
  const auto start = at + key.size() + 4;
  const auto end = json.find_first_of(",}", start);
  return json.substr(start, end - start);
}

TEST_F(Cli, CostJsonHasTheContractKeys) {
  const auto r = run("cost --npu " NPUSIM_SOURCE_DIR "/configs/npu/default.yaml --gemm 1024,576,64 --batch 4 --json");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.err, "");
  for (const char* key : {"cycles", "macs", "mapping", "b_r", "b_p", "k", "compute_cycles",
                          "stall_cycles", "offchip_bytes", "mac_utilisation"})
    EXPECT_NE(json_value(r.out, key), "<missing>") << key;
  EXPECT_EQ(json_value(r.out, "macs"), std::to_string(4ull * 1024 * 576 * 64));
  EXPECT_EQ(r.out.back(), '\n');
  EXPECT_EQ(r.out.find('\n'), r.out.size() - 1);  // one object, one line
}

TEST_F(Cli, ExplicitMappingIsCostedAndBestIsNoWorse) {
  const auto fixed = run("cost --gemm 64,27,16 --batch 4 --mapping 4,1,1 --json");
  ASSERT_EQ(fixed.status, 0) << fixed.err;
  EXPECT_EQ(json_value(fixed.out, "b_r"), "4");
  EXPECT_EQ(json_value(fixed.out, "b_p"), "1");
  const auto best = run("cost --gemm 64,27,16 --batch 4 --json");
  ASSERT_EQ(best.status, 0);
  EXPECT_LE(std::stoull(json_value(best.out, "cycles")), std::stoull(json_value(fixed.out, "cycles")));
}

TEST_F(Cli, TextOutputNamesUnits) {
  const auto r = run("cost --gemm 256,256,256 --batch 2");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("cycles "), std::string::npos);
  EXPECT_NE(r.out.find(" us)"), std::string::npos);
  EXPECT_NE(r.out.find("best allowed"), std::string::npos);
}

TEST_F(Cli, MissingFile) {
  expect_one_line_error(run("cost --npu /nonexistent/npu.yaml --gemm 1,1,1 --batch 1"),
                        "/nonexistent/npu.yaml: no such file");
}

TEST_F(Cli, BadValueNamesFileLinePathValueAndAllowed) {
  const auto file = write("bad.yaml", "npu:\n  buffers:\n    weight_kib: 0\n");
  expect_one_line_error(run("cost --npu " + file.string() + " --gemm 8,8,8 --batch 1"),
                        file.string() + ":3: npu.buffers.weight_kib = 0: allowed more than 0");
}

TEST_F(Cli, UnknownKey) {
  const auto file = write("typo.yaml", "npu:\n  clock_mhz: 800\n  pe_cuont: 16\n");
  expect_one_line_error(run("cost --npu " + file.string() + " --gemm 8,8,8 --batch 1"),
                        file.string() + ":3: npu.pe_cuont is not a known key");
}

TEST_F(Cli, EnergyConfigErrorsGetOneLine) {
  const auto cost = [&](const std::string& name, const std::string& yaml) {
    return run("cost --npu " + write(name, yaml).string() + " --gemm 8,8,8 --batch 1");
  };
  const std::string dir = dir_.string();
  expect_one_line_error(cost("typo.yaml", "npu:\n  energy:\n    mac_pJ: 0.1\n"),
                        dir + "/typo.yaml:3: npu.energy.mac_pJ is not a known key");
  expect_one_line_error(cost("negative.yaml", "npu:\n  energy:\n    dram_pj_per_byte: -4\n"),
                        dir + "/negative.yaml:3: npu.energy.dram_pj_per_byte = -4: allowed a finite number >= 0");
  expect_one_line_error(cost("node.yaml", "npu:\n  energy:\n    node_nm: 0.5\n"),
                        "npu.energy.node_nm = 0.5: allowed a number in [1, 1000]");
  expect_one_line_error(cost("missing.yaml", "npu:\n  energy:\n    table: no-such-table.yaml\n"),
                        dir + "/no-such-table.yaml: no such file");
  write("unknown-action.yaml", "energy_table:\n  mac_pj: 0.1\n  sram_pj: 2\n");
  expect_one_line_error(cost("uses-unknown.yaml", "npu:\n  energy: {table: unknown-action.yaml}\n"),
                        dir + "/unknown-action.yaml:3: energy_table.sram_pj is not a known key");
  write("negative-action.yaml", "energy_table:\n  static_mw: -1\n");
  expect_one_line_error(cost("uses-negative.yaml", "npu:\n  energy: {table: negative-action.yaml}\n"),
                        dir + "/negative-action.yaml:2: energy_table.static_mw = -1: allowed a finite number >= 0");
  write("not-a-table.yaml", "mac_pj: 0.1\n");
  expect_one_line_error(cost("uses-not-a-table.yaml", "npu:\n  energy: {table: not-a-table.yaml}\n"),
                        "mac_pj is not a known key");
}

// A table prices the actions it names; a key beside `table` wins over it.
TEST_F(Cli, EnergyTablesPriceTheirActions) {
  write("table.yaml", "energy_table:\n  mac_pj: 1.5\n  dram_pj_per_byte: 1\n  static_mw: 0\n");
  const auto npu = write("npu.yaml", "npu:\n  energy:\n    table: table.yaml\n    dram_pj_per_byte: 2\n");
  const auto r = run("cost --npu " + npu.string() + " --gemm 64,64,64 --json");
  ASSERT_EQ(r.status, 0) << r.err;
  const double macs = std::stod(json_value(r.out, "macs"));
  EXPECT_DOUBLE_EQ(std::stod(json_value(r.out, "mac")), 1.5 * macs);
  EXPECT_DOUBLE_EQ(std::stod(json_value(r.out, "dram")), 2.0 * std::stod(json_value(r.out, "offchip_bytes")));
  EXPECT_EQ(json_value(r.out, "static"), "0");
  const double parts = std::stod(json_value(r.out, "mac")) + std::stod(json_value(r.out, "sram")) +
                       std::stod(json_value(r.out, "dram")) + std::stod(json_value(r.out, "vector"));
  EXPECT_NEAR(std::stod(json_value(r.out, "total")), parts, 1e-9 * parts);
}

TEST_F(Cli, BadOptions) {
  expect_one_line_error(run("cost --gemm 8,8 --batch 1"), "--gemm 8,8: allowed R,P,C");
  expect_one_line_error(run("cost --gemm 8,x,8 --batch 1"), "--gemm 8,x,8");
  expect_one_line_error(run("cost --gemm 8,0,8 --batch 1"), "--gemm 8,0,8");
  expect_one_line_error(run("cost --gemm 8,8,8 --batch 0"), "--batch 0");
  expect_one_line_error(run("cost --gemm 8,8,8 --batch 4 --mapping 1,1,1"),
                        "--mapping 1,1,1: b_r = 1 must be ceil(batch / b_p) = 4");
  expect_one_line_error(run("cost --gemm 8,8,8 --batch 4 --mapping 4,1,3"),
                        "stack factor k = 3 is not in batching.stack_factors [1, 2, 4]");
  expect_one_line_error(run("cost --batch 2"), "cost: give exactly one of --gemm R,P,C, --conv H,W,Fh,Fw,C,K,S or --topology");
  expect_one_line_error(run("cost --gemm 8,8,8 --conv 8,8,3,3,1,1,1"), "give exactly one of");
  expect_one_line_error(run("cost --gemm 8,8,8 --batch 1 --frobnicate"), "frobnicate");
  expect_one_line_error(run(""), "subcommand");
  expect_one_line_error(run("cost --gemm 4294967296,4294967296,8 --batch 1"), "too large to model");
}

TEST_F(Cli, BaselineNpuRefusesFluidMappings) {
  expect_one_line_error(run("cost --npu " NPUSIM_SOURCE_DIR "/configs/npu/baseline.yaml --gemm 64,9,8 --batch 4 --mapping 2,2,1"),
                        "batching mode fluid is not enabled on NPU baseline");
}

TEST_F(Cli, TableListsEveryLayer) {
  const auto r = run("table --max-batch 4");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("stage3.block9.conv2"), std::string::npos);
  EXPECT_NE(r.out.find("cycles per sample"), std::string::npos);
  expect_one_line_error(run("table --model resnet57"), "resnet57: not a zoo model");
  expect_one_line_error(run("table --max-batch 0"), "--max-batch 0");
}

TEST_F(Cli, ModelJsonHasTheContractKeys) {
  const auto r = run("model resnet50 --json");
  ASSERT_EQ(r.status, 0) << r.err;
  for (const char* key : {"layers", "name", "kind", "r", "p", "c", "macs", "exits", "after_layer",
                          "probability", "total_macs", "total_params"})
    EXPECT_NE(json_value(r.out, key), "<missing>") << key;
  EXPECT_EQ(r.out.find('\n'), r.out.size() - 1);
  // conv1 of ResNet-50: R = 112 * 112, P = 7 * 7 * 3, C = 64.
  EXPECT_NE(r.out.find("\"name\": \"conv1\", \"kind\": \"conv\", \"exit\": null, \"output\": [112, 112, 64], "
                       "\"r\": 12544, \"p\": 147, \"c\": 64"),
            std::string::npos);
}

// SCALE-Sim's AlexNet serves as shipped: implicit pooling steps join its rows, marked in the
// text and the JSON; --strict keeps the chaining check.
TEST_F(Cli, ModelTakesScaleSimTopologiesWithImplicitStepsUnlessStrict) {
  const std::string alexnet = NPUSIM_SOURCE_DIR "/examples/scalesim/alexnet.csv";
  const auto text = run("model " + alexnet);
  ASSERT_EQ(text.status, 0) << text.err;
  EXPECT_NE(text.out.find("Conv2.implicit               maxpool*"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("* implicit: 2 steps not in the source"), std::string::npos) << text.out;
  const auto json = run("model " + alexnet + " --json");
  ASSERT_EQ(json.status, 0) << json.err;
  EXPECT_NE(json.out.find("\"name\": \"Conv2.implicit\", \"kind\": \"maxpool\""), std::string::npos) << json.out;
  std::size_t implicit = 0;
  for (auto at = json.out.find("\"implicit\": true"); at != std::string::npos; at = json.out.find("\"implicit\": true", at + 1))
    ++implicit;
  EXPECT_EQ(implicit, 2u);
  expect_one_line_error(run("model " + alexnet + " --strict"),
                        "alexnet.csv:3: layer Conv2: IFMAP 27x27x96 does not follow from Conv1's 54x54x96 output "
                        "(rows must chain: same channels, input = output + symmetric padding)");
}

TEST_F(Cli, ModelTextAndDescribe) {
  const auto model = run("model vgg16");
  ASSERT_EQ(model.status, 0) << model.err;
  EXPECT_NE(model.out.find("exits (probability"), std::string::npos);
  const auto zoo = run("describe models");
  ASSERT_EQ(zoo.status, 0);
  int lines = 0;
  for (char ch : zoo.out) lines += ch == '\n';
  EXPECT_EQ(lines, 5);
  for (const char* name : {"resnet56", "resnet50", "mobilenetv2", "vgg16", "inception_v3"})
    EXPECT_NE(zoo.out.find(name), std::string::npos) << name;
  expect_one_line_error(run("describe plans"), "describe plans: allowed models, policies, npu");
  // The NPU's keys come from the table the parser reads, with the default NPU's values.
  const auto npu = run("describe npu");
  ASSERT_EQ(npu.status, 0) << npu.err;
  EXPECT_NE(npu.out.find("npu.buffers.weight_kib"), std::string::npos) << npu.out;
  EXPECT_NE(npu.out.find("default 1024"), std::string::npos) << npu.out;
  EXPECT_NE(npu.out.find("baseline default"), std::string::npos) << npu.out;
  // Every registered policy is listed with each declared parameter, its type and default.
  const auto policies = run("describe policies");
  ASSERT_EQ(policies.status, 0) << policies.err;
  for (const char* name : {"fcfs", "static_batch", "lazy_batching", "prema", "edf", "exit_aware"})
    EXPECT_NE(("\n" + policies.out).find(std::string("\n") + name + " "), std::string::npos) << name;
  EXPECT_NE(policies.out.find("scheduler.static_batch.timeout_ms (number, default 0, a number in [0, 1000000])"),
            std::string::npos) << policies.out;
  // The analysis-only bound says so; no other policy does.
  EXPECT_NE(("\n" + policies.out).find("\nclairvoyant    [analysis only] "), std::string::npos) << policies.out;
  EXPECT_EQ(policies.out.find("[analysis only]"), policies.out.rfind("[analysis only]")) << policies.out;
  EXPECT_NE(policies.out.find("scheduler.clairvoyant.horizon_ms (number, default 3,"), std::string::npos) << policies.out;
}

// A clairvoyant policy from a plugin: refused in one line naming the scenario key, or the option.
TEST_F(Cli, APluginCannotBringAnAnalysisOnlyPolicy) {
  const auto scenario = write("s.yaml", std::string("name: s\nmodel: resnet56\ndevices:\n  - {name: cam, arrival: "
                                                    "{process: poisson, rate_hz: 10}, slo_ms: 5}\nscheduler:\n  "
                                                    "plugins: [") + NPUSIM_ANALYSIS_ONLY_PLUGIN +
                                            "]\n  policy: peeking\nsimulation: {seed: 1, samples: 10}\n");
  expect_one_line_error(run("run " + scenario.string()),
                        std::string("scheduler.plugins[0] = ") + NPUSIM_ANALYSIS_ONLY_PLUGIN +
                            ": allowed a policy plugin that loads (policy plugin " + NPUSIM_ANALYSIS_ONLY_PLUGIN +
                            " registers peeking as analysis only");
  expect_one_line_error(run(std::string("describe policies --plugin ") + NPUSIM_ANALYSIS_ONLY_PLUGIN),
                        std::string("--plugin ") + NPUSIM_ANALYSIS_ONLY_PLUGIN + ": policy plugin");
  // clairvoyant itself runs from the CLI like any policy.
  const auto clairvoyant = run("run default --set scheduler.policy=clairvoyant --set simulation.duration_s=2");
  EXPECT_EQ(clairvoyant.status, 0) << clairvoyant.err;
}

TEST_F(Cli, MalformedNetworkFiles) {
  const auto cyc = write("cycle.yaml", R"(network:
  name: cyc
  input: {height: 4, width: 4, channels: 1}
  layers:
    - {name: a, type: conv, out_channels: 1, kernel: 1, inputs: [b]}
    - {name: b, type: conv, out_channels: 1, kernel: 1}
  exits:
    - {name: final, after: b, probability: 1}
)");
  expect_one_line_error(run("model " + cyc.string()), cyc.string() + ":6: layer b: its output feeds a");
  const auto csv = write("bad.csv", "Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, Strides\nc1, 8, 8, 3, 3, 3, -4, 1\n");
  expect_one_line_error(run("model " + csv.string()), csv.string() + ":2: Num Filter = -4: allowed a positive integer");
  expect_one_line_error(run("model /nonexistent/net.yaml"), "/nonexistent/net.yaml: no such file");
  const auto good = write("good.csv", "Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, Strides\nc1, 8, 8, 3, 3, 3, 4, 1\nc2, 8, 8, 3, 3, 4, 4, 1\n");
  const auto bare = run("model " + good.string() + " --json");
  ASSERT_EQ(bare.status, 0) << bare.err;
  EXPECT_NE(bare.out.find("\"exits\": [{\"name\": \"final\", \"after_layer\": \"c2\", \"after_index\": 1, \"probability\": 1"),
            std::string::npos) << bare.out;
}

TEST_F(Cli, TraceWritesTheScenarioStreamDeterministically) {
  const auto first = dir_ / "a.csv", second = dir_ / "b.csv";
  const auto r = run("trace default --samples 2000 --out " + first.string());
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("wrote 2000 samples from 5 devices"), std::string::npos) << r.out;
  ASSERT_EQ(run("trace default --samples 2000 --out " + second.string()).status, 0);
  const std::string a = slurp(first);
  EXPECT_EQ(a, slurp(second));
  EXPECT_EQ(a.rfind("arrival_ns,device,model,exit\n", 0), 0u);
  int rows = 0;
  for (char ch : a) rows += ch == '\n';
  EXPECT_EQ(rows, 2001);
  // The written trace replays: a scenario whose devices replay it yields the same rows.
  const auto replay = write("replay.yaml", "name: r\nscheduler: {policy: fcfs}\nsimulation: {seed: 1, samples: 10}\ndevices:\n"
      "    - {name: door-cam, model: resnet56, arrival: {process: replay, file: a.csv}, slo_ms: 5}\n"
      "    - {name: garden-cam, model: resnet56, arrival: {process: replay, file: a.csv}, slo_ms: 5}\n"
      "    - {name: hall-cam, model: mobilenetv2, arrival: {process: replay, file: a.csv}, slo_ms: 5}\n"
      "    - {name: baby-monitor, model: mobilenetv2, arrival: {process: replay, file: a.csv}, slo_ms: 5}\n"
      "    - {name: kitchen-cam, model: resnet56, arrival: {process: replay, file: a.csv}, slo_ms: 5}\n");
  const auto again = dir_ / "c.csv";
  ASSERT_EQ(run("trace " + replay.string() + " --samples 5000 --out " + again.string()).status, 0);
  EXPECT_EQ(slurp(again), a);
}

TEST_F(Cli, TraceErrors) {
  const auto bad = write("bad.csv", "arrival_ns,device,model,exit\n5,door-cam,resnet56,\n4,door-cam,resnet56,\n");
  const auto scenario = write("s.yaml", "name: r\nscheduler: {policy: fcfs}\nsimulation: {seed: 1, samples: 10}\ndevices:\n"
      "    - {name: door-cam, model: resnet56, arrival: {process: replay, file: bad.csv}, slo_ms: 5}\n");
  const auto out = dir_ / "out.csv";
  expect_one_line_error(run("trace " + scenario.string() + " --samples 10 --out " + out.string()),
                        bad.string() + ":3: arrival_ns = 4 is earlier than the row before (5)");
  EXPECT_FALSE(std::filesystem::exists(out));
  EXPECT_FALSE(std::filesystem::exists(out.string() + ".partial"));
  expect_one_line_error(run("trace default --samples 0 --out " + out.string()), "--samples 0");
  expect_one_line_error(run("trace /nonexistent.yaml --samples 5 --out " + out.string()), "/nonexistent.yaml: no such file");
}

TEST_F(Cli, SetOverridesConfigKeys) {
  const auto fast = run("cost --gemm 1024,27,16 --batch 4 --json --set npu.offchip.bandwidth_gb_per_s=51.2");
  const auto slow = run("cost --gemm 1024,27,16 --batch 4 --json");
  ASSERT_EQ(fast.status, 0) << fast.err;
  EXPECT_LT(std::stoull(json_value(fast.out, "cycles")), std::stoull(json_value(slow.out, "cycles")));
  expect_one_line_error(run("cost --gemm 8,8,8 --batch 1 --set npu.pe_cuont=3"),
                        "(--set npu.pe_cuont): npu.pe_cuont is not a known key");
  const auto out = dir_ / "t.csv";
  ASSERT_EQ(run("trace default --samples 10 --out " + out.string() + " --set simulation.seed=1").status, 0);
  const std::string seed1 = slurp(out);
  ASSERT_EQ(run("trace default --samples 10 --out " + out.string() + " --set simulation.seed=2").status, 0);
  EXPECT_NE(slurp(out), seed1);
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

std::uint64_t cycles_in(const std::string& json_line) {
  const auto at = json_line.find("\"cycles\": ");
  EXPECT_NE(at, std::string::npos) << json_line;
  return std::stoull(json_line.substr(at + 10));
}

// AlexNet conv1 on a 32 x 32 output-stationary array, as systolic_test.cpp works it out:
// 285 folds of 425 demand rows, Total Cycles 285 * 425 - 1 = 121124.
TEST_F(Cli, CostReportsScaleSimCyclesForAConvAndATopology) {
  const std::string npu = "--npu " NPUSIM_SOURCE_DIR "/examples/scalesim/systolic_32x32_os.cfg";
  const auto one = run("cost " + npu + " --conv 224,224,11,11,3,96,4 --convention scalesim --json");
  ASSERT_EQ(one.status, 0) << one.err;
  EXPECT_EQ(cycles_in(one.out), 121124u);
  EXPECT_NE(one.out.find("\"ofmap\": [55, 55]"), std::string::npos) << one.out;
  const auto text = run("cost " + npu + " --conv 224,224,11,11,3,96,4 --convention scalesim");
  EXPECT_NE(text.out.find("cycles           121124 (SCALE-Sim v2"), std::string::npos) << text.out;

  const auto all = run("cost " + npu + " --topology " NPUSIM_SOURCE_DIR "/examples/scalesim/alexnet.csv "
                       "--convention scalesim --json");
  ASSERT_EQ(all.status, 0) << all.err;
  const auto lines = lines_of(all.out);
  ASSERT_EQ(lines.size(), 6u);  // five layers, then the total
  EXPECT_EQ(cycles_in(lines[0]), 121124u);
  std::uint64_t sum = 0;
  for (std::size_t i = 0; i < 5; ++i) sum += cycles_in(lines[i]);
  EXPECT_NE(lines[5].find("\"layer_id\": \"total\""), std::string::npos);
  EXPECT_EQ(cycles_in(lines[5]), sum);
  // npusim's own count on the same layers: the floor output rule (54 x 54) and used PEs only.
  const auto own = run("cost " + npu + " --topology " NPUSIM_SOURCE_DIR "/examples/scalesim/alexnet.csv --json");
  ASSERT_EQ(own.status, 0) << own.err;
  EXPECT_NE(own.out.find("\"r\": 2916"), std::string::npos) << own.out;
}

TEST_F(Cli, ScaleSimConventionNeedsAStallFreeSystolicNpuAndOneSample) {
  const std::string cfg = NPUSIM_SOURCE_DIR "/examples/scalesim/systolic_32x32_ws.cfg";
  expect_one_line_error(run("cost --conv 8,8,3,3,1,4,1 --convention scalesim"),
                        "--convention scalesim: NPU default has a dot_product array: allowed a systolic NPU");
  expect_one_line_error(run("cost --npu " NPUSIM_SOURCE_DIR "/configs/npu/systolic.yaml --conv 8,8,3,3,1,4,1 "
                            "--convention scalesim"),
                        "allowed a stall-free NPU");
  expect_one_line_error(run("cost --npu " + cfg + " --conv 8,8,3,3,1,4,1 --convention scalesim --batch 2"),
                        "--batch 2: allowed 1 with --convention scalesim");
  expect_one_line_error(run("cost --npu " + cfg + " --conv 8,8,3,3,1,4,1 --convention scale"), "--convention");
  expect_one_line_error(run("cost --npu " + cfg + " --conv 8,8,9,3,1,4,1"), "filter 9x3 is larger than the IFMAP 8x8");
  expect_one_line_error(run("cost --npu " + cfg + " --gemm 8,8,8 --set npu.clock_mhz=2"),
                        "npu overrides apply to npu YAML, not to the SCALE-Sim config");
  const auto bad = write("bad.cfg", "[general]\nrun_name = x\n[architecture_presets]\nArrayHeight: 8\n");
  expect_one_line_error(run("cost --npu " + bad.string() + " --gemm 8,8,8"),
                        "[architecture_presets] ArrayWidth is missing: SCALE-Sim v2 requires it");
  expect_one_line_error(run("cost --npu " + cfg + " --topology /nonexistent.csv"), "--topology /nonexistent.csv");
}

// The objects that follow each `"batch": ` in a table's JSON, one per control-block entry, each
// up to the next entry.
std::vector<std::string> table_cells(const std::string& json) {
  std::vector<std::string> cells;
  for (auto at = json.find("{\"batch\": "); at != std::string::npos;) {
    const auto next = json.find("{\"batch\": ", at + 1);
    cells.push_back(json.substr(at, next == std::string::npos ? std::string::npos : next - at));
    at = next;
  }
  return cells;
}

std::uint64_t number_in(const std::string& json, const std::string& key) {
  const std::string value = json_value(json, key);
  EXPECT_NE(value, "<missing>") << key << " in " << json;
  return value == "<missing>" ? 0 : std::stoull(value);
}

// The memory-hierarchy keys of one layer's cost, checked against each other: the split adds up
// to the total, compute and stall cycles to the cycles, and no layer beats its roofline bound.
void expect_consistent_memory_keys(const std::string& json, bool dot_product_gemm) {
  for (const char* key : {"compute_cycles", "stall_cycles", "offchip_bytes", "bytes", "tiling", "compulsory_bytes",
                          "roofline_cycles"})
    EXPECT_NE(json_value(json, key), "<missing>") << key << " in " << json;
  const std::uint64_t cycles = number_in(json, "cycles");
  EXPECT_EQ(number_in(json, "compute_cycles") + number_in(json, "stall_cycles"), cycles) << json;
  if (json_value(json, "bytes") != "null") {
    EXPECT_EQ(number_in(json, "input") + number_in(json, "weight") + number_in(json, "output") +
                  number_in(json, "psum"),
              number_in(json, "offchip_bytes"))
        << json;
  }
  if (json_value(json, "roofline_cycles") != "null") {
    EXPECT_GE(cycles, number_in(json, "roofline_cycles")) << json;
  }
  if (!dot_product_gemm) return;
  EXPECT_NE(json_value(json, "bytes"), "null") << json;
  EXPECT_NE(json_value(json, "roofline_cycles"), "null") << json;
  EXPECT_GE(number_in(json, "offchip_bytes"), number_in(json, "compulsory_bytes")) << json;
  const std::string order = json_value(json, "order");
  EXPECT_TRUE(order == "\"weights_outer\"" || order == "\"inputs_outer\"") << json;
  for (const char* key : {"band_rows", "band_samples", "col_block", "channel_chunks"})
    EXPECT_GE(number_in(json, key), 1u) << key << " in " << json;
  for (const char* key : {"input_resident", "weights_resident"}) {
    const std::string flag = json_value(json, key);
    EXPECT_TRUE(flag == "true" || flag == "false") << key << " in " << json;
  }
  for (const char* key : {"input_prefetch", "weight_prefetch"}) EXPECT_NE(json_value(json, key), "<missing>") << key;
}

TEST_F(Cli, CostJsonReportsTheMemoryHierarchyConsistently) {
  for (const char* layer : {"--gemm 1024,576,64 --batch 4", "--gemm 1024,16,64 --batch 3 --mapping 1,3,1",
                            "--gemm 1024,16,64 --batch 4 --mapping 2,2,1",
                            "--conv 56,56,3,3,64,64,1 --batch 2", "--gemm 64,27,16 --batch 8 --groups 4",
                            "--gemm 4096,4096,16 --set npu.buffers.weight_kib=16"}) {
    SCOPED_TRACE(layer);
    const auto r = run(std::string("cost --npu " NPUSIM_SOURCE_DIR "/configs/npu/default.yaml ") + layer + " --json");
    ASSERT_EQ(r.status, 0) << r.err;
    expect_consistent_memory_keys(r.out, true);
  }
  // A systolic array has no tiling; figures the model leaves out there are null, not 0.
  const auto systolic = run("cost --npu " NPUSIM_SOURCE_DIR "/configs/npu/systolic.yaml --gemm 1024,576,64 --json");
  ASSERT_EQ(systolic.status, 0) << systolic.err;
  expect_consistent_memory_keys(systolic.out, false);
  EXPECT_EQ(json_value(systolic.out, "tiling"), "null");
}

TEST_F(Cli, CostTextShowsTilingBytesAndRoofline) {
  const auto r = run("cost --npu " NPUSIM_SOURCE_DIR "/configs/npu/default.yaml --gemm 1024,576,64 --batch 4");
  ASSERT_EQ(r.status, 0) << r.err;
  for (const char* text : {"\nroofline_cycles  ", "\noffchip_bytes    ", " (input ", ", psum 0)\n",
                           "\ncompulsory_bytes ", "\ntiling           ", "R-blocks of ", " ahead\n"})
    EXPECT_NE(r.out.find(text), std::string::npos) << text << " in\n" << r.out;
  EXPECT_TRUE(r.out.find("tiling           weights_outer") != std::string::npos ||
              r.out.find("tiling           inputs_outer") != std::string::npos)
      << r.out;
}

TEST_F(Cli, TableJsonReportsTheMemoryHierarchyOfEveryCell) {
  const auto r =
      run("table --npu " NPUSIM_SOURCE_DIR "/configs/npu/default.yaml --model resnet56 --max-batch 3 --json");
  ASSERT_EQ(r.status, 0) << r.err;
  const auto cells = table_cells(r.out);
  std::size_t layers = 0;
  for (auto at = r.out.find("\"entries\": ["); at != std::string::npos; at = r.out.find("\"entries\": [", at + 1))
    ++layers;
  ASSERT_GT(layers, 0u);
  EXPECT_EQ(cells.size(), 3 * layers);  // batches 1, 2 and 3 of every layer
  std::size_t gemm_cells = 0;
  for (const auto& cell : cells) {
    const bool gemm = json_value(cell, "tiling") != "null";
    gemm_cells += gemm;
    expect_consistent_memory_keys(cell, gemm);
    // A vector-path layer moves every element once: all its traffic is compulsory.
    if (!gemm) {
      EXPECT_EQ(number_in(cell, "compulsory_bytes"), number_in(cell, "offchip_bytes")) << cell;
    }
    // Every cell has its energy by part, and the parts sum to the total.
    const auto part = [&](const char* key) { return std::stod(json_value(cell, key)); };
    const double parts = part("mac") + part("sram") + part("dram") + part("vector") + part("static");
    EXPECT_NEAR(part("total"), parts, 1e-9 * parts) << cell;
    if (gemm) {
      EXPECT_GT(part("mac"), 0.0) << cell;
    }
  }
  EXPECT_GT(gemm_cells, cells.size() / 2);
  EXPECT_LT(gemm_cells, cells.size());
  // The text table names each GEMM's loop order beside its mapping.
  const auto text = run("table --npu " NPUSIM_SOURCE_DIR "/configs/npu/default.yaml --max-batch 2");
  ASSERT_EQ(text.status, 0) << text.err;
  EXPECT_TRUE(text.out.find("> I ") != std::string::npos || text.out.find("> W ") != std::string::npos) << text.out;
}

// "  batch  N: X cycles per sample, MAC utilisation U, R x the roofline bound (...)"
struct NetworkFigures {
  double cycles_per_sample = 0, utilisation = 0, ratio = 0;
};

NetworkFigures figures_in(const std::string& text, unsigned batch) {
  const std::string head = "  batch " + std::string(batch < 10 ? "  " : batch < 100 ? " " : "") +
                           std::to_string(batch) + ": ";
  const auto at = text.find(head);
  EXPECT_NE(at, std::string::npos) << head << " in\n" << text;
  if (at == std::string::npos) return {};
  const std::string line = text.substr(at + head.size(), text.find('\n', at) - at - head.size());
  NetworkFigures f;
  EXPECT_EQ(std::sscanf(line.c_str(), "%lf cycles per sample, MAC utilisation %lf, %lfx the roofline bound",
                        &f.cycles_per_sample, &f.utilisation, &f.ratio),
            3)
      << line;
  return f;
}

TEST_F(Cli, ModelWithAnNpuPrintsWholeNetworkFigures) {
  const std::string npu = "--npu " NPUSIM_SOURCE_DIR "/configs/npu/default.yaml";
  const auto r = run("model resnet56 " + npu);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("exits (probability"), std::string::npos);  // the lowered network, as without --npu
  const NetworkFigures one = figures_in(r.out, 1), largest = figures_in(r.out, 16);
  for (const auto& f : {one, largest}) {
    EXPECT_GT(f.utilisation, 0.0);
    EXPECT_LE(f.utilisation, 1.0);
    EXPECT_GE(f.ratio, 1.0);
  }

  // The same numbers as JSON keys, with --max-batch; the cycles are the table's column sums.
  const auto json = run("model resnet56 " + npu + " --max-batch 3 --json");
  ASSERT_EQ(json.status, 0) << json.err;
  EXPECT_EQ(json.out.find('\n'), json.out.size() - 1);
  EXPECT_EQ(json_value(json.out, "max_batch"), "3");
  const auto costs = table_cells(json.out.substr(json.out.find("\"npu_cost\": ")));
  ASSERT_EQ(costs.size(), 2u) << json.out;
  const auto table = table_cells(run("table " + npu + " --max-batch 3 --json").out);
  for (std::size_t i = 0; i < 2; ++i) {
    const auto& c = costs[i];
    const std::uint64_t batch = i == 0 ? 1 : 3;
    EXPECT_EQ(number_in(c, "batch"), batch);
    std::uint64_t cycles = 0, roofline = 0;
    for (const auto& cell : table)
      if (number_in(cell, "batch") == batch) {
        cycles += number_in(cell, "cycles");
        roofline += number_in(cell, "roofline_cycles");
      }
    EXPECT_EQ(number_in(c, "cycles"), cycles) << c;
    EXPECT_EQ(number_in(c, "roofline_cycles"), roofline) << c;
    EXPECT_DOUBLE_EQ(std::stod(json_value(c, "cycles_per_sample")),
                     static_cast<double>(cycles) / static_cast<double>(batch));
    EXPECT_LE(std::stod(json_value(c, "mac_utilisation")), 1.0);
    EXPECT_GE(std::stod(json_value(c, "cycles_over_roofline")), 1.0);
    // A sample's energy is its share of the table's cells; it grows exit by exit, and leaving
    // at any exit costs no more than running to the end (the final exit).
    double energy_pj = 0;
    for (const auto& cell : table)
      if (number_in(cell, "batch") == batch) energy_pj += std::stod(json_value(cell, "total"));
    const double per_sample = std::stod(json_value(c, "energy_pj_per_sample"));
    EXPECT_NEAR(per_sample, energy_pj / static_cast<double>(batch), 1e-9 * per_sample) << c;
    const auto open = c.find("\"energy_pj_per_sample_to_exit\": {");
    ASSERT_NE(open, std::string::npos) << c;
    std::istringstream exits(c.substr(open, c.find('}', open) - open));
    std::vector<double> to_exit;
    for (std::string word; exits >> word;)
      if (word.back() != ':' && word.front() != '{' && word.front() != '"') to_exit.push_back(std::stod(word));
    ASSERT_EQ(to_exit.size(), 7u) << c;  // six early exits and the final one
    for (std::size_t e = 1; e < to_exit.size(); ++e) EXPECT_LE(to_exit[e - 1], to_exit[e]) << c;
    EXPECT_NEAR(to_exit.back(), per_sample, 1e-9 * per_sample) << c;
  }
  // Where the model gives no roofline bound (a systolic array today) the ratio says null, never 0.
  const auto systolic =
      run("model resnet56 --npu " NPUSIM_SOURCE_DIR "/configs/npu/systolic.yaml --max-batch 2 --json");
  ASSERT_EQ(systolic.status, 0) << systolic.err;
  for (const auto& c : table_cells(systolic.out.substr(systolic.out.find("\"npu_cost\": ")))) {
    const std::string ratio = json_value(c, "cycles_over_roofline");
    EXPECT_TRUE(ratio == "null" || std::stod(ratio) >= 1.0) << c;
  }

  expect_one_line_error(run("model resnet56 --max-batch 4"), "model: --max-batch only with --npu");
  expect_one_line_error(run("model resnet56 --set npu.clock_mhz=500"), "model: --set only with --npu");
  expect_one_line_error(run("model resnet56 " + npu + " --max-batch 0"), "--max-batch 0: allowed 1 to 256");
  expect_one_line_error(run("model resnet56 " + npu + " --set npu.pe_cuont=3"), "npu.pe_cuont is not a known key");
}

TEST_F(Cli, BuffersNoTilingFitsAreAUserError) {
  expect_one_line_error(run("cost --conv 2000,2000,1,1,64,64,1 --set npu.buffers.output_kib=1"),
                        "buffers.output_kib = 1: too small");
  // A whole network: the line names the network, the layer and the buffer. MobileNetV2's first
  // depthwise layer packs 7 groups into a pass (64 lanes / 9 taps): one band of 3 rows of
  // 112 x 7 channels is 2,352 bytes.
  expect_one_line_error(run("run default --set npu.buffers.input_kib=1"),
                        "network mobilenetv2: layer block1.depthwise at batch 1: buffers.input_kib = 1: too small for a "
                        "112x112x32 input with a 3-row kernel; at least 2.296875 KiB (2352 bytes");
  expect_one_line_error(run("table --model mobilenetv2 --max-batch 1 --set npu.buffers.input_kib=1"),
                        "network mobilenetv2: layer block1.depthwise at batch 1: buffers.input_kib = 1");
}

TEST_F(Cli, HelpExitsZero) {
  const auto r = run("--help");
  EXPECT_EQ(r.status, 0);
  EXPECT_NE(r.out.find("cost"), std::string::npos);
}

}  // namespace
}  // namespace npusim

namespace npusim {
namespace {

class CliRun : public Cli {};

TEST_F(CliRun, WritesTheSummaryTheIssueNames) {
  const auto out = dir_ / "run";
  const auto r = run("run default --set simulation.duration_s=20 --out " + out.string() + " --samples-csv");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("latency ms  mean"), std::string::npos) << r.out;
  const std::string summary = slurp(out / "summary.json");
  // Every key a plotting script may rely on, at its documented path.
  for (const char* section : {"\"samples\": {", "\"latency_ms\": {", "\"slo\": {", "\"npu\": {", "\"exits\": [",
                              "\"per_device\": ["})
    EXPECT_NE(summary.find(section), std::string::npos) << section;
  for (const char* key : {"arrived", "completed", "dropped", "mean", "p50", "p90", "p95", "p99", "max", "satisfaction",
                          "tail_satisfaction", "throughput_sps", "utilisation", "preemptions", "relative_error_bound",
                          "total_j", "per_sample_mj", "avg_power_w", "energy_mj_per_sample"})
    EXPECT_NE(json_value(summary, key), "<missing>") << key;
  // The energy parts sum to the total, and the total is the samples' energy.
  double parts_j = 0;
  for (const char* part : {"mac_j", "sram_j", "dram_j", "vector_j", "static_j"}) parts_j += std::stod(json_value(summary, part));
  const double total_j = std::stod(json_value(summary, "total_j"));
  EXPECT_NEAR(parts_j, total_j, 1e-9 * total_j);
  EXPECT_NEAR(std::stod(json_value(summary, "per_sample_mj")),
              total_j * 1e3 / std::stod(json_value(summary, "completed")), 1e-9);
  EXPECT_NE(r.out.find("energy      "), std::string::npos) << r.out;
  const auto arrived = std::stoull(json_value(summary, "arrived"));
  EXPECT_EQ(arrived, std::stoull(json_value(summary, "completed")) + std::stoull(json_value(summary, "dropped")));
  // One CSV row per sample, plus the header.
  const std::string csv = slurp(out / "samples.csv");
  EXPECT_EQ(static_cast<std::uint64_t>(std::count(csv.begin(), csv.end(), '\n')), arrived + 1);
  EXPECT_FALSE(std::filesystem::exists(out / "summary.json.partial"));
  // The scenario as run is kept beside its results, and reproduces them.
  ASSERT_TRUE(std::filesystem::exists(out / "scenario.yaml"));
  ASSERT_EQ(run("run " + (out / "scenario.yaml").string() + " --out " + (dir_ / "rerun").string()).status, 0);
  EXPECT_EQ(slurp(dir_ / "rerun" / "metrics.csv"), slurp(out / "metrics.csv"));
  // The same seed gives the same bytes; another seed does not.
  const auto again = dir_ / "again";
  ASSERT_EQ(run("run default --set simulation.duration_s=20 --out " + again.string()).status, 0);
  EXPECT_EQ(slurp(again / "summary.json"), summary);
  ASSERT_EQ(run("run default --set simulation.duration_s=20 --set simulation.seed=5 --out " + again.string()).status, 0);
  EXPECT_NE(slurp(again / "summary.json"), summary);
}

// A systolic NPU (the shipped preset, and a SCALE-Sim .cfg) under the serving engine: the run
// balances its samples, names the NPU, and `validate` writes a scenario that runs the same.
// The issue's example: the default scenario gives duration_s, and --set samples replaces it.
TEST_F(CliRun, SamplesReplaceTheDefaultScenariosDuration) {
  const auto r = run("run default --set simulation.samples=50");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("samples     50 arrived, 50 completed"), std::string::npos) << r.out;
}

TEST_F(CliRun, SystolicNpusServe) {
  const auto out = dir_ / "systolic";
  const auto r = run("run default --set npu=systolic --set simulation.duration_s=10 --out " + out.string());
  ASSERT_EQ(r.status, 0) << r.err;
  const std::string summary = slurp(out / "summary.json");
  EXPECT_NE(summary.find("\"name\": \"systolic\""), std::string::npos);
  EXPECT_EQ(std::stoull(json_value(summary, "arrived")),
            std::stoull(json_value(summary, "completed")) + std::stoull(json_value(summary, "dropped")));
  EXPECT_GT(std::stoull(json_value(summary, "completed")), 0u);
  ASSERT_EQ(run("run " + (out / "scenario.yaml").string() + " --out " + (dir_ / "rerun").string()).status, 0);
  EXPECT_EQ(slurp(dir_ / "rerun" / "metrics.csv"), slurp(out / "metrics.csv"));
  const auto cfg = run("run default --set npu=" NPUSIM_SOURCE_DIR "/examples/scalesim/systolic_32x32_ws.cfg "
                       "--set simulation.duration_s=5 --out " + (dir_ / "cfg").string());
  ASSERT_EQ(cfg.status, 0) << cfg.err;
  EXPECT_NE(slurp(dir_ / "cfg" / "summary.json").find("systolic_32x32_ws"), std::string::npos);
}

// A sweep may put the array kind on an axis: the dot-product NPU, the systolic preset and a
// SCALE-Sim config side by side under the same workload.
TEST_F(CliRun, SweepsAcrossArrayKinds) {
  const auto sweep = write("arrays.yaml", "base: " NPUSIM_SOURCE_DIR "/configs/scenarios/default.yaml\n"
                                          "set: {simulation.duration_s: 2}\n"
                                          "grid:\n  npu: [default, systolic, " NPUSIM_SOURCE_DIR
                                          "/examples/scalesim/systolic_32x32_os.cfg]\n");
  const auto r = run("sweep " + sweep.string() + " --out " + (dir_ / "sweep").string() + " --jobs 2");
  ASSERT_EQ(r.status, 0) << r.err;
  const auto rows = lines_of(slurp(dir_ / "sweep" / "results.csv"));
  ASSERT_EQ(rows.size(), 4u);  // header + three points
  for (std::size_t i = 1; i < rows.size(); ++i) EXPECT_NE(rows[i].find(",ok,"), std::string::npos) << rows[i];
  EXPECT_NE(rows[2].find(",systolic,"), std::string::npos) << rows[2];
}

TEST_F(CliRun, ValidatePrintsAScenarioThatRunsTheSame) {
  const auto resolved = run("validate default --set simulation.duration_s=10 --set scheduler.policy=edf "
                            "--set npu.energy.mac_pj=0.5 --set npu.energy.static_mw=10");
  ASSERT_EQ(resolved.status, 0) << resolved.err;
  EXPECT_NE(resolved.out.find("policy: edf"), std::string::npos);
  // Energies given are written out; those left to their defaults stay derived.
  EXPECT_NE(resolved.out.find("mac_pj: 0.5"), std::string::npos) << resolved.out;
  EXPECT_EQ(resolved.out.find("vector_op_pj"), std::string::npos) << resolved.out;
  EXPECT_NE(resolved.out.find("context_buffer_kib: 0"), std::string::npos);  // defaults written out: none
  const auto file = write("resolved.yaml", resolved.out);
  ASSERT_EQ(run("run " + file.string() + " --out " + (dir_ / "a").string()).status, 0);
  ASSERT_EQ(run("run default --set simulation.duration_s=10 --set scheduler.policy=edf --set npu.energy.mac_pj=0.5 "
                "--set npu.energy.static_mw=10 --out " + (dir_ / "b").string()).status, 0);
  EXPECT_EQ(slurp(dir_ / "a" / "metrics.csv"), slurp(dir_ / "b" / "metrics.csv"));
  expect_one_line_error(run("validate default --set scheduler.policy=fifo"), "scheduler.policy = fifo");
}

TEST_F(CliRun, BadScenariosGetOneLineAndNoOutput) {
  const auto out = dir_ / "never";
  expect_one_line_error(run("run default --set scheduler.policy=fifo --out " + out.string()),
                        "scheduler.policy = fifo: allowed a registered policy: fcfs, static_batch, lazy_batching, "
                        "prema, edf, exit_aware");
  expect_one_line_error(run("run default --set scheduler.exit_aware.slack=3"),
                        "scheduler.exit_aware.slack: not a parameter of policy exit_aware: allowed objective, "
                        "max_wait_slos, max_preemptions, slack_ms, guard_deadlines");
  expect_one_line_error(run("run default --set scheduler.exit_aware.objective=fast"),
                        "scheduler.exit_aware.objective = fast: allowed one of: mean, slo, blend");
  expect_one_line_error(run("run default --set scheduler.static_batch.timeout_ms=-1"),
                        "scheduler.static_batch.timeout_ms = -1: allowed a number in [0, 1000000]");
  expect_one_line_error(run("run default --set devices[0].priority=4"),
                        "devices[0].priority = 4: allowed a priority level: 1 (low), 3 (medium) or 9 (high)");
  expect_one_line_error(run("run default --set devices[1].priority=0"),
                        "devices[1].priority = 0: allowed a priority level: 1 (low), 3 (medium) or 9 (high)");
  expect_one_line_error(run("run default --set scheduler.edf_fast.x=1"),
                        "scheduler.edf_fast: not a known key: allowed keys are policy, max_batch, plugins, exit_profile, or a "
                        "policy's parameter section: fcfs,");
  expect_one_line_error(run("run default --set scheduler.plugins=[nothere.so]"),
                        "scheduler.plugins[0] = nothere.so: allowed a policy plugin that loads (cannot load policy "
                        "plugin ./nothere.so");
  // Setting samples replaces the default's duration_s; a file that gives both is refused.
  expect_one_line_error(run("run default --set simulation.samples=10 --set simulation.seed=x"),
                        "simulation.seed = x: allowed");
  expect_one_line_error(run("run " + write("both.yaml", "include: " NPUSIM_SOURCE_DIR "/configs/scenarios/default.yaml\n"
                                                        "simulation: {seed: 1, samples: 10}\n").string()),
                        "simulation: give exactly one of samples (arrivals to simulate) or duration_s");
  expect_one_line_error(run("run default --set devices[0].slo_ms=0"), "devices[0].slo_ms = 0: allowed a number in (0, 1000000000] ms");
  expect_one_line_error(run("run default --set npu.clock_mhz=0"), "(--set npu.clock_mhz): npu.clock_mhz = 0");
  expect_one_line_error(run("run default --set serving.drop=random"), "serving.drop = random: allowed a drop policy: newest, oldest");
  EXPECT_FALSE(std::filesystem::exists(out));
  // Output that cannot be written is the user's to fix: one line, exit 2, not an internal error.
  expect_one_line_error(run("run default --set simulation.duration_s=1 --trace /nonexistent/t.json"),
                        "cannot write /nonexistent/t.json: No such file or directory");
  expect_one_line_error(run("run default --set simulation.duration_s=1 --out /proc/npusim-out"),
                        "/proc/npusim-out: No such file or directory");

  // A failure in the middle of a run (a replayed trace going back in time) leaves nothing.
  write("bad.csv", "arrival_ns,device,model,exit\n5,cam,resnet56,\n4,cam,resnet56,\n");
  const auto scenario = write("s.yaml", "model: resnet56\nscheduler: {policy: fcfs}\nsimulation: {seed: 1, samples: 10}\n"
                                        "devices:\n  - {name: cam, arrival: {process: replay, file: bad.csv}, slo_ms: 5}\n");
  expect_one_line_error(run("run " + scenario.string() + " --out " + out.string()), "arrival_ns = 4 is earlier");
  EXPECT_FALSE(std::filesystem::exists(out));
}

}  // namespace
}  // namespace npusim
