#pragma once
// The scheduling-policy interface: what a policy sees at a decision point (SchedulerView) and
// what it may answer (Decision). docs/policies.md describes the built-in policies.

#include <cstdint>
#include <functional>
#include <limits>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "scheduler/model_profile.hpp"
#include "traces/input_file.hpp"

namespace npusim::scheduler {

// Bumped whenever a type in this header or in model_profile.hpp / parameters.hpp /
// registry.hpp changes its layout, so a plugin built against other headers is refused. A change
// that only appends (3: SchedulerView::queue_index; 4: QueueIndex::ordered,
// SchedulerView::ordered_of_model and SchedulerView::spare_positions; 5:
// SchedulerView::preemption_overheads) keeps the older plugins loading: they read nothing past
// what they knew. A plugin built for 5 is refused by an npusim of 4.
inline constexpr int policy_api_version = 5;
inline constexpr int oldest_loadable_policy_api_version = 2;

inline constexpr std::int64_t never_ns = std::numeric_limits<std::int64_t>::max();

// A device's priority (devices[i].priority): PREMA's three levels (Choi and Rhu, HPCA'20).
inline constexpr std::uint32_t low_priority = 1;
inline constexpr std::uint32_t medium_priority = 3;
inline constexpr std::uint32_t high_priority = 9;

// What a policy may know about a sample. Its exit is deliberately absent: it is decided by the
// sample's content, which no scheduler can see in advance.
struct SampleInfo {
  std::uint64_t id = 0;
  std::int64_t arrival_ns = 0;
  std::int64_t deadline_ns = 0;  // arrival + the device's SLO
  std::uint32_t device = 0;
  std::uint32_t model = 0;  // index into SchedulerView::models
  std::uint32_t priority = medium_priority;  // its device's: low_priority, medium_priority or high_priority
};

// A sample that has not arrived yet, as the oracle foresees it.
struct ForeseenSample {
  SampleInfo sample;
  std::uint32_t exit = 0;  // index into the model's exits: the one it will take
};

// The truth no deployable scheduler has: the exit each sample will take and the samples still
// to come. Only policies compiled in and registered as analysis only see one
// (SchedulerView::oracle); they are reference bounds, not schedulers. Contract:
//  - drawn_exit answers for every sample queued, running or suspended, and every sample an
//    arrivals_within answer has named, with the very draw the engine applies when the sample
//    reaches that exit. For any other id it throws PolicyError.
//  - arrivals_within(horizon_ns) lists in arrival order the samples not yet queued that arrive
//    no later than now + horizon_ns, including any the full FIFO will drop. The span lives until
//    the next call or the end of the decision. Looking far ahead holds those samples in memory.
//  - Asking never changes what happens: a run is the same bytes however far its policy looks.
class Oracle {
 public:
  virtual ~Oracle() = default;
  virtual std::uint32_t drawn_exit(std::uint64_t sample_id) const = 0;
  virtual std::span<const ForeseenSample> arrivals_within(std::int64_t horizon_ns) = 0;
};

// A batch on the NPU: the samples still in it and the first layer it has not run yet.
struct BatchInfo {
  std::uint32_t model = 0;
  std::uint32_t next_layer = 0;
  std::span<const SampleInfo> samples;
  // A catch-up batch started by a merging preemption: when next_layer reaches merge_layer it
  // merges with the suspended batch below it.
  bool merges = false;
  std::uint32_t merge_layer = 0;
  // Times this batch has been suspended so far (for catch-up merges too); a catch-up batch that
  // merged carries the count of the batch it merged into.
  std::uint32_t preemptions = 0;

