#include "npu_model/systolic.hpp"

namespace npusim::npu {
namespace {

std::uint64_t ceil_div(std::uint64_t a, std::uint64_t b) { return (a + b - 1) / b; }

// A fold using h rows costs alpha * h + w + (T - 2) cycles: alpha = 1 for OS, 2 for WS and IS,
// whose stationary operand takes h cycles to shift in before anything streams.
std::uint64_t row_weight(Dataflow dataflow) { return dataflow == Dataflow::output_stationary ? 1 : 2; }

}  // namespace

SystolicLayout layout_of(Dataflow dataflow, const SystolicGemm& gemm) {
  switch (dataflow) {
    case Dataflow::output_stationary: return {gemm.m, gemm.n, gemm.k};
    case Dataflow::weight_stationary: return {gemm.k, gemm.n, gemm.m};
    case Dataflow::input_stationary: return {gemm.k, gemm.m, gemm.n};
  }
  return {};
}

SystolicFolds folds_of(const SystolicConfig& array, const SystolicGemm& gemm) {
  const SystolicLayout layout = layout_of(array.dataflow, gemm);
  return {ceil_div(layout.over_rows, array.rows), ceil_div(layout.over_cols, array.cols)};
}

// Summed over all folds, the used rows of the row folds add up to over_rows and the used
// columns to over_cols, so
//   sum_folds (alpha*h + w + T - 2) = col_folds*alpha*over_rows + row_folds*over_cols
//                                     + folds*(T - 2).
std::uint64_t systolic_array_cycles(const SystolicConfig& array, const SystolicGemm& gemm) {
  const SystolicLayout layout = layout_of(array.dataflow, gemm);
  const SystolicFolds folds = folds_of(array, gemm);
  return folds.col_folds * row_weight(array.dataflow) * layout.over_rows +
         folds.row_folds * layout.over_cols + folds.count() * layout.streamed - 2 * folds.count();
}

std::uint64_t scalesim_output_size(std::uint64_t in, std::uint64_t filter, std::uint64_t stride) {
  return ceil_div(in - filter + stride, stride);
}

SystolicGemm scalesim_conv_gemm(const ScaleSimConv& conv) {
  const std::uint64_t pixels = scalesim_output_size(conv.ifmap_height, conv.filter_height, conv.stride_height) *
                               scalesim_output_size(conv.ifmap_width, conv.filter_width, conv.stride_width);
  return {pixels, conv.filter_height * conv.filter_width * conv.channels, conv.filters};
}

// Every SCALE-Sim fold is padded to the full array: alpha*R + C + T - 2 demand rows, and the
// report gives the last row's cycle index.
ScaleSimComputeReport scalesim_compute_report(const SystolicConfig& array, const SystolicGemm& gemm) {
  const SystolicLayout layout = layout_of(array.dataflow, gemm);
  const SystolicFolds folds = folds_of(array, gemm);
  const std::uint64_t fold_rows =
      row_weight(array.dataflow) * array.rows + array.cols + layout.streamed - 2;
  ScaleSimComputeReport report;
  report.total_cycles = folds.count() * fold_rows - 1;
  const double pes = static_cast<double>(array.rows) * array.cols;
  const double macs = static_cast<double>(gemm.m) * static_cast<double>(gemm.n) * static_cast<double>(gemm.k);
  if (report.total_cycles > 0)
    report.overall_util_pct = macs * 100.0 / (static_cast<double>(report.total_cycles) * pes);
  report.mapping_efficiency_pct = static_cast<double>(layout.over_rows) * static_cast<double>(layout.over_cols) *
                                  100.0 / (static_cast<double>(folds.count()) * pes);
  return report;
}

}  // namespace npusim::npu
