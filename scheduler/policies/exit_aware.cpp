// exit_aware: the scheduler of Fluid Batching (Kouris et al., ICCAD'22) as docs/policies.md
// formulates it. Every choice compares the expected cost of plans priced with the exits'
// survival (a batch shrinks as it goes, so does a catch-up run), under an objective (mean
// latency, SLO misses, or both):
//  - when the NPU is free, which network's waiting samples to start, and how many (the drain
//    plan); a sample that has waited too long goes first whatever the cost, which bounds
//    starvation;
//  - at each layer boundary, how many queued samples of the running network to catch up and
//    merge, or whether a batch of another network should run first (once its samples have
//    waited long enough to be worth a preemption's fixed cost),
// a batch being suspended at most max_preemptions times.
#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <functional>
#include <limits>

#include "scheduler/policies/builtin.hpp"
#include "scheduler/policies/catch_up_policy.hpp"

namespace npusim::scheduler::policies {
namespace {

// What a plan costs, per sample s completing at c_s: latency_weight * (c_s - arrival_s) +
// miss_weight * SLO_s * [c_s > deadline_s]. A miss costs one SLO's worth of latency in `blend`;
// `slo` counts misses and breaks ties by latency.
struct Objective {
  double latency_weight = 1.0;
  double miss_weight = 0.0;

  static Objective named(const std::string& name) {
    if (name == "slo") return {1e-3, 1.0};
    if (name == "blend") return {1.0, 1.0};
    return {1.0, 0.0};
  }
  bool counts_misses() const { return miss_weight > 0.0; }
  double miss_cost(const SampleInfo& s, double completion_ns) const {
    if (completion_ns <= static_cast<double>(s.deadline_ns)) return 0.0;
    return miss_weight * static_cast<double>(s.deadline_ns - s.arrival_ns);
  }
  double cost(const SampleInfo& s, double completion_ns) const {
    return latency_weight * (completion_ns - static_cast<double>(s.arrival_ns)) + miss_cost(s, completion_ns);
  }
};

class ExitAware final : public CatchUpPolicy, public ArrivalObservation, public ArrivalCountWake {
 public:
  // Arrivals feed the other networks' rates, for the blocking price and the load that stretches
  // a catch-up plan, only while there is a window and another network.
  bool observes_arrivals(const SchedulerView& view) const override {
    return blocking_window_ns_ > 0.0 && view.models.size() > 1;
  }
  explicit ExitAware(const ParameterValues& p)
      : CatchUpPolicy(p.real("slack_ms")),
        guard_deadlines_(p.boolean("guard_deadlines")),
        cross_model_(p.boolean("cross_model")),
        prediction_(p.boolean("exit_blind") ? Prediction::exit_blind : Prediction::exit_aware),
        objective_(Objective::named(p.choice("objective"))),
        max_preemptions_(static_cast<std::uint32_t>(p.integer("max_preemptions"))),
        max_wait_slos_(p.real("max_wait_slos")),
        patience_(p.real("preempt_patience")),
        blocking_window_ns_(p.real("blocking_window_ms") * 1e6),
        drain_plans_(prediction_) {}

  void observe_arrival(const SchedulerView& view, const SampleInfo& sample) override {
    if (blocking_window_ns_ <= 0.0) return;
    arrivals_.resize(std::max<std::size_t>({arrivals_.size(), view.models.size(), sample.model + std::size_t{1}}));
    arrivals_[sample.model].add(sample.arrival_ns, blocking_window_ns_);
  }

  Decision decide(const SchedulerView& view) override {
    if (!view.running) {
      if (view.queue.empty()) return Decision::idle();
      return Decision::start(batch_to_start(view));
    }
    if (view.running->preemptions >= max_preemptions_) return Decision::keep_running();
    Decision merge = CatchUpPolicy::decide(view);
    if (merge.kind != Decision::Kind::run || !cross_model_) return merge;
    return preempt_for_other_model(view);
  }