  std::int64_t earliest_deadline_ns() const;
  std::int64_t latest_deadline_ns() const;
};

enum class Trigger {
  arrival,          // a sample arrived while the NPU had no batch
  wakeup,           // the time asked for by an idle decision has come
  layer_boundary,   // the running batch finished a layer; nobody left
  early_exit,       // the running batch finished a layer and some samples left at an exit
  batch_completed,  // the running batch finished (or emptied); nothing is running now
};
std::string to_string(Trigger trigger);

// Whether sample a goes before sample b.
using SampleOrder = std::function<bool(const SampleInfo& a, const SampleInfo& b)>;

// What the engine keeps up to date about the waiting queue as samples come and go, so that a
// decision need not scan it (docs/policies.md, "The queue index"). Positions are into
// SchedulerView::queue. Every answer is the one a scan of the queue gives. Cost: O(d log n) for
// d devices and n waiting samples, plus O(d + log n) for each position listed.
// Contract: valid only during the decision whose view holds it.
class QueueIndex {
 public:
  virtual ~QueueIndex() = default;
  // Waiting samples of `model`.
  virtual std::uint32_t waiting(std::uint32_t model) const = 0;
  // The position of the waiting sample with the earliest deadline, the oldest of equals; the
  // queue must not be empty.
  virtual std::uint32_t most_urgent() const = 0;
  // Appends to `out` the position of each device's oldest waiting sample, by device index.
  // Within a device, arrivals and deadlines only grow, so this is also its most urgent one.
  virtual void device_heads(std::vector<std::uint32_t>& out) const = 0;
  // Appends to `out` the positions of the oldest `limit` waiting samples of `model`, oldest first.
  virtual void oldest(std::uint32_t model, std::size_t limit, std::vector<std::uint32_t>& out) const = 0;
  // Appends to `out` the positions of the waiting samples of `model` due before `before`,
  // earliest deadline first (the oldest of equals), at most `limit`.
  virtual void earliest_due(std::uint32_t model, std::int64_t before, std::size_t limit,
                            std::vector<std::uint32_t>& out) const = 0;
  // Appends to `out` the positions of at most `limit` waiting samples of `model`, first by
  // `before` (a strict weak order), the oldest of equals. `before` must never put a sample ahead
  // of an older one of its own device, so that each device's samples are already in order and
  // the answer is their merge: O(d log n) plus O(d + log n) per position listed.
  virtual void ordered(std::uint32_t model, std::size_t limit, const SampleOrder& before,
                       std::vector<std::uint32_t>& out) const = 0;
};

// What preempting the running batch would cost at its later boundaries, with its samples and
// the context buffer as they are now. Exits, merges, resumes and preemptions change the answers,
// so they hold over a stretch that wakes on exits and ends at a merge or resume, as every
// horizon's does. Contract:
//  - cycles_before(layer) is what SchedulerView::preemption_overhead_cycles would be at the
//    boundary before `layer` of the running batch, if nothing changes until then; 0 for a layer
//    at or past the network's last.
//  - context_room_bytes() is the context buffer's free bytes now. With the running batch's
//    network and size it decides every cycles_before answer, so it may key a memo of them.
//  - Both are quick (a table look-up) and change nothing.
class PreemptionOverheads {
 public:
  virtual ~PreemptionOverheads() = default;
  virtual std::uint64_t cycles_before(std::uint32_t layer) const = 0;
  virtual std::uint64_t context_room_bytes() const = 0;
};

struct SchedulerView {
  std::int64_t now_ns = 0;
  Trigger trigger = Trigger::arrival;
  std::span<const SampleInfo> queue;         // waiting samples in arrival order
  const BatchInfo* running = nullptr;        // null when the NPU holds no batch
  std::span<const BatchInfo> suspended;      // oldest first; the last resumes or merges next
  std::uint32_t preemptions_left = 0;        // further nesting the FBE registers allow now
  std::uint32_t max_batch = 1;               // the largest batch the FBE table holds
  // Samples a merging preemption may add now: max_batch less the running batch and every
  // suspended batch it will merge into on its way back.
  std::uint32_t merge_room = 0;
  // Cycles a preemption of the running batch would add now: saving its activations off chip
  // and restoring them, or 0 when they stay on chip (docs/serving.md, "Preemption").
  std::uint64_t preemption_overhead_cycles = 0;
  std::span<const ModelProfile> models;
  double ns_per_cycle = 1.0;
  // Null unless the policy is registered as analysis only (PolicyInfo::analysis_only).
  Oracle* oracle = nullptr;

  // The engine's index of `queue`; null in views built by hand, where the helpers below scan.
  // Last, so that the members before it keep their places for plugins built before it existed.
  const QueueIndex* queue_index = nullptr;
  // The positions vector of the engine's last start or preempt decision, emptied, whose memory
  // a policy may take for its next one (take_spare_positions): then deciding allocates nothing.
  // Null in views built by hand. Appended after queue_index for the same reason.
  std::vector<std::uint32_t>* spare_positions = nullptr;
  // The running batch's preemption overhead at its later boundaries; null when no batch runs,
  // and in views built by hand. Appended after spare_positions for the same reason.
  const PreemptionOverheads* preemption_overheads = nullptr;
  // Up to this many waiting samples a scan costs less than the index, and gives the same answers.
  static constexpr std::size_t scan_below = 64;
  // Whether the helpers below ask the index rather than scan.
  bool uses_index() const { return queue_index && queue.size() > scan_below; }

