// Prices the first convolution of a CIFAR ResNet (1024 x 27 x 16, batch 4) on the default NPU
// with the library, as a study's own driver would.
#include <iostream>

#include "npu_model/cost_model.hpp"
#include "sim/npu_yaml.hpp"

int main() {
  const npusim::npu::Npu npu = npusim::sim::default_npu();
  const auto cost = npusim::npu::best_gemm_cost(npu, {1024, 27, 16, 1}, 4);
  std::cout << "cycles " << cost.cycles << "\n";
}
