#include "sim/serving.hpp"

#include <algorithm>
#include <cmath>
#include <deque>
#include <exception>
#include <limits>
#include <memory>
#include <optional>
#include <unordered_map>

#include <fmt/format.h>
#include <systemc>

#include "npu_model/fluid_batching_engine.hpp"
#include "workloads/control_blocks.hpp"
#include "npu_model/systemc_context.hpp"
#include "sim/config_node.hpp"
#include "sim/energy_ledger.hpp"
#include "sim/table_cache.hpp"
#include "sim/waiting_queue.hpp"
#include "traces/checked.hpp"

namespace npusim::sim {
namespace {

using scheduler::Decision;
using scheduler::SampleInfo;
using scheduler::Trigger;

// Simulated time is picoseconds in an int64. Arrivals are held to traces::max_arrival_ns and
// SLOs to max_slo_ns, so an arrival, its deadline and their picoseconds all fit; everything
// after that (layers, context transfers, wake-ups) is added with a check.
constexpr double max_slo_ns = 1e15;  // 1e9 ms, the largest slo_ms
constexpr std::int64_t max_time_ps = std::numeric_limits<std::int64_t>::max();
// Npu::cycles_to_ps is exact below 10^13 cycles; a layer that long is out of any time range here.
constexpr std::uint64_t max_layer_cycles = 9'000'000'000'000ULL;

[[noreturn, gnu::cold, gnu::noinline]] void arrival_out_of_range(std::int64_t arrival_ns) {
  throw SimulationError(fmt::format("arrival at {} ns escaped the arrival range check", arrival_ns));
}

inline std::int64_t ps_of_arrival(std::int64_t arrival_ns) {
  if (arrival_ns < 0 || arrival_ns > traces::max_arrival_ns) [[unlikely]]
    arrival_out_of_range(arrival_ns);
  return arrival_ns * 1000;
}

// A policy that idles this many times in a row while samples wait, without a batch started or
// run in between, is making no progress (idle(now + 1) forever): the run stops with its name.
// Waiting for a batch to fill takes one idle per arrival at most, far fewer than this.
constexpr std::uint64_t max_idle_decisions_while_waiting = 1'000'000;

// How many samples a stretch's planning may draw ahead looking for an arrival that wakes its
// horizon: enough for any stretch at any sane rate, and a bound on the memory they hold.
constexpr std::size_t max_drawn_ahead = 4096;

// What running a layer at a batch size takes, kept apart from the table's large entries so that
// the serving loop touches a few bytes per layer.
struct LayerStep {
  std::int64_t ps = 0;  // its time, or -1 when it is too long for simulated time
  std::uint64_t macs = 0;
  npu::EnergyParts energy;  // dynamic: its MACs, buffer accesses and off-chip bytes
};

// One network on this NPU: the FBE's control-block table, which also holds the activation bytes
// the residency plan keeps on chip at each layer boundary. (The scheduler's profile of it sits
// in a vector of its own, the span policies see.)
struct ModelRuntime {
  std::string name;  // as the scenario's devices name it (a zoo name or a file)
  const workloads::LoweredNetwork* network = nullptr;
  npu::ControlBlockTable table;
  // [layer * (max_batch + 1) + batch]: cycles to move a suspended batch's context off chip (or
  // back), asked for at every decision, so computed once.
  std::vector<std::uint64_t> context_transfer_cycles;
  std::uint32_t max_batch = 0;
  std::uint64_t transfer_cycles(std::uint32_t layer, std::size_t batch) const {
    return context_transfer_cycles[std::size_t{layer} * (max_batch + 1) + batch];
  }
  std::vector<LayerStep> steps;  // [layer * (max_batch + 1) + batch], from the table
  const LayerStep& step(std::uint32_t layer, std::uint32_t batch) const {
    return steps[std::size_t{layer} * (max_batch + 1) + batch];
  }
  // Running sums of the steps at one batch size: entry `layer` of row `batch` holds what the
  // layers before it take. A stretch of layers that no exit, merge or observer interrupts is
  // planned and settled from two entries, however long it is. Times and MACs add modulo 2^64
  // (a step too long for simulated time adds 0), so a difference is exact for any run of timed
  // steps whose total fits; energy is counted exactly (sim/energy_ledger.hpp).
  struct LayerSums {
    std::uint64_t ps = 0, macs = 0;
    EnergyCount energy;
    Zeptojoules share_per_sample = 0;  // the energy divided evenly over the batch
  };
  std::vector<LayerSums> sums;  // [batch * (layer_count + 1) + layer]
  std::uint32_t layer_count = 0;
  const LayerSums* sums_row(std::uint32_t batch) const { return &sums[std::size_t{batch} * (layer_count + 1)]; }
  // Whether the planner may use the sums: every step timed and every row's total time within
  // 64-bit picoseconds.
  bool sums_plan_stretches = true;
  // Per layer: the first layer at or after it that an exit follows (layer_count if none).
  std::vector<std::uint32_t> next_exit_layer;
};

// The sums of ModelRuntime, from its steps and its profile's exits. A layer whose energy the
// ledger cannot take (the NPU's energy figures are the user's) is a ConfigError naming `source`.
void add_running_sums(ModelRuntime& model, const scheduler::ModelProfile& profile, const std::string& source) {
  const std::uint32_t layers = model.layer_count;
  model.sums.assign(std::size_t{model.max_batch + 1} * (layers + 1), {});
  for (std::uint32_t b = 1; b <= model.max_batch; ++b) {
    ModelRuntime::LayerSums* row = &model.sums[std::size_t{b} * (layers + 1)];
    std::int64_t total_ps = 0;
    for (std::uint32_t layer = 0; layer < layers; ++layer) {
      const LayerStep& step = model.step(layer, b);
      const double share_pj = step.energy.total_pj() / b;
      if (const auto pj = term_outside_energy_ledger(step.energy, share_pj))
        throw ConfigError(fmt::format("{}: layer {} of {} at batch {} costs {} pJ of energy under the NPU's energy "
                                      "figures: allowed 0 to {:g} pJ per layer (lower the npu.energy values)",
                                      source, layer, model.name, b, *pj, max_energy_term_pj));
      const auto total = step.ps >= 0 ? traces::checked_add(total_ps, step.ps) : std::nullopt;
      if (!total) model.sums_plan_stretches = false;
      total_ps = total.value_or(0);
      row[layer + 1].ps = row[layer].ps + static_cast<std::uint64_t>(std::max<std::int64_t>(step.ps, 0));
      row[layer + 1].macs = row[layer].macs + step.macs;
      row[layer + 1].energy = row[layer].energy;
      row[layer + 1].energy += EnergyCount::of(step.energy);
      row[layer + 1].share_per_sample = row[layer].share_per_sample + zeptojoules_of(share_pj);
    }
  }
  model.next_exit_layer.assign(layers, layers);
  std::uint32_t next = layers;
  for (std::uint32_t layer = layers; layer-- > 0;) {
    if (profile.exit_after(layer) >= 0) next = layer;
    model.next_exit_layer[layer] = next;
  }
}

// The network's exits with the probabilities the scheduler believes.
std::vector<scheduler::ExitPoint> exit_points(const workloads::LoweredNetwork& network,
                                              const std::vector<double>& probabilities) {
  std::vector<scheduler::ExitPoint> out;
  for (std::size_t e = 0; e < network.exits.size(); ++e) {
    const auto& exit = network.exits[e];
    out.push_back({exit.name, static_cast<std::uint32_t>(exit.decided_after()), probabilities[e]});
  }
  return out;
}

// scheduler.exit_profile: the network's probabilities, or the mean over its devices' profiles.
std::vector<double> believed_exit_probabilities(const Scenario& scenario, const std::string& model,
                                                const workloads::LoweredNetwork& network) {
  std::vector<double> probabilities = network.exit_probabilities();
  if (!scenario.scheduler.exit_profile_from_devices) return probabilities;
  std::vector<double> sum(probabilities.size(), 0.0);
  std::size_t devices = 0;
  for (const auto& d : scenario.devices) {
    if (d.stream.model != model) continue;
    for (std::size_t e = 0; e < sum.size(); ++e) sum[e] += d.stream.exit_probabilities[e];
    ++devices;
  }
  if (devices == 0) return probabilities;
  for (auto& p : sum) p /= static_cast<double>(devices);
  return sum;
}

// Builds the runtime of a network and appends the scheduler's profile of it to `profiles`.
ModelRuntime build_runtime(const npu::Npu& npu, const std::string& name, const workloads::LoweredNetwork& network,
                           std::uint32_t max_batch, const std::vector<double>& exit_probabilities,
                           std::vector<scheduler::ModelProfile>& profiles, const std::string& source,
                           TableCache* tables) {
  const auto build = [&] { return workloads::control_block_table(npu, network, max_batch); };
  auto table = tables ? tables->get(npu.config(), workloads::layer_works(network), max_batch, build) : build();
  const std::size_t layers = network.layers.size();
  try {
    profiles.emplace_back(network.name, static_cast<std::uint32_t>(layers), max_batch,
                          [&](std::uint32_t layer, std::uint32_t batch) { return table.entry(batch, layer).cycles; },
                          exit_points(network, exit_probabilities));
    std::vector<std::uint64_t> transfers;
    std::vector<LayerStep> steps;
    transfers.reserve(layers * (max_batch + 1));
    steps.reserve(layers * (max_batch + 1));
    for (std::size_t layer = 0; layer < layers; ++layer)
      for (std::uint32_t b = 0; b <= max_batch; ++b) {
        transfers.push_back(b == 0 ? 0 : npu.transfer_cycles(table.on_chip_bytes_before(b, layer)));
        if (b == 0) {
          steps.push_back({});
          continue;
        }
        const auto& cost = table.entry(b, layer);
        steps.push_back({cost.cycles < max_layer_cycles ? npu.cycles_to_ps(cost.cycles) : -1, cost.macs,
                         npu::price_energy(npu, cost.macs, cost.on_chip, cost.offchip_bytes, 0)});
      }
    ModelRuntime model{name, &network, std::move(table), std::move(transfers), max_batch, std::move(steps)};
    model.layer_count = static_cast<std::uint32_t>(layers);
    add_running_sums(model, profiles.back(), source);
    return model;
  } catch (const std::invalid_argument& e) {
    throw workloads::NetworkError(e.what());
  }
}

struct Batch {
  std::uint32_t model = 0;
  std::uint32_t next_layer = 0;
  std::vector<SampleInfo> samples;
  std::vector<std::uint32_t> exits;  // the drawn exit of each sample, hidden from policies
  bool merges = false;
  std::uint32_t merge_layer = 0;
  std::uint32_t preemptions = 0;
  // Set while suspended: where its context lives.
  std::uint64_t context_bytes = 0;
  bool spilled = false;

