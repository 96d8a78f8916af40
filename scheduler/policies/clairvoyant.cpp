// clairvoyant: an analysis bound, not a scheduler anyone could deploy. It makes exit_aware's
// choices (what to start, how many queued samples to catch up and merge, whether a batch of
// another network runs first) but prices every plan with the exits the samples will really
// take, read from the engine's oracle, instead of survival-weighted expectations. It also sees
// the arrivals within a horizon, and may leave the NPU idle for an imminent arrival that makes
// a better batch. A
// clairvoyant heuristic and an upper reference for exit-awareness, not a proven optimum
// (docs/policies.md, "clairvoyant").
#include <algorithm>
#include <cmath>
#include <optional>

#include "scheduler/policies/builtin.hpp"
#include "scheduler/policies/catch_up_policy.hpp"

namespace npusim::scheduler::policies {
namespace {

// A batch run with its samples' true exits: each leaves after its exit's decision layer, so the
// batch at every layer is exactly the samples still in it.
struct ExactRun {
  double cycles = 0.0;                // until the batch reaches the end layer or empties
  std::vector<double> finish_cycles;  // per sample, in the order given, from the run's start
  std::vector<double> layer_end_cycles;  // by layer: when it finished, from the run's start
};

// Runs layers [from, to) of `model` for samples leaving after the layers `leave_after` (each at
// least `from`). A sample still in the batch at `to` finishes with the run. The batch must fit
// the model's table (at most max_batch samples).
ExactRun run_exactly(const ModelProfile& model, std::span<const std::uint32_t> leave_after, std::uint32_t from,
                     std::uint32_t to) {
  if (leave_after.size() > model.max_batch())
    throw PolicyError("clairvoyant priced a batch larger than the control-block table holds");
  std::vector<std::uint32_t> leaving(model.layer_count(), 0);
  for (const auto layer : leave_after) ++leaving[layer];
  ExactRun run;
  run.layer_end_cycles.assign(model.layer_count(), 0.0);
  auto batch = static_cast<std::uint32_t>(leave_after.size());
  for (std::uint32_t m = from; m < to && batch > 0; ++m) {
    run.cycles += static_cast<double>(model.cycles(m, batch));
    run.layer_end_cycles[m] = run.cycles;
    batch -= leaving[m];
  }
  for (const auto layer : leave_after) run.finish_cycles.push_back(layer < to ? run.layer_end_cycles[layer] : run.cycles);
  return run;
}

// The cheapest way to drain a network's queued samples back to back, priced with their true
// exits: DrainPlan's recursion over these very samples, oldest first. Beyond the first
// `exact_limit` samples the rest drain as the expected DrainPlan says, after the exact part.
// Samples priced exactly beyond the first batch in drain_exactly: enough for the batches that
// decide the first one, few enough that a long queue costs a bounded time per decision.
constexpr std::size_t exact_drain_samples = 32;

struct ExactDrain {
  std::vector<double> total_cycles;         // [k]: samples k.. drained from now, total latency
  std::vector<std::uint32_t> first_batch;   // [k]: the plan's first batch from sample k
};

// `leave_after` holds the oldest of the `waiting` samples, at least min(waiting, exact_limit).
ExactDrain drain_exactly(const ModelProfile& model, const std::vector<std::uint32_t>& leave_after, std::size_t waiting,
                         std::uint32_t max_batch, DrainPlan& expected, std::size_t exact_limit) {
  const std::size_t n = waiting;
  const std::size_t exact = std::min(n, exact_limit);
  ExactDrain d;
  d.total_cycles.assign(exact + 1, 0.0);
  d.first_batch.assign(exact + 1, 0);
  d.total_cycles[exact] = expected.total_cycles(static_cast<std::uint32_t>(n - exact));
  for (std::size_t k = exact; k-- > 0;) {
    double best = 0.0;
    for (std::size_t b = 1; b <= std::min<std::size_t>(max_batch, exact - k); ++b) {
      const ExactRun run = run_exactly(model, std::span(leave_after.data() + k, b), 0, model.layer_count());
      double v = static_cast<double>(n - k - b) * run.cycles + d.total_cycles[k + b];
      for (const double f : run.finish_cycles) v += f;
      if (d.first_batch[k] == 0 || v <= best) {
        best = v;
        d.first_batch[k] = static_cast<std::uint32_t>(b);
      }
    }
    d.total_cycles[k] = best;
  }
  return d;
}

// A sample the oracle foresees, relative to the decision: cycles until it arrives.
struct Foreseen {
  double arrives_in_cycles = 0.0;
  std::uint32_t leave_after = 0;
};

// The price of a plan: the total latency it gives the samples it involves, counted from now
// (cycles), and when each sample it guards finishes (cycles from now).
struct PlanPrice {
  double total_cycles = 0.0;
  std::vector<double> guarded_finish_cycles;
};

class Clairvoyant final : public CatchUpPolicy, public ArrivalObservation {
 public:
  bool observes_arrivals(const SchedulerView&) const override { return false; }
  explicit Clairvoyant(const ParameterValues& p)
      : CatchUpPolicy(p.real("slack_ms")),
        slack_ns_(p.real("slack_ms") * 1e6),
        horizon_ns_(std::llround(p.real("horizon_ms") * 1e6)),
        guard_deadlines_(p.boolean("guard_deadlines")),
        cross_model_(p.boolean("cross_model")),
        patience_(p.real("preempt_patience")) {}

