#include "npu_model/systolic_reference.hpp"

#include <stdexcept>
#include <vector>

#include "npu_model/clocked_run.hpp"
#include "npu_model/systolic.hpp"

namespace npusim::npu {
namespace {

// A value in a PE register, with the index of the output it belongs to.
struct Operand {
  bool valid = false;
  std::int64_t value = 0;
  std::int64_t index = 0;  // stationary dataflows: the streamed row the partial sum belongs to
};

using Grid = std::vector<std::vector<Operand>>;

Grid make_grid(std::uint64_t rows, std::uint64_t cols) {
  return Grid(rows, std::vector<Operand>(cols));
}

// The data of one dataflow cut into folds. `over_rows x over_cols` is the spatial matrix
// (OS: the output; WS, IS: the stationary operand); `streamed` rows pass through each fold.
class SystolicDatapath {
 public:
  SystolicDatapath(const SystolicConfig& array, const IntMatrix& activations, const IntMatrix& weights)
      : array_(array), a_(activations), w_(weights) {
    gemm_ = {static_cast<std::uint64_t>(a_.rows()), static_cast<std::uint64_t>(a_.cols()),
             static_cast<std::uint64_t>(w_.cols())};
    layout_ = layout_of(array.dataflow, gemm_);
    folds_ = folds_of(array, gemm_);
    output_ = IntMatrix::Zero(a_.rows(), w_.cols());
    start_fold();
  }

  void tick() {
    if (array_.dataflow == Dataflow::output_stationary) {
      tick_output_stationary();
    } else {
      tick_stationary_operand();
    }
    ++cycle_;
    ++t_;
    if (results_left_ == 0) {
      ++fold_;
      if (fold_ < folds_.count()) start_fold();
    }
  }

  bool finished() const { return fold_ == folds_.count(); }
  std::uint64_t cycles() const { return cycle_; }
  std::uint64_t macs() const { return macs_; }
  std::uint64_t folds() const { return folds_.count(); }
  const IntMatrix& output() const { return output_; }

 private:
  // Folds run column fold by column fold, row folds inside (SCALE-Sim's order).
  void start_fold() {
    const std::uint64_t fr = fold_ % folds_.row_folds, fc = fold_ / folds_.row_folds;
    row0_ = fr * array_.rows;
    col0_ = fc * array_.cols;
    h_ = std::min<std::uint64_t>(array_.rows, layout_.over_rows - row0_);
    w_cols_ = std::min<std::uint64_t>(array_.cols, layout_.over_cols - col0_);
    t_ = 0;
    horizontal_ = make_grid(h_, w_cols_);
    vertical_ = make_grid(h_, w_cols_);
    stationary_ = make_grid(h_, w_cols_);
    accumulator_ = std::vector<std::vector<std::int64_t>>(h_, std::vector<std::int64_t>(w_cols_, 0));
    products_ = std::vector<std::vector<std::uint64_t>>(h_, std::vector<std::uint64_t>(w_cols_, 0));
    results_left_ = array_.dataflow == Dataflow::output_stationary ? h_ * w_cols_ : layout_.streamed * w_cols_;
  }

  std::int64_t a(std::uint64_t m, std::uint64_t k) const {
    return a_(static_cast<Eigen::Index>(m), static_cast<Eigen::Index>(k));
  }
  std::int64_t w(std::uint64_t k, std::uint64_t n) const {
    return w_(static_cast<Eigen::Index>(k), static_cast<Eigen::Index>(n));
  }

  // OS: PE (i, j) owns output (row0 + i, col0 + j). Activation row i enters the left edge
  // skewed by i cycles, weight column j the top edge skewed by j; both move one PE a cycle,
  // so a[.][s] and w[s][.] meet in PE (i, j) in cycle i + j + s. A PE writes its result out in
  // the cycle of its last product.
  void tick_output_stationary() {
    const std::uint64_t depth = layout_.streamed;
    Grid right = make_grid(h_, w_cols_), down = make_grid(h_, w_cols_);
    for (std::uint64_t i = 0; i < h_; ++i)
      for (std::uint64_t j = 0; j < w_cols_; ++j) {
        Operand from_left = j > 0 ? horizontal_[i][j - 1] : Operand{};
        Operand from_top = i > 0 ? vertical_[i - 1][j] : Operand{};
        if (j == 0 && t_ >= i && t_ - i < depth) from_left = {true, a(row0_ + i, t_ - i), 0};
        if (i == 0 && t_ >= j && t_ - j < depth) from_top = {true, w(t_ - j, col0_ + j), 0};
        right[i][j] = from_left;
        down[i][j] = from_top;
        if (!from_left.valid || !from_top.valid) continue;
        accumulator_[i][j] += from_left.value * from_top.value;
        ++macs_;
        if (++products_[i][j] == depth) {
          output_(static_cast<Eigen::Index>(row0_ + i), static_cast<Eigen::Index>(col0_ + j)) = accumulator_[i][j];
          --results_left_;
        }
      }
    horizontal_ = std::move(right);
    vertical_ = std::move(down);
  }