  scheduler::BatchInfo info() const {
    return {model, next_layer, samples, merges, merge_layer, preemptions};
  }
};

SC_MODULE(ServingSystem) {
  SC_HAS_PROCESS(ServingSystem);

  ServingSystem(sc_core::sc_module_name name, const Scenario& scenario, std::vector<ModelRuntime>& models,
                std::vector<scheduler::ModelProfile>& profiles, scheduler::Policy& policy,
                const scheduler::PolicyInfo& policy_info, std::span<ServingObserver* const> observers,
                bool skip_decisions)
      : sc_module(name), scenario_(scenario), npu_(scenario.npu), models_(models), profiles_(profiles),
        policy_(policy),
        policy_origin_(policy_info.origin == "built-in" ? "" : fmt::format(" (plugin {})", policy_info.origin)),
        observers_(observers),
        stream_(scenario.streams(), scenario.simulation.seed, scenario.base_dir),
        metrics_(scenario.devices.size(), scenario.metrics.exact_percentile_samples,
                 scenario.metrics.tail_window_ms * 1e6, scenario.metrics.tail_percentile),
        ps_per_cycle_(1.0e6 / scenario.npu.config().clock_mhz),
        context_capacity_bytes_(scenario.serving.context_buffer_bytes.value_or(0)),
        fbe_(scenario.scheduler.max_batch, scenario.serving.preemption_depth) {
    for (const auto& model : models_) model_index_.push_back(model.name);
    for (const auto& device : scenario.devices) {
      const auto m = static_cast<std::uint32_t>(
          std::find(model_index_.begin(), model_index_.end(), device.stream.model) - model_index_.begin());
      device_model_.push_back(m);
      const double isolated_ns = static_cast<double>(profiles_[m].isolated_cycles()) * ps_per_cycle_ / 1000.0;
      slo_ns_.push_back(device.slo_ms ? *device.slo_ms * 1e6 : *device.slo_factor * isolated_ns);
      if (!(slo_ns_.back() <= max_slo_ns))
        throw ConfigError(fmt::format("{}: device {}: slo_factor = {} gives an SLO of {} ms: allowed an SLO of at most "
                                      "1e9 ms (a factor up to {:.6g} for {})",
                                      scenario.source, device.stream.name, device.slo_factor.value_or(0.0),
                                      slo_ns_.back() / 1e6, max_slo_ns / isolated_ns, device.stream.model));
      slo_whole_ns_.push_back(static_cast<std::int64_t>(std::llround(slo_ns_.back())));
    }
    for (std::size_t m = 0; m < models_.size(); ++m) exit_counts_.emplace_back(models_[m].network->exits.size(), 0);
    device_dynamic_energy_.assign(scenario.devices.size(), 0);
    stats_.static_mw = npu_.energy().static_mw;
    if (policy_info.analysis_only) oracle_.emplace(*this);
    lazy_arrivals_ = skip_decisions;
    if (skip_decisions) {
      horizon_policy_ = dynamic_cast<const scheduler::DecisionHorizon*>(&policy);
      arrival_filter_ = dynamic_cast<const scheduler::ArrivalWakeFilter*>(&policy);
      arrival_count_ = dynamic_cast<const scheduler::ArrivalCountWake*>(&policy);
    }
    view_.max_batch = scenario.scheduler.max_batch;
    view_.models = profiles_;
    view_.ns_per_cycle = ps_per_cycle_ / 1000.0;
    if (oracle_) view_.oracle = &*oracle_;
    view_.spare_positions = &spare_positions_;
    if (skip_decisions) {
      if (const auto* observation = dynamic_cast<const scheduler::ArrivalObservation*>(&policy))
        ask_policy("observes_arrivals",
                   [&] { observes_arrivals_ = observation->observes_arrivals(view(Trigger::arrival)); });
      admission_sees_the_npu_ = observes_arrivals_ || !observers.empty();
    }
    // Methods, not threads: no coroutine switch per event, which is most of an event's cost.
    SC_METHOD(device_sources);
    SC_METHOD(npu_core);
  }

  ServingResult result() {
    metrics_.finish();
    ServingStats stats = stats_;
    stats.dynamic_energy = dynamic_energy_.parts_pj();
    for (const Zeptojoules zj : device_dynamic_energy_) stats.device_dynamic_energy_pj.push_back(pj_of(zj));
    for (std::size_t m = 0; m < models_.size(); ++m) {
      const auto& network = *models_[m].network;
      for (std::size_t e = 0; e < network.exits.size(); ++e)
        stats.exits.push_back({models_[m].name, network.exits[e].name, profiles_[m].exits()[e].decision_layer,
                               exit_counts_[m][e]});
    }
    for (std::size_t d = 0; d < slo_ns_.size(); ++d) {
      stats.device_slo_ms.push_back(slo_ns_[d] / 1e6);
      stats.device_models.push_back(model_index_[device_model_[d]]);
    }
    stats.peak_macs_per_ns = static_cast<double>(npu_.macs_per_cycle()) * 1000.0 / ps_per_cycle_;
    return {std::move(metrics_), std::move(stats)};
  }

  std::exception_ptr failure() const { return failure_; }

  // What a VCD trace shows: the FBE's registers and the FIFO's length, as plain variables the
  // kernel samples at every time step.
  struct Traced {
    unsigned b_act = 0, l = 0, b_old = 0, l_old = 0, suspended = 0, queue_length = 0;
  };
  void trace(sc_core::sc_trace_file* file, std::int64_t start_ps, std::int64_t end_ps) {
    trace_window_ = {start_ps, end_ps};
    sc_core::sc_trace(file, traced_.b_act, "fbe.B_act");
    sc_core::sc_trace(file, traced_.l, "fbe.l");
    sc_core::sc_trace(file, traced_.b_old, "fbe.B_old");
    sc_core::sc_trace(file, traced_.l_old, "fbe.l_old");
    sc_core::sc_trace(file, traced_.suspended, "fbe.suspended");
    sc_core::sc_trace(file, traced_.queue_length, "fifo.length");
  }

  // After the run: every admitted sample must have completed exactly once.
  void check_balance() const {
    const auto& all = metrics_.overall();
    if (running_ || !suspended_.empty() || !queue_.empty() || all.arrived != all.completed + all.dropped)
      throw SimulationError(fmt::format("sample balance broken: {} arrived, {} completed, {} dropped, {} still queued, "
                                        "{} running, {} suspended batches",
                                        all.arrived, all.completed, all.dropped, queue_.size(),
                                        running_ ? running_->samples.size() : 0, suspended_.size()));
  }

 private:
  // The time of the event being handled: the kernel's, an arrival the NPU admits late, or a
  // layer boundary inside a stretch that settle_stretch is catching up with.
  std::int64_t now_ps() const {
    return settling_ps_ >= 0 ? settling_ps_ : event_ps_;
  }
  // The kernel's resolution is its default, 1 ps.
  static sc_core::sc_time ps_time(std::int64_t ps) { return sc_core::sc_time::from_value(static_cast<sc_dt::uint64>(ps)); }


  // ---- device sources -> request FIFO ----
  // Draws the next sample that will arrive within the scenario's limits into `upcoming_`.
  // False once there is none. Samples are drawn in one order whoever asks and however early
  // (the arrival loop, or the oracle looking ahead), so looking ahead changes no draw.
  bool draw_arrival() {
    if (arrivals_ended_) return false;
    const auto& limits = scenario_.simulation;
    std::optional<traces::Sample> sample;
    if (limits.samples == 0 || emitted_ < limits.samples) sample = stream_.next();
    if (sample && limits.samples == 0 && static_cast<double>(sample->arrival_ns) >= limits.duration_s * 1e9)
      sample.reset();
    if (sample && sample->arrival_ns > traces::max_arrival_ns) {
      const auto& device = scenario_.devices[sample->device];
      throw ConfigError(fmt::format(
          "{}: device {}: its {} arrival process drew sample {} past {} s of simulated time, the most arrivals may use "
          "(time is 64-bit picoseconds): allowed arrival processes whose simulation.samples = {} arrivals come sooner "
          "(a higher rate, or fewer samples)",
          scenario_.source, device.stream.name, traces::to_string(device.stream.arrival.kind), emitted_ + 1,
          traces::max_arrival_ns / 1'000'000'000, limits.samples));
    }
    if (!sample) {
      arrivals_ended_ = true;
      return false;
    }
    ++emitted_;
    if (oracle_) drawn_exits_[sample->id] = sample->exit;
    upcoming_.push_back(*sample);
    return true;
  }

  // SystemC would turn an exception escaping a process into a report of another type; keep it
  // and hand it to run_serving as it was thrown.
  template <typename Body>
  void guarded(Body body) {
    try {
      body();
    } catch (...) {
      failure_ = std::current_exception();
      sc_core::sc_stop();
    }
  }

  void device_sources() {
    guarded([this] {
      kernel_ps_ = event_ps_ = static_cast<std::int64_t>(sc_core::sc_time_stamp().value());
      emit_arrivals();
    });
  }

  // Runs at time 0 and then at each arrival: admits what is due and sleeps until the next. With
  // lazy arrivals it hands the arrivals to the NPU as soon as the NPU is not waiting for one,
  // and returns no more.
  void emit_arrivals() {
    while (admit_next_arrival_by(event_ps_)) {
    }
    if (sources_done_) {
      // An NPU that waits with no wake-up of its own (the last arrivals were refused) would
      // otherwise never learn that none is to come. One woken by an arrival just now, or with a
      // wake-up, is not woken again.
      if (npu_waits_for_arrival_ && wait_wake_ps() == max_time_ps) arrival_event_.notify(sc_core::SC_ZERO_TIME);
    } else if (lazy_arrivals_ && !npu_waits_for_arrival_) {
      npu_admits_arrivals_ = true;
    } else {
      wake_at(pending_arrival_ps_);
    }
  }

  // Admits the next arrival if it is due by `until_ps`, at its own instant, after what the NPU
  // finished by then: observers and the policy's view see events in time order even while the
  // NPU sleeps through a stretch of layers, and whether the sources or the NPU admit it. False
  // if none is due: pending_arrival_ps_ then holds the next one's time, or sources_done_ is set.
  // With nobody to see it, the stretch is settled later in one pass: an admission does not touch
  // the running batch, and a layer's settling does not touch the FIFO.
  bool admit_next_arrival_by(std::int64_t until_ps) {
    if (upcoming_.empty() && !draw_arrival()) {
      pending_arrival_ps_ = -1;
      sources_done_ = true;
      return false;
    }
    pending_arrival_ps_ = ps_of_arrival(upcoming_.front().arrival_ns);
    if (pending_arrival_ps_ > until_ps) return false;
    const traces::Sample sample = upcoming_.front();
    upcoming_.pop_front();
    const std::int64_t event_ps = event_ps_;
    event_ps_ = pending_arrival_ps_;
    if (admission_sees_the_npu_) settle_stretch(event_ps_);
    admit(sample);
    event_ps_ = event_ps;
    return true;
  }

  // Once the NPU admits arrivals, it admits what arrived since its last step before it takes
  // the next, in the order the kernel would have run the sources and the NPU in.
  void admit_arrivals_due() {
    while (pending_arrival_ps_ >= 0 && pending_arrival_ps_ <= event_ps_ && admit_next_arrival_by(event_ps_)) {
    }
  }

  std::int64_t deadline_ns(const traces::Sample& s) const { return s.arrival_ns + slo_whole_ns_[s.device]; }

  SampleInfo sample_info(const traces::Sample& s) const {
    return {s.id, s.arrival_ns, deadline_ns(s), s.device,
            device_model_[s.device], scenario_.devices[s.device].priority};
  }

  void admit(const traces::Sample& s) {
    if (metrics_.overall().arrived == 0) stats_.first_arrival_ps = ps_of_arrival(s.arrival_ns);
    metrics_.arrived(s.device);
    const SampleInfo info = sample_info(s);
    if (info.deadline_ns < wake_due_before_ns_ && arrivals_until_wake_ > 0) --arrivals_until_wake_;
    const std::uint32_t model = info.model;
    if (s.exit >= profiles_[model].exits().size())
      throw SimulationError(fmt::format("sample {} drew exit {} of a model with {} exits", s.id, s.exit,
                                        profiles_[model].exits().size()));
    if (queue_.size() >= scenario_.serving.fifo_capacity) {
      if (scenario_.serving.drop == DropPolicy::newest) {
        drop(info);
        return;
      }
      drop(queue_.front());
      queue_.pop_front();
      queue_changed();
    }
    queue_.push_back(info, s.exit);
    queue_changed();
    stats_.max_queue = std::max<std::uint64_t>(stats_.max_queue, queue_.size());
    if (observes_arrivals_)
      ask_policy("observe_arrival", [&] { policy_.observe_arrival(view(Trigger::arrival), info); });
    // Nothing else waits for it, and a notification nobody waits for costs the kernel as much.
    // Once notified, the NPU runs at this instant: it waits no more.
    if (npu_waits_for_arrival_) {
      arrival_event_.notify();
      npu_waits_for_arrival_ = false;
    }
    queued_while_npu_slept_ = true;
  }

  void drop(const SampleInfo& info) {
    metrics_.dropped(info.device);
    if (oracle_) drawn_exits_.erase(info.id);
    for (auto* o : observers_) o->on_drop(now_ps(), info);
  }

  // ---- the policy's view ----
  // Built once; each call brings the fields that change up to date, in place.
  const scheduler::SchedulerView& view(Trigger trigger) {
    scheduler::SchedulerView& v = view_;
    v.now_ns = now_ps() / 1000;
    v.trigger = trigger;
    v.queue = queue_.samples();
    v.queue_index = &queue_;
    v.running = nullptr;
    v.preemption_overhead_cycles = 0;
    v.preemption_overheads = nullptr;
    if (running_) {
      running_info_ = running_->info();
      v.running = &running_info_;
      v.preemption_overhead_cycles = preemption_overhead_cycles(*running_);
      v.preemption_overheads = &running_overheads_;
    }
    suspended_info_.clear();
    for (const auto& b : suspended_) suspended_info_.push_back(b.info());
    v.suspended = suspended_info_;
    v.preemptions_left = scenario_.serving.preemption_depth - static_cast<std::uint32_t>(suspended_.size());
    v.merge_room = running_ ? scenario_.scheduler.max_batch - static_cast<std::uint32_t>(merge_chain_size()) : 0;
    return v;
  }

  // ---- the oracle of analysis-only policies ----
  // It answers from the engine's own records: the exits drawn with each sample, and samples
  // drawn ahead into `upcoming_`, which the arrival loop then admits unchanged.
  class EngineOracle final : public scheduler::Oracle {
   public:
    explicit EngineOracle(ServingSystem& system) : system_(system) {}
    std::uint32_t drawn_exit(std::uint64_t sample_id) const override {
      const auto it = system_.drawn_exits_.find(sample_id);
      if (it == system_.drawn_exits_.end())
        system_.refuse(fmt::format("asked the oracle for the exit of sample {}, which is neither waiting, running, "
                                   "suspended nor foreseen",
                                   sample_id));
      return it->second;
    }
    std::span<const scheduler::ForeseenSample> arrivals_within(std::int64_t horizon_ns) override {
      const std::int64_t now_ns = system_.now_ps() / 1000;
      const std::int64_t until_ns = horizon_ns >= scheduler::never_ns - now_ns ? scheduler::never_ns : now_ns + horizon_ns;
      auto& upcoming = system_.upcoming_;
      while ((upcoming.empty() || upcoming.back().arrival_ns <= until_ns) && system_.draw_arrival()) {
      }
      foreseen_.clear();
      for (const auto& s : upcoming) {
        if (s.arrival_ns > until_ns) break;
        foreseen_.push_back({system_.sample_info(s), s.exit});
      }
      return foreseen_;
    }

   private:
    ServingSystem& system_;
    std::vector<scheduler::ForeseenSample> foreseen_;
  };

  // The running batch plus every suspended batch it merges into on the way back: the batch a
  // merging preemption would eventually grow.
  std::size_t merge_chain_size() const {
    std::size_t total = running_->samples.size();
    bool merges = running_->merges;
    for (auto it = suspended_.rbegin(); merges && it != suspended_.rend(); ++it) {
      total += it->samples.size();
      merges = it->merges;
    }
    return total;
  }

  // What the residency plan holds on chip where the batch stopped: it must make room for the
  // batch that runs next. Activations already in DRAM stay there at no cost.
  std::uint64_t context_bytes(const Batch& b) const {
    if (b.samples.empty()) return 0;
    return models_[b.model].table.on_chip_bytes_before(static_cast<std::uint32_t>(b.samples.size()), b.next_layer);
  }
  bool fits_on_chip(std::uint64_t bytes) const { return on_chip_context_bytes_ + bytes <= context_capacity_bytes_; }
  std::uint64_t preemption_overhead_cycles(const Batch& b) const {
    return preemption_overhead_cycles(b.model, b.samples.size(), b.next_layer);
  }
  // The same for a batch of `batch` samples of `model` stopped before `layer`.
  std::uint64_t preemption_overhead_cycles(std::uint32_t model, std::size_t batch, std::uint32_t layer) const {
    if (batch == 0) return 0;
    const ModelRuntime& runtime = models_[model];
    const std::uint64_t bytes = runtime.table.on_chip_bytes_before(static_cast<std::uint32_t>(batch), layer);
    return fits_on_chip(bytes) ? 0 : 2 * runtime.transfer_cycles(layer, batch);
  }

  // The view's preemption_overheads: the running batch's overhead at its later boundaries, as
  // things stand.
  class RunningOverheads final : public scheduler::PreemptionOverheads {
   public:
    explicit RunningOverheads(const ServingSystem& system) : system_(system) {}
    std::uint64_t cycles_before(std::uint32_t layer) const override {
      const Batch& b = *system_.running_;
      if (layer >= system_.models_[b.model].layer_count) return 0;
      return system_.preemption_overhead_cycles(b.model, b.samples.size(), layer);
    }
    std::uint64_t context_room_bytes() const override {
      return system_.context_capacity_bytes_ - system_.on_chip_context_bytes_;
    }

   private:
    const ServingSystem& system_;
  };

  // ---- the NPU ----
  void npu_core() {
    guarded([this] {
      kernel_ps_ = event_ps_ = static_cast<std::int64_t>(sc_core::sc_time_stamp().value());
      npu_waits_for_arrival_ = false;
      if (npu_admits_arrivals_) admit_arrivals_due();
      advance();
    });
  }

  // How far `ps`, which is not before the kernel's now, lies from it: what next_trigger takes.
  sc_core::sc_time from_kernel_now(std::int64_t ps) const {
    if (ps < kernel_ps_)
      throw SimulationError(fmt::format("a wake-up at {} ps is before the kernel's time, {} ps", ps, kernel_ps_));
    return ps_time(ps - kernel_ps_);
  }
  // Asks the kernel to call the running process at `ps`.
  void wake_at(std::int64_t ps) { next_trigger(from_kernel_now(ps)); }

  // The NPU's control loop as a state machine: it runs until it has to wait for something the
  // kernel times (the end of a stretch or a context transfer, or an arrival the sources
  // notify), asks the kernel to call it back then (next_trigger), and returns. A wait for an
  // arrival it admits itself it goes through on its own (wait_for_arrival).
  void advance() {
    while (true) {
      switch (step_) {
        case Step::decide: {
          // Arrivals stamped with this instant are in the FIFO before anything is decided.
          if (pending_arrival_ps_ == now_ps()) {
            wake_at(now_ps());
            return;
          }
          if (!running_ && queue_.empty()) {
            if (sources_done_) return;  // the run is over: nothing will call again
            trigger_ = Trigger::arrival;
            if (wait_for_arrival()) break;
            return;
          }
          ++stats_.decisions;
          ++stats_.decisions_asked;
          Decision decision;
          const scheduler::SchedulerView& asked = view(trigger_);
          ask_policy("decide", [&] { decision = policy_.decide(asked); });
          wake_due_before_ns_ = scheduler::never_ns;
          arrivals_until_wake_ = 1;
          check_kind(decision.kind);
          if (decision.kind == Decision::Kind::idle) {
            if (idle(decision)) break;
            return;
          }
          idle_decisions_while_waiting_ = 0;
          step_ = Step::start_layer;
          const std::int64_t save_ps = apply(decision);
          // Its positions' memory serves the policy's next start or preempt.
          if (decision.queue_positions.capacity() > spare_positions_.capacity())
            spare_positions_ = std::move(decision.queue_positions);
          // Keeping on changes nothing, so the view it was asked with still holds.
          horizon_ = ask_horizon(decision.kind == Decision::Kind::run ? &asked : nullptr);
          if (sleep_for(save_ps)) return;
          break;
        }
        case Step::after_idle:
          trigger_ = now_ps() >= wake_ps_ ? Trigger::wakeup : Trigger::arrival;
          step_ = Step::decide;
          break;
        case Step::start_layer:
          step_ = Step::layer_done;
          if (sleep_for(start_stretch())) return;
          break;
        case Step::layer_done:
          settle_stretch(now_ps());
          if (!stretch_settled_)
            throw SimulationError(fmt::format("a stretch planned to end at {} ps is at layer {} ending at {} ps",
                                              stretch_end_ps_, running_ ? running_->next_layer : 0, layer_end_ps_));
          step_ = Step::decide;
          if (sleep_for(stretch_restore_ps_)) return;
          break;
      }
    }
  }

  bool sleep_for(std::int64_t ps) {
    if (ps <= 0) return false;
    if (!traces::checked_add(now_ps(), ps)) out_of_time(fmt::format("a step of {} ps", ps));
    wake_at(now_ps() + ps);
    return true;
  }

  // A run whose layers or context transfers would carry simulated time past its type.
  [[noreturn]] void out_of_time(const std::string& what) const {
    throw ConfigError(fmt::format("{}: {} at {} ns would pass the largest simulated time, {} ps (about 106.7 days): "
                                  "allowed scenarios whose run ends within it",
                                  scenario_.source, what, now_ps() / 1000, max_time_ps));
  }

  std::int64_t ps_of_cycles(std::uint64_t cycles) const {
    if (cycles >= max_layer_cycles) out_of_time(fmt::format("a step of {} cycles", cycles));
    return npu_.cycles_to_ps(cycles);
  }

  [[noreturn]] void refuse(const std::string& why) const {
    throw scheduler::PolicyError(fmt::format("policy {}{} at {} ns: {}", scenario_.scheduler.policy, policy_origin_,
                                             now_ps() / 1000, why));
  }

  // Whatever a policy throws, of any type, becomes a PolicyError naming it (and its plugin):
  // an exception object from a plugin must not travel further, and one that is not a
  // std::exception would end the process.
  template <typename Call>
  void ask_policy(const char* what, Call call) {
    try {
      call();
    } catch (const scheduler::PolicyError&) {
      throw;
    } catch (const ConfigError&) {
      throw;  // the engine's own, raised while the oracle drew arrivals ahead for the policy
    } catch (const SimulationError&) {
      throw;
    } catch (const std::exception& e) {
      refuse(fmt::format("{} threw: {}", what, e.what()));
    } catch (...) {
      refuse(fmt::format("{} threw an exception that is not a std::exception", what));
    }
  }

  void check_kind(Decision::Kind kind) const {
    switch (kind) {
      case Decision::Kind::run:
      case Decision::Kind::start:
      case Decision::Kind::preempt:
      case Decision::Kind::idle: return;
    }
    refuse(fmt::format("returned a decision of kind {}: allowed run, start, preempt or idle (0 to 3)",
                       static_cast<int>(kind)));
  }

  // Returns whether the NPU's wait is already over (as wait_for_arrival).
  bool idle(const Decision& d) {
    if (running_) refuse("asked to idle while a batch is running (answer run or preempt)");
    if (++idle_decisions_while_waiting_ > max_idle_decisions_while_waiting)
      refuse(fmt::format("idled {} times in a row while {} samples waited, starting no batch: no progress",
                         max_idle_decisions_while_waiting, queue_.size()));
    if (d.wake_ns == scheduler::never_ns) {
      if (sources_done_)
        refuse(fmt::format("left {} samples waiting with no arrival or wake-up to come", queue_.size()));
      trigger_ = Trigger::arrival;
      return wait_for_arrival();
    }
    const auto wake_ps = traces::checked_mul<std::int64_t>(d.wake_ns, 1000);
    if (!wake_ps)
      refuse(fmt::format("asked to idle until {} ns, past the largest simulated time ({} ns): allowed a later time "
                         "that fits, or never_ns",
                         d.wake_ns, max_time_ps / 1000));
    wake_ps_ = *wake_ps;
    if (wake_ps_ <= now_ps()) refuse(fmt::format("asked to idle until {} ns, which is not later than now", d.wake_ns));
    step_ = Step::after_idle;
    return wait_for_arrival();
  }

  // The wake-up of the wait the NPU is in or about to enter: an idle decision's, or none.
  std::int64_t wait_wake_ps() const { return step_ == Step::after_idle ? wake_ps_ : max_time_ps; }

  // Sleeps until the next arrival, or until its wake-up if that comes first. Once the NPU admits
  // the arrivals, nothing else happens before then, so the NPU's clock moves there at once and
  // the kernel is not called back for it: returns true, and advance goes on at that instant. A
  // wait that ends with nothing queued (the FIFO refused the arrival) before the wake-up goes on,
  // since a refused arrival did not wake the NPU when arrivals were kernel events; one with no
  // wake-up ends when the arrivals end.
  bool wait_for_arrival() {
    const std::int64_t wake_ps = wait_wake_ps();
    if (npu_admits_arrivals_) {
      while (true) {
        // It has admitted every arrival due by now, so the next is later.
        const std::int64_t until_ps = sources_done_ ? wake_ps : std::min(wake_ps, pending_arrival_ps_);
        if (until_ps == max_time_ps) return false;  // the run is over
        event_ps_ = until_ps;
        queued_while_npu_slept_ = false;
        admit_arrivals_due();
        const bool told_arrivals_ended = sources_done_ && wake_ps == max_time_ps;
        if (queued_while_npu_slept_ || told_arrivals_ended || event_ps_ >= wake_ps) return true;
      }
    }
    if (wake_ps == max_time_ps)
      next_trigger(arrival_event_);
    else
      next_trigger(from_kernel_now(wake_ps), arrival_event_);
    npu_waits_for_arrival_ = true;
    return false;
  }

  // Moves the samples at `positions` (distinct, in range, one model) out of the FIFO, in
  // O(batch) plus the FIFO's own moves: nothing here walks the whole queue.
  Batch take_from_queue(const std::vector<std::uint32_t>& positions, const char* what) {
    if (positions.empty()) refuse(fmt::format("{} with no samples", what));
    // Policies mostly name positions in queue order already.
    const std::vector<std::uint32_t>* sorted = &positions;
    if (!std::is_sorted(positions.begin(), positions.end())) {
      sorted_positions_.assign(positions.begin(), positions.end());
      std::sort(sorted_positions_.begin(), sorted_positions_.end());
      sorted = &sorted_positions_;
    }
    const bool named_twice = std::adjacent_find(sorted->begin(), sorted->end()) != sorted->end();
    // The first broken position in the policy's order is the one named; finding a repeat that
    // way is quadratic, so it is done only when there is one.
    for (auto p = positions.begin(); p != positions.end(); ++p) {
      if (*p >= queue_.size())
        refuse(fmt::format("{} names queue position {} of a queue of {}", what, *p, queue_.size()));
      if (named_twice && std::find(positions.begin(), p, *p) != p)
        refuse(fmt::format("{} names queue position {} twice", what, *p));
    }
    Batch batch = fresh_batch();
    batch.model = queue_[positions.front()].model;
    for (const auto p : positions) {
      if (queue_[p].model != batch.model) refuse(fmt::format("{} mixes samples of two models", what));
      batch.samples.push_back(queue_[p]);
      batch.exits.push_back(queue_.exit(p));
    }
    queue_.erase(*sorted);
    queue_changed();
    return batch;
  }

  // An empty batch, with the memory of one that ended if there is one.
  Batch fresh_batch() {
    Batch batch;
    if (spare_batches_.empty()) return batch;
    batch.samples = std::move(spare_batches_.back().samples);
    batch.exits = std::move(spare_batches_.back().exits);
    spare_batches_.pop_back();
    batch.samples.clear();
    batch.exits.clear();
    return batch;
  }

  // Carries out a run, start or preempt decision; returns the context-save time it costs.
  std::int64_t apply(const Decision& d) {
    const std::uint32_t max_batch = scenario_.scheduler.max_batch;
    switch (d.kind) {
      case Decision::Kind::run:
        if (!running_) refuse("asked to keep running with no batch on the NPU (answer start or idle)");
        return 0;
      case Decision::Kind::start: {
        if (running_) refuse("asked to start a batch while one is running (answer run or preempt)");
        if (d.queue_positions.size() > max_batch)
          refuse(fmt::format("started a batch of {}, above scheduler.max_batch = {}", d.queue_positions.size(), max_batch));
        running_ = take_from_queue(d.queue_positions, "started a batch");
        fbe_.start(static_cast<std::uint32_t>(running_->samples.size()));
        check_fbe();
        return 0;
      }
      case Decision::Kind::preempt: {
        if (!running_) refuse("asked to preempt with no batch on the NPU (answer start or idle)");
        if (suspended_.size() >= scenario_.serving.preemption_depth)
          refuse(fmt::format("preempted with {} batches suspended; serving.preemption_depth = {}", suspended_.size(),
                             scenario_.serving.preemption_depth));
        const std::size_t limit = d.merge ? max_batch - merge_chain_size() : max_batch;
        if (d.queue_positions.size() > limit)
          refuse(fmt::format("preempted with {} samples; at most {} fit (scheduler.max_batch = {}{})",
                             d.queue_positions.size(), limit, max_batch,
                             d.merge ? " with the batches they merge into" : ""));
        if (d.merge && d.restart) refuse("asked to merge into a batch that restarts (restart needs merge off)");
        Batch incoming = take_from_queue(d.queue_positions, "preempted");
        if (d.merge && incoming.model != running_->model)
          refuse("asked to merge samples of another model into the running batch");
        return suspend(d.merge, d.restart, std::move(incoming));
      }
      case Decision::Kind::idle: return 0;
    }
    return 0;
  }

  // A restarting batch keeps no context: its work so far is lost and it reruns from layer 0.
  std::int64_t suspend(bool merge, bool restart, Batch incoming) {
    Batch& old = *running_;
    const std::uint32_t stopped_at = old.next_layer;
    if (restart) old.next_layer = 0;
    old.context_bytes = restart ? 0 : context_bytes(old);
    old.spilled = !fits_on_chip(old.context_bytes);
    std::uint64_t save_cycles = 0;
    if (old.spilled) {
      save_cycles = models_[old.model].transfer_cycles(old.next_layer, old.samples.size());
      ++stats_.context_spills;
      stats_.context_bytes_moved += old.context_bytes;
      charge_context(old);
    } else {
      on_chip_context_bytes_ += old.context_bytes;
    }
    ++stats_.preemptions;
    ++old.preemptions;
    for (auto* o : observers_)
      o->on_preempt(now_ps(), static_cast<std::uint32_t>(old.samples.size()), stopped_at,
                    static_cast<std::uint32_t>(incoming.samples.size()), merge, save_cycles);
    incoming.merges = merge;
    incoming.merge_layer = old.next_layer;
    fbe_.preempt(static_cast<std::uint32_t>(incoming.samples.size()), merge, restart);
    suspended_.push_back(std::move(old));
    running_ = std::move(incoming);
    check_fbe();
    return transfer_context(save_cycles);
  }

  // A spilled context crosses the channel once each way; its samples share the energy.
  void charge_context(const Batch& b) {
    const npu::EnergyParts e = npu::context_transfer_energy(npu_, b.context_bytes);
    const double share_pj = b.samples.empty() ? 0.0 : e.total_pj() / static_cast<double>(b.samples.size());
    if (const auto pj = term_outside_energy_ledger(e, share_pj))
      throw ConfigError(fmt::format("{}: a context transfer of {} bytes costs {} pJ of energy under the NPU's energy "
                                    "figures: allowed 0 to {:g} pJ (lower the npu.energy values)",
                                    scenario_.source, b.context_bytes, *pj, max_energy_term_pj));
    dynamic_energy_ += EnergyCount::of(e);
    stats_.context_energy_pj += e.total_pj();
    charge_samples(b.samples, zeptojoules_of(share_pj));
  }

  void charge_samples(std::span<const SampleInfo> samples, Zeptojoules share) {
    for (const auto& sample : samples) device_dynamic_energy_[sample.device] += share;
  }

  // A context transfer keeps the NPU busy for its duration.
  std::int64_t transfer_context(std::uint64_t cycles) {
    const std::int64_t ps = ps_of_cycles(cycles);
    stats_.context_transfer_ps += ps;
    return ps;
  }

  // The top suspended batch comes back: merged with the running catch-up batch, or alone.
  // Returns the time its restore takes.
  std::int64_t restore_top(bool merge) {
    Batch old = std::move(suspended_.back());
    suspended_.pop_back();
    std::uint64_t restore_cycles = 0;
    if (old.spilled) {
      restore_cycles = models_[old.model].transfer_cycles(old.next_layer, old.samples.size());
      stats_.context_bytes_moved += old.context_bytes;
      charge_context(old);
    } else {
      on_chip_context_bytes_ -= old.context_bytes;
    }
    if (merge) {
      ++stats_.merges;
      Batch& r = *running_;
      r.samples.insert(r.samples.end(), old.samples.begin(), old.samples.end());
      r.exits.insert(r.exits.end(), old.exits.begin(), old.exits.end());
      r.merges = old.merges;
      r.merge_layer = old.merge_layer;
      r.preemptions = old.preemptions;
      spare_batches_.push_back(std::move(old));
    } else {
      ++stats_.resumes;
      old.spilled = false;
      old.context_bytes = 0;
      running_ = std::move(old);
    }
    for (auto* o : observers_)
      o->on_resume(now_ps(), static_cast<std::uint32_t>(running_->samples.size()), running_->next_layer, merge,
                   restore_cycles);
    return transfer_context(restore_cycles);
  }

  // Starts the running batch's next layer; returns how long it takes.
  std::int64_t start_layer() {
    const Batch& b = *running_;
    // The FBE drives the array: the mapping for (B_act, l) from its control-block table.
    layer_batch_ = fbe_.active_batch();
    layer_step_ = &models_[b.model].step(fbe_.layer(), layer_batch_);
    layer_start_ps_ = now_ps();
    const std::int64_t ps = layer_step_->ps >= 0
                                ? layer_step_->ps
                                : ps_of_cycles(models_[b.model].table.entry(layer_batch_, fbe_.layer()).cycles);
    layer_end_ps_ = traces::checked_add(layer_start_ps_, ps).value_or(max_time_ps);
    return ps;
  }

  // The policy's horizon for the batch that its decision left running (one boundary when it
  // declares none, or skipping is off), asked with `current`, or a view built now if null.
  // Also asks its ArrivalWakeFilter and ArrivalCountWake, if it has them, which arrivals wake
  // that horizon and how many of them it takes.
  scheduler::Horizon ask_horizon(const scheduler::SchedulerView* current) {
    if (!horizon_policy_) return {running_->next_layer + 1, true, true};
    const scheduler::SchedulerView& asked = current ? *current : view(trigger_);
    scheduler::Horizon horizon;
    ask_policy("horizon", [&] { horizon = horizon_policy_->horizon(asked); });
    if (horizon.wake_on_arrival && arrival_filter_)
      ask_policy("wakes_on_arrivals_due_before_ns",
                 [&] { wake_due_before_ns_ = arrival_filter_->wakes_on_arrivals_due_before_ns(asked); });
    if (horizon.wake_on_arrival && arrival_count_) {
      ask_policy("arrivals_that_wake", [&] { arrivals_until_wake_ = arrival_count_->arrivals_that_wake(asked); });
      if (arrivals_until_wake_ == 0) refuse("arrivals_that_wake answered 0: allowed 1 or more");
    }
    return horizon;
  }

  // The arrival time of the sample still to come that wakes the horizon (the
  // arrivals_until_wake_-th of those due before wake_due_before_ns_), if it comes by `by_ps`;
  // -1 if none does. Draws samples ahead as far as that takes, which changes no draw, but at
  // most max_drawn_ahead of them: past that, the last one drawn is taken to wake it (waking
  // early only asks the policy once more).
  std::int64_t waking_arrival_by(std::int64_t by_ps) {
    std::uint32_t still = arrivals_until_wake_;
    for (std::size_t i = 0;; ++i) {
      if (i == upcoming_.size() && !draw_arrival()) return -1;
      const traces::Sample& s = upcoming_[i];
      const std::int64_t ps = ps_of_arrival(s.arrival_ns);
      if (ps > by_ps) return -1;
      if (i + 1 >= max_drawn_ahead) return ps;
      if ((wake_due_before_ns_ == scheduler::never_ns || deadline_ns(s) < wake_due_before_ns_) && --still == 0)
        return ps;
    }
  }

  // Starts the running batch's next layer and plans how many layers run before the policy is
  // asked again: up to the first boundary that its horizon, an exit, a merge, the batch's end
  // or an arrival stops at. Exits are known (each sample's is drawn), and so is the first
  // arrival that wakes the horizon (the sources hold the next one and draw ahead as far as
  // needed), so the stretch is planned exactly and runs as one timed step. Returns its length.
  std::int64_t start_stretch() {
    const std::int64_t first_ps = start_layer();
    stretch_settled_ = false;
    const Batch& b = *running_;
    std::uint32_t layer = b.next_layer;
    std::int64_t end_ps = layer_end_ps_;
    // A first layer that does not fit in simulated time stops the run in sleep_for.
    if (!traces::checked_add(layer_start_ps_, first_ps)) return first_ps;
    if (horizon_.until_layer > layer + 1) {
      const scheduler::ModelProfile& profile = profiles_[b.model];
      leaving_at_exit_.assign(profile.exits().size(), 0);
      for (const auto e : b.exits) ++leaving_at_exit_[e];
      auto batch = static_cast<std::uint32_t>(b.samples.size());
      // The first boundary the stretch stops at whatever happens: the end, the horizon, a merge.
      std::uint32_t stop_layer = std::min(profile.layer_count(), horizon_.until_layer);
      if (b.merges && b.merge_layer > layer) stop_layer = std::min(stop_layer, b.merge_layer);
      while (true) {
        const int exit = profile.exit_after(layer);
        const std::uint32_t left = exit >= 0 ? leaving_at_exit_[static_cast<std::size_t>(exit)] : 0;
        batch -= left;
        ++layer;
        if (batch == 0 || layer >= stop_layer || (b.merges && layer == b.merge_layer) ||
            (horizon_.wake_on_exit && left > 0) ||
            (horizon_.wake_on_arrival && (arrivals_until_wake_ == 0 || waking_arrival_by(end_ps) >= 0)))
          break;
        // Layer `layer` runs. So do the ones after it up to an exit that a sample takes or a
        // stop, unless an arrival comes first: from the running sums, without a pass over them.
        const ModelRuntime& model = models_[b.model];
        const std::uint32_t quiet_last = next_leaving_layer(b.model, layer, stop_layer - 1);
        if (model.sums_plan_stretches && quiet_last > layer) {
          const ModelRuntime::LayerSums* row = model.sums_row(batch);
          const auto elapsed = [&](std::uint32_t x) { return static_cast<std::int64_t>(row[x].ps - row[layer].ps); };
          if (traces::checked_add(end_ps, elapsed(quiet_last + 1))) {
            std::uint32_t last = quiet_last;
            // Boundary x (the end of layer x - 1) comes at end_ps + elapsed(x); the first at or
            // after an arrival that wakes the horizon stops the stretch.
            const std::int64_t waking_ps =
                horizon_.wake_on_arrival ? waking_arrival_by(end_ps + elapsed(quiet_last)) : -1;
            if (waking_ps >= 0) {
              std::uint32_t lo = layer + 1, hi = quiet_last;  // the first stopping boundary is in [lo, hi]
              while (lo < hi) {
                const std::uint32_t mid = lo + (hi - lo) / 2;
                if (end_ps + elapsed(mid) >= waking_ps)
                  hi = mid;
                else
                  lo = mid + 1;
              }
              last = lo - 1;
            }
            end_ps += elapsed(last + 1);
            layer = last;
            continue;
          }
        }
        const LayerStep& step = model.step(layer, batch);
        // A layer whose time does not fit is left to start alone, where it fails as it would.
        if (step.ps < 0) break;
        const auto end = traces::checked_add(end_ps, step.ps);
        if (!end) break;
        end_ps = *end;
      }
      --layer;
    }
    stretch_last_layer_ = layer;
    stretch_end_ps_ = end_ps;
    return end_ps - layer_start_ps_;
  }

  // Finishes the stretch's layers that ended by `until_ps`, each at its own end time, starting
  // the next one at the same instant; the boundaries in between are decisions the horizon
  // covered. Called by the NPU when the stretch ends and by the sources before an arrival.
  void settle_stretch(std::int64_t until_ps) {
    while (step_ == Step::layer_done && !stretch_settled_ && layer_end_ps_ <= until_ps) {
      if (observers_.empty()) {
        settle_quiet_layers(until_ps);
        if (layer_end_ps_ > until_ps) break;
      }
      settling_ps_ = layer_end_ps_;
      const bool last = running_->next_layer == stretch_last_layer_;
      const std::int64_t restore_ps = finish_layer();
      if (last) {
        if (layer_end_ps_ != stretch_end_ps_)
          throw SimulationError(fmt::format("a stretch planned to end at {} ps ended at {} ps", stretch_end_ps_,
                                            layer_end_ps_));
        stretch_restore_ps_ = restore_ps;
        stretch_settled_ = true;
      } else {
        if (!running_ || restore_ps != 0)
          throw SimulationError(fmt::format("a stretch planned past layer {} ended there", stretch_last_layer_));
        ++stats_.decisions;
        start_layer();
      }
      settling_ps_ = -1;
    }
  }

  // The first layer from `layer` to `limit` after which a sample of the stretch's batch leaves,
  // or `limit`. An exit that nobody takes changes nothing: its layer is as quiet as any other.
  std::uint32_t next_leaving_layer(std::uint32_t model, std::uint32_t layer, std::uint32_t limit) const {
    const ModelRuntime& runtime = models_[model];
    const scheduler::ModelProfile& profile = profiles_[model];
    std::uint32_t next = runtime.next_exit_layer[layer];
    while (next < limit && leaving_at_exit_[static_cast<std::size_t>(profile.exit_after(next))] == 0)
      next = runtime.next_exit_layer[next + 1];
    return std::min(next, limit);
  }

  // Layers inside a stretch that no sample leaves after and no merge or end follows, with nobody
  // observing them: only their sums are reported, so those that ended by `until_ps` are settled
  // at once from the model's running sums, in O(log layers) plus a step per exit nobody takes
  // (the FBE steps over them together; the engine checks its registers after). Planning checked
  // their times fit.
  void settle_quiet_layers(std::int64_t until_ps) {
    Batch& b = *running_;
    const ModelRuntime& model = models_[b.model];
    const std::uint32_t from = b.next_layer;
    const std::uint32_t quiet_end = next_leaving_layer(b.model, from, stretch_last_layer_);
    if (from >= quiet_end || layer_end_ps_ > until_ps) return;
    const ModelRuntime::LayerSums* row = model.sums_row(layer_batch_);
    // Layer x of the stretch ends at layer_start_ps_ + elapsed(x + 1).
    const auto elapsed = [&](std::uint32_t x) { return static_cast<std::int64_t>(row[x].ps - row[from].ps); };
    std::uint32_t to = quiet_end;  // settles [from, to): the first quiet layer still running, or quiet_end
    if (layer_start_ps_ + elapsed(quiet_end) > until_ps) {
      std::uint32_t lo = from + 1;  // layer `from` ended by until_ps: checked above
      while (lo < to) {
        const std::uint32_t mid = lo + (to - lo) / 2;
        if (layer_start_ps_ + elapsed(mid + 1) <= until_ps)
          lo = mid + 1;
        else
          to = mid;
      }
    }
    const std::uint32_t settled = to - from;
    count_layers(b, from, to, elapsed(to));
    b.next_layer = to;
    fbe_.layers_done(settled);
    stats_.decisions += settled;
    layer_step_ = &model.step(to, layer_batch_);
    layer_start_ps_ += elapsed(to);
    layer_end_ps_ = layer_start_ps_ + layer_step_->ps;
    trigger_ = Trigger::layer_boundary;
    settling_ps_ = layer_start_ps_;
    check_fbe();
    settling_ps_ = -1;
  }

  // What the layers [from, to) of the running batch, which ran for `busy_ps` at B_act
  // layer_batch_, add to the run's sums, whichever path settles them: their time, MACs and
  // energy, the energy shared evenly by the samples that ran them.
  void count_layers(const Batch& b, std::uint32_t from, std::uint32_t to, std::int64_t busy_ps) {
    if (b.samples.size() != layer_batch_)
      throw SimulationError(fmt::format("a batch of {} samples ran layers {} to {} at B_act {}", b.samples.size(), from,
                                        to, layer_batch_));
    const ModelRuntime::LayerSums* row = models_[b.model].sums_row(layer_batch_);
    stats_.layers_run += to - from;
    stats_.layer_busy_ps += busy_ps;
    stats_.macs += row[to].macs - row[from].macs;
    dynamic_energy_ += row[to].energy - row[from].energy;
    charge_samples(b.samples, row[to].share_per_sample - row[from].share_per_sample);
  }

  // The layer has run: exits leave, the FBE advances, a catch-up merges or a batch resumes.
  // Sets the trigger of the next decision and returns the context-restore time, if any.
  std::int64_t finish_layer() {
    Batch& b = *running_;
    const std::uint32_t layer = b.next_layer;
    const std::int64_t start = layer_start_ps_;
    const std::int64_t duration = now_ps() - start;
    count_layers(b, layer, layer + 1, duration);
    if (!observers_.empty()) {
      const auto& cost = models_[b.model].table.entry(layer_batch_, layer);
      for (auto* o : observers_)
        o->on_layer({start, start + duration, b.model, layer, cost.mapping, cost.cycles, b.samples,
                     layer_step_->energy.total_pj()});
    }
    ++b.next_layer;

    bool someone_left = false;
    const int exit = profiles_[b.model].exit_after(layer);
    if (exit >= 0) {
      const auto e = static_cast<std::uint32_t>(exit);
      std::size_t kept = 0;
      for (std::size_t i = 0; i < b.samples.size(); ++i) {
        if (b.exits[i] == e) {
          complete(b.samples[i], e);
          someone_left = true;
          continue;
        }
        b.samples[kept] = b.samples[i];
        b.exits[kept] = b.exits[i];
        ++kept;
      }
      fbe_.early_exit(static_cast<std::uint32_t>(b.samples.size() - kept));
      b.samples.resize(kept);
      b.exits.resize(kept);
    }
    fbe_.layer_done();
    if (b.next_layer == profiles_[b.model].layer_count() && !b.samples.empty())
      throw SimulationError(fmt::format("{} samples passed the final exit of {}", b.samples.size(),
                                        profiles_[b.model].name()));
    std::int64_t restore_ps = 0;
    if (b.samples.empty()) {
      spare_batches_.push_back(std::move(*running_));
      running_.reset();
      if (!suspended_.empty()) {
        fbe_.resume();
        restore_ps = restore_top(false);
      }
      check_fbe();
      trigger_ = Trigger::batch_completed;
      return restore_ps;
    }
    if (b.merges && b.next_layer == b.merge_layer) restore_ps = restore_top(true);
    check_fbe();
    trigger_ = someone_left ? Trigger::early_exit : Trigger::layer_boundary;
    return restore_ps;
  }

  // The traced copies follow the state only inside the VCD window, so the file stays small.
  bool tracing() const {
    return trace_window_.second > 0 && now_ps() >= trace_window_.first && now_ps() < trace_window_.second;
  }

  void queue_changed() {
    if (tracing()) traced_.queue_length = static_cast<unsigned>(queue_.size());
    for (auto* o : observers_) o->on_queue_length(now_ps(), queue_.size());
  }

  void check_fbe() {
    if (tracing()) {
      traced_.b_act = fbe_.active_batch();
      traced_.l = fbe_.layer();
      traced_.b_old = fbe_.suspended_batch();
      traced_.l_old = fbe_.suspended_layer();
      traced_.suspended = static_cast<unsigned>(fbe_.suspended_count());
    }
    const std::uint32_t batch = running_ ? static_cast<std::uint32_t>(running_->samples.size()) : 0;
    if (fbe_.active_batch() != batch || fbe_.suspended_count() != suspended_.size() ||
        (running_ && fbe_.layer() != running_->next_layer))
      throw SimulationError(fmt::format("FBE registers (B_act {}, l {}, {} suspended) disagree with the NPU's batch "
                                        "({} samples at layer {}, {} suspended)",
                                        fbe_.active_batch(), fbe_.layer(), fbe_.suspended_count(), batch,
                                        running_ ? running_->next_layer : 0, suspended_.size()));
  }

  void complete(const SampleInfo& sample, std::uint32_t exit) {
    const std::int64_t now = now_ps();
    const double latency_ns = static_cast<double>(now - ps_of_arrival(sample.arrival_ns)) / 1000.0;
    metrics_.completed(sample.device, latency_ns, static_cast<double>(sample.deadline_ns - sample.arrival_ns),
                       static_cast<double>(now) / 1000.0);
    ++exit_counts_[sample.model][exit];
    if (oracle_) drawn_exits_.erase(sample.id);
    stats_.end_ps = now;
    for (auto* o : observers_) o->on_complete(now, sample, exit);
  }

  const Scenario& scenario_;
  const npu::Npu& npu_;
  std::vector<ModelRuntime>& models_;
  std::vector<scheduler::ModelProfile>& profiles_;
  scheduler::Policy& policy_;
  std::string policy_origin_;  // " (plugin FILE)", or empty for a built-in policy
  std::span<ServingObserver* const> observers_;
  traces::ArrivalStream stream_;
  MetricsCollector metrics_;
  ServingStats stats_;
  double ps_per_cycle_;
  std::uint64_t context_capacity_bytes_;
  std::uint64_t on_chip_context_bytes_ = 0;
  std::vector<std::string> model_index_;
  std::vector<std::uint32_t> device_model_;
  std::vector<double> slo_ns_;
  std::vector<std::int64_t> slo_whole_ns_;  // slo_ns_ rounded: what a deadline adds to an arrival
  std::vector<std::vector<std::uint64_t>> exit_counts_;
  // Dynamic energy, counted exactly until the result reports it in picojoules.
  EnergyCount dynamic_energy_;
  std::vector<Zeptojoules> device_dynamic_energy_;

  std::exception_ptr failure_;
  // The NPU's state machine (advance).
  enum class Step { decide, after_idle, start_layer, layer_done };
  Step step_ = Step::decide;
  Trigger trigger_ = Trigger::arrival;
  std::int64_t wake_ps_ = 0;
  std::uint64_t idle_decisions_while_waiting_ = 0;
  std::int64_t layer_start_ps_ = 0, layer_end_ps_ = 0;
  const LayerStep* layer_step_ = nullptr;
  std::uint32_t layer_batch_ = 0;  // B_act when the layer started
  // Decision skipping: the horizon of the last decision, the stretch of layers it lets run as
  // one timed step, and whether a sample that wakes that horizon arrived since (an arrival
  // during a context save counts).
  const scheduler::DecisionHorizon* horizon_policy_ = nullptr;  // null: asked at every boundary
  const scheduler::ArrivalWakeFilter* arrival_filter_ = nullptr;  // null: every arrival wakes
  const scheduler::ArrivalCountWake* arrival_count_ = nullptr;    // null: the first arrival wakes
  bool observes_arrivals_ = true;  // false: observe_arrival is never called
  // Whether an admission must see the NPU as it was at that instant: there is an observer, the
  // policy observes arrivals, or decisions are not skipped (the reference order).
  bool admission_sees_the_npu_ = true;
  scheduler::Horizon horizon_;
  std::int64_t wake_due_before_ns_ = scheduler::never_ns;  // only arrivals due earlier wake horizon_
  // ... how many of those are still to arrive since the decision, the last waking it (0: it has)
  std::uint32_t arrivals_until_wake_ = 1;
  std::uint32_t stretch_last_layer_ = 0;
  std::int64_t stretch_end_ps_ = 0;
  bool stretch_settled_ = true;
  std::int64_t stretch_restore_ps_ = 0;
  std::int64_t settling_ps_ = -1;  // a boundary being caught up with, or -1
  // The kernel's time, read once as each process starts (it does not move while one runs). It
  // lags event_ps_ after a wait the NPU went through on its own, so nothing may read the
  // kernel's time for the NPU's: that is why a VCD trace, which samples at kernel time, turns
  // lazy arrivals off.
  std::int64_t kernel_ps_ = 0;
  // The time of what is being done: the kernel's, that of an arrival the NPU admits late, or
  // that of the end of a wait the NPU went through without the kernel.
  std::int64_t event_ps_ = 0;
  // Per exit of the running model: how many samples of the stretch's batch leave there (set when
  // a stretch of more than one layer is planned).
  std::vector<std::uint32_t> leaving_at_exit_;
  // Drawn but not yet admitted, in arrival order: the next arrival, and any the oracle drew
  // ahead.
  std::deque<traces::Sample> upcoming_;
  bool arrivals_ended_ = false;
  std::optional<EngineOracle> oracle_;  // only for an analysis-only policy
  // The drawn exit of every sample drawn and not yet completed or dropped, kept only when there
  // is an oracle to ask.
  std::unordered_map<std::uint64_t, std::uint32_t> drawn_exits_;
  Traced traced_;
  std::pair<std::int64_t, std::int64_t> trace_window_{0, -1};
  std::uint64_t emitted_ = 0;
  std::int64_t pending_arrival_ps_ = -1;
  bool sources_done_ = false;
  sc_core::sc_event arrival_event_;
  bool npu_waits_for_arrival_ = false;  // npu_core's next_trigger includes arrival_event_
  // Lazy arrivals: an arrival is not a kernel event of its own. The NPU admits the arrivals due
  // whenever it wakes, and when it waits for one it sleeps until the next. Only with decision
  // skipping, whose stretches already end where an arrival would wake the policy; without it
  // (or with a VCD trace, which samples the FIFO at kernel time) the sources admit every
  // arrival at its instant, as they always did.
  bool lazy_arrivals_ = false;
  bool npu_admits_arrivals_ = false;  // the sources have handed the arrivals over
  bool queued_while_npu_slept_ = false;  // whether a sample entered the FIFO while the NPU waited
  RunningOverheads running_overheads_{*this};

  // The FBE's registers, driven as the hardware would be; the engine checks after every step
  // that they describe the batch it runs.
  npu::FbeRegisters fbe_;
  WaitingQueue queue_;
  std::vector<std::uint32_t> sorted_positions_;  // take_from_queue's, kept to reuse its memory
  std::vector<std::uint32_t> spare_positions_;   // the view's spare_positions
  std::optional<Batch> running_;
  std::vector<Batch> suspended_;
  // Batches that ended, kept so that starting a batch allocates nothing once the run is warm.
  std::vector<Batch> spare_batches_;
  scheduler::SchedulerView view_;
  scheduler::BatchInfo running_info_;
  std::vector<scheduler::BatchInfo> suspended_info_;
};

}  // namespace

ServingResult run_serving(const Scenario& scenario, const scheduler::PolicyRegistry& registry,
                          std::span<ServingObserver* const> observers, const VcdTrace& vcd_trace,
                          const EngineOptions& engine) {
  const auto* info = registry.find(scenario.scheduler.policy);
  if (!info) throw scheduler::PolicyError(fmt::format("policy {} is not registered", scenario.scheduler.policy));
  std::vector<ModelRuntime> models;
  std::vector<scheduler::ModelProfile> profiles;
  models.reserve(scenario.models.size());
  std::optional<TableCache> tables;
  if (!engine.table_cache.empty()) tables.emplace(engine.table_cache, engine.memo);
  for (const auto& [name, network] : scenario.models)
    models.push_back(build_runtime(scenario.npu, name, network, scenario.scheduler.max_batch,
                                   believed_exit_probabilities(scenario, name, network), profiles, scenario.source,
                                   tables ? &*tables : nullptr));
  // The policy dies before the registry that may hold its plugin.
  std::unique_ptr<scheduler::Policy> policy;
  const std::string origin = info->origin == "built-in" ? "" : fmt::format(" (plugin {})", info->origin);
  try {
    policy = info->create(scenario.scheduler.parameters);
  } catch (const scheduler::PolicyError& e) {
    throw scheduler::PolicyError(fmt::format("policy {}{}: {}", info->name, origin, e.what()));
  } catch (const std::exception& e) {
    throw scheduler::PolicyError(fmt::format("policy {}{}: its construction threw: {}", info->name, origin, e.what()));
  } catch (...) {
    throw scheduler::PolicyError(
        fmt::format("policy {}{}: its construction threw an exception that is not a std::exception", info->name, origin));
  }
  if (!policy) throw scheduler::PolicyError(fmt::format("policy {}{}: its factory returned no policy", info->name, origin));
  npu::ScopedSystemCContext context;
  ServingSystem system("serving", scenario, models, profiles, *policy, *info, observers,
                       engine.skip_decisions && vcd_trace.file.empty());
  sc_core::sc_trace_file* vcd = nullptr;
  if (!vcd_trace.file.empty()) {
    // SystemC appends ".vcd" to the name it is given.
    auto stem = vcd_trace.file;
    if (stem.extension() == ".vcd") stem.replace_extension();
    vcd = sc_core::sc_create_vcd_trace_file(stem.string().c_str());
    vcd->set_time_unit(1, sc_core::SC_NS);
    system.trace(vcd, vcd_trace.start_ps, vcd_trace.end_ps);
  }
  sc_core::sc_start();
  if (vcd) sc_core::sc_close_vcd_trace_file(vcd);
  if (system.failure()) std::rethrow_exception(system.failure());
  system.check_balance();
  ServingResult result = system.result();
  if (result.metrics.overall().arrived == 0)
    throw ConfigError(fmt::format(
        "{}: no sample arrived, so there is nothing to report: {}", scenario.source,
        scenario.simulation.samples > 0
            ? std::string("every device's arrival process ended before its first arrival (a replayed trace with "
                          "no rows for these devices?)")
            : fmt::format("no arrival process produced an arrival within simulation.duration_s = {} s (rates too "
                          "low for the duration, or a replayed trace with no rows for these devices)",
                          scenario.simulation.duration_s)));
  return result;
}

}  // namespace npusim::sim