  Decision decide(const SchedulerView& view) override {
    if (!view.oracle)
      throw PolicyError("clairvoyant needs the engine's oracle, which only a policy compiled in as analysis only receives");
    if (!view.running) return start_or_wait(view);
    Decision merge = CatchUpPolicy::decide(view);
    if (merge.kind != Decision::Kind::run || !cross_model_) return merge;
    return preempt_for_other_model(view);
  }

 protected:
  // exit_aware's catch-up choice, priced exactly (docs/policies.md, "clairvoyant").
  std::uint32_t choose(const SchedulerView& view, std::uint32_t room, std::uint32_t waiting) override {
    const BatchInfo& running = *view.running;
    const auto in_flight = leave_layers(view, running.samples);
    // Only the samples priced exactly are listed; the rest count (O(d log queue), not O(queue)).
    const std::size_t exact_limit = std::size_t{room} + exact_drain_samples;
    const auto queued = leave_layers(view, view.queued_of_model(running.model, exact_limit));
    const ModelProfile& model = view.models[running.model];
    const ExactDrain drain =
        drain_exactly(model, queued, waiting, view.max_batch, drain_plans_.of(view, running.model), exact_limit);
    const PlanPrice alone = price_catch_up(view, 0, in_flight, queued, waiting, drain);
    std::uint32_t best = 0;
    double best_total = alone.total_cycles;
    for (const std::uint32_t j : catch_up_candidates(room)) {
      if (j == 0) continue;
      const PlanPrice plan = price_catch_up(view, j, in_flight, queued, waiting, drain);
      // Ties go to the larger catch-up, as in exit_aware.
      if (plan.total_cycles <= best_total && keeps_deadlines(view, running.samples, alone, plan)) {
        best = j;
        best_total = plan.total_cycles;
      }
    }
    return best;
  }

 private:
  std::uint32_t leave_after(const SchedulerView& view, const SampleInfo& sample) const {
    return view.models[sample.model].exits()[view.oracle->drawn_exit(sample.id)].decision_layer;
  }
  std::vector<std::uint32_t> leave_layers(const SchedulerView& view, std::span<const SampleInfo> samples) const {
    std::vector<std::uint32_t> out;
    for (const auto& s : samples) out.push_back(leave_after(view, s));
    return out;
  }
  std::vector<std::uint32_t> leave_layers(const SchedulerView& view, const std::vector<std::uint32_t>& positions) const {
    std::vector<std::uint32_t> out;
    for (const auto p : positions) out.push_back(leave_after(view, view.queue[p]));
    return out;
  }