  // How long keep_running stands. Between a decision and the next arrival or exit, the only
  // inputs of decide that move are the layer, the clock and the context-save overhead: the
  // queue, the batch, the registers and the arrival rates stay as they are (observe_arrival is
  // the only change to this policy's state, and skipped decisions change nothing). The overhead
  // at each later layer is foreseen by the view (preemption_overheads; where it is not, any
  // overhead is allowed for). So it promises keep_running where that holds at any clock:
  //  - with the batch's preemptions at max_preemptions, or no preemption register left, until
  //    the batch changes (decide then finds neither a catch-up nor another network's batch to
  //    start, whatever waits);
  //  - with nothing of the running network waiting, until an arrival; or, where one waiting
  //    sample could not make a catch-up pay, until an exit or a second arrival
  //    (sleeps_through_a_lone_arrival);
  //  - with no merge room, until an arrival or an exit (which frees room);
  //  - otherwise, under the mean objective, up to the first layer where some catch-up plan
  //    might pay (refuses_every_catch_up).
  // Another network's waiting group is weighed against the clock (its patience, its wait), so
  // with cross_model on and such a group waiting it is asked at the next boundary, as it is
  // under the slo and blend objectives, whose misses move with the clock, while a catch-up is
  // possible.
  Horizon horizon(const SchedulerView& view) const override {
    const BatchInfo& running = *view.running;
    if (running.preemptions >= max_preemptions_ || view.preemptions_left == 0) return Horizon::until_batch_changes();
    const std::uint32_t waiting = queued_count(view, running.model);
    if (cross_model_ && waiting < view.queue.size()) return Horizon::next_boundary(view);
    if (waiting == 0)
      return sleeps_through_a_lone_arrival(view) ? Horizon::until_arrival_or_exit() : Horizon::until_arrival();
    const std::uint32_t room = std::min(waiting, view.merge_room);
    if (room == 0) return Horizon::until_arrival_or_exit();
    if (objective_.counts_misses()) return Horizon::next_boundary(view);
    const std::uint32_t layers = view.models[running.model].layer_count();
    const std::uint32_t first = running.next_layer + 1;
    const std::uint32_t doubt = first_doubt(view, first, room, waiting);
    return doubt >= layers ? Horizon::until_arrival_or_exit() : Horizon{doubt, true, true};
  }

  // With nothing of the running network waiting, the horizon may sleep through the first
  // arrival (see sleeps_through_a_lone_arrival).
  std::uint32_t arrivals_that_wake(const SchedulerView& view) const override {
    return sleeps_through_a_lone_arrival(view) ? 2 : 1;
  }

 protected:
  // The horizon's proof, asked of the boundary at hand: its answers for a batch, waiting count
  // and room are mostly known already when a decision is asked.
  bool surely_refuses(const SchedulerView& view, std::uint32_t room, std::uint32_t waiting) const override {
    const std::uint32_t layer = view.running->next_layer;
    return !objective_.counts_misses() && first_doubt(view, layer, room, waiting) > layer;
  }

  // refuses_every_catch_up proves in advance where this answers 0: a change of rule here must
  // keep that proof true (tests/decision_skipping_test.cpp checks it over random scenarios).
  std::uint32_t choose(const SchedulerView& view, std::uint32_t room, std::uint32_t waiting) override {
    // Positions are needed only to price misses; the mean objective needs the count alone.
    const auto& queued =
        objective_.counts_misses() ? queued_of_model(view, view.running->model, waiting, queued_) : no_positions_;
    const auto alone = estimate_catch_up(view, 0, waiting, prediction_);
    const double deadline = in_flight_deadline(view, alone.in_flight_completion_ns);
    const auto now = static_cast<double>(view.now_ns);
    // Other networks' work stretches every plan of this one alike (they preempt it); the
    // catch-up's own blocking of them does not stretch.
    const double stretch = 1.0 / (1.0 - others_load(view, view.running->model));
    std::uint32_t best = 0;
    double best_cost = stretch * catch_up_cost(view, waiting, queued, 0, alone);
    for (const std::uint32_t j : catch_up_candidates(room)) {
      if (j == 0) continue;
      const auto plan = estimate_catch_up(view, j, waiting, prediction_);
      if (now + plan.in_flight_completion_ns > deadline) continue;
      const double cost = stretch * catch_up_cost(view, waiting, queued, j, plan) + catch_up_blocking_cost(view, j);
      // Ties go to the larger catch-up: the same cost with more samples served.
      if (cost <= best_cost) {
        best = j;
        best_cost = cost;
      }
    }
    return best;
  }

