#include "scheduler/model_profile.hpp"

#include <cmath>
#include <stdexcept>

#include <fmt/format.h>

namespace npusim::scheduler {

ModelProfile::ModelProfile(std::string name, std::uint32_t layer_count, std::uint32_t max_batch,
                           const CycleQuery& cycles, std::vector<ExitPoint> exits)
    : name_(std::move(name)), layer_count_(layer_count), max_batch_(max_batch), exits_(std::move(exits)) {
  if (layer_count_ == 0 || max_batch_ == 0)
    throw std::invalid_argument(fmt::format("model {}: needs at least one layer and a batch limit of at least 1", name_));
  if (exits_.empty() || exits_.back().decision_layer != layer_count_ - 1)
    throw std::invalid_argument(fmt::format("model {}: the last exit must be decided after the last layer", name_));
  exit_after_.assign(layer_count_, -1);
  hazard_after_.assign(layer_count_, 0.0);
  double left = 1.0, total = 0.0;
  for (std::size_t e = 0; e < exits_.size(); ++e) {
    const auto& exit = exits_[e];
    if (e > 0 && exit.decision_layer <= exits_[e - 1].decision_layer)
      throw std::invalid_argument(fmt::format("model {}: exits must be in strictly increasing depth", name_));
    if (!(exit.probability >= 0.0 && exit.probability <= 1.0))
      throw std::invalid_argument(fmt::format("model {}: exit {} has probability {} outside [0, 1]", name_, exit.name,
                                              exit.probability));
    exit_after_[exit.decision_layer] = static_cast<int>(e);
    // Hazard: the share of the samples still running that leave here.
    hazard_after_[exit.decision_layer] = left > 1e-12 ? std::min(1.0, exit.probability / left) : 1.0;
    left -= exit.probability;
    total += exit.probability;
  }
  if (std::fabs(total - 1.0) > 1e-6)
    throw std::invalid_argument(fmt::format("model {}: exit probabilities sum to {}, not 1", name_, total));
  hazard_after_.back() = 1.0;  // everybody still there leaves at the final exit
  survival_from_zero_.assign(layer_count_ + 1, 1.0);
  for (std::uint32_t l = 0; l < layer_count_; ++l)
    survival_from_zero_[l + 1] = survival_from_zero_[l] * (1.0 - hazard_after_[l]);

  const std::size_t size = std::size_t{layer_count_ + 1} * (max_batch_ + 1);
  cycles_.assign(size, 0);
  for (std::uint32_t l = 0; l < layer_count_; ++l)
    for (std::uint32_t b = 1; b <= max_batch_; ++b) cycles_[index(l, b)] = cycles(l, b);
  build_predictions();
}

double ModelProfile::survival(std::uint32_t from, std::uint32_t to) const {
  if (from >= to) return 1.0;
  const double base = survival_from_zero_[from];
  return base > 0.0 ? survival_from_zero_[to] / base : 0.0;
}

std::uint32_t ModelProfile::expected_batch(std::uint32_t batch, std::uint32_t from, std::uint32_t to,
                                           Prediction prediction) const {
  if (prediction == Prediction::exit_blind || from >= to) return batch;
  const double expected = batch * survival(from, to);
  // The tolerance keeps 4 * 0.5 from becoming 3 through rounding of the products.
  const auto rounded = static_cast<std::uint32_t>(std::ceil(expected - 1e-9));
  return std::min(batch, rounded);
}

void ModelProfile::build_predictions() {
  const std::size_t size = cycles_.size();
  blind_remaining_.assign(size, 0);
  aware_remaining_.assign(size, 0);
  aware_sample_remaining_.assign(size, 0.0);
  blind_catch_up_.assign(size, 0);
  aware_catch_up_.assign(size, 0);
  aware_catch_up_exit_latency_.assign(size, 0.0);
  // The first layer at or after each layer whose exit is decided after it. Between exits the
  // survival does not change, so an exit-aware batch keeps its size over such a stretch, and its
  // cycles there are a difference of the blind prefix sums (exact: integers, wrapping alike).
  std::vector<std::uint32_t> next_exit(layer_count_);
  for (std::uint32_t l = layer_count_; l-- > 0;)
    next_exit[l] = exit_after_[l] >= 0 || l + 1 == layer_count_ ? l : next_exit[l + 1];
  for (std::uint32_t b = 1; b <= max_batch_; ++b) {
    for (std::uint32_t l = layer_count_; l-- > 0;)
      blind_remaining_[index(l, b)] = blind_remaining_[index(l + 1, b)] + cycles_[index(l, b)];
    for (std::uint32_t l = 0; l < layer_count_; ++l)
      blind_catch_up_[index(l + 1, b)] = blind_catch_up_[index(l, b)] + cycles_[index(l, b)];
    // Exit-aware from layer 0, layer by layer: the catch-up tables need every layer's sum.
    {
      std::uint64_t elapsed = 0;
      double sample_latency = 0.0;
      for (std::uint32_t m = 0; m < layer_count_; ++m) {
        const std::uint32_t running = expected_batch(b, 0, m, Prediction::exit_aware);
        if (running > 0) elapsed += cycles_[index(m, running)];
        if (exit_after_[m] >= 0) {
          const double leaving = survival(0, m) * hazard_after_[m];
          sample_latency += leaving * static_cast<double>(elapsed);
          // Samples of a catch-up batch that leave after m finish before any layer > m.
          for (std::uint32_t to = m + 1; to <= layer_count_; ++to)
            aware_catch_up_exit_latency_[index(to, b)] += leaving * static_cast<double>(elapsed);
        }
        aware_catch_up_[index(m + 1, b)] = elapsed;
      }
      aware_remaining_[index(0, b)] = elapsed;
      aware_sample_remaining_[index(0, b)] = sample_latency;
    }
    // From every later layer, a stretch between exits at a time: O(layers x exits) per batch
    // size rather than O(layers^2), with the same sums in the same order.
    for (std::uint32_t start = 1; start < layer_count_; ++start) {
      // Layer `start` runs the whole batch (expected_batch of a batch where it is); the rest of
      // its stretch runs what survives from it, which is nothing when nothing reaches `start`.
      std::uint64_t elapsed = cycles_[index(start, b)];
      double sample_latency = 0.0;
      if (exit_after_[start] >= 0)
        sample_latency += survival(start, start) * hazard_after_[start] * static_cast<double>(elapsed);
      for (std::uint32_t m = start + 1; m < layer_count_;) {
        const std::uint32_t last = next_exit[m];
        const std::uint32_t running = expected_batch(b, start, m, Prediction::exit_aware);
        if (running > 0) elapsed += blind_catch_up_[index(last + 1, running)] - blind_catch_up_[index(m, running)];
        if (exit_after_[last] >= 0) {
          const double leaving = survival(start, last) * hazard_after_[last];  // of the samples at `start`
          sample_latency += leaving * static_cast<double>(elapsed);
        }
        m = last + 1;
      }
      aware_remaining_[index(start, b)] = elapsed;
      aware_sample_remaining_[index(start, b)] = sample_latency;
    }
  }
}

}  // namespace npusim::scheduler
