#pragma once
// What a scheduler knows about one early-exit network on one NPU: the cycles of every
// (layer, batch size), where its exits are, their probabilities, and predictions built from
// them (docs/policies.md, "Predictions"). Immutable once built; every query is O(1).

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace npusim::scheduler {

struct ExitPoint {
  std::string name;
  std::uint32_t decision_layer = 0;  // samples leaving here do so after this layer
  double probability = 0.0;          // share of all samples that leave here
};

// exit_blind assumes every sample runs to the final exit (S = 1); exit_aware shrinks the batch
// by the exits' hazards.
enum class Prediction { exit_blind, exit_aware };

class ModelProfile {
 public:
  using CycleQuery = std::function<std::uint64_t(std::uint32_t layer, std::uint32_t batch)>;

  // `cycles(layer, batch)` is asked once for every layer < layer_count and batch 1..max_batch.
  // Exits must be in depth order with strictly increasing decision layers, the last on the
  // last layer, and probabilities summing to 1 (within 1e-6). Throws std::invalid_argument.
  ModelProfile(std::string name, std::uint32_t layer_count, std::uint32_t max_batch,
               const CycleQuery& cycles, std::vector<ExitPoint> exits);

  const std::string& name() const { return name_; }
  std::uint32_t layer_count() const { return layer_count_; }
  std::uint32_t max_batch() const { return max_batch_; }
  const std::vector<ExitPoint>& exits() const { return exits_; }
  // The exit decided right after `layer`, or -1.
  int exit_after(std::uint32_t layer) const { return exit_after_[layer]; }

  std::uint64_t cycles(std::uint32_t layer, std::uint32_t batch) const {
    return cycles_[index(layer, batch)];
  }
  // One sample alone from layer 0 to the final exit: the isolated batch-1 latency.
  std::uint64_t isolated_cycles() const { return blind_remaining_[index(0, 1)]; }

  // Chance that a sample at the start of layer `from` is still in its batch at the start of
  // layer `to` (from <= to <= layer_count).
  double survival(std::uint32_t from, std::uint32_t to) const;
  // Samples of a batch of `batch` at `from` expected at `to` under `prediction`, rounded up as
  // the batch the NPU would run: ceil(batch * S(from -> to)).
  std::uint32_t expected_batch(std::uint32_t batch, std::uint32_t from, std::uint32_t to,
                               Prediction prediction) const;

  // Expected cycles for a batch of `batch` at the start of `layer` to finish the network:
  // sum over m >= layer of cycles(m, expected_batch(batch, layer, m)).
  std::uint64_t remaining_cycles(std::uint32_t layer, std::uint32_t batch, Prediction prediction) const {
    return table(prediction, blind_remaining_, aware_remaining_)[index(layer, batch)];
  }
  // Expected cycles until a sample of that batch completes (at its exit), from the start of
  // `layer`. Exit-blind: the same as remaining_cycles.
  double sample_remaining_cycles(std::uint32_t layer, std::uint32_t batch, Prediction prediction) const {
    return prediction == Prediction::exit_blind ? static_cast<double>(blind_remaining_[index(layer, batch)])
                                                : aware_sample_remaining_[index(layer, batch)];
  }
  // Cycles for a new batch of `batch` samples to run layers [0, to_layer).
  std::uint64_t catch_up_cycles(std::uint32_t batch, std::uint32_t to_layer, Prediction prediction) const {
    return table(prediction, blind_catch_up_, aware_catch_up_)[index(to_layer, batch)];
  }
  // For a catch-up batch of `batch` run to `to_layer`: the expected sum, over its samples that
  // leave at exits before `to_layer`, of their completion time after the catch-up started,
  // per sample of the batch. Zero when exit-blind.
  double catch_up_exit_latency_cycles(std::uint32_t batch, std::uint32_t to_layer, Prediction prediction) const {
    return prediction == Prediction::exit_blind ? 0.0 : aware_catch_up_exit_latency_[index(to_layer, batch)];
  }

 private:
  std::size_t index(std::uint32_t layer, std::uint32_t batch) const {
    return std::size_t{layer} * (max_batch_ + 1) + batch;
  }
  template <typename T>
  static const std::vector<T>& table(Prediction p, const std::vector<T>& blind, const std::vector<T>& aware) {
    return p == Prediction::exit_blind ? blind : aware;
  }
  void build_predictions();

  std::string name_;
  std::uint32_t layer_count_ = 0;
  std::uint32_t max_batch_ = 0;
  std::vector<ExitPoint> exits_;
  std::vector<int> exit_after_;
  std::vector<double> hazard_after_;        // per layer: share of the survivors leaving after it
  std::vector<double> survival_from_zero_;  // S(0 -> l), l = 0..layer_count
  // Tables indexed by (layer 0..layer_count, batch 0..max_batch); batch 0 is all zeros.
  std::vector<std::uint64_t> cycles_;
  std::vector<std::uint64_t> blind_remaining_, aware_remaining_;
  std::vector<double> aware_sample_remaining_;
  std::vector<std::uint64_t> blind_catch_up_, aware_catch_up_;
  std::vector<double> aware_catch_up_exit_latency_;
};

}  // namespace npusim::scheduler