 private:
  // Arrivals of one network, counted with exponential decay over a window: count / window is
  // its recent arrival rate, which follows a change of rate within a few windows.
  struct ArrivalRate {
    double decayed_count = 0.0;
    std::int64_t last_ns = 0;
    void add(std::int64_t now_ns, double window_ns) {
      decayed_count = decayed_at(now_ns, window_ns) + 1.0;
      last_ns = now_ns;
    }
    double decayed_at(std::int64_t now_ns, double window_ns) const {
      return decayed_count * std::exp(-static_cast<double>(now_ns - last_ns) / window_ns);
    }
    double per_ns(std::int64_t now_ns, double window_ns) const { return decayed_at(now_ns, window_ns) / window_ns; }
  };

  // A preemption that takes the last FBE register runs `block_ns` of work that no other network
  // can preempt. The samples of every network but `running` and `except` that arrive meanwhile
  // (at its recent rate) wait half of it on average. Samples already waiting are not counted:
  // they were not preempting the running batch, so they wait for it either way. Without this
  // term a catch-up of one ResNet-50 sample through 49 layers (1.07 ms) held back a stream of
  // ResNet-56 samples with a 2 ms SLO (docs/policies.md, "Blocking").
  bool prices_blocking(const SchedulerView& view) const {
    return view.preemptions_left == 1 && blocking_window_ns_ > 0.0;
  }
  double blocking_cost(const SchedulerView& view, double block_ns, std::uint32_t running,
                       std::uint32_t except = ~std::uint32_t{0}) const {
    if (!prices_blocking(view)) return 0.0;
    double arriving = 0.0;  // expected arrivals during the block
    for (std::uint32_t m = 0; m < arrivals_.size(); ++m)
      if (m != running && m != except) arriving += arrivals_[m].per_ns(view.now_ns, blocking_window_ns_) * block_ns;
    return objective_.latency_weight * arriving * block_ns / 2;
  }

  // A catch-up of j samples blocks for its context save and its run up to the merge layer.
  double catch_up_blocking_cost(const SchedulerView& view, std::uint32_t j) const {
    if (!prices_blocking(view)) return 0.0;
    const BatchInfo& running = *view.running;
    const double save_ns = view.ns_per_cycle * static_cast<double>(view.preemption_overhead_cycles) / 2;
    const double block_ns =
        save_ns + view.ns_per_cycle * static_cast<double>(
                      view.models[running.model].catch_up_cycles(j, running.next_layer, prediction_));
    return blocking_cost(view, block_ns, running.model);
  }

  // The share of the NPU that the other networks' recent arrivals take, at batch 1, at most 0.9.
  double others_load(const SchedulerView& view, std::uint32_t running) const {
    if (blocking_window_ns_ <= 0.0) return 0.0;
    double load = 0.0;
    for (std::uint32_t m = 0; m < std::min(arrivals_.size(), view.models.size()); ++m)
      if (m != running)
        load += arrivals_[m].per_ns(view.now_ns, blocking_window_ns_) * view.ns_per_cycle *
                view.models[m].sample_remaining_cycles(0, 1, prediction_);
    return std::min(load, 0.9);
  }

  double in_flight_deadline(const SchedulerView& view, double completion_if_alone_ns) const {
    return guard_deadlines_ ? guarded_deadline_ns(view, completion_if_alone_ns) : static_cast<double>(never_ns);
  }