  // The samples of `model` that arrive within the horizon, in arrival order.
  std::vector<Foreseen> foreseen_of_model(const SchedulerView& view, std::uint32_t model) const {
    std::vector<Foreseen> out;
    if (horizon_ns_ <= 0) return out;
    for (const auto& f : view.oracle->arrivals_within(horizon_ns_))
      if (f.sample.model == model)
        out.push_back({static_cast<double>(f.sample.arrival_ns - view.now_ns) / view.ns_per_cycle,
                       view.models[model].exits()[f.exit].decision_layer});
    return out;
  }

  // Every guarded sample that meets its deadline under `baseline` must still meet it, less the
  // slack, under `plan`: a sample already late cannot be saved by refusing the plan.
  bool keeps_deadlines(const SchedulerView& view, std::span<const SampleInfo> guarded, const PlanPrice& baseline,
                       const PlanPrice& plan) const {
    if (!guard_deadlines_) return true;
    const auto now = static_cast<double>(view.now_ns);
    for (std::size_t i = 0; i < guarded.size(); ++i) {
      const auto deadline = static_cast<double>(guarded[i].deadline_ns);
      const bool meets_alone = now + view.ns_per_cycle * baseline.guarded_finish_cycles[i] <= deadline;
      if (meets_alone && now + view.ns_per_cycle * plan.guarded_finish_cycles[i] > deadline - slack_ns_) return false;
    }
    return true;
  }

  // Catch up the `take` oldest queued samples of the running network and merge (take = 0: keep
  // running). The in-flight and caught-up samples finish as the exact runs say; the queued
  // samples left wait for the merged batch to end, then drain as exit_aware prices it, with
  // their true exits (drain_exactly). Arrivals to come are left out:
  // charging them the wait for the merged batch, as if none could merge, made it merge too
  // little (docs/policies.md).
  // `queued` holds the oldest of the `waiting` queued samples, at least `take` of them.
  PlanPrice price_catch_up(const SchedulerView& view, std::uint32_t take, const std::vector<std::uint32_t>& in_flight,
                           const std::vector<std::uint32_t>& queued, std::uint32_t waiting,
                           const ExactDrain& drain) const {
    const BatchInfo& running = *view.running;
    const ModelProfile& model = view.models[running.model];
    const std::uint32_t layer = running.next_layer;
    const double overhead = take > 0 ? static_cast<double>(view.preemption_overhead_cycles) : 0.0;
    const double save = overhead / 2.0;  // the save precedes the catch-up, the restore follows it
    const std::span<const std::uint32_t> caught(queued.data(), take);
    const ExactRun catch_up = run_exactly(model, caught, 0, layer);
    const double delay = take > 0 ? catch_up.cycles + overhead : 0.0;
    PlanPrice price;
    std::vector<std::uint32_t> merged = in_flight;
    for (std::uint32_t i = 0; i < take; ++i) {
      if (caught[i] < layer)
        price.total_cycles += save + catch_up.finish_cycles[i];
      else
        merged.push_back(caught[i]);
    }
    const ExactRun merged_run = run_exactly(model, merged, layer, model.layer_count());
    for (std::size_t i = 0; i < merged.size(); ++i) {
      price.total_cycles += delay + merged_run.finish_cycles[i];
      if (i < in_flight.size()) price.guarded_finish_cycles.push_back(delay + merged_run.finish_cycles[i]);
    }
    const double batch_end = delay + merged_run.cycles;
    price.total_cycles += static_cast<double>(waiting - take) * batch_end + drain.total_cycles[take];
    return price;
  }

  // The batch a network would start now: its oldest waiting samples, as many as the first batch
  // of its exact drain (exit_aware's choice, priced exactly), and the exact cycles until all of
  // them are done.
  struct Group {
    std::uint32_t model = 0;
    std::vector<std::uint32_t> positions;
    double batch_cycles = 0.0;
    double size() const { return static_cast<double>(positions.size()); }
  };

