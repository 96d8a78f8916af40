#pragma once
// The request FIFO of the serving engine (docs/serving.md, "The FIFO and drops"): waiting
// samples in arrival order, each with its drawn exit beside it. Policies see it as one
// contiguous span, so it stays a vector; its front is an offset into it, which makes the
// operations an overloaded queue repeats cheap: drop-oldest is O(1), and taking samples costs
// O(k) moves for the k samples nearest whichever end they are taken from, not O(queue).
//
// It is also the policies' QueueIndex (docs/policies.md, "The queue index"): per network, the
// count of its waiting samples; per device, the ids of its waiting samples in arrival order.
// Sample ids grow in arrival order, so a sample's position is a binary search by id; within a
// device deadlines grow too, so a device's oldest sample is also its most urgent. A sample
// taken from the middle of its device's list stays there, stale, until it reaches the front
// (the front is always waiting), or until stale ids outnumber the device's waiting samples,
// when the list is rebuilt: so a merge walks past O(waiting) stale ids at most, whatever a
// policy takes.

#include <algorithm>
#include <cstdint>
#include <deque>
#include <span>
#include <stdexcept>
#include <vector>

#include "scheduler/policy.hpp"

namespace npusim::sim {

class WaitingQueue final : public scheduler::QueueIndex {
 public:
  std::size_t size() const { return samples_.size() - head_; }
  bool empty() const { return size() == 0; }
  std::span<const scheduler::SampleInfo> samples() const { return {samples_.data() + head_, size()}; }
  const scheduler::SampleInfo& operator[](std::size_t position) const { return samples_[head_ + position]; }
  const scheduler::SampleInfo& front() const { return samples_[head_]; }
  std::uint32_t exit(std::size_t position) const { return exits_[head_ + position]; }

  // The sample's id must exceed every id pushed before, and its deadline none of its device's.
  void push_back(const scheduler::SampleInfo& sample, std::uint32_t exit) {
    if (pushed_any_ && sample.id <= last_id_)
      throw std::logic_error("WaitingQueue: sample ids must grow in arrival order");
    index_add(sample);
    pushed_any_ = true;
    last_id_ = sample.id;
    samples_.push_back(sample);
    exits_.push_back(exit);
  }

  void pop_front() {
    const scheduler::SampleInfo sample = front();
    ++head_;
    index_remove(sample);
    compact_if_sparse();
  }

  // Removes the samples at `positions`, which must be ascending, distinct and in range; the
  // others keep their order. Moves the samples on the shorter side of the removed ones.
  void erase(std::span<const std::uint32_t> positions) {
    if (positions.empty()) return;
    removed_.clear();
    for (const auto p : positions) removed_.push_back((*this)[p]);
    erase_positions(positions);
    for (const auto& sample : removed_) index_remove(sample);
  }

  // Ids the per-device lists hold, stale ones included: at most 2 * size() + stale_slack per device.
  std::size_t listed_ids() const {
    std::size_t listed = 0;
    for (const auto& d : devices_) listed += d.ids.size();
    return listed;
  }
  // Stale ids a device's list may hold beyond its waiting samples before it is rebuilt.
  static constexpr std::size_t stale_slack = 16;

  // ---- QueueIndex ----
  std::uint32_t waiting(std::uint32_t model) const override {
    return model < waiting_per_model_.size() ? waiting_per_model_[model] : 0;
  }

  std::uint32_t most_urgent() const override {
    std::uint32_t best = 0;
    bool found = false;
    for (const auto& d : devices_) {
      if (d.ids.empty()) continue;
      const std::uint32_t p = find(d.ids.front());
      if (!found || earlier_due(p, best)) best = p;
      found = true;
    }
    return best;
  }

  void device_heads(std::vector<std::uint32_t>& out) const override {
    for (const auto& d : devices_)
      if (!d.ids.empty()) out.push_back(find(d.ids.front()));
  }

  void oldest(std::uint32_t model, std::size_t limit, std::vector<std::uint32_t>& out) const override {
    merge_devices(model, limit, out, [](std::uint32_t a, std::uint32_t b) { return a < b; },
                  [](std::uint32_t) { return true; });
  }

  void earliest_due(std::uint32_t model, std::int64_t before, std::size_t limit,
                    std::vector<std::uint32_t>& out) const override {
    merge_devices(model, limit, out, [this](std::uint32_t a, std::uint32_t b) { return earlier_due(a, b); },
                  [this, before](std::uint32_t p) { return (*this)[p].deadline_ns < before; });
  }
  void ordered(std::uint32_t model, std::size_t limit, const scheduler::SampleOrder& before,
               std::vector<std::uint32_t>& out) const override {
    merge_devices(
        model, limit, out,
        [this, &before](std::uint32_t a, std::uint32_t b) {
          const auto &sa = (*this)[a], &sb = (*this)[b];
          return before(sa, sb) || (!before(sb, sa) && a < b);
        },
        [](std::uint32_t) { return true; });
  }

 private:
  struct Device {
    bool seen = false;
    std::uint32_t model = 0;
    std::int64_t last_deadline_ns = 0;
    std::deque<std::uint64_t> ids;  // its waiting samples' ids, oldest first; stale ones possible past the front
    std::size_t waiting = 0;        // how many of `ids` are still waiting
  };
  struct Cursor {
    const Device* device;
    std::size_t next;        // index into device->ids
    std::uint32_t position;  // of the sample it stands on
  };

  // Earlier deadline, then older: the order of a stable sort by deadline of the queue.
  bool earlier_due(std::uint32_t a, std::uint32_t b) const {
    const auto da = (*this)[a].deadline_ns, db = (*this)[b].deadline_ns;
    return da < db || (da == db && a < b);
  }