  // The expected total latency of a catch-up plan, plus the SLO misses it predicts when the
  // objective counts them: the in-flight and the caught-up samples finish together; the rest of
  // the network's queue drains, as its DrainPlan says, after the merged batch.
  // `queued` lists the `waiting` samples' positions when the objective counts misses.
  double catch_up_cost(const SchedulerView& view, std::uint32_t waiting, const std::vector<std::uint32_t>& queued,
                       std::uint32_t take, const CatchUpEstimate& plan) const {
    DrainPlan& drain = drain_plans_.of(view, view.running->model);
    const std::uint32_t left = waiting - take;
    double cost = objective_.latency_weight * catch_up_latency_ns(view, drain, left, plan);
    if (!objective_.counts_misses()) return cost;
    const auto now = static_cast<double>(view.now_ns);
    for (const auto& s : view.running->samples) cost += objective_.miss_cost(s, now + plan.in_flight_completion_ns);
    for (std::uint32_t i = 0; i < take; ++i)
      cost += objective_.miss_cost(view.queue[queued[i]], now + plan.in_flight_completion_ns);
    drain.for_each_completion(left, [&](std::uint32_t k, double offset_cycles) {
      cost += objective_.miss_cost(view.queue[queued[take + k]],
                                   now + plan.merged_end_ns + view.ns_per_cycle * offset_cycles);
    });
    return cost;
  }

  // The expected total latency of a catch-up plan that leaves `left` samples of the network
  // queued: the plan's, with those samples draining as `drain` says instead of as one batch.
  double catch_up_latency_ns(const SchedulerView& view, DrainPlan& drain, std::uint32_t left,
                             const CatchUpEstimate& plan) const {
    const double left_as_one_batch_ns = left * (plan.left_completion_ns - plan.merged_end_ns);
    return plan.total_latency_ns - left_as_one_batch_ns + view.ns_per_cycle * drain.total_cycles(left);
  }

  // Whether choose, asked under the mean objective with the running batch about to run `layer`
  // and the queue, batch and registers of `view`, answers 0 whatever the clock then. Each plan
  // is priced as choose prices it, with the context-save overhead the view foresees at that
  // boundary (view.preemption_overheads, which holds while the batch, the registers and the
  // context buffer do), or without it in a view that foresees none. The overhead o only adds to
  // a catch-up plan's latency (exactly: ns_per_cycle * o for every sample it delays) and is no
  // part of the plan without a catch-up, so a plan dearer than that one without o is dearer with
  // it. The margin, 1e-9 of the cost, is far above the rounding of either sum (a few parts in
  // 1e16), so dearer here is dearer in choose. Nothing else choose weighs can make a dearer plan
  // win: the deadline guard only rules plans out, the stretch for other networks' load scales
  // both sides alike, and the blocking price is never negative.
  bool refuses_every_catch_up(const SchedulerView& view, std::uint32_t layer, std::uint32_t room,
                              std::uint32_t waiting) const {
    BatchInfo running = *view.running;
    running.next_layer = layer;
    SchedulerView at_layer = view;
    at_layer.running = &running;
    at_layer.preemption_overhead_cycles =
        view.preemption_overheads ? view.preemption_overheads->cycles_before(layer) : 0;
    DrainPlan& drain = drain_plans_.of(view, running.model);
    const double alone_ns = catch_up_latency_ns(at_layer, drain, waiting, estimate_catch_up(at_layer, 0, waiting, prediction_));
    for (const std::uint32_t j : catch_up_candidates(room)) {
      if (j == 0) continue;
      const double plan_ns =
          catch_up_latency_ns(at_layer, drain, waiting - j, estimate_catch_up(at_layer, j, waiting, prediction_));
      if (!(plan_ns > alone_ns + 1e-9 * alone_ns)) return false;
    }
    return true;
  }

