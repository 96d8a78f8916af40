#pragma once
// The integer matrices the cycle-stepped reference models move and check against Eigen.

#include <cstdint>

#include <Eigen/Dense>

namespace npusim::npu {

using IntMatrix = Eigen::Matrix<std::int64_t, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

}  // namespace npusim::npu
