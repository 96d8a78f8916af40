// The engine's FIFO as the policies' QueueIndex: after every push, drop and take of a random
// sequence, each answer of the index must equal what a scan of the queue gives (the scans are
// the ones SchedulerView falls back to without an index, so the two paths decide alike).

#include <algorithm>
#include <random>
#include <vector>

#include <gtest/gtest.h>

#include "sim/waiting_queue.hpp"

namespace npusim {
namespace {

using scheduler::SampleInfo;
using scheduler::SchedulerView;

struct Scenario {
  std::vector<std::uint32_t> device_model;
  std::vector<std::int64_t> device_slo_ns;
  std::vector<std::uint32_t> device_priority;
};

// The index's answers and the scans', side by side, for every network and a few limits. The
// index is asked directly: the view asks it only for queues longer than scan_below.
void expect_index_equals_scan(const sim::WaitingQueue& queue, const Scenario& sc, std::int64_t now_ns) {
  SchedulerView scan;
  scan.queue = queue.samples();
  const auto models = *std::max_element(sc.device_model.begin(), sc.device_model.end()) + 1;
  std::vector<std::uint32_t> a, b;
  for (std::uint32_t m = 0; m <= models; ++m) {
    ASSERT_EQ(queue.waiting(m), scan.waiting_of_model(m)) << "model " << m;
    for (const std::size_t limit : {std::size_t{1}, std::size_t{3}, std::size_t{16}, queue.size() + 1}) {
      a.clear();
      queue.oldest(m, limit, a);
      scan.queued_of_model(m, limit, b);
      ASSERT_EQ(a, b) << "oldest of model " << m << ", limit " << limit;
      for (const std::int64_t before : {now_ns, now_ns + 2'000'000, scheduler::never_ns}) {
        a.clear();
        queue.earliest_due(m, before, limit, a);
        scan.earliest_due(m, before, limit, b);
        ASSERT_EQ(a, b) << "earliest due of model " << m << " before " << before << ", limit " << limit;
      }
      // PREMA's order: tokens p * (1 + waited / T), most first; T set so that tokens tie across
      // devices now and then.
      const scheduler::SampleOrder more_tokens = [now_ns](const SampleInfo& x, const SampleInfo& y) {
        const auto tokens = [now_ns](const SampleInfo& s) {
          return s.priority * (1.0 + static_cast<double>(now_ns - s.arrival_ns) / 1'000'000.0);
        };
        return tokens(x) > tokens(y);
      };
      a.clear();
      queue.ordered(m, limit, more_tokens, a);
      scan.ordered_of_model(m, limit, more_tokens, b);
      ASSERT_EQ(a, b) << "most tokens of model " << m << ", limit " << limit;
    }
  }
  if (queue.empty()) return;
  ASSERT_EQ(queue.most_urgent(), scan.most_urgent());
  a.clear();
  queue.device_heads(a);
  b.clear();
  for (std::uint32_t d = 0; d < sc.device_model.size(); ++d)
    for (std::uint32_t p = 0; p < queue.size(); ++p)
      if (queue[p].device == d) {
        b.push_back(p);
        break;
      }
  ASSERT_EQ(a, b) << "device heads";
  // Through a view: the index past scan_below, a scan below; the same answers.
  SchedulerView indexed = scan;
  indexed.queue_index = &queue;
  EXPECT_EQ(indexed.uses_index(), queue.size() > SchedulerView::scan_below);
  ASSERT_EQ(indexed.most_urgent(), scan.most_urgent());
}

TEST(WaitingQueue, IndexAnswersAsAScanWouldUnderRandomPushesDropsAndTakes) {
  for (std::uint32_t seed = 1; seed <= 20; ++seed) {
    std::mt19937_64 rng(seed);
    Scenario sc;
    const auto devices = 1 + rng() % 6;
    for (std::uint32_t d = 0; d < devices; ++d) {
      sc.device_model.push_back(static_cast<std::uint32_t>(rng() % 3));
      // Equal SLOs on some devices, so that deadlines tie across devices.
      sc.device_slo_ns.push_back(static_cast<std::int64_t>(1 + rng() % 3) * 1'000'000);
      sc.device_priority.push_back(std::uint32_t{1} << (2 * (rng() % 2)));  // 1 or 4
    }
    sim::WaitingQueue queue;
    std::uint64_t next_id = 0;
    std::int64_t now_ns = 0;
    for (int step = 0; step < 600; ++step) {
      const auto op = rng() % 10;
      if (op < 8 || queue.empty()) {
        now_ns += static_cast<std::int64_t>(rng() % 3) * 500'000;  // arrivals at equal times too
        const auto d = static_cast<std::uint32_t>(rng() % devices);
        queue.push_back({next_id++, now_ns, now_ns + sc.device_slo_ns[d], d, sc.device_model[d], sc.device_priority[d]},
                        0);
      } else if (op < 9) {
        queue.pop_front();
      } else {
        // Take a random subset, as a policy may: ascending, distinct positions.
        std::vector<std::uint32_t> take;
        for (std::uint32_t p = 0; p < queue.size(); ++p)
          if (rng() % 16 == 0) take.push_back(p);
        queue.erase(take);
      }
      ASSERT_NO_FATAL_FAILURE(expect_index_equals_scan(queue, sc, now_ns)) << "seed " << seed << ", step " << step;
    }
  }
}

// A policy may take a device's later samples while its oldest waits (a plugin may; the
// built-ins take each device's oldest first). The ids it leaves behind are rebuilt away once
// they outnumber the waiting ones, so a merge never walks past more than that.
TEST(WaitingQueue, StaleIdsStayBoundedWhenSamplesAreTakenFromTheMiddle) {
  for (std::uint32_t devices : {1u, 3u}) {
    sim::WaitingQueue queue;
    std::uint64_t next_id = 0;
    std::int64_t now_ns = 0;
    std::mt19937_64 rng(devices);
    Scenario sc;
    for (std::uint32_t d = 0; d < devices; ++d) {
      sc.device_model.push_back(d % 2);
      sc.device_slo_ns.push_back(1'000'000);
      sc.device_priority.push_back(1);
    }
    for (int step = 0; step < 3000; ++step) {
      now_ns += 1000;
      const auto d = static_cast<std::uint32_t>(rng() % devices);
      queue.push_back({next_id++, now_ns, now_ns + 1'000'000, d, sc.device_model[d], 1}, 0);
      // Past 8 waiting, take one sample that is not the oldest for each that arrives: the queue
      // stays short, and the oldest sample stays, while a stale id is left for each taken.
      if (queue.size() > 8) {
        const std::uint32_t take[] = {static_cast<std::uint32_t>(1 + rng() % (queue.size() - 1))};
        queue.erase(take);
      }
      ASSERT_LE(queue.listed_ids(), 2 * queue.size() + devices * sim::WaitingQueue::stale_slack) << "step " << step;
      if (step % 97 == 0) {
        ASSERT_NO_FATAL_FAILURE(expect_index_equals_scan(queue, sc, now_ns)) << "step " << step;
      }
    }
  }
  // Taken from the middle while the list stays balanced, then drained from the front: the
  // stale ids must go as the waiting ones do.
  sim::WaitingQueue queue;
  for (std::uint64_t id = 0; id < 4001; ++id)
    queue.push_back({id, static_cast<std::int64_t>(id), static_cast<std::int64_t>(id) + 1'000'000, 0, 0, 1}, 0);
  for (int taken = 0; taken < 2000; ++taken) {
    const std::uint32_t middle[] = {2000};
    queue.erase(middle);
  }
  while (queue.size() > 2) {
    queue.pop_front();
    ASSERT_LE(queue.listed_ids(), 2 * queue.size() + sim::WaitingQueue::stale_slack) << queue.size() << " waiting";
  }
}

TEST(WaitingQueue, RefusesWhatWouldBreakTheIndex) {
  sim::WaitingQueue queue;
  queue.push_back({5, 0, 100, 0, 0}, 0);
  // Ids must grow in arrival order: a position is a binary search by id.
  EXPECT_THROW(queue.push_back({5, 0, 100, 1, 0}, 0), std::logic_error);
  // A device keeps its network, and its deadlines only grow: its oldest sample is its most urgent.
  EXPECT_THROW(queue.push_back({6, 1, 100, 0, 1}, 0), std::logic_error);
  EXPECT_THROW(queue.push_back({7, 1, 99, 0, 0}, 0), std::logic_error);
  queue.push_back({8, 1, 101, 0, 0}, 0);
  EXPECT_EQ(queue.waiting(0), 2u);
}

}  // namespace
}  // namespace npusim
