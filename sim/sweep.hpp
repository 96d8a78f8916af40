#pragma once
// Design-space sweeps (docs/sweeps.md): a base scenario and axes (a grid, zipped lists,
// seeds) expand into points; each point is one `npusim run`, locally in forked workers or as
// a Slurm job array; results gather into results.csv. Each point's result is written
// atomically, so a killed sweep resumes where it stopped.

#include <cstdint>
#include <filesystem>
#include <functional>
#include <ostream>
#include <string>
#include <vector>

namespace npusim::sim {

class RunMemo;  // sim/run_memo.hpp

struct SweepPoint {
  std::size_t index = 0;
  std::vector<std::string> values;       // one per SweepPlan::parameters, as YAML text
  std::vector<std::string> assignments;  // path=value for npusim run --set: the fixed ones, then the axes
};

struct SweepPlan {
  std::string name;
  std::string base;                     // the base scenario: an absolute path, or "default"
  std::vector<std::string> parameters;  // axis paths, in column order
  std::vector<SweepPoint> points;
  bool loads_plugins = false;  // some point's scenario loads a policy plugin: each point runs as a new npusim
};

// Reads a sweep file and checks every axis value against the base scenario, so unknown key
// paths and values of the wrong type are reported before any point runs. `overrides` are
// --set assignments applied to every point. Throws ConfigError (one line): the first bad value
// in axis order. The values load on up to `check_threads` threads (0 is taken as 1), so a policy
// plugin the scenarios name may be loaded, and register, on several threads at once (each into
// a registry of its own).
SweepPlan load_sweep(const std::filesystem::path& file, const std::vector<std::string>& overrides = {},
                     unsigned check_threads = 1);

enum class SweepBackend { local, slurm };

// Runs one point's command line (the words after the program's name: "run", the base scenario,
// its --set, --out and --table-cache options) in the calling process, writing to file
// descriptors 1 and 2, and returns its exit status. The sweep calls it in forked workers, each
// running many points in turn (SweepOptions::worker_points): a point that crashes its worker
// still fails alone, and no exec, dynamic loading or start-up of a new program is paid per
// point, which on a virtual machine cost more than a short point's simulation
// (docs/sweeps.md). `memo` is the worker's own (sim/run_memo.hpp): the NPU presets, zoo
// networks and tables of its earlier points, and of the first point, which the driver prepared
// before forking it.
using PointRunner = std::function<int(const std::vector<std::string>& args, RunMemo& memo)>;

struct SweepOptions {
  std::filesystem::path out_dir;
  unsigned jobs = 1;                   // local: points in parallel
  SweepBackend backend = SweepBackend::local;
  bool resume = false;
  std::size_t points_per_task = 0;     // slurm: 0 chooses (one per point, at most 1000 tasks)
  std::vector<std::string> slurm_options;  // slurm: passed to sbatch as given (--partition=..., --time=...)
  std::filesystem::path npusim;        // the executable that runs points (Slurm tasks; local points without run_point)
  PointRunner run_point;               // local points: run in forked workers; empty: exec npusim per point
  // Local workers: one is replaced, once the points sent to it have run, after `worker_points`
  // points (0 is taken as 1) or when its resident memory exceeds what it held after its first
  // point by `worker_growth_bytes`, so that memory runs leak cannot grow with the sweep.
  std::size_t worker_points = 1000;
  std::uint64_t worker_growth_bytes = std::uint64_t{256} << 20;
  bool progress = false;               // draw a progress line on `log`
};

struct SweepOutcome {
  // reused: finished before a resume; rerun: found damaged or empty by a resume and run again
  std::size_t total = 0, succeeded = 0, failed = 0, reused = 0, rerun = 0;
  std::vector<std::string> first_errors;  // "point N: error line" for the first few failures
};

// Runs the points not yet finished and writes out_dir/results.csv. Throws UsageError-like
// SweepError for an out_dir holding another sweep, a missing Slurm, or a Slurm submission
// that fails.
SweepOutcome run_sweep(const SweepPlan& plan, const SweepOptions& options, std::ostream& log);

// One Slurm array task: runs its share of the points of the sweep planned in out_dir.
// `run_point` as in SweepOptions (empty: exec npusim for each point).
void run_sweep_task(const std::filesystem::path& out_dir, std::size_t task, const std::filesystem::path& npusim,
                    const PointRunner& run_point = {});

// A sweep that cannot start or gather (not a bad point: those are recorded and the sweep goes
// on). what() is one line.
class SweepError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace npusim::sim