  std::int64_t ns_from_cycles(double cycles) const;
  // Positions in `queue` of the waiting samples of `model`, oldest first, at most `limit`.
  std::vector<std::uint32_t> queued_of_model(std::uint32_t model, std::size_t limit) const;
  // The same, written into `out` (cleared first), whose memory a policy may reuse.
  void queued_of_model(std::uint32_t model, std::size_t limit, std::vector<std::uint32_t>& out) const;
  std::uint32_t waiting_of_model(std::uint32_t model) const;
  // The position of the waiting sample with the earliest deadline, the oldest of equals; the
  // queue must not be empty.
  std::uint32_t most_urgent() const;
  // Positions of the waiting samples of `model` due before `before`, earliest deadline first
  // (the oldest of equals), at most `limit`, written into `out` (cleared first).
  void earliest_due(std::uint32_t model, std::int64_t before, std::size_t limit, std::vector<std::uint32_t>& out) const;
  // Positions of at most `limit` waiting samples of `model`, first by `before`, the oldest of
  // equals, written into `out` (cleared first); `before` must keep each device's samples in
  // arrival order (QueueIndex::ordered). An aging priority, such as PREMA's tokens, does.
  void ordered_of_model(std::uint32_t model, std::size_t limit, const SampleOrder& before,
                        std::vector<std::uint32_t>& out) const;
  // An empty vector with the memory of spare_positions, if there is any left: fill it and
  // return it in a Decision. Later calls in the same decision get one without memory.
  std::vector<std::uint32_t> take_spare_positions() const;
};

// A policy's answer. The engine checks it and throws PolicyError when it breaks a rule:
//  - run:     keep running the current batch (only with a running batch);
//  - start:   start a batch of the given queued samples (only with no running batch); they must
//             share a model, and there are 1..max_batch of them;
//  - preempt: at a layer boundary, suspend the running batch and run the given queued samples
//             from layer 0. With merge, they must be of the running batch's model and fit the
//             table together with it; they catch up to its layer and the two merge. Without
//             merge, the new batch runs to completion, then the suspended batch resumes; with
//             restart as well, the suspended batch's progress is discarded (PREMA's kill): it
//             saves no context and resumes from layer 0. Needs preemptions_left > 0.
//  - idle:    leave the NPU idle until wake_ns or the next arrival, whichever is first (only
//             with no running batch). wake_ns must be later than now, or never_ns.
struct Decision {
  enum class Kind { run, start, preempt, idle };
  Kind kind = Kind::run;
  std::vector<std::uint32_t> queue_positions;  // start / preempt: positions in view.queue
  bool merge = true;
  std::int64_t wake_ns = never_ns;
  bool restart = false;  // preempt without merge: the suspended batch reruns from layer 0

  static Decision keep_running() { return {}; }
  static Decision start(std::vector<std::uint32_t> positions) {
    return {Kind::start, std::move(positions), true, never_ns};
  }
  static Decision preempt(std::vector<std::uint32_t> positions, bool merge = true) {
    return {Kind::preempt, std::move(positions), merge, never_ns};
  }
  static Decision preempt_restarting(std::vector<std::uint32_t> positions) {
    return {Kind::preempt, std::move(positions), false, never_ns, true};
  }
  static Decision idle(std::int64_t wake_ns = never_ns) { return {Kind::idle, {}, true, wake_ns}; }
};

// A decision the engine cannot carry out, or a policy that cannot be built. what() is one line,
// whatever a plugin put in it.
class PolicyError : public std::runtime_error {
 public:
  explicit PolicyError(const std::string& message) : std::runtime_error(traces::one_line(message)) {}
};

// How long a policy's keep_running answer stands, so that the engine need not ask it at the
// boundaries in between (docs/serving.md, "Decision skipping"). The engine asks the policy
// again at the first boundary where the running batch's next layer reaches until_layer, or
// earlier: after a sample arrives (with wake_on_arrival; the N-th, with ArrivalCountWake),
// where samples left at an exit (with wake_on_exit), and always when the batch completes or
// empties, merges or resumes.
struct Horizon {
  static constexpr std::uint32_t batch_end = std::numeric_limits<std::uint32_t>::max();
  std::uint32_t until_layer = 0;
  bool wake_on_arrival = true;
  bool wake_on_exit = true;

