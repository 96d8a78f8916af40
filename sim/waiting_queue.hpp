#pragma once
// The request FIFO of the serving engine (docs/serving.md, "The FIFO and drops"): waiting
// samples in arrival order, each with its drawn exit beside it. Policies see it as one
// contiguous span, so it stays a vector; its front is an offset into it, which makes the
// operations an overloaded queue repeats cheap: drop-oldest is O(1), and taking samples costs
// O(k) moves for the k samples nearest whichever end they are taken from, not O(queue).

#include <algorithm>
#include <cstdint>
#include <span>
#include <vector>

#include "scheduler/policy.hpp"

namespace npusim::sim {

class WaitingQueue {
 public:
  std::size_t size() const { return samples_.size() - head_; }
  bool empty() const { return size() == 0; }
  std::span<const scheduler::SampleInfo> samples() const { return {samples_.data() + head_, size()}; }
  const scheduler::SampleInfo& operator[](std::size_t position) const { return samples_[head_ + position]; }
  const scheduler::SampleInfo& front() const { return samples_[head_]; }
  std::uint32_t exit(std::size_t position) const { return exits_[head_ + position]; }

  void push_back(const scheduler::SampleInfo& sample, std::uint32_t exit) {
    samples_.push_back(sample);
    exits_.push_back(exit);
  }

  void pop_front() {
    ++head_;
    compact_if_sparse();
  }

  // Removes the samples at `positions`, which must be ascending, distinct and in range; the
  // others keep their order. Moves the samples on the shorter side of the removed ones.
  void erase(std::span<const std::uint32_t> positions) {
    if (positions.empty()) return;
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

 private:
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
};

}  // namespace npusim::sim