  // In the order of each network's oldest waiting sample, as a pass over the queue meets them.
  std::vector<Group> waiting_groups(const SchedulerView& view) {
    std::vector<Group> groups;
    for (std::uint32_t m = 0; m < view.models.size(); ++m) {
      const std::uint32_t waiting = view.waiting_of_model(m);
      if (waiting == 0) continue;
      const ModelProfile& model = view.models[m];
      const std::size_t exact_limit = std::size_t{view.max_batch} + exact_drain_samples;
      auto queued = view.queued_of_model(m, exact_limit);
      const ExactDrain drain = drain_exactly(model, leave_layers(view, queued), waiting, view.max_batch,
                                             drain_plans_.of(view, m), exact_limit);
      queued.resize(drain.first_batch[0]);
      Group g{m, std::move(queued), 0.0};
      g.batch_cycles = run_exactly(model, leave_layers(view, g.positions), 0, model.layer_count()).cycles;
      groups.push_back(std::move(g));
    }
    // A group keeps its network's oldest sample first (its first batch holds at least one).
    std::sort(groups.begin(), groups.end(),
              [](const Group& a, const Group& b) { return a.positions.front() < b.positions.front(); });
    return groups;
  }

  // exit_aware's c-mu start (the group completing most samples per cycle, ties to the oldest
  // sample's network), with exact batch times; then, if waiting for foreseen arrivals of that
  // network lowers the total latency, idle until the last of them that pays.
  Decision start_or_wait(const SchedulerView& view) {
    if (view.queue.empty()) return Decision::idle();
    const auto groups = waiting_groups(view);
    const Group* best = &groups.front();
    for (const auto& g : groups)
      if (g.size() * best->batch_cycles > best->size() * g.batch_cycles) best = &g;
    if (const auto wake_ns = worth_waiting_until(view, *best)) return Decision::idle(*wake_ns);
    return Decision::start(positions_in_spare(view, best->positions));
  }

  // The group starts now, or once the first w foreseen arrivals of its network (w = 1..k, as
  // many as fit the batch) have come. The arrivals not waited for join by a catch-up at the
  // first layer boundary after the last of them, priced with no context overhead (which
  // flatters starting now), or, when no preemption is possible, run after the batch. The
  // cheapest plan wins, ties to starting sooner; a wait may not make a waiting sample that meets
  // its deadline when started now miss it.
  std::optional<std::int64_t> worth_waiting_until(const SchedulerView& view, const Group& group) const {
    if (group.positions.size() >= view.max_batch) return std::nullopt;
    const auto members = leave_layers(view, group.positions);
    const double first_layer_cycles = static_cast<double>(view.models[group.model].cycles(0, static_cast<std::uint32_t>(members.size())));
    auto foreseen = foreseen_of_model(view, group.model);
    std::erase_if(foreseen, [&](const Foreseen& f) { return f.arrives_in_cycles >= first_layer_cycles; });
    if (foreseen.size() > view.max_batch - group.positions.size())
      foreseen.resize(view.max_batch - group.positions.size());
    if (foreseen.empty()) return std::nullopt;
    std::vector<SampleInfo> guarded;
    for (const auto p : group.positions) guarded.push_back(view.queue[p]);
    const PlanPrice now_plan = price_start(view, group.model, members, foreseen, 0);
    std::size_t best_wait = 0;
    double best_total = now_plan.total_cycles;
    for (std::size_t w = 1; w <= foreseen.size(); ++w) {
      const PlanPrice plan = price_start(view, group.model, members, foreseen, w);
      if (plan.total_cycles < best_total && keeps_deadlines(view, guarded, now_plan, plan)) {
        best_wait = w;
        best_total = plan.total_cycles;
      }
    }
    if (best_wait == 0) return std::nullopt;
    const auto arrives_in_ns = static_cast<std::int64_t>(std::ceil(foreseen[best_wait - 1].arrives_in_cycles * view.ns_per_cycle));
    return view.now_ns + std::max<std::int64_t>(1, arrives_in_ns);
  }

