#include "traces/exit_sampler.hpp"

#include <cmath>
#include <stdexcept>

#include <fmt/format.h>

namespace npusim::traces {

ExitSampler::ExitSampler(std::vector<double> probabilities) : probabilities_(std::move(probabilities)) {
  if (probabilities_.empty()) throw std::invalid_argument("exit probabilities: need at least one exit");
  double sum = 0.0;
  for (std::size_t e = 0; e < probabilities_.size(); ++e) {
    const double p = probabilities_[e];
    if (!(p >= 0.0 && p <= 1.0))
      throw std::invalid_argument(fmt::format("exit probability [{}] = {}: allowed a number in [0, 1]", e, p));
    sum += p;
    cumulative_.push_back(sum);
  }
  if (std::fabs(sum - 1.0) > 1e-6)
    throw std::invalid_argument(fmt::format("exit probabilities sum to {}, not 1", sum));
}

std::uint32_t ExitSampler::sample(RandomStream& rng) const {
  const double u = rng.uniform_unit() * cumulative_.back();
  for (std::size_t e = 0; e < cumulative_.size(); ++e)
    if (u < cumulative_[e]) return static_cast<std::uint32_t>(e);
  return static_cast<std::uint32_t>(cumulative_.size() - 1);
}

std::vector<double> tilt_exit_probabilities(const std::vector<double>& p, double tilt) {
  if (!std::isfinite(tilt)) throw std::invalid_argument("exit tilt must be a finite number");
  std::vector<double> out(p.size());
  double sum = 0.0;
  const double last = p.size() > 1 ? static_cast<double>(p.size() - 1) : 1.0;
  for (std::size_t e = 0; e < p.size(); ++e) {
    out[e] = p[e] * std::exp(tilt * static_cast<double>(e) / last);
    sum += out[e];
  }
  for (auto& value : out) value /= sum;
  return out;
}

}  // namespace npusim::traces