  // Whether, with nothing of the running network waiting, one sample arriving would leave
  // decide answering keep_running at every later boundary while the batch keeps its size (the
  // horizon then wakes on exits): no room for a catch-up, which holds until an exit, or
  // refuses_every_catch_up at every later layer for one waiting sample, proved by first_doubt
  // with the overheads the view foresees, which hold as long. Nothing else decide weighs moves
  // meanwhile: under the mean objective the clock does not count, and another network's
  // sample is never weighed against the running batch (one network, or cross_model off). The
  // slo and blend objectives price misses, which move with the clock.
  bool sleeps_through_a_lone_arrival(const SchedulerView& view) const {
    if (objective_.counts_misses() || (cross_model_ && view.models.size() > 1)) return false;
    const BatchInfo& running = *view.running;
    if (running.preemptions >= max_preemptions_ || queued_count(view, running.model) != 0) return false;
    if (view.merge_room == 0 || view.preemptions_left == 0) return true;
    return first_doubt(view, running.next_layer + 1, 1, 1) >= view.models[running.model].layer_count();
  }

  // The first layer from `first` on at which refuses_every_catch_up does not hold, or the
  // layer count. Its answer at a layer depends on nothing but the network, the in-flight batch
  // size, the waiting count, the room and the overheads foreseen (the context buffer's free
  // bytes, or none foreseen), and the same few of those come back boundary after boundary, so
  // each layer's answer is kept for them in a small table indexed by that key: a memo, which
  // changes no answer. A layer is priced only when a horizon first reaches it.
  static constexpr std::uint64_t no_overheads_foreseen = std::numeric_limits<std::uint64_t>::max();
  struct Refusals {
    std::uint32_t model = 0, batch = 0, waiting = 0, room = 0;
    std::uint64_t context_room_bytes = no_overheads_foreseen;
    // Bit l % 64 of word l / 64: the answer at layer l is known; it is "a catch-up may pay".
    std::vector<std::uint64_t> known, may_catch_up;  // empty until the entry is first used
  };
  std::uint32_t first_doubt(const SchedulerView& view, std::uint32_t first, std::uint32_t room,
                            std::uint32_t waiting) const {
    const BatchInfo& running = *view.running;
    const auto batch = static_cast<std::uint32_t>(running.samples.size());
    const std::uint64_t context_room_bytes =
        view.preemption_overheads ? view.preemption_overheads->context_room_bytes() : no_overheads_foreseen;
    const std::size_t slot = (std::size_t{running.model} * 0x9E3779B1u ^ batch * 0x85EBCA77u ^
                              waiting * 0xC2B2AE3Du ^ room * 0x27D4EB2Fu ^ std::hash<std::uint64_t>{}(context_room_bytes)) %
                             refusals_.size();
    Refusals& r = refusals_[slot];
    const std::uint32_t layers = view.models[running.model].layer_count();
    if (r.known.empty() || r.model != running.model || r.batch != batch || r.waiting != waiting || r.room != room ||
        r.context_room_bytes != context_room_bytes) {
      r.model = running.model;
      r.batch = batch;
      r.waiting = waiting;
      r.room = room;
      r.context_room_bytes = context_room_bytes;
      r.known.assign((layers + 63) / 64, 0);
      r.may_catch_up.assign(r.known.size(), 0);
    }
    // Each step jumps to the next layer whose answer is unknown or a doubt.
    for (std::uint32_t layer = first; layer < layers;) {
      const std::size_t word = layer / 64;
      const std::uint64_t open = (~r.known[word] | r.may_catch_up[word]) & (~std::uint64_t{0} << (layer % 64));
      if (open == 0) {
        layer = static_cast<std::uint32_t>(word + 1) * 64;
        continue;
      }
      layer = static_cast<std::uint32_t>(word * 64 + static_cast<std::size_t>(std::countr_zero(open)));
      if (layer >= layers) break;
      const std::uint64_t bit = std::uint64_t{1} << (layer % 64);
      if (r.known[word] & bit) return layer;
      r.known[word] |= bit;
      if (!refuses_every_catch_up(view, layer, room, waiting)) {
        r.may_catch_up[word] |= bit;
        return layer;
      }
      ++layer;
    }
    return layers;
  }

