// Local sweeps run their points in long-lived forked workers (docs/sweeps.md). These tests
// check what that must not change: every point's bytes equal those of a process of its own, a
// point that kills its worker fails alone while the others run, a worker is replaced after its
// share of points, and scenarios with policy plugins still get a process per point.

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <iostream>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "scratch_dir.hpp"
#include "sim/cli.hpp"
#include "sim/run_memo.hpp"
#include "sim/sweep.hpp"

namespace {

using namespace npusim::sim;

class SweepWorkers : public npusim::testing::ScratchDirTest {
 protected:
  std::filesystem::path write_sweep(const std::string& name, const std::string& body) {
    const auto file = dir_ / (name + ".yaml");
    std::ofstream(file) << "name: " << name << "\nbase: default\n" << body;
    return file;
  }

  static std::string read(const std::filesystem::path& file) {
    std::ifstream in(file, std::ios::binary);
    std::ostringstream text;
    text << in.rdbuf();
    return text.str();
  }

  SweepOutcome run(const SweepPlan& plan, const std::filesystem::path& out, unsigned jobs, PointRunner runner,
                   const std::function<void(SweepOptions&)>& adjust = {}) {
    SweepOptions options;
    options.out_dir = out;
    options.jobs = jobs;
    options.npusim = NPUSIM_CLI_PATH;
    options.run_point = std::move(runner);
    if (adjust) adjust(options);
    std::ostringstream log;
    return run_sweep(plan, options, log);
  }
};

bool has(const std::vector<std::string>& args, const std::string& word) {
  return std::find(args.begin(), args.end(), word) != args.end();
}

std::string out_dir_of(const std::vector<std::string>& args) {
  const auto it = std::find(args.begin(), args.end(), "--out");
  return it == args.end() || it + 1 == args.end() ? std::string{} : *(it + 1);
}

// What the CLI gives a sweep: the point's command line, run here.
int run_with_the_cli(const std::vector<std::string>& args, RunMemo& memo) {
  std::vector<const char*> argv{"npusim"};
  for (const auto& a : args) argv.push_back(a.c_str());
  return run_cli(static_cast<int>(argv.size()), argv.data(), std::cout, std::cerr, &memo);
}

// A point's result without a simulation, and the process that wrote it.
int write_fake_result(const std::vector<std::string>& args, RunMemo&) {
  const std::filesystem::path out = out_dir_of(args);
  std::filesystem::create_directories(out);
  std::ofstream(out / "metrics.csv") << "samples.arrived,pid\n1," << ::getpid() << "\n";
  std::ofstream(out / "summary.json") << "{}\n";
  return 0;
}

TEST_F(SweepWorkers, GiveTheBytesOfAProcessPerPoint) {
  // The default scenario serves two networks (ResNet-56 and MobileNetV2); two NPUs, two policies.
  const auto plan = load_sweep(write_sweep("bytes", "set:\n  simulation.samples: 300\n"
                                                    "grid:\n  npu: [default, baseline]\n"
                                                    "  scheduler.policy: [fcfs, exit_aware]\nseeds: 2\n"));
  ASSERT_EQ(plan.points.size(), 8u);
  const auto by_process = run(plan, dir_ / "exec", 1, {});
  const auto by_workers = run(plan, dir_ / "workers", 2, run_with_the_cli);
  EXPECT_EQ(by_process.succeeded, 8u);
  EXPECT_EQ(by_workers.succeeded, 8u);
  EXPECT_EQ(read(dir_ / "exec" / "results.csv"), read(dir_ / "workers" / "results.csv"));
  std::size_t files = 0;
  for (const auto& point : std::filesystem::directory_iterator(dir_ / "exec" / "points"))
    for (const auto& file : std::filesystem::directory_iterator(point.path())) {
      const auto twin = dir_ / "workers" / "points" / point.path().filename() / file.path().filename();
      EXPECT_EQ(read(twin), read(file.path())) << twin;
      ++files;
    }
  EXPECT_EQ(files, 8u * 3);  // summary.json, metrics.csv, scenario.yaml
}

// Seed 2's points kill the worker running them (jobs 1, so the next point is queued behind):
// they fail with the signal named, and every other point runs, as in its own process.
TEST_F(SweepWorkers, APointThatKillsItsWorkerFailsAlone) {
  const auto plan = load_sweep(write_sweep("crash", "set:\n  simulation.samples: 200\n"
                                                    "grid:\n  scheduler.policy: [fcfs, edf]\nseeds: 3\n"));
  const auto outcome = run(plan, dir_ / "out", 1, [](const std::vector<std::string>& args, RunMemo& memo) {
    if (has(args, "simulation.seed=2")) {
      ::usleep(200'000);  // time for the driver to queue the next point behind this one
      ::raise(SIGKILL);
    }
    return run_with_the_cli(args, memo);
  });
  EXPECT_EQ(outcome.succeeded, 4u);
  EXPECT_EQ(outcome.failed, 2u);
  const auto separate = run(plan, dir_ / "exec", 1, {});
  EXPECT_EQ(separate.succeeded, 6u);
  for (const auto& point : plan.points) {
    char name[16];
    std::snprintf(name, sizeof name, "%06zu", point.index);
    const auto points = dir_ / "out" / "points";
    if (point.values.back() == "2") {
      EXPECT_EQ(read(points / (std::string(name) + ".error")), "killed by signal 9\n") << name;
    } else {
      EXPECT_FALSE(std::filesystem::exists(points / (std::string(name) + ".error"))) << name;
      EXPECT_EQ(read(points / name / "summary.json"), read(dir_ / "exec" / "points" / name / "summary.json")) << name;
    }
  }
}

// A worker sends why a point failed: the last line the point wrote to standard error, or how it
// ended. Each point's standard error starts empty (a message never leaks into the next point's
// failure), a point that leaves its worker takes its last line with it, and no point leaves a
// file in points/ beside its result or its .error.
TEST_F(SweepWorkers, SendWhyAPointFailed) {
  const auto plan = load_sweep(write_sweep("why", "seeds: 6\n"));
  ASSERT_EQ(plan.points.size(), 6u);
  const auto outcome = run(plan, dir_ / "out", 1, [](const std::vector<std::string>& args, RunMemo& memo) {
    if (has(args, "simulation.seed=1")) {
      std::fprintf(stderr, "warning: a point that succeeds may write to standard error\n");
      return write_fake_result(args, memo);
    }
    if (has(args, "simulation.seed=2")) {
      std::fprintf(stderr, "first line\nnpusim: the reason of seed 2\n\n");
      return 2;
    }
    if (has(args, "simulation.seed=3")) return 3;  // nothing written: how it ended
    if (has(args, "simulation.seed=4")) {
      std::fprintf(stderr, "npusim: seed 4 leaves its worker\n");
      std::fflush(stderr);
      ::_exit(7);
    }
    if (has(args, "simulation.seed=5")) return 0;  // no result written
    return write_fake_result(args, memo);
  });
  EXPECT_EQ(outcome.succeeded, 2u);
  EXPECT_EQ(outcome.failed, 4u);
  const auto points = dir_ / "out" / "points";
  const std::map<std::string, std::string> expected{
      {"000001.error", "npusim: the reason of seed 2\n"},
      {"000002.error", "exit status 3 and no message\n"},
      {"000003.error", "npusim: seed 4 leaves its worker\n"},
      {"000004.error", "exit status 0 but no whole metrics.csv and summary.json\n"}};
  std::map<std::string, std::string> found;
  for (const auto& entry : std::filesystem::directory_iterator(points))
    if (!entry.is_directory()) found[entry.path().filename().string()] = read(entry.path());
  EXPECT_EQ(found, expected);
  std::istringstream results(read(dir_ / "out" / "results.csv"));
  std::string line;
  std::getline(results, line);
  EXPECT_EQ(line, "point,status,simulation.seed,samples.arrived,pid,error");
  std::vector<std::string> rows;
  while (std::getline(results, line)) rows.push_back(line.substr(0, line.find(',', line.find(',') + 1)));
  EXPECT_EQ(rows, (std::vector<std::string>{"0,ok", "1,failed", "2,failed", "3,failed", "4,failed", "5,ok"}));
}

// Reports larger than a read of the channel, holding the words of the protocol, reach the
// driver whole: a metrics.csv of 200 KiB in results.csv, and the last line of a failure's
// standard error after 200 KiB of others (only its end is read).
TEST_F(SweepWorkers, SendReportsOfAnySizeAndText) {
  const auto plan = load_sweep(write_sweep("large", "seeds: 4\n"));
  std::string note;
  while (note.size() < (200u << 10)) note += "done 0 ok 5 start 1 ";
  const auto outcome = run(plan, dir_ / "out", 2, [&](const std::vector<std::string>& args, RunMemo&) {
    if (has(args, "simulation.seed=2") || has(args, "simulation.seed=4")) {
      for (int line = 0; line < 50; ++line) std::fprintf(stderr, "%.4096s\n", note.c_str());
      std::fprintf(stderr, "npusim: done 9 ok 3 is not a report\n");
      return 2;
    }
    const std::filesystem::path out = out_dir_of(args);
    std::filesystem::create_directories(out);
    std::ofstream(out / "metrics.csv") << "samples.arrived,note\n1," << note << "\n";
    std::ofstream(out / "summary.json") << "{}\n";
    return 0;
  });
  EXPECT_EQ(outcome.succeeded, 2u);
  EXPECT_EQ(outcome.failed, 2u);
  EXPECT_EQ(read(dir_ / "out" / "points" / "000001.error"), "npusim: done 9 ok 3 is not a report\n");
  EXPECT_EQ(read(dir_ / "out" / "points" / "000003.error"), "npusim: done 9 ok 3 is not a report\n");
  std::istringstream results(read(dir_ / "out" / "results.csv"));
  std::string line;
  std::getline(results, line);
  EXPECT_EQ(line, "point,status,simulation.seed,samples.arrived,note,error");
  std::getline(results, line);
  EXPECT_EQ(line, "0,ok,1,1," + note + ",");
  std::getline(results, line);
  EXPECT_EQ(line, "1,failed,2,,,npusim: done 9 ok 3 is not a report");
}

// Which process ran each point, by the pid write_fake_result puts in its metrics.csv.
std::map<std::string, std::size_t> points_per_process(const SweepPlan& plan, const std::filesystem::path& out) {
  std::map<std::string, std::size_t> count;
  for (const auto& point : plan.points) {
    char name[16];
    std::snprintf(name, sizeof name, "%06zu", point.index);
    std::ifstream in(out / "points" / name / "metrics.csv");
    std::string header, row;
    std::getline(in, header);
    std::getline(in, row);
    ++count[row.substr(row.find(',') + 1)];
  }
  return count;
}

// 250 points on one job, workers told to serve 100 points each: three serve them.
TEST_F(SweepWorkers, AreReplacedAfterTheirShareOfPoints) {
  const auto plan = load_sweep(write_sweep("many", "seeds: 250\n"));
  const auto outcome = run(plan, dir_ / "out", 1, write_fake_result, [](SweepOptions& o) { o.worker_points = 100; });
  ASSERT_EQ(outcome.succeeded, 250u);
  const auto count = points_per_process(plan, dir_ / "out");
  EXPECT_EQ(count.size(), 3u);  // 100 + 100 + 50
  for (const auto& [pid, points] : count) EXPECT_LE(points, 100u) << "process " << pid;
  // By default a worker runs 1,000 points.
  const auto by_default = run(plan, dir_ / "default", 1, write_fake_result);
  ASSERT_EQ(by_default.succeeded, 250u);
  EXPECT_EQ(points_per_process(plan, dir_ / "default").size(), 1u);
}

// Each point keeps 3 MiB more resident: with a bound of 8 MiB over the first point's, a worker
// is replaced after its fourth point at the latest (3 more after the first: 9 MiB), and the
// points already sent to it still run there.
TEST_F(SweepWorkers, AreReplacedWhenTheirMemoryGrows) {
  const auto plan = load_sweep(write_sweep("leak", "seeds: 24\n"));
  const auto outcome = run(
      plan, dir_ / "out", 2,
      [](const std::vector<std::string>& args, RunMemo& memo) {
        constexpr std::size_t leaked_bytes = 3 << 20;
        char* leak = new char[leaked_bytes];
        for (std::size_t i = 0; i < leaked_bytes; i += 1024) leak[i] = 1;  // resident, not just reserved
        return write_fake_result(args, memo);
      },
      [](SweepOptions& o) { o.worker_growth_bytes = 8 << 20; });
  ASSERT_EQ(outcome.succeeded, 24u);
  const auto count = points_per_process(plan, dir_ / "out");
  // A worker is told to stop after its fourth point, with up to two more already sent.
  for (const auto& [pid, points] : count) EXPECT_LE(points, 6u) << "process " << pid;
  EXPECT_GE(count.size(), 24u / 6);
}

// A plugin may keep state between runs, and the driver has loaded it to check the plan, so
// its points run as new npusim processes: the in-process runner is never called.
TEST_F(SweepWorkers, LeavePluginScenariosANewProcessPerPoint) {
  const auto sweep = write_sweep("plugin", std::string("set:\n  simulation.samples: 200\n  scheduler.plugins: [") +
                                               NPUSIM_EXAMPLE_PLUGIN + "]\n  scheduler.policy: greedy_batch\nseeds: 3\n");
  const auto plan = load_sweep(sweep);
  EXPECT_TRUE(plan.loads_plugins);
  const auto outcome = run(plan, dir_ / "out", 2, [](const std::vector<std::string>&, RunMemo&) -> int { ::_exit(99); });
  EXPECT_EQ(outcome.succeeded, 3u) << (outcome.first_errors.empty() ? "" : outcome.first_errors.front());
  EXPECT_FALSE(load_sweep(write_sweep("builtin", "seeds: 2\n")).loads_plugins);
}

// A driver started with standard output and error closed still runs every point: the numbers
// are not handed to the workers' files or channels.
TEST_F(SweepWorkers, RunWithTheStandardStreamsClosed) {
  const auto plan = load_sweep(write_sweep("closed", "set:\n  simulation.samples: 200\nseeds: 4\n"));
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::close(STDOUT_FILENO);
    ::close(STDERR_FILENO);
    SweepOptions options;
    options.out_dir = dir_ / "out";
    options.jobs = 2;
    options.npusim = NPUSIM_CLI_PATH;
    options.run_point = run_with_the_cli;
    std::ostringstream log;
    try {
      ::_exit(static_cast<int>(run_sweep(plan, options, log).succeeded));
    } catch (...) {
      ::_exit(255);  // never back into the test runner, whose output is closed here
    }
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 4);
  for (const auto& entry : std::filesystem::directory_iterator(dir_ / "out" / "points"))
    EXPECT_NE(entry.path().extension(), ".error") << read(entry.path());
}

}  // namespace
