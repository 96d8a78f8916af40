#pragma once
// Drawing each sample's exit when it arrives. The scheduler sees only the probabilities; the
// drawn exit stays with the sample and is revealed when the sample reaches it.

#include <cstdint>
#include <vector>

#include "traces/random_stream.hpp"

namespace npusim::traces {

class ExitSampler {
 public:
  // probabilities[e]: share of samples that leave at exit e (the last is the final exit).
  // Throws std::invalid_argument unless each is in [0, 1] and they sum to 1 within 1e-6.
  explicit ExitSampler(std::vector<double> probabilities);
  std::uint32_t sample(RandomStream& rng) const;
  const std::vector<double>& probabilities() const { return probabilities_; }

 private:
  std::vector<double> probabilities_;
  std::vector<double> cumulative_;
};

// A device profile: p'_e proportional to p_e * exp(tilt * e / (E - 1)). tilt > 0 makes inputs
// harder (later exits), tilt < 0 easier; 0 leaves p unchanged. Exits with p_e = 0 stay at 0.
std::vector<double> tilt_exit_probabilities(const std::vector<double>& probabilities, double tilt);

}  // namespace npusim::traces