  // The batch a network would start now: its oldest waiting samples, as many as the first batch
  // of its DrainPlan.
  struct Group {
    std::uint32_t model = 0;
    std::vector<std::uint32_t> positions;  // in the queue, oldest first
    double batch_ns = 0.0;                 // expected time until the whole batch is done
    double sample_ns = 0.0;                // expected time until one of its samples is done
  };

  // Per network with waiting samples, in the order of their oldest, the first batch of its
  // DrainPlan: its oldest samples. Built in buffers this policy keeps, so that a decision
  // allocates nothing once they have grown; valid until the next call.
  std::vector<Group>& waiting_groups(const SchedulerView& view) {
    std::size_t count = 0;
    for (std::uint32_t m = 0; m < view.models.size(); ++m) {
      const std::uint32_t waiting = view.waiting_of_model(m);
      if (waiting == 0) continue;
      if (groups_.size() <= count) groups_.emplace_back();
      Group& g = groups_[count++];
      g.model = m;
      view.queued_of_model(m, drain_plans_.of(view, m).first_batch(waiting), g.positions);
    }
    groups_.resize(count);
    std::sort(groups_.begin(), groups_.end(),
              [](const Group& a, const Group& b) { return a.positions.front() < b.positions.front(); });
    for (auto& g : groups_) {
      const auto size = static_cast<std::uint32_t>(g.positions.size());
      const ModelProfile& model = view.models[g.model];
      g.batch_ns = view.ns_per_cycle * static_cast<double>(model.remaining_cycles(0, size, prediction_));
      g.sample_ns = view.ns_per_cycle * model.sample_remaining_cycles(0, size, prediction_);
    }
    return groups_;
  }

  // Expected time per sample of the network's most efficient batch size.
  double cheapest_sample_ns(const SchedulerView& view, std::uint32_t model) const {
    const ModelProfile& profile = view.models[model];
    double best = static_cast<double>(profile.remaining_cycles(0, 1, prediction_));
    for (std::uint32_t b = 2; b <= view.max_batch; ++b)
      best = std::min(best, static_cast<double>(profile.remaining_cycles(0, b, prediction_)) / b);
    return view.ns_per_cycle * best;
  }

  double group_cost(const SchedulerView& view, const Group& g, double start_ns) const {
    double cost = 0.0;
    for (const auto i : g.positions) cost += objective_.cost(view.queue[i], start_ns + g.sample_ns);
    return cost;
  }

  // Which network starts when the NPU is free.
  //  1. Ageing: a sample that has waited max_wait_slos of its SLO goes first (the earliest
  //     deadline among such samples): no network waits unboundedly behind faster ones.
  //  2. Otherwise the plan "group g first, then the others by the c-mu rule" with the lowest
  //     cost over the groups' samples. Under the mean objective this is the c-mu rule itself
  //     (the most samples completed per unit of time first); counting misses, a group whose
  //     samples would miss behind another goes first when that costs less.
  std::vector<std::uint32_t> batch_to_start(const SchedulerView& view) {
    auto& groups = waiting_groups(view);
    if (const SampleInfo* aged = most_urgent_aged_sample(view))
      for (auto& g : groups)
        if (g.model == aged->model) return positions_in_spare(view, g.positions);
    // One group needs no order (and stable_sort would allocate its buffer even so).
    if (groups.size() > 1) std::stable_sort(groups.begin(), groups.end(), [](const Group& a, const Group& b) {
      return static_cast<double>(a.positions.size()) * b.batch_ns > static_cast<double>(b.positions.size()) * a.batch_ns;
    });
    if (groups.size() == 1 || !objective_.counts_misses()) return positions_in_spare(view, groups.front().positions);
    const auto now = static_cast<double>(view.now_ns);
    std::size_t best = 0;
    double best_cost = 0.0;
    for (std::size_t first = 0; first < groups.size(); ++first) {
      double start = now + groups[first].batch_ns;
      double cost = group_cost(view, groups[first], now);
      for (std::size_t g = 0; g < groups.size(); ++g) {
        if (g == first) continue;
        cost += group_cost(view, groups[g], start);
        start += groups[g].batch_ns;
      }
      if (first == 0 || cost < best_cost) {
        best = first;
        best_cost = cost;
      }
    }
    return positions_in_spare(view, groups[best].positions);
  }