  // The stationary operand S (WS: weights k x n; IS: activations transposed, k x m) and the
  // streamed one Z (WS: activations m x k; IS: weights transposed, n x k).
  std::int64_t stationary_value(std::uint64_t r, std::uint64_t c) const {
    return array_.dataflow == Dataflow::weight_stationary ? w(r, c) : a(c, r);
  }
  std::int64_t streamed_value(std::uint64_t t, std::uint64_t r) const {
    return array_.dataflow == Dataflow::weight_stationary ? a(t, r) : w(r, t);
  }
  void emit(std::uint64_t streamed_row, std::uint64_t col, std::int64_t value) {
    // WS: output (m, n) = (streamed row, column); IS: (m, n) = (column, streamed row). Row
    // folds split the reduction, so their partial results add up in the output buffer.
    const auto r = static_cast<Eigen::Index>(array_.dataflow == Dataflow::weight_stationary ? streamed_row : col);
    const auto c = static_cast<Eigen::Index>(array_.dataflow == Dataflow::weight_stationary ? col : streamed_row);
    output_(r, c) += value;
    --results_left_;
  }

  // WS, IS: cycles 0 .. h-1 shift the fold's stationary rows down from the top edge, last row
  // first. From cycle h, streamed row s enters PE row i's left edge in cycle h + s + i and
  // moves right; partial sums move down and leave the bottom row in cycle h + s + (h-1) + j.
  void tick_stationary_operand() {
    if (t_ < h_) {
      for (std::uint64_t i = h_; i-- > 1;) stationary_[i] = stationary_[i - 1];
      for (std::uint64_t j = 0; j < w_cols_; ++j)
        stationary_[0][j] = {true, stationary_value(row0_ + h_ - 1 - t_, col0_ + j), 0};
      return;
    }
    const std::uint64_t tau = t_ - h_;
    Grid right = make_grid(h_, w_cols_), down = make_grid(h_, w_cols_);
    for (std::uint64_t i = 0; i < h_; ++i)
      for (std::uint64_t j = 0; j < w_cols_; ++j) {
        Operand in = j > 0 ? horizontal_[i][j - 1] : Operand{};
        if (j == 0 && tau >= i && tau - i < layout_.streamed)
          in = {true, streamed_value(tau - i, row0_ + i), static_cast<std::int64_t>(tau - i)};
        right[i][j] = in;
        if (!in.valid) continue;
        const Operand partial = i > 0 ? vertical_[i - 1][j] : Operand{true, 0, in.index};
        if (!partial.valid || partial.index != in.index)
          throw std::logic_error("systolic reference: partial sum and operand out of step");
        Operand sum{true, partial.value + in.value * stationary_[i][j].value, in.index};
        ++macs_;
        if (i + 1 == h_) {
          emit(static_cast<std::uint64_t>(sum.index), col0_ + j, sum.value);
        } else {
          down[i][j] = sum;
        }
      }
    horizontal_ = std::move(right);
    vertical_ = std::move(down);
  }

  SystolicConfig array_;
  const IntMatrix& a_;
  const IntMatrix& w_;
  SystolicGemm gemm_;
  SystolicLayout layout_;
  SystolicFolds folds_;
  IntMatrix output_;
  std::uint64_t fold_ = 0, cycle_ = 0, t_ = 0, macs_ = 0;
  std::uint64_t row0_ = 0, col0_ = 0, h_ = 0, w_cols_ = 0, results_left_ = 0;
  Grid horizontal_, vertical_, stationary_;
  std::vector<std::vector<std::int64_t>> accumulator_;
  std::vector<std::vector<std::uint64_t>> products_;
};

}  // namespace

SystolicReferenceRun run_systolic_reference(const Npu& npu, const IntMatrix& activations,
                                            const IntMatrix& weights) {
  if (!npu.is_systolic()) throw std::invalid_argument("the systolic reference needs a systolic NPU");
  if (activations.cols() != weights.rows() || activations.size() == 0 || weights.size() == 0)
    throw std::invalid_argument("activations must be m x k and weights k x n, all at least 1");
  SystolicDatapath datapath(npu.config().systolic, activations, weights);
  const ClockedRun clocked = run_clocked(
      npu.config().clock_mhz, [&] { datapath.tick(); }, [&] { return datapath.finished(); });
  SystolicReferenceRun run;
  run.cycles = datapath.cycles();
  run.macs = datapath.macs();
  run.folds = datapath.folds();
  run.clock_period_ps = clocked.period_ps;
  run.simulated_ps = clocked.simulated_ps;
  run.output = datapath.output();
  return run;
}

}  // namespace npusim::npu