  // Asked again at the very next boundary: no decision skipped.
  static Horizon next_boundary(const SchedulerView& view) { return {view.running->next_layer + 1, true, true}; }
  static Horizon until_arrival() { return {batch_end, true, false}; }
  static Horizon until_arrival_or_exit() { return {batch_end, true, true}; }
  static Horizon until_batch_changes() { return {batch_end, false, false}; }
  // What holds for every policy: keep_running is the only legal answer while the queue is
  // empty (until a sample arrives) and while no preemption register is left (until the batch
  // merges, resumes or ends). Otherwise the very next boundary.
  static Horizon only_legal_answer(const SchedulerView& view);
};

// Optional, beside Policy: a policy that can tell in advance how long it keeps running a
// batch. The engine finds it with dynamic_cast; a policy without it (every plugin built
// against policy API 2 before this interface existed) is asked at every boundary. Adding it
// changed no layout.
// Contract:
//  - horizon is called right after a decision that leaves a batch running (run, start or
//    preempt), with the view of the state that decision left: the batch about to run
//    view.running->next_layer, the queue without the samples it took.
//  - It promises that decide, asked at each boundary the horizon covers, would answer
//    keep_running, and that skipping those calls changes nothing the policy does later.
//  - It must not change the policy's state, and is as deterministic as decide.
class DecisionHorizon {
 public:
  virtual ~DecisionHorizon() = default;
  virtual Horizon horizon(const SchedulerView& view) const = 0;
};

// Optional, beside DecisionHorizon: a horizon that wakes on arrival may sleep through the
// arrivals that cannot change what it covers, told apart by their deadline. The engine finds it
// with dynamic_cast; without it, every arrival wakes. Adding it changed no layout.
// Contract:
//  - wakes_on_arrivals_due_before_ns is called right after a horizon that wakes on arrival,
//    with the view that horizon was asked with.
//  - Its answer D promises that the horizon's promise holds however many samples due at or
//    after D arrive (or are dropped) during it: decide would still answer keep_running at every
//    boundary the horizon covers. Only an arrival due before D wakes it. never_ns wakes on
//    every arrival. observe_arrival is still called for each sample.
//  - It must not change the policy's state, and is as deterministic as decide.
class ArrivalWakeFilter {
 public:
  virtual ~ArrivalWakeFilter() = default;
  virtual std::int64_t wakes_on_arrivals_due_before_ns(const SchedulerView& view) const = 0;
};

// Optional, beside DecisionHorizon: a horizon that wakes on arrival may sleep through its first
// few arrivals, when so few samples cannot change what it covers. The engine finds it with
// dynamic_cast; without it, the first arrival wakes. Adding it changed no layout.
// Contract:
//  - arrivals_that_wake is called right after a horizon that wakes on arrival (and after the
//    ArrivalWakeFilter, if any), with the view that horizon was asked with.
//  - Its answer N >= 1 promises that the horizon's promise holds at every boundary it covers
//    while fewer than N samples that wake it (those due before the ArrivalWakeFilter's answer,
//    if any) have arrived since it was given: whichever networks they belong to, whether the
//    FIFO took them or not, and whatever exits it does not wake on happened meanwhile. The
//    N-th such arrival wakes it. observe_arrival is still called for each sample.
//  - It must not change the policy's state, and is as deterministic as decide.
class ArrivalCountWake {
 public:
  virtual ~ArrivalCountWake() = default;
  virtual std::uint32_t arrivals_that_wake(const SchedulerView& view) const = 0;
};

// Optional, beside Policy: whether observe_arrival does anything in this run. The engine finds
// it with dynamic_cast and, when it skips decisions, asks once before the first arrival, with
// the view as the run starts (its networks, batch limit and NPU; nothing queued or running);
// false spares it building a view and calling observe_arrival for every sample. Without it,
// every arrival is observed. Adding it changed no layout. (It replaced ArrivalInterest, whose
// question had no view; a plugin built with that one is not asked, so it observes every arrival.)
// Contract: false promises that observe_arrival would change nothing in this run, whatever it
// was called with; the answer must not change during the run.
class ArrivalObservation {
 public:
  virtual ~ArrivalObservation() = default;
  virtual bool observes_arrivals(const SchedulerView& view) const = 0;
};

// A scheduling policy. One instance serves one simulation, single-threaded.
// Contract:
//  - observe_arrival is called for every sample that enters the queue, before any decision at
//    that time; it may update the policy's own state and must not assume the NPU is free.
//  - decide is called at every decision point: on arrival or wake-up while the NPU holds no
//    batch, at every layer boundary of the running batch (after the samples that exit there
//    have left) but those a DecisionHorizon it also implements covers, and when a batch
//    completes. It must return quickly: it runs up to once per layer.
//  - The view and its spans are valid only during the call.
//  - A policy must be deterministic: the same calls give the same answers (no wall clock, no
//    unseeded randomness), so a seed reproduces a run byte for byte.
class Policy {
 public:
  virtual ~Policy() = default;
  virtual void observe_arrival(const SchedulerView& /*view*/, const SampleInfo& /*sample*/) {}
  virtual Decision decide(const SchedulerView& view) = 0;
};

}  // namespace npusim::scheduler