  // The waiting sample with the earliest deadline among those that have waited max_wait_slos
  // of their SLO; null if none has (or ageing is off).
  // With the engine's index only each device's oldest sample is looked at: a device's SLO is
  // fixed, so its aged samples are its oldest ones, and the first of them is due first.
  const SampleInfo* most_urgent_aged_sample(const SchedulerView& view) {
    if (max_wait_slos_ <= 0.0) return nullptr;
    const SampleInfo* aged = nullptr;
    const auto consider = [&](const SampleInfo& s) {
      const auto slo = static_cast<double>(s.deadline_ns - s.arrival_ns);
      if (static_cast<double>(view.now_ns - s.arrival_ns) >= max_wait_slos_ * slo &&
          (!aged || s.deadline_ns < aged->deadline_ns || (s.deadline_ns == aged->deadline_ns && &s < aged)))
        aged = &s;
    };
    if (view.uses_index()) {
      heads_.clear();
      view.queue_index->device_heads(heads_);
      for (const auto p : heads_) consider(view.queue[p]);
    } else {
      for (const auto& s : view.queue) consider(s);
    }
    return aged;
  }

  // A batch of another network runs first (no merge; the running batch resumes after it) when
  // that lowers the plan's cost. Keeping on: the in-flight samples finish after their expected
  // remaining time r, the group's after the running batch's remaining work R plus its own time.
  // Preempting: the group's samples finish after the context save (half the overhead: save and
  // restore move the same bytes) and their own time, the
  // in-flight samples after the group's batch time D' and the save and restore, and every other
  // waiting sample is delayed by the save and restore (work nobody needed). Every in-flight
  // sample counts, late or not. With guard_deadlines, no in-flight sample that would meet its
  // deadline may be made to miss it, and a group waits until it has been patient enough.
  Decision preempt_for_other_model(const SchedulerView& view) {
    const BatchInfo& running = *view.running;
    if (view.preemptions_left == 0 || running.next_layer == 0) return Decision::keep_running();
    if (queued_count(view, running.model) == view.queue.size()) return Decision::keep_running();
    const auto in_flight = static_cast<std::uint32_t>(running.samples.size());
    const ModelProfile& model = view.models[running.model];
    const auto now = static_cast<double>(view.now_ns);
    const double remaining_ns =
        view.ns_per_cycle * static_cast<double>(model.remaining_cycles(running.next_layer, in_flight, prediction_));
    const double in_flight_ns =
        view.ns_per_cycle * model.sample_remaining_cycles(running.next_layer, in_flight, prediction_);
    const double overhead_ns = view.ns_per_cycle * static_cast<double>(view.preemption_overhead_cycles);
    double in_flight_cost = 0.0;
    for (const auto& s : running.samples) in_flight_cost += objective_.cost(s, now + in_flight_ns);

    const Group* best = nullptr;
    double best_gain = 0.0;
    const auto& groups = waiting_groups(view);
    for (const auto& g : groups) {
      if (g.model == running.model) continue;
      const double resumed_ns = now + overhead_ns + g.batch_ns + in_flight_ns;
      if (guard_deadlines_ && std::any_of(running.samples.begin(), running.samples.end(), [&](const SampleInfo& s) {
            const auto deadline = static_cast<double>(s.deadline_ns) - slack_ns();
            return now + in_flight_ns <= deadline && resumed_ns > deadline;
          }))
        continue;
      double gain = in_flight_cost + group_cost(view, g, now + remaining_ns);
      for (const auto& s : running.samples) gain -= objective_.cost(s, resumed_ns);
      // The group waits for the save only; the restore comes after it. They move the same bytes.
      gain -= group_cost(view, g, now + overhead_ns / 2);
      // Work nobody needed delays every other waiting sample: the context save and restore, and
      // what the group's batch costs beyond its samples' share at the network's most efficient
      // batch size (a small batch squeezed in now instead of a full one later).
      const double others = static_cast<double>(view.queue.size() - g.positions.size());
      const double excess_ns =
          g.batch_ns - static_cast<double>(g.positions.size()) * cheapest_sample_ns(view, g.model);
      gain -= objective_.latency_weight * others * (overhead_ns + std::max(0.0, excess_ns));
      gain -= blocking_cost(view, overhead_ns / 2 + g.batch_ns, running.model, g.model);
      // Rent before buying: a preemption's fixed cost (the in-flight samples' save and restore)
      // is paid only once the group's samples have waited that many times over, so a stream
      // of single arrivals does not suspend a long batch once each.
      double waited_ns = 0.0;
      for (const auto i : g.positions) waited_ns += now - static_cast<double>(view.queue[i].arrival_ns);
      if (waited_ns < patience_ * static_cast<double>(in_flight) * overhead_ns) continue;
      if (gain > best_gain) {
        best = &g;
        best_gain = gain;
      }
    }
    if (!best) return Decision::keep_running();
    return Decision::preempt(positions_in_spare(view, best->positions), false);
  }