  // The waiting `members` start together with the first `wait_for` foreseen samples when the
  // last of those arrives; the rest of `foreseen` join later (see worth_waiting_until).
  PlanPrice price_start(const SchedulerView& view, std::uint32_t model_index, const std::vector<std::uint32_t>& members,
                        const std::vector<Foreseen>& foreseen, std::size_t wait_for) const {
    const ModelProfile& model = view.models[model_index];
    const std::uint32_t layers = model.layer_count();
    const double start = wait_for == 0 ? 0.0 : foreseen[wait_for - 1].arrives_in_cycles;
    // Who is in the first batch, and when each of them arrives (0: already waiting).
    std::vector<std::uint32_t> batch = members;
    std::vector<double> arrives(members.size(), 0.0);
    for (std::size_t i = 0; i < wait_for; ++i) {
      batch.push_back(foreseen[i].leave_after);
      arrives.push_back(foreseen[i].arrives_in_cycles);
    }
    std::vector<std::uint32_t> later;
    std::vector<double> later_arrives;
    for (std::size_t i = wait_for; i < foreseen.size(); ++i) {
      later.push_back(foreseen[i].leave_after);
      later_arrives.push_back(foreseen[i].arrives_in_cycles);
    }
    std::vector<double> batch_finish(batch.size()), later_finish(later.size());
    const ExactRun whole = run_exactly(model, batch, 0, layers);
    const std::uint32_t merge_layer = later.empty() ? layers : merge_boundary(view, batch, whole, start, later_arrives.back());
    if (merge_layer < layers) {
      const ExactRun head = run_exactly(model, batch, 0, merge_layer);
      const ExactRun catch_up = run_exactly(model, later, 0, merge_layer);
      const double merge_at = start + head.cycles + catch_up.cycles;
      std::vector<std::uint32_t> merged;
      for (const auto layer : batch)
        if (layer >= merge_layer) merged.push_back(layer);
      for (const auto layer : later)
        if (layer >= merge_layer) merged.push_back(layer);
      const ExactRun tail = run_exactly(model, merged, merge_layer, layers);
      std::size_t next = 0;
      for (std::size_t i = 0; i < batch.size(); ++i)
        batch_finish[i] = batch[i] < merge_layer ? start + head.finish_cycles[i] : merge_at + tail.finish_cycles[next++];
      for (std::size_t i = 0; i < later.size(); ++i)
        later_finish[i] = later[i] < merge_layer ? start + head.cycles + catch_up.finish_cycles[i]
                                                 : merge_at + tail.finish_cycles[next++];
    } else {
      for (std::size_t i = 0; i < batch.size(); ++i) batch_finish[i] = start + whole.finish_cycles[i];
      if (!later.empty()) {
        const double after = std::max(start + whole.cycles, later_arrives.back());
        const ExactRun next_batch = run_exactly(model, later, 0, layers);
        for (std::size_t i = 0; i < later.size(); ++i) later_finish[i] = after + next_batch.finish_cycles[i];
      }
    }
    PlanPrice price;
    for (std::size_t i = 0; i < batch.size(); ++i) price.total_cycles += batch_finish[i] - arrives[i];
    for (std::size_t i = 0; i < later.size(); ++i) price.total_cycles += later_finish[i] - later_arrives[i];
    price.guarded_finish_cycles.assign(batch_finish.begin(), batch_finish.begin() + static_cast<std::ptrdiff_t>(members.size()));
    return price;
  }

  // The first layer boundary (before layer 1..layers-1) that the batch started at `start`
  // reaches once `arrival` has come, with samples still in it: where a catch-up could merge.
  // `layers` when there is none, or when no preemption is possible.
  static std::uint32_t merge_boundary(const SchedulerView& view, const std::vector<std::uint32_t>& batch,
                                      const ExactRun& whole, double start, double arrival) {
    const auto layers = static_cast<std::uint32_t>(whole.layer_end_cycles.size());
    if (view.preemptions_left == 0) return layers;
    for (std::uint32_t l = 1; l < layers; ++l) {
      const bool someone_left_in = std::any_of(batch.begin(), batch.end(), [&](std::uint32_t d) { return d >= l; });
      if (!someone_left_in) return layers;
      if (start + whole.layer_end_cycles[l - 1] >= arrival) return l;
    }
    return layers;
  }