  // Where the sample with this id is, or size() if it is not waiting.
  std::uint32_t find(std::uint64_t id) const {
    const auto all = samples();
    const auto it = std::lower_bound(all.begin(), all.end(), id,
                                     [](const scheduler::SampleInfo& s, std::uint64_t v) { return s.id < v; });
    return it != all.end() && it->id == id ? static_cast<std::uint32_t>(it - all.begin())
                                           : static_cast<std::uint32_t>(all.size());
  }

  // Moves the cursor to the first waiting sample at or after its index; false at the list's end.
  bool settle(Cursor& c) const {
    for (; c.next < c.device->ids.size(); ++c.next) {
      c.position = find(c.device->ids[c.next]);
      if (c.position < size()) return true;
    }
    return false;
  }

  // Appends, from the devices of `model`, at most `limit` positions that `keep` accepts, in the
  // order `before` gives; within a device that order is its arrival order, so each device is a
  // sorted list and this is their merge, stopped at the first sample `keep` refuses.
  template <class Before, class Keep>
  void merge_devices(std::uint32_t model, std::size_t limit, std::vector<std::uint32_t>& out, Before before,
                     Keep keep) const {
    if (model >= devices_of_model_.size()) return;
    cursors_.clear();
    for (const auto d : devices_of_model_[model]) {
      Cursor c{&devices_[d], 0, 0};
      if (settle(c)) cursors_.push_back(c);
    }
    const std::size_t wanted = out.size() + limit;
    while (out.size() < wanted && !cursors_.empty()) {
      std::size_t best = 0;
      for (std::size_t i = 1; i < cursors_.size(); ++i)
        if (before(cursors_[i].position, cursors_[best].position)) best = i;
      if (!keep(cursors_[best].position)) return;
      out.push_back(cursors_[best].position);
      ++cursors_[best].next;
      if (!settle(cursors_[best])) cursors_.erase(cursors_.begin() + static_cast<std::ptrdiff_t>(best));
    }
  }

  void index_add(const scheduler::SampleInfo& sample) {
    if (sample.model >= waiting_per_model_.size()) {
      waiting_per_model_.resize(sample.model + std::size_t{1}, 0);
      devices_of_model_.resize(sample.model + std::size_t{1});
    }
    if (sample.device >= devices_.size()) devices_.resize(sample.device + std::size_t{1});
    Device& d = devices_[sample.device];
    if (!d.seen) {
      d.seen = true;
      d.model = sample.model;
      devices_of_model_[sample.model].push_back(sample.device);
    } else if (d.model != sample.model || sample.deadline_ns < d.last_deadline_ns) {
      throw std::logic_error("WaitingQueue: a device keeps its network, and its deadlines only grow");
    }
    d.last_deadline_ns = sample.deadline_ns;
    d.ids.push_back(sample.id);
    ++d.waiting;
    ++waiting_per_model_[sample.model];
  }

  // After `sample` has left the queue.
  void index_remove(const scheduler::SampleInfo& sample) {
    --waiting_per_model_[sample.model];
    Device& d = devices_[sample.device];
    --d.waiting;
    // A sample taken from the middle stays, stale, until it reaches the front.
    if (!d.ids.empty() && d.ids.front() == sample.id) {
      d.ids.pop_front();
      while (!d.ids.empty() && find(d.ids.front()) == size()) d.ids.pop_front();
    }
    // Once the stale ones outnumber the waiting, whichever end the last removal took, the list
    // is rebuilt: that costs O(log n) per id it drops.
    if (d.ids.size() > 2 * d.waiting + stale_slack)
      std::erase_if(d.ids, [&](std::uint64_t id) { return find(id) == size(); });
  }

  void erase_positions(std::span<const std::uint32_t> positions) {
    const std::size_t first = positions.front(), last = positions.back();
    if (last + 1 <= size() - first) {
      // Shift the samples before `last` towards the back, over the removed ones.
      std::size_t write = head_ + last;
      auto removed = positions.rbegin();
      for (std::size_t read = head_ + last + 1; read-- > head_;) {
        if (removed != positions.rend() && read == head_ + *removed) {
          ++removed;
          continue;
        }
        move(read, write--);
      }
      head_ += positions.size();
      compact_if_sparse();
    } else {
      std::size_t write = head_ + first;
      auto removed = positions.begin();
      for (std::size_t read = head_ + first; read < samples_.size(); ++read) {
        if (removed != positions.end() && read == head_ + *removed) {
          ++removed;
          continue;
        }
        move(read, write++);
      }
      samples_.resize(write);
      exits_.resize(write);
    }
  }

  void move(std::size_t from, std::size_t to) {
    samples_[to] = samples_[from];
    exits_[to] = exits_[from];
  }

  // Freed slots at the front are reclaimed once they are most of the storage, so each sample
  // is moved O(1) times on average and memory follows the longest queue, not the run.
  void compact_if_sparse() {
    if (head_ < 1024 || head_ * 2 < samples_.size()) return;
    samples_.erase(samples_.begin(), samples_.begin() + static_cast<std::ptrdiff_t>(head_));
    exits_.erase(exits_.begin(), exits_.begin() + static_cast<std::ptrdiff_t>(head_));
    head_ = 0;
  }

  std::vector<scheduler::SampleInfo> samples_;
  std::vector<std::uint32_t> exits_;
  std::size_t head_ = 0;
  bool pushed_any_ = false;
  std::uint64_t last_id_ = 0;
  std::vector<std::uint32_t> waiting_per_model_;
  std::vector<std::vector<std::uint32_t>> devices_of_model_;  // device indices, in the order first seen
  std::vector<Device> devices_;
  std::vector<scheduler::SampleInfo> removed_;  // erase's buffer
  mutable std::vector<Cursor> cursors_;        // merge_devices' buffer
};

}  // namespace npusim::sim