  bool guard_deadlines_;
  bool cross_model_;
  Prediction prediction_;
  Objective objective_;
  std::uint32_t max_preemptions_;
  double max_wait_slos_;
  double patience_;
  double blocking_window_ns_;
  // Memos, grown or filled by the const horizon too; neither changes an answer.
  mutable DrainPlans drain_plans_;
  mutable std::array<Refusals, 256> refusals_;
  std::vector<ArrivalRate> arrivals_;  // per network
  // Buffers a decision reuses instead of allocating: choose's queued samples, waiting_groups'.
  std::vector<std::uint32_t> queued_;
  std::vector<Group> groups_;
  std::vector<std::uint32_t> heads_;         // each device's oldest waiting sample
  const std::vector<std::uint32_t> no_positions_;
};

}  // namespace

PolicyInfo exit_aware_info() {
  return {"exit_aware",
          "Fluid Batching (ICCAD'22): exit-aware choices of what to start, what to catch up and merge, and when "
          "another network runs first, minimising the expected cost of the objective, with ageing and a bound on "
          "preemptions per batch",
          {ParameterSpec::choice("objective", "mean", {"mean", "slo", "blend"},
                                 "what a plan costs: mean = total latency; slo = SLO misses (latency breaks ties); "
                                 "blend = total latency plus one SLO for every miss"),
           ParameterSpec::real("max_wait_slos", 3.0, 0.0, 1e6,
                               "a sample that has waited this many of its SLOs starts first (0: no ageing)"),
           ParameterSpec::integer("max_preemptions", 64, 0, 1000000,
                                  "times one batch may be suspended, for a merge or another network"),
           ParameterSpec::real("slack_ms", 0.0, 0.0, 1e6,
                               "safety margin kept between the in-flight samples' expected completion and their "
                               "deadline"),
           ParameterSpec::boolean("guard_deadlines", true,
                                  "refuse a preemption that makes an in-flight sample expected to meet its "
                                  "deadline miss it"),
           ParameterSpec::boolean("cross_model", true,
                                  "let a batch of another network preempt the running one when that lowers the "
                                  "expected cost"),
           ParameterSpec::boolean("exit_blind", false,
                                  "price every plan as if no sample left early (LazyBatching's prediction): the "
                                  "exit-awareness ablation"),
           ParameterSpec::real("preempt_patience", 3.0, 0.0, 1e6,
                               "another network's group preempts only once its samples' summed wait is this "
                               "many times the in-flight samples' context save and restore (0: at once)"),
           ParameterSpec::real("blocking_window_ms", 100.0, 0.0, 1e6,
                               "price the other networks' arrivals that a preemption taking the last FBE register "
                               "holds back, at their arrival rates over this window (0: off)")},
          [](const ParameterValues& p) { return std::make_unique<ExitAware>(p); }};
}

}  // namespace npusim::scheduler::policies