  // exit_aware's cross-network preemption with exact numbers: a group of `size` samples of
  // another network runs first when size * R - B * (D + overhead) - others * overhead > 0, R
  // the running batch's true remaining cycles and D the group's true batch time, once the
  // group's summed wait reaches preempt_patience * B * overhead.
  Decision preempt_for_other_model(const SchedulerView& view) {
    const BatchInfo& running = *view.running;
    if (view.preemptions_left == 0 || running.next_layer == 0) return Decision::keep_running();
    if (view.waiting_of_model(running.model) == view.queue.size()) return Decision::keep_running();
    const ModelProfile& model = view.models[running.model];
    const ExactRun rest = run_exactly(model, leave_layers(view, running.samples), running.next_layer, model.layer_count());
    const PlanPrice alone{0.0, rest.finish_cycles};
    const auto in_flight = static_cast<double>(running.samples.size());
    const auto overhead = static_cast<double>(view.preemption_overhead_cycles);
    const Group* best = nullptr;
    double best_gain = 0.0;
    const auto groups = waiting_groups(view);
    for (const auto& g : groups) {
      if (g.model == running.model) continue;
      const double delay = g.batch_cycles + overhead;
      const double others = static_cast<double>(view.queue.size()) - g.size();
      const double gain = g.size() * rest.cycles - in_flight * delay - others * overhead;
      if (gain <= best_gain) continue;
      double waited_cycles = 0.0;
      for (const auto i : g.positions)
        waited_cycles += static_cast<double>(view.now_ns - view.queue[i].arrival_ns) / view.ns_per_cycle;
      if (waited_cycles < patience_ * in_flight * overhead) continue;
      PlanPrice delayed{0.0, rest.finish_cycles};
      for (auto& f : delayed.guarded_finish_cycles) f += delay;
      if (!keeps_deadlines(view, running.samples, alone, delayed)) continue;
      best = &g;
      best_gain = gain;
    }
    if (!best) return Decision::keep_running();
    return Decision::preempt(positions_in_spare(view, best->positions), false);
  }

  double slack_ns_;
  std::int64_t horizon_ns_;
  bool guard_deadlines_;
  bool cross_model_;
  double patience_;
  DrainPlans drain_plans_{Prediction::exit_aware};
};

}  // namespace

PolicyInfo clairvoyant_info() {
  PolicyInfo info{"clairvoyant",
                  "exit_aware's choices priced with every sample's true exit and the arrivals within a horizon: an "
                  "upper reference for exit-awareness, not a proven optimum",
                  {ParameterSpec::real("horizon_ms", 3.0, 0.0, 1e4,
                                       "how far ahead it sees arrivals (0: exits only); it waits only for arrivals "
                                       "due before the first layer of the batch it would start ends, so more sight "
                                       "than that changes nothing"),
                   ParameterSpec::real("slack_ms", 0.0, 0.0, 1e6,
                                       "safety margin kept between a guarded sample's true completion and its deadline"),
                   ParameterSpec::boolean("guard_deadlines", true,
                                          "refuse a plan that makes an in-flight (or waiting, for an idle wait) sample "
                                          "that meets its deadline miss it"),
                   ParameterSpec::boolean("cross_model", true,
                                          "let a batch of another network preempt the running one when that lowers "
                                          "the total latency"),
                   ParameterSpec::real("preempt_patience", 30.0, 0.0, 1e6,
                                       "as exit_aware's: another network's group preempts only once its samples' "
                                       "summed wait is this many times the in-flight save and restore")},
                  [](const ParameterValues& p) { return std::make_unique<Clairvoyant>(p); }};
  info.analysis_only = true;
  return info;
}

}  // namespace npusim::scheduler::policies
