#include "sim/sweep.hpp"

#include <fcntl.h>
#include <malloc.h>
#include <poll.h>
#include <spawn.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cinttypes>
#include <chrono>
#include <cstring>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <deque>
#include <exception>
#include <map>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string_view>
#include <thread>
#include <utility>

#include <fmt/format.h>

#include "sim/config_node.hpp"
#include "sim/run_memo.hpp"
#include "sim/run_report.hpp"
#include "sim/scenario_yaml.hpp"
#include "sim/table_cache.hpp"
#include "workloads/control_blocks.hpp"

extern char** environ;

namespace npusim::sim {
namespace {

constexpr const char* plan_magic = "npusim-sweep-plan 1";
// The size of each read of a file or a worker's channel.
constexpr std::size_t read_chunk_bytes = 65536;

// ---- the sweep file ----

struct Axis {
  std::string path;
  std::vector<std::string> values;  // YAML text
  std::vector<ConfigNode> nodes;    // where each value was written
};

Axis parse_axis(const ConfigNode& list_node, const std::string& path) {
  Axis axis{path, {}, {}};
  const auto items = list_node.as_list();
  if (items.empty()) list_node.fail("[]", "a non-empty list of values");
  if (path.find('=') != std::string::npos || path.find('\t') != std::string::npos)
    list_node.fail_here("a key path may not contain '=' or a tab");
  for (std::size_t i = 0; i < items.size(); ++i) {
    axis.values.push_back(items[i].flow_text());
    axis.nodes.push_back(items[i]);
  }
  return axis;
}

// Two equal values on an axis would make two identical points (the same run twice, and two
// rows results.csv cannot tell apart).
void refuse_duplicates(const Axis& axis, const std::string& key) {
  std::map<std::string, std::size_t> seen;
  for (std::size_t i = 0; i < axis.values.size(); ++i) {
    const auto [it, fresh] = seen.emplace(axis.values[i], i);
    if (!fresh)
      axis.nodes[i].fail(axis.values[i], fmt::format("distinct values in {}; {} is already item {} of the list",
                                                     key, axis.values[i], it->second));
  }
}

std::vector<std::string> zip_keys(const std::vector<Axis>& group) {
  std::vector<std::string> keys;
  for (const auto& a : group) keys.push_back(a.path);
  return keys;
}

// The product of the axis sizes, checked against the limit before anything is expanded or
// loaded; an overflow of size_t is past the limit too.
void check_point_count(const std::filesystem::path& file, const std::vector<std::pair<std::string, std::size_t>>& axes) {
  constexpr std::size_t limit = 1'000'000;
  std::size_t total = 1;
  bool over = false;
  for (const auto& [key, n] : axes) {
    if (n != 0 && total > limit / n) over = true;
    total = over ? total : total * n;
  }
  if (!over && total <= limit) return;
  std::vector<std::string> factors;
  for (const auto& [key, n] : axes) factors.push_back(fmt::format("{} ({} values)", key, n));
  throw ConfigError(fmt::format("{}: {} expand to more than {} points: allowed at most {} points (split the sweep)",
                                file.string(), fmt::join(factors, " x "), limit, limit));
}

}  // namespace

SweepPlan load_sweep(const std::filesystem::path& file, const std::vector<std::string>& overrides,
                     unsigned check_threads) {
  const ConfigNode doc = ConfigNode::load_file(file);
  doc.expect_keys({"name", "base", "set", "grid", "zip", "seeds"});
  SweepPlan plan;
  plan.name = doc.has("name") ? doc.at("name").as_string() : file.stem().string();
  const std::string base = doc.at("base").as_string();
  if (base == "default") {
    plan.base = base;
  } else {
    const auto path = std::filesystem::absolute(file.parent_path() / base).lexically_normal();
    if (!std::filesystem::is_regular_file(path)) doc.at("base").fail(base, "a scenario file (relative to the sweep file) or default");
    plan.base = path.string();
  }

  // The file's set: first, then the command line's --set: a later assignment wins, and the
  // command line is the more specific (docs/sweeps.md).
  std::vector<std::string> fixed;
  if (doc.has("set")) {
    const ConfigNode set = doc.at("set");
    for (const auto& key : set.keys()) fixed.push_back(key + "=" + set.at(key).flow_text());
  }
  fixed.insert(fixed.end(), overrides.begin(), overrides.end());
  std::vector<Axis> grid;
  if (doc.has("grid")) {
    const ConfigNode node = doc.at("grid");
    for (const auto& key : node.keys()) {
      grid.push_back(parse_axis(node.at(key), key));
      refuse_duplicates(grid.back(), "grid." + key);
    }
  }
  std::vector<std::vector<Axis>> zips;
  if (doc.has("zip")) {
    const auto groups = doc.at("zip").as_list();
    for (std::size_t g = 0; g < groups.size(); ++g) {
      std::vector<Axis> group;
      for (const auto& key : groups[g].keys()) {
        group.push_back(parse_axis(groups[g].at(key), key));
        if (group.back().values.size() != group.front().values.size())
          groups[g].at(key).fail(fmt::format("{} values", group.back().values.size()),
                                 fmt::format("{} values, as many as {} in the same zip group", group.front().values.size(),
                                             group.front().path));
      }
      if (group.empty()) groups[g].fail("{}", "a mapping of key paths to lists of equal length");
      zips.push_back(std::move(group));
    }
  }
  Axis seeds{"simulation.seed", {}, {}};
  if (doc.has("seeds")) {
    const ConfigNode node = doc.at("seeds");
    if (node.display_value() == "<list>") {
      for (const auto& item : node.as_list()) {
        seeds.values.push_back(std::to_string(item.as_uint64()));
        seeds.nodes.push_back(item);
      }
      if (seeds.values.empty()) node.fail("[]", "a repetition count, or a non-empty list of seeds");
      refuse_duplicates(seeds, "seeds");
    } else {
      const std::uint64_t count = node.as_uint64();
      if (count < 1 || count > 100000) node.fail(node.display_value(), "1 to 100000 repetitions (seeds 1..N)");
      for (std::uint64_t s = 1; s <= count; ++s) {
        seeds.values.push_back(std::to_string(s));
        seeds.nodes.push_back(node);
      }
    }
  }

  std::vector<std::pair<std::string, std::size_t>> counts;
  for (const auto& a : grid) counts.emplace_back("grid." + a.path, a.values.size());
  for (std::size_t g = 0; g < zips.size(); ++g)
    counts.emplace_back(fmt::format("zip[{}] ({})", g, fmt::join(zip_keys(zips[g]), ", ")), zips[g].front().values.size());
  if (!seeds.values.empty()) counts.emplace_back("seeds", seeds.values.size());
  check_point_count(file, counts);

  // Every axis value must make a valid scenario on its own: unknown paths and wrong types are
  // the sweep file's fault and are reported now. Combinations are checked when points run.
  RunMemo base_memo;  // the base's zoo networks, which every thread below starts with
  try {
    scheduler::PolicyRegistry registry;
    scheduler::register_builtin_policies(registry);
    plan.loads_plugins |= !load_scenario(plan.base, fixed, registry, &base_memo).scheduler.plugins.empty();
  } catch (const std::exception& e) {
    throw ConfigError(fmt::format("{}: base {} with set: {}", doc.at("base").where(), base, e.what()));
  }
  std::vector<const Axis*> axes;  // column order: grid, zip groups, seeds
  for (const auto& a : grid) axes.push_back(&a);
  for (const auto& g : zips)
    for (const auto& a : g) axes.push_back(&a);
  if (!seeds.values.empty()) axes.push_back(&seeds);
  // The values load on the caller's threads (each load parses the scenario; its zoo networks
  // come from the base's memo), and the first error in axis order is reported, as one thread
  // would.
  struct ValueCheck {
    const Axis* axis;
    std::size_t value;
    std::exception_ptr error;
    bool loads_plugins = false;
  };
  std::vector<ValueCheck> checks;
  for (const auto* a : axes) {
    // Any unsigned 64-bit seed is valid, and each seed was read as one: one is enough.
    const std::size_t checked = a == &seeds ? 1 : a->values.size();
    for (std::size_t i = 0; i < checked; ++i) checks.push_back({a, i, nullptr});
  }
  {
    std::atomic<std::size_t> next{0};
    const auto check_values = [&] {
      RunMemo memo = base_memo;  // this thread's own
      for (std::size_t c = next++; c < checks.size(); c = next++) {
        ValueCheck& check = checks[c];
        try {
          scheduler::PolicyRegistry registry;  // a plugin registers into each check's own
          scheduler::register_builtin_policies(registry);
          std::vector<std::string> assignments = fixed;
          assignments.push_back(check.axis->path + "=" + check.axis->values[check.value]);
          check.loads_plugins = !load_scenario(plan.base, assignments, registry, &memo).scheduler.plugins.empty();
        } catch (...) {
          check.error = std::current_exception();
        }
      }
    };
    const std::size_t threads = std::min<std::size_t>(std::max(1u, check_threads), checks.size());
    std::vector<std::jthread> pool;
    for (std::size_t t = 1; t < threads; ++t) pool.emplace_back(check_values);
    check_values();
  }
  std::size_t c = 0;
  for (const auto* a : axes) {
    for (const auto* other : axes)
      if (other != a && other->path == a->path)
        a->nodes.front().fail_here(fmt::format("{} is swept twice", a->path));
    for (; c < checks.size() && checks[c].axis == a; ++c) {
      plan.loads_plugins |= checks[c].loads_plugins;
      if (!checks[c].error) continue;
      try {
        std::rethrow_exception(checks[c].error);
      } catch (const std::exception& e) {  // a config, network or arrival error: one line
        const std::size_t i = checks[c].value;
        throw ConfigError(fmt::format("{}: {} = {}: {}", a->nodes[i].where(), a->path, a->values[i], e.what()));
      }
    }
    plan.parameters.push_back(a->path);
  }

  // Enumerate: the first grid axis outermost, seeds innermost.
  std::vector<std::size_t> sizes;
  for (const auto& a : grid) sizes.push_back(a.values.size());
  for (const auto& g : zips) sizes.push_back(g.front().values.size());
  if (!seeds.values.empty()) sizes.push_back(seeds.values.size());
  std::size_t total = 1;
  for (auto n : sizes) total *= n;  // at most 1,000,000: checked above
  std::vector<std::size_t> at(sizes.size(), 0);
  for (std::size_t p = 0; p < total; ++p) {
    SweepPoint point;
    point.index = p;
    point.assignments = fixed;
    std::size_t dim = 0;
    const auto add = [&](const Axis& a, std::size_t i) {
      point.values.push_back(a.values[i]);
      point.assignments.push_back(a.path + "=" + a.values[i]);
    };
    for (const auto& a : grid) add(a, at[dim++]);
    for (const auto& g : zips) {
      for (const auto& a : g) add(a, at[dim]);
      ++dim;
    }
    if (!seeds.values.empty()) add(seeds, at[dim++]);
    plan.points.push_back(std::move(point));
    for (std::size_t d = sizes.size(); d-- > 0;) {
      if (++at[d] < sizes[d]) break;
      at[d] = 0;
    }
  }
  return plan;
}

namespace {

// ---- the plan on disk, shared by the driver and Slurm tasks ----

std::string plan_text(const SweepPlan& plan, std::size_t points_per_task) {
  std::string out = fmt::format("{}\nname\t{}\nbase\t{}\npoints_per_task\t{}\nparameters", plan_magic, plan.name,
                                plan.base, points_per_task);
  for (const auto& p : plan.parameters) out.append("\t").append(p);
  out += "\n";
  for (const auto& point : plan.points) {
    out += fmt::format("point\t{}", point.index);
    for (const auto& v : point.values) out.append("\t").append(v);
    for (const auto& a : point.assignments) out.append("\t").append(a);
    out += "\n";
  }
  return out;
}

std::vector<std::string> split_tabs(const std::string& line) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (true) {
    const auto tab = line.find('\t', start);
    out.push_back(line.substr(start, tab == std::string::npos ? std::string::npos : tab - start));
    if (tab == std::string::npos) return out;
    start = tab + 1;
  }
}

struct StoredPlan {
  SweepPlan plan;
  std::size_t points_per_task = 1;
};

StoredPlan read_plan(const std::filesystem::path& dir) {
  std::ifstream in(dir / "plan.tsv");
  std::string line;
  if (!std::getline(in, line) || line != plan_magic)
    throw SweepError(fmt::format("{}: not an npusim sweep plan", (dir / "plan.tsv").string()));
  StoredPlan stored;
  while (std::getline(in, line)) {
    auto f = split_tabs(line);
    if (f[0] == "name" && f.size() == 2) stored.plan.name = f[1];
    else if (f[0] == "base" && f.size() == 2) stored.plan.base = f[1];
    else if (f[0] == "points_per_task" && f.size() == 2) stored.points_per_task = std::stoull(f[1]);
    else if (f[0] == "parameters") stored.plan.parameters.assign(f.begin() + 1, f.end());
    else if (f[0] == "point" && f.size() >= 2 + stored.plan.parameters.size()) {
      SweepPoint p;
      p.index = std::stoull(f[1]);
      const std::size_t n = stored.plan.parameters.size();
      p.values.assign(f.begin() + 2, f.begin() + 2 + static_cast<std::ptrdiff_t>(n));
      p.assignments.assign(f.begin() + 2 + static_cast<std::ptrdiff_t>(n), f.end());
      stored.plan.points.push_back(std::move(p));
    } else {
      throw SweepError(fmt::format("{}: malformed line: {}", (dir / "plan.tsv").string(), line));
    }
  }
  return stored;
}

void write_atomically(const std::filesystem::path& file, const std::string& text) {
  AtomicFile out(file);
  out.stream() << text;
  out.commit();
}

// The bytes of `file` if it is a regular file, else nothing. O_NONBLOCK: the open of a FIFO put
// in place of a result must not block. One open, one fstat and the reads: a sweep checks every
// point's files, and on virtual machines each system call is dear.
std::optional<std::string> read_regular_file(const std::filesystem::path& file) {
  const int fd = ::open(file.c_str(), O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  struct stat status {};
  std::optional<std::string> text;
  if (::fstat(fd, &status) == 0 && S_ISREG(status.st_mode)) {
    text.emplace();
    text->reserve(static_cast<std::size_t>(status.st_size));
    char chunk[read_chunk_bytes];
    for (;;) {
      const ssize_t n = ::read(fd, chunk, sizeof chunk);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      text->append(chunk, static_cast<std::size_t>(n));
    }
  }
  ::close(fd);
  return text;
}

// Empty for anything but a regular file.
std::string read_text(const std::filesystem::path& file) { return read_regular_file(file).value_or(""); }

// ---- one point ----

std::filesystem::path point_dir(const std::filesystem::path& dir, std::size_t index) {
  return dir / "points" / fmt::format("{:06}", index);
}
std::filesystem::path error_file(const std::filesystem::path& dir, std::size_t index) {
  return dir / "points" / fmt::format("{:06}.error", index);
}

// A result is whole when metrics.csv is a header and one row of as many non-empty fields,
// each line ended, and summary.json is a closed object. Anything else (an emptied or cut file)
// was damaged after the point ran. Returns metrics.csv's text when it is whole.
std::optional<std::string> whole_metrics(const std::filesystem::path& dir, std::size_t index) {
  std::optional<std::string> text = read_regular_file(point_dir(dir, index) / "metrics.csv");
  if (!text) return std::nullopt;
  const auto end_of_header = text->find('\n');
  if (end_of_header == std::string::npos || end_of_header == 0 || text->back() != '\n') return std::nullopt;
  const std::string_view header = std::string_view(*text).substr(0, end_of_header);
  const std::string_view row = std::string_view(*text).substr(end_of_header + 1, text->size() - end_of_header - 2);
  if (row.empty() || row.find('\n') != std::string::npos || header.rfind("samples.arrived,", 0) != 0)
    return std::nullopt;
  const auto fields = [](std::string_view line) {
    std::size_t n = 1;
    for (std::size_t i = 0; i < line.size(); ++i)
      if (line[i] == ',') {
        if (i == 0 || line[i - 1] == ',' || i + 1 == line.size()) return std::size_t{0};
        ++n;
      }
    return n;
  };
  if (fields(row) == 0 || fields(row) != fields(header)) return std::nullopt;
  // Only its ends are read: a sweep's results.csv checks every point, and a summary is tens of
  // kilobytes.
  const int fd =
      ::open((point_dir(dir, index) / "summary.json").c_str(), O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  struct stat status {};
  char first = 0, last[2] = {};
  const bool closed_object = ::fstat(fd, &status) == 0 && S_ISREG(status.st_mode) && status.st_size > 2 &&
                             ::pread(fd, &first, 1, 0) == 1 && ::pread(fd, last, 2, status.st_size - 2) == 2 &&
                             first == '{' && last[0] == '}' && last[1] == '\n';
  ::close(fd);
  if (!closed_object) return std::nullopt;
  return text;
}

bool whole_result(const std::filesystem::path& dir, std::size_t index) { return whole_metrics(dir, index).has_value(); }

// A failure is recorded when its .error file holds a line.
bool recorded_failure(const std::filesystem::path& dir, std::size_t index) {
  return read_text(error_file(dir, index)).find_first_not_of(" \n") != std::string::npos;
}

// Which points have any entry in points/ (a directory, a result's file, an .error), by index,
// from one listing: the state of a point with none is known without a look at its files, and a
// new sweep has none.
std::vector<bool> points_with_entries(const SweepPlan& plan, const std::filesystem::path& dir) {
  std::vector<bool> touched(plan.points.size());
  std::error_code ec;
  for (std::filesystem::directory_iterator it(dir / "points", ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    std::size_t index = 0, digits = 0;
    while (digits < name.size() && digits < 12 && name[digits] >= '0' && name[digits] <= '9')
      index = index * 10 + static_cast<std::size_t>(name[digits++] - '0');
    if (digits > 0 && index < touched.size()) touched[index] = true;
  }
  // A listing that fails would pass every finished point for a missing one.
  if (ec && ec != std::errc::no_such_file_or_directory)
    throw SweepError(fmt::format("cannot list {}: {}", (dir / "points").string(), ec.message()));
  return touched;
}

enum class PointState { missing, ok, failed, damaged };

PointState point_state(const std::filesystem::path& dir, std::size_t index) {
  if (whole_result(dir, index)) return PointState::ok;
  if (recorded_failure(dir, index)) return PointState::failed;
  const bool left_something = std::filesystem::exists(point_dir(dir, index) / "metrics.csv") ||
                              std::filesystem::exists(error_file(dir, index));
  return left_something ? PointState::damaged : PointState::missing;
}

bool finished(const std::filesystem::path& dir, std::size_t index) {
  const PointState state = point_state(dir, index);
  return state == PointState::ok || state == PointState::failed;
}

// Clears what a damaged point left, so that it runs again from nothing.
void clear_point(const std::filesystem::path& dir, std::size_t index) {
  std::filesystem::remove(error_file(dir, index));
  for (const char* name : {"metrics.csv", "summary.json", "samples.csv", "scenario.yaml"})
    std::filesystem::remove(point_dir(dir, index) / name);
}

// The command line of a point, after the program's name.
std::vector<std::string> point_args(const std::string& base, const SweepPoint& point, const std::filesystem::path& dir) {
  std::vector<std::string> args{"run", base};
  for (const auto& a : point.assignments) {
    args.push_back("--set");
    args.push_back(a);
  }
  args.push_back("--out");
  args.push_back(point_dir(dir, point.index).string());
  // Points that share an NPU, a network and max_batch share its control-block table.
  args.push_back("--table-cache");
  args.push_back((dir / "table-cache").string());
  return args;
}

std::string stderr_file(const std::filesystem::path& dir, std::size_t index) {
  return point_dir(dir, index).string() + ".stderr";
}

// So that what this process has buffered is written once, not again by a forked child.
void flush_standard_streams() {
  std::cout.flush();
  std::cerr.flush();
  std::fflush(nullptr);
}

// Points `target` (1 or 2) at `file`. False if it cannot.
bool redirect(int target, const char* file, int flags) {
  const int fd = ::open(file, flags | O_CLOEXEC, 0644);
  if (fd < 0) return false;
  if (fd == target) return ::fcntl(fd, F_SETFD, 0) == 0;  // it keeps the number, so it must survive exec
  const bool ok = ::dup2(fd, target) >= 0;
  ::close(fd);
  return ok;
}

// Runs one point in this process, with standard output already at /dev/null and standard
// error where the point's should go, and returns its exit status.
int run_in_process(const PointRunner& runner, RunMemo& memo, const std::vector<std::string>& args) {
  // A failed write of an earlier point must not fail this one.
  std::cout.clear();
  std::cerr.clear();
  int status = 1;
  try {
    status = runner(args, memo);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "npusim: internal error: %s\n", e.what());
  } catch (...) {
    std::fprintf(stderr, "npusim: internal error: unknown exception\n");
  }
  flush_standard_streams();
  return status;
}

// The same with its standard error in the point's .stderr file.
int run_point_here(const PointRunner& runner, RunMemo& memo, const std::vector<std::string>& args,
                   const std::string& err) {
  if (!redirect(STDERR_FILENO, err.c_str(), O_WRONLY | O_CREAT | O_TRUNC)) return 1;
  return run_in_process(runner, memo, args);
}

void discard_standard_output() {
  if (!redirect(STDOUT_FILENO, "/dev/null", O_WRONLY)) ::_exit(1);
}

// A driver started with standard input, output or error closed would hand those numbers to
// the files and sockets it opens, and a point writing to "standard output" would write into
// them: each closed one is pointed at /dev/null first.
void open_standard_descriptors() {
  for (int fd = 0; fd <= 2; ++fd)
    if (::fcntl(fd, F_GETFD) < 0 && errno == EBADF) {
      const int null_fd = ::open("/dev/null", O_RDWR);
      if (null_fd >= 0 && null_fd != fd) {
        ::dup2(null_fd, fd);
        ::close(null_fd);
      }
    }
}

// Runs `npusim run BASE --set ... --out POINT_DIR`, its stderr to POINT_DIR.stderr, in a
// forked copy of this process (it leaves by _exit, so none of this process's exit handlers run
// twice).
pid_t fork_point(const PointRunner& runner, RunMemo& memo, const std::string& base, const SweepPoint& point,
                 const std::filesystem::path& dir) {
  const std::vector<std::string> args = point_args(base, point, dir);
  const std::string err = stderr_file(dir, point.index);
  flush_standard_streams();
  const pid_t pid = ::fork();
  if (pid < 0) throw SweepError(fmt::format("cannot start a sweep point: fork: {}", std::strerror(errno)));
  if (pid == 0) {
    discard_standard_output();
    ::_exit(run_point_here(runner, memo, args, err));
  }
  return pid;
}

// The same as a new process of `npusim`.
pid_t spawn_point(const std::filesystem::path& npusim, const std::string& base, const SweepPoint& point,
                  const std::filesystem::path& dir) {
  std::vector<std::string> args = point_args(base, point, dir);
  const std::string err = stderr_file(dir, point.index);
  args.insert(args.begin(), npusim.string());
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 2, err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  pid_t pid = 0;
  const int rc = posix_spawn(&pid, npusim.c_str(), &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) throw SweepError(fmt::format("cannot start {}: {}", npusim.string(), std::strerror(rc)));
  return pid;
}

// How a point ended: its exit status, or the signal that killed the process running it.
struct PointEnd {
  int exit_status = 0;
  int signal = 0;  // > 0: killed
};

PointEnd point_end(int wait_status) {
  return WIFSIGNALED(wait_status) ? PointEnd{0, WTERMSIG(wait_status)} : PointEnd{WEXITSTATUS(wait_status), 0};
}

// The last line of what a point wrote to standard error that is not empty.
std::string_view last_line(std::string_view text) {
  std::string_view last;
  std::size_t start = 0;
  while (start < text.size()) {
    const auto end = std::min(text.find('\n', start), text.size());
    if (end > start) last = text.substr(start, end - start);
    start = end + 1;
  }
  return last;
}

// Why a point failed, in one line: how it ended and what it wrote to standard error last.
std::string failure_reason(PointEnd end, std::string_view err_text) {
  const std::string_view last = last_line(err_text);
  if (end.signal > 0) return fmt::format("killed by signal {}", end.signal);
  if (!last.empty()) return std::string(last);
  return end.exit_status == 0 ? std::string("exit status 0 but no whole metrics.csv and summary.json")
                              : fmt::format("exit status {} and no message", end.exit_status);
}

// Records how a point that wrote its standard error to POINT.stderr ended. A failure keeps its
// error line.
bool record_point(const std::filesystem::path& dir, std::size_t index, PointEnd end) {
  const auto err_path = stderr_file(dir, index);
  const bool ok = end.signal == 0 && end.exit_status == 0 && whole_result(dir, index);
  if (!ok) write_atomically(error_file(dir, index), failure_reason(end, read_text(err_path)) + "\n");
  std::error_code ignored;
  std::filesystem::remove(err_path, ignored);
  return ok;
}

bool run_point_now(const std::filesystem::path& npusim, const PointRunner& runner, RunMemo& memo, const std::string& base,
                   const SweepPoint& point, const std::filesystem::path& dir) {
  const pid_t pid = runner ? fork_point(runner, memo, base, point, dir) : spawn_point(npusim, base, point, dir);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return record_point(dir, point.index, point_end(status));
}

// ---- results ----

// Returns which points have a whole result, by index. `metrics` holds, by index, the
// metrics.csv of points already checked whole (empty for the others, which are checked here).
std::vector<bool> write_results(const SweepPlan& plan, const std::filesystem::path& dir,
                                std::vector<std::string> metrics) {
  std::vector<bool> whole(plan.points.size());
  for (const auto& point : plan.points) {
    std::string& text = metrics.at(point.index);
    if (text.empty()) text = whole_metrics(dir, point.index).value_or("");
    whole[point.index] = !text.empty();
  }
  std::vector<std::string> metric_names;
  for (const auto& point : plan.points)
    if (whole[point.index]) {
      std::string header = metrics[point.index].substr(0, metrics[point.index].find('\n'));
      for (auto& c : header) c = c == ',' ? '\t' : c;
      metric_names = split_tabs(header);
      break;
    }
  std::string out = "point,status";
  for (const auto& p : plan.parameters) out.append(",").append(csv_field(p));
  for (const auto& m : metric_names) out.append(",").append(m);
  out += ",error\n";
  for (const auto& point : plan.points) {
    out += std::to_string(point.index);
    std::string_view row;
    std::string error;
    if (whole[point.index]) {
      // A whole metrics.csv is a header and one row, each ended by a newline.
      const std::string_view text = metrics[point.index];
      const auto start = text.find('\n') + 1;
      row = text.substr(start, text.size() - start - 1);
    } else {
      error = recorded_failure(dir, point.index) ? read_text(error_file(dir, point.index))
                                                 : std::string("no whole result: metrics.csv or summary.json is "
                                                               "missing, empty or cut short");
      while (!error.empty() && error.back() == '\n') error.pop_back();
    }
    out += row.empty() ? ",failed" : ",ok";
    for (const auto& v : point.values) out.append(",").append(csv_field(v));
    if (row.empty()) out += std::string(metric_names.size(), ',');
    else out.append(",").append(row);
    out.append(",").append(csv_field(error)).append("\n");
  }
  write_atomically(dir / "results.csv", out);
  return whole;
}

// ---- progress ----

class Progress {
 public:
  Progress(std::ostream& log, bool enabled, std::size_t total, std::size_t already)
      : log_(log), enabled_(enabled), total_(total), already_(already), start_(std::chrono::steady_clock::now()) {}
  void update(std::size_t done, std::size_t failed) {
    if (!enabled_) return;
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    const std::size_t fresh = done - already_;
    std::string eta = "ETA --:--";
    if (fresh > 0 && done < total_) {
      const auto left = static_cast<long>(elapsed / static_cast<double>(fresh) * static_cast<double>(total_ - done));
      eta = fmt::format("ETA {}:{:02}", left / 60, left % 60);
    } else if (done == total_) {
      eta = fmt::format("in {:.1f} s", elapsed);
    }
    log_ << fmt::format("\rsweep: {}/{} done, {} failed, {}   ", done, total_, failed, eta) << std::flush;
  }
  void finish() {
    if (enabled_) log_ << "\n";
  }

 private:
  std::ostream& log_;
  bool enabled_;
  std::size_t total_, already_;
  std::chrono::steady_clock::time_point start_;
};

// Failures recorded so far, for the progress line; points still to run are not among them.
std::size_t count_failed(const SweepPlan& plan, const std::filesystem::path& dir) {
  const std::vector<bool> touched = points_with_entries(plan, dir);
  std::size_t n = 0;
  for (const auto& p : plan.points)
    n += touched[p.index] && recorded_failure(dir, p.index) && !whole_result(dir, p.index) ? 1 : 0;
  return n;
}

// Each point in a new npusim process.
void run_local_process_per_point(const SweepPlan& plan, const SweepOptions& o, const std::vector<const SweepPoint*>& todo,
                                 Progress& progress, std::size_t already) {
  std::map<pid_t, std::size_t> running;
  std::size_t next = 0, done = already;
  const unsigned jobs = std::max(1u, o.jobs);
  std::size_t failed = count_failed(plan, o.out_dir);
  progress.update(done, failed);
  while (next < todo.size() || !running.empty()) {
    while (next < todo.size() && running.size() < jobs) {
      const auto* point = todo[next++];
      running[spawn_point(o.npusim, plan.base, *point, o.out_dir)] = point->index;
    }
    int status = 0;
    const pid_t pid = waitpid(-1, &status, 0);
    if (pid < 0) {
      if (errno == EINTR) continue;
      throw SweepError(fmt::format("waiting for sweep points: {}", std::strerror(errno)));
    }
    const auto it = running.find(pid);
    if (it == running.end()) continue;
    if (!record_point(o.out_dir, it->second, point_end(status))) ++failed;
    running.erase(it);
    progress.update(++done, failed);
  }
}

// ---- local workers ----
//
// A worker is a forked copy of this process that runs the points it is sent one after another,
// in-process (runs share no mutable state: docs/architecture.md), and says when it starts
// each and how it ended. Forking or executing a process per point cost more than a short
// point's simulation on virtual machines, where page faults are dear, and the forks, made by
// the one driver, kept a sweep from scaling with its jobs (docs/sweeps.md). A point that kills
// its worker fails alone: the driver records it, and the points queued behind it run again.

// Points sent ahead, so that a worker starts its next point without waiting for the driver to
// wake and answer: a sleeping core of a virtual machine wakes slowly.
constexpr std::size_t points_queued_per_worker = 2;
// The largest report a worker sends: a metrics.csv, or a reason of at most read_chunk_bytes.
constexpr std::size_t max_report_bytes = std::size_t{64} << 20;
// Workers that die in a row before starting a point: something is wrong with all of them.
constexpr int deaths_before_any_start = 3;

struct Worker {
  pid_t pid = -1;
  int channel = -1;                // the driver's end of a socket pair
  int point_stderr = -1;           // a memory file: the standard error of the point it runs
  std::string received;            // bytes of a message not yet whole
  std::deque<std::size_t> queued;  // points sent, oldest first
  bool front_started = false;      // the oldest queued point has started
  std::size_t served = 0;          // points sent to it
  std::uint64_t first_resident_bytes = 0;  // its resident memory after its first point
  bool retiring = false;                   // its memory grew too much: it is sent no more points
};

bool send_line(int fd, const std::string& text) {
  std::size_t sent = 0;
  while (sent < text.size()) {
    const ssize_t n = ::send(fd, text.data() + sent, text.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    sent += static_cast<std::size_t>(n);
  }
  return true;
}

// This process's resident memory, or 0 when /proc does not say.
std::uint64_t resident_bytes() {
  const std::string statm = read_text("/proc/self/statm");
  std::uint64_t size_pages = 0, resident_pages = 0;
  if (std::sscanf(statm.c_str(), "%" SCNu64 " %" SCNu64, &size_pages, &resident_pages) != 2) return 0;
  return resident_pages * static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
}

// The end of a point's standard error, at most `read_chunk_bytes` of it, whatever the
// descriptor's offset: enough for the last line of any message, and a point that writes
// gigabytes there costs no more memory.
std::string tail_of(int fd) {
  struct stat status {};
  if (::fstat(fd, &status) != 0) return {};
  const off_t start = std::max<off_t>(0, status.st_size - static_cast<off_t>(read_chunk_bytes));
  std::string text(static_cast<std::size_t>(status.st_size - start), '\0');
  std::size_t got = 0;
  while (got < text.size()) {
    const ssize_t n = ::pread(fd, text.data() + got, text.size() - got, start + static_cast<off_t>(got));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += static_cast<std::size_t>(n);
  }
  text.resize(got);
  return text;
}

// The worker's side: reads point indices, one a line, until the driver closes the channel. It
// writes "start INDEX" before a point and "done INDEX ok SIZE RESIDENT" or "done INDEX failed
// SIZE RESIDENT" after it (RESIDENT: its resident memory in bytes), followed by SIZE bytes: the
// point's metrics.csv, checked whole, or why it failed. So the driver touches no file of a
// point that succeeds. Each point's standard error goes to the worker's memory file (its
// descriptor 2), emptied first: a point leaves no file behind in points/ to be removed.
// Returns when the driver closes the channel.
void serve_points_until_closed(const PointRunner& runner, RunMemo& memo, const SweepPlan& plan,
                               const std::filesystem::path& dir, int channel) {
  // Memory a point frees stays mapped for the next: given back and mapped again, every page
  // faults anew, and on a virtual machine faults were a point's dearest part. 32 MiB is the
  // largest mmap threshold every glibc accepts; the trim threshold is set only if it was, since
  // setting it alone freezes the mmap threshold at 128 KiB. A worker may so keep up to 64 MiB
  // of freed memory.
  if (::mallopt(M_MMAP_THRESHOLD, 32 << 20) == 1) ::mallopt(M_TRIM_THRESHOLD, 64 << 20);
  std::string received;
  // A point's report waits for the next point's "start" when that point is already queued, so
  // the driver wakes once a point, not twice.
  std::string outbox;
  char chunk[256];
  for (;;) {
    const auto end = received.find('\n');
    if (end == std::string::npos) {
      if (!outbox.empty() && !send_line(channel, std::exchange(outbox, {}))) return;
      const ssize_t n = ::read(channel, chunk, sizeof chunk);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return;
      received.append(chunk, static_cast<std::size_t>(n));
      continue;
    }
    const std::size_t index = std::stoull(received.substr(0, end));
    received.erase(0, end + 1);
    if (::ftruncate(STDERR_FILENO, 0) != 0 || ::lseek(STDERR_FILENO, 0, SEEK_SET) < 0) {
      send_line(channel, outbox);
      ::_exit(1);
    }
    if (!send_line(channel, std::exchange(outbox, {}) + fmt::format("start {}\n", index))) return;
    const int status = run_in_process(runner, memo, point_args(plan.base, plan.points.at(index), dir));
    std::optional<std::string> metrics;
    if (status == 0) metrics = whole_metrics(dir, index);
    const std::string report =
        metrics ? std::move(*metrics) : failure_reason(PointEnd{status, 0}, tail_of(STDERR_FILENO));
    outbox = fmt::format("done {} {} {} {}\n", index, metrics ? "ok" : "failed", report.size(), resident_bytes()) +
             report;
  }
}

// The worker's whole life: it leaves by _exit, so that nothing of the driver's (its exit
// handlers, the pool that would kill the other workers) runs in it, whatever it throws.
[[noreturn]] void serve_points(const PointRunner& runner, RunMemo& memo, const SweepPlan& plan,
                               const std::filesystem::path& dir, int channel, int point_stderr) {
  discard_standard_output();
  if (point_stderr != STDERR_FILENO) {
    if (::dup2(point_stderr, STDERR_FILENO) < 0) ::_exit(1);
    ::close(point_stderr);
  }
  try {
    serve_points_until_closed(runner, memo, plan, dir, channel);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "npusim: internal error in a sweep worker: %s\n", e.what());
    ::_exit(70);
  } catch (...) {
    std::fprintf(stderr, "npusim: internal error in a sweep worker: unknown exception\n");
    ::_exit(70);
  }
  ::_exit(0);
}

// Owns the workers: whatever way the driver leaves, none is left running or unreaped.
class WorkerPool {
 public:
  // Each worker starts with a copy of `memo` as it is when the worker is forked.
  WorkerPool(std::size_t size, const PointRunner& runner, RunMemo& memo, const SweepPlan& plan,
             const std::filesystem::path& dir)
      : workers_(size), runner_(runner), memo_(memo), plan_(plan), dir_(dir) {}
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;
  ~WorkerPool() {
    for (auto& worker : workers_)
      if (worker.pid >= 0) {
        ::kill(worker.pid, SIGKILL);
        stop(worker);
      }
  }

  std::vector<Worker>& workers() { return workers_; }

  void start(Worker& worker) {
    int ends[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, ends) != 0)
      throw SweepError(fmt::format("cannot start a sweep worker: socketpair: {}", std::strerror(errno)));
    // A file in memory; where the kernel refuses those (a seccomp profile, say), a file with no
    // name in the sweep's directory.
    int point_stderr = ::memfd_create("npusim-point-stderr", MFD_CLOEXEC);
    if (point_stderr < 0) point_stderr = ::open(dir_.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (point_stderr < 0) {
      const int error = errno;
      ::close(ends[0]);
      ::close(ends[1]);
      throw SweepError(fmt::format("cannot start a sweep worker: no file for its points' standard error in memory "
                                   "or in {}: {}", dir_.string(), std::strerror(error)));
    }
    flush_standard_streams();
    const pid_t pid = ::fork();
    if (pid < 0) {
      const int error = errno;
      ::close(ends[0]);
      ::close(ends[1]);
      ::close(point_stderr);
      throw SweepError(fmt::format("cannot start a sweep worker: fork: {}", std::strerror(error)));
    }
    if (pid == 0) {
      ::close(ends[0]);
      for (const auto& other : workers_) {
        if (other.channel >= 0) ::close(other.channel);
        if (other.point_stderr >= 0) ::close(other.point_stderr);
      }
      serve_points(runner_, memo_, plan_, dir_, ends[1], point_stderr);
    }
    ::close(ends[1]);
    worker = Worker{pid, ends[0], point_stderr, {}, {}, false, 0};
  }

  // Closes the channel (the worker leaves when it has read all) and returns how it ended.
  static int stop(Worker& worker) {
    ::close(worker.channel);
    ::close(worker.point_stderr);
    int status = 0;
    while (::waitpid(worker.pid, &status, 0) < 0 && errno == EINTR) {
    }
    worker = Worker{};
    return status;
  }

 private:
  std::vector<Worker> workers_;
  const PointRunner& runner_;
  RunMemo& memo_;
  const SweepPlan& plan_;
  const std::filesystem::path& dir_;
};

// Runs `todo` on the workers, and `once_started` once the first have their points. The
// metrics.csv of each point that succeeds, as its worker checked it, goes to `metrics` (by
// index) for results.csv.
void run_local_workers(const SweepPlan& plan, const SweepOptions& o, RunMemo& memo,
                       const std::vector<const SweepPoint*>& todo, Progress& progress, std::size_t already,
                       std::vector<std::string>& metrics, const std::function<void()>& once_started) {
  std::deque<std::size_t> pending;
  for (const auto* point : todo) pending.push_back(point->index);
  WorkerPool pool(std::min<std::size_t>(std::max(1u, o.jobs), todo.size()), o.run_point, memo, plan, o.out_dir);
  std::size_t done = already;
  std::size_t failed = count_failed(plan, o.out_dir);
  int deaths_in_a_row = 0;
  bool told_started = false;
  // A worker that is sent no more points, and is stopped once it has run those it was sent.
  const auto done_with = [&](const Worker& w) {
    return w.served >= std::max<std::size_t>(1, o.worker_points) || w.retiring;
  };
  progress.update(done, failed);
  const auto succeed = [&](std::size_t index, std::string metrics_csv) {
    metrics.at(index) = std::move(metrics_csv);
    progress.update(++done, failed);
  };
  const auto fail = [&](std::size_t index, const std::string& reason) {
    write_atomically(error_file(o.out_dir, index), reason + "\n");
    progress.update(++done, ++failed);
  };
  // A worker that died: its started point failed with how it ended; the points queued behind
  // it, or all of them if none had started, run again, first.
  const auto bury = [&](Worker& worker) {
    const std::deque<std::size_t> queued = worker.queued;
    const bool started = worker.front_started;
    const std::string err_text = started ? tail_of(worker.point_stderr) : std::string();
    const int status = WorkerPool::stop(worker);
    if (started) {
      deaths_in_a_row = 0;
      fail(queued.front(), failure_reason(point_end(status), err_text));
    } else if (++deaths_in_a_row == deaths_before_any_start) {
      throw SweepError(fmt::format("{} sweep workers in a row ended before starting a point (the last: {})",
                                   deaths_before_any_start,
                                   WIFSIGNALED(status) ? fmt::format("killed by signal {}", WTERMSIG(status))
                                                       : fmt::format("exit status {}", WEXITSTATUS(status))));
    }
    pending.insert(pending.begin(), queued.begin() + (started ? 1 : 0), queued.end());
  };
  for (;;) {
    for (auto& worker : pool.workers()) {
      if (worker.pid >= 0 && done_with(worker) && worker.queued.empty()) WorkerPool::stop(worker);
      while (!pending.empty() && worker.queued.size() < points_queued_per_worker &&
             (worker.pid < 0 || !done_with(worker))) {
        if (worker.pid < 0) pool.start(worker);
        if (!send_line(worker.channel, fmt::format("{}\n", pending.front()))) {
          bury(worker);
          continue;
        }
        worker.queued.push_back(pending.front());
        pending.pop_front();
        ++worker.served;
      }
    }
    if (!told_started) {
      told_started = true;
      if (once_started) once_started();
    }
    std::vector<pollfd> waiting;
    std::vector<Worker*> busy;
    for (auto& worker : pool.workers())
      if (!worker.queued.empty()) {
        waiting.push_back(pollfd{worker.channel, POLLIN, 0});
        busy.push_back(&worker);
      }
    if (busy.empty()) break;
    if (::poll(waiting.data(), waiting.size(), -1) < 0) {
      if (errno == EINTR) continue;
      throw SweepError(fmt::format("waiting for sweep points: {}", std::strerror(errno)));
    }
    for (std::size_t i = 0; i < busy.size(); ++i) {
      if (waiting[i].revents == 0) continue;
      Worker& worker = *busy[i];
      char chunk[read_chunk_bytes];
      const ssize_t n = ::read(worker.channel, chunk, sizeof chunk);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        bury(worker);
        continue;
      }
      worker.received.append(chunk, static_cast<std::size_t>(n));
      for (auto end = worker.received.find('\n'); end != std::string::npos; end = worker.received.find('\n')) {
        std::istringstream message(worker.received.substr(0, end));
        std::string what, outcome;
        std::size_t index = 0, size = 0;
        std::uint64_t resident_bytes_now = 0;
        message >> what >> index;
        if (what == "done") message >> outcome >> size >> resident_bytes_now;
        if (!message || worker.queued.empty() || index != worker.queued.front() ||
            !(what == "start" ||
              (what == "done" && worker.front_started && (outcome == "ok" || outcome == "failed") &&
               size <= max_report_bytes)))
          throw SweepError(fmt::format("a sweep worker sent a message out of turn: {}",
                                       worker.received.substr(0, std::min<std::size_t>(end, 80))));
        if (what == "start") {
          worker.received.erase(0, end + 1);
          worker.front_started = true;
          deaths_in_a_row = 0;
          continue;
        }
        if (worker.received.size() - (end + 1) < size) break;  // the rest of the report is still on its way
        std::string report = worker.received.substr(end + 1, size);
        worker.received.erase(0, end + 1 + size);
        worker.queued.pop_front();
        worker.front_started = false;
        if (worker.first_resident_bytes == 0) worker.first_resident_bytes = resident_bytes_now;
        else if (resident_bytes_now > worker.first_resident_bytes &&
                 resident_bytes_now - worker.first_resident_bytes > o.worker_growth_bytes)
          worker.retiring = true;
        if (outcome == "ok") succeed(index, std::move(report));
        else fail(index, report);
      }
    }
  }
  for (auto& worker : pool.workers())
    if (worker.pid >= 0) WorkerPool::stop(worker);
}

// The tables of the first point to run, built by the driver on one thread per job before any
// point starts. Most sweeps vary the load, the policy or the seed, so every point needs them;
// without this every worker builds the same table at once, each on one thread, before its
// first point, and that start was the serial part of a short sweep. They, and the zoo networks
// parsed, are kept in `memo`, which every worker starts with. A point whose scenario or table
// fails is left to fail on its own, with its own message. Returns the cache that holds the
// tables built, whose files are still to be written (TableCache::store_built).
std::optional<TableCache> build_first_tables(const SweepPlan& plan, const SweepOptions& o, const SweepPoint& first,
                                             RunMemo& memo) {
  std::optional<TableCache> tables;
  try {
    scheduler::PolicyRegistry registry;
    scheduler::register_builtin_policies(registry);
    const Scenario scenario = load_scenario(plan.base, first.assignments, registry, &memo);
    tables.emplace(o.out_dir / "table-cache", &memo, TableCache::Store::when_asked);
    for (const auto& [name, network] : scenario.models)
      tables->get(scenario.npu.config(), workloads::layer_works(network), scenario.scheduler.max_batch, [&] {
        return workloads::control_block_table(scenario.npu, network, scenario.scheduler.max_batch, std::max(1u, o.jobs));
      });
  } catch (const std::exception&) {
  }
  return tables;
}

void run_local(const SweepPlan& plan, const SweepOptions& o, const std::vector<const SweepPoint*>& todo,
               Progress& progress, std::size_t already, std::vector<std::string>& metrics) {
  open_standard_descriptors();
  RunMemo memo;
  std::optional<TableCache> first_tables;
  if (!todo.empty()) first_tables = build_first_tables(plan, o, *todo.front(), memo);
  // The workers start with the tables in memory, so their files (for a resume, or a later sweep)
  // are written once the workers run; a new npusim per point reads them, so before it starts.
  const auto store_first_tables = [&] {
    if (first_tables) first_tables->store_built();
  };
  if (o.run_point && !plan.loads_plugins && !todo.empty()) {
    run_local_workers(plan, o, memo, todo, progress, already, metrics, store_first_tables);
  } else {
    store_first_tables();
    // The driver has loaded the plugins to check the plan, so a copy of it would start each
    // point with them loaded: these points get a new npusim each.
    run_local_process_per_point(plan, o, todo, progress, already);
  }
}

std::string find_on_path(const std::string& program) {
  const char* path = std::getenv("PATH");
  std::string dirs = path ? path : "";
  std::size_t start = 0;
  while (start <= dirs.size()) {
    const auto colon = dirs.find(':', start);
    const std::string d = dirs.substr(start, colon == std::string::npos ? std::string::npos : colon - start);
    const auto candidate = std::filesystem::path(d.empty() ? "." : d) / program;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate.string();
    if (colon == std::string::npos) break;
    start = colon + 1;
  }
  return "";
}

// Runs a command and returns its stdout; throws SweepError with its stderr when it fails.
std::string capture(const std::vector<std::string>& command, const std::filesystem::path& err_file) {
  // Single quotes keep paths with spaces whole; a quote inside becomes '\''.
  const auto quote = [](const std::string& text) {
    std::string q = "'";
    for (char c : text) {
      if (c == '\'') q.append("'\\''");
      else q.push_back(c);
    }
    return q + "'";
  };
  std::string line;
  for (const auto& c : command) line.append(line.empty() ? "" : " ").append(quote(c));
  const std::string out_file = err_file.string() + ".out";
  const std::string shell = fmt::format("{} >{} 2>{}", line, quote(out_file), quote(err_file.string()));
  const int rc = std::system(shell.c_str());
  std::string out = read_text(out_file), err = read_text(err_file);
  std::filesystem::remove(out_file);
  if (rc != 0) {
    for (auto& c : err) c = c == '\n' ? ' ' : c;
    throw SweepError(fmt::format("{} failed: {}", command.front(), err.empty() ? "no message" : err));
  }
  return out;
}

void run_slurm(const SweepPlan& plan, const SweepOptions& o, const std::vector<const SweepPoint*>& todo,
               Progress& progress, std::size_t points_per_task, std::size_t already) {
  const auto slurm_dir = o.out_dir / "slurm";
  std::filesystem::create_directories(slurm_dir);
  const std::size_t tasks = (plan.points.size() + points_per_task - 1) / points_per_task;
  // Only the tasks that hold unfinished points are submitted.
  std::vector<std::size_t> needed;
  for (const auto* p : todo)
    if (needed.empty() || needed.back() != p->index / points_per_task) needed.push_back(p->index / points_per_task);
  std::string array;
  for (auto t : needed) array.append(array.empty() ? "" : ",").append(std::to_string(t));
  if (needed.size() == tasks && tasks > 0) array = fmt::format("0-{}", tasks - 1);
  const auto script = slurm_dir / "task.sh";
  write_atomically(script, fmt::format("#!/bin/sh\nexec '{}' sweep-task '{}' --task \"$SLURM_ARRAY_TASK_ID\"\n",
                                       o.npusim.string(), std::filesystem::absolute(o.out_dir).string()));
  std::filesystem::permissions(script, std::filesystem::perms::owner_all, std::filesystem::perm_options::add);
  std::vector<std::string> sbatch{"sbatch", "--parsable", "--job-name=npusim-sweep", "--array=" + array, "-o",
                                  (slurm_dir / "%A_%a.log").string()};
  sbatch.insert(sbatch.end(), o.slurm_options.begin(), o.slurm_options.end());
  sbatch.push_back(script.string());
  const std::string job = capture(sbatch, slurm_dir / "sbatch.err");
  const std::string job_id = job.substr(0, job.find_first_of(";\n"));
  std::size_t failed = count_failed(plan, o.out_dir);
  progress.update(already, failed);
  while (true) {
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    std::size_t done = 0;
    for (const auto& p : plan.points) done += finished(o.out_dir, p.index) ? 1 : 0;
    progress.update(done, count_failed(plan, o.out_dir));
    const std::string queued = capture({"squeue", "-h", "-j", job_id, "-o", "%i"}, slurm_dir / "squeue.err");
    if (queued.find_first_not_of(" \n") == std::string::npos) break;
  }
  // A task that died (time limit, node failure) leaves points without a result: failed.
  for (const auto* p : todo)
    if (!finished(o.out_dir, p->index))
      write_atomically(error_file(o.out_dir, p->index),
                       fmt::format("Slurm task {} of job {} ended without a result for this point (see {})\n",
                                   p->index / points_per_task, job_id,
                                   (slurm_dir / fmt::format("{}_{}.log", job_id, p->index / points_per_task)).string()));
}

}  // namespace

SweepOutcome run_sweep(const SweepPlan& plan, const SweepOptions& o, std::ostream& log) {
  if (o.backend == SweepBackend::slurm && (find_on_path("sbatch").empty() || find_on_path("squeue").empty()))
    throw SweepError("--backend slurm: sbatch and squeue are not on PATH (install Slurm's client tools and point "
                     "SLURM_CONF at the cluster), or run with --backend local");
  const std::size_t points_per_task =
      o.points_per_task > 0 ? o.points_per_task : std::max<std::size_t>(1, (plan.points.size() + 999) / 1000);
  const std::string text = plan_text(plan, points_per_task);
  const auto plan_file = o.out_dir / "plan.tsv";
  if (std::filesystem::exists(plan_file)) {
    if (!o.resume)
      throw SweepError(fmt::format("--out {} already holds a sweep: add --resume to finish it, or choose another "
                                   "directory", o.out_dir.string()));
    if (read_text(plan_file) != text)
      throw SweepError(fmt::format("--resume: {} holds a different sweep (its plan.tsv differs); choose another "
                                   "directory", o.out_dir.string()));
  } else {
    if (std::filesystem::exists(o.out_dir) && !std::filesystem::is_directory(o.out_dir))
      throw SweepError(fmt::format("--out {}: exists and is not a directory", o.out_dir.string()));
    std::filesystem::create_directories(o.out_dir);
    write_atomically(plan_file, text);
  }
  std::filesystem::create_directories(o.out_dir / "points");
  // Checked here, once, rather than by every point.
  try {
    TableCache check(o.out_dir / "table-cache");
  } catch (const TableCacheError& e) {
    throw SweepError(e.what());
  }
  std::vector<const SweepPoint*> todo;
  SweepOutcome outcome;
  const std::vector<bool> touched = points_with_entries(plan, o.out_dir);
  std::error_code ignored;
  for (const auto& p : plan.points) {
    const PointState state = touched[p.index] ? point_state(o.out_dir, p.index) : PointState::missing;
    // Left by a driver that was killed while the point ran in a process of its own.
    if (touched[p.index]) std::filesystem::remove(stderr_file(o.out_dir, p.index), ignored);
    if (state == PointState::ok || state == PointState::failed) continue;
    if (state == PointState::damaged) {
      clear_point(o.out_dir, p.index);
      ++outcome.rerun;
    }
    todo.push_back(&p);
  }
  outcome.total = plan.points.size();
  outcome.reused = plan.points.size() - todo.size();
  Progress progress(log, o.progress, plan.points.size(), outcome.reused);
  // The metrics.csv of each point whose worker checked it whole; the others are read from points/.
  std::vector<std::string> metrics(plan.points.size());
  if (o.backend == SweepBackend::local) run_local(plan, o, todo, progress, outcome.reused, metrics);
  else run_slurm(plan, o, todo, progress, points_per_task, outcome.reused);
  progress.finish();
  const std::vector<bool> whole = write_results(plan, o.out_dir, std::move(metrics));
  // Every point without a whole result is failed: results.csv says so, with a reason.
  outcome.succeeded = static_cast<std::size_t>(std::count(whole.begin(), whole.end(), true));
  outcome.failed = outcome.total - outcome.succeeded;
  for (const auto& p : plan.points) {
    if (outcome.first_errors.size() == 3) break;
    if (whole[p.index]) continue;
    std::string line = recorded_failure(o.out_dir, p.index) ? read_text(error_file(o.out_dir, p.index))
                                                            : std::string("no whole result");
    while (!line.empty() && line.back() == '\n') line.pop_back();
    outcome.first_errors.push_back(fmt::format("point {}: {}", p.index, line));
  }
  return outcome;
}

void run_sweep_task(const std::filesystem::path& out_dir, std::size_t task, const std::filesystem::path& npusim,
                    const PointRunner& run_point) {
  const StoredPlan stored = read_plan(out_dir);
  RunMemo memo;  // each point runs in a fork: it stays empty here
  const std::size_t first = task * stored.points_per_task;
  for (std::size_t i = first; i < std::min(first + stored.points_per_task, stored.plan.points.size()); ++i) {
    const auto& point = stored.plan.points[i];
    if (!finished(out_dir, point.index)) run_point_now(npusim, run_point, memo, stored.plan.base, point, out_dir);
  }
}

}  // namespace npusim::sim
