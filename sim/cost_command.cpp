#include "sim/cost_command.hpp"

#include <fstream>
#include <optional>
#include <ostream>
#include <sstream>

#include <fmt/format.h>

#include "npu_model/cost_model.hpp"
#include "npu_model/layer_lowering.hpp"
#include "npu_model/systolic.hpp"
#include "sim/cli_support.hpp"
#include "sim/json.hpp"
#include "traces/checked.hpp"
#include "traces/input_file.hpp"
#include "workloads/scalesim_csv.hpp"

namespace npusim::sim {
namespace {

// A convolution as SCALE-Sim describes it (--conv or a topology row).
struct ConvRow {
  std::string name;
  npu::ScaleSimConv conv;
};

ConvRow conv_from_option(const std::string& text) {
  const auto v = parse_positive_list("--conv", text, 7, "H,W,Fh,Fw,C,K,S");
  if (v[2] > v[0] || v[3] > v[1])
    throw UsageError(fmt::format("--conv {}: filter {}x{} is larger than the IFMAP {}x{}: allowed Fh <= H and Fw <= W",
                                 text, v[2], v[3], v[0], v[1]));
  return {"conv", {v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[6]}};
}

std::vector<ConvRow> convs_from_topology(const std::string& file) {
  std::string text;
  try {
    text = traces::read_input_file(file);
  } catch (const traces::InputFileError& e) {
    throw UsageError(fmt::format("--topology {}", e.what()));
  }
  std::istringstream in(text);
  std::vector<ConvRow> rows;
  for (const auto& l : workloads::read_scalesim_topology(in, file))
    rows.push_back({l.name,
                    {l.ifmap_height, l.ifmap_width, l.filter_height, l.filter_width, l.channels, l.filters,
                     l.stride_height, l.stride_width}});
  return rows;
}

// npusim's own lowering of the same convolution: floor((in - filter) / stride) + 1 outputs.
npu::GemmShape npusim_conv_gemm(const npu::ScaleSimConv& c, const std::string& name) {
  npu::LayerSpec spec;
  spec.name = name;
  spec.kind = npu::LayerKind::convolution;
  const auto u32 = [](std::uint64_t v) { return static_cast<std::uint32_t>(v); };
  spec.in_height = u32(c.ifmap_height);
  spec.in_width = u32(c.ifmap_width);
  spec.in_channels = u32(c.channels);
  spec.out_channels = u32(c.filters);
  spec.kernel_height = u32(c.filter_height);
  spec.kernel_width = u32(c.filter_width);
  spec.stride_height = u32(c.stride_height);
  spec.stride_width = u32(c.stride_width);
  try {
    return npu::lower(spec).gemm;
  } catch (const npu::InvalidLayer& e) {
    throw UsageError(e.what());
  }
}

std::string conv_json(const npu::ScaleSimConv& c) {
  return fmt::format("\"ifmap\": [{}, {}, {}], \"filter\": [{}, {}], \"filters\": {}, \"strides\": [{}, {}]",
                     c.ifmap_height, c.ifmap_width, c.channels, c.filter_height, c.filter_width, c.filters,
                     c.stride_height, c.stride_width);
}

std::string conv_text(const npu::ScaleSimConv& c) {
  return fmt::format("IFMAP {}x{}x{}, filter {}x{}, {} filters, stride {}x{}", c.ifmap_height, c.ifmap_width,
                     c.channels, c.filter_height, c.filter_width, c.filters, c.stride_height, c.stride_width);
}

void require_scalesim_npu(const npu::Npu& npu) {
  const auto& c = npu.config();
  if (!npu.is_systolic())
    throw UsageError(fmt::format("--convention scalesim: NPU {} has a {} array: allowed a systolic NPU (a SCALE-Sim "
                                 ".cfg, or npu YAML with array: systolic)",
                                 c.name, npu::to_string(c.array)));
  if (!c.systolic.stall_free)
    throw UsageError(fmt::format("--convention scalesim: NPU {} has a {} GB/s memory: allowed a stall-free NPU "
                                 "(InterfaceBandwidth CALC, or systolic.stall_free: true), the runs whose cycles "
                                 "npusim reproduces exactly",
                                 c.name, c.offchip.bandwidth_gb_per_s));
}

// --- SCALE-Sim convention -------------------------------------------------------------------

struct ScaleSimLine {
  npu::SystolicGemm gemm;
  npu::SystolicFolds folds;
  npu::ScaleSimComputeReport report;
  std::uint64_t npusim_array_cycles = 0;
};

ScaleSimLine scalesim_line(const npu::Npu& npu, const npu::SystolicGemm& gemm) {
  const auto& array = npu.config().systolic;
  return {gemm, npu::folds_of(array, gemm), npu::scalesim_compute_report(array, gemm),
          npu::systolic_array_cycles(array, gemm)};
}

std::string scalesim_fields_json(const ScaleSimLine& l) {
  return fmt::format(
      "\"gemm\": {{\"m\": {}, \"k\": {}, \"n\": {}}}, \"folds\": {{\"rows\": {}, \"cols\": {}}}, \"cycles\": {}, "
      "\"stall_cycles\": {}, \"overall_util_pct\": {}, \"mapping_efficiency_pct\": {}, \"npusim_array_cycles\": {}",
      l.gemm.m, l.gemm.k, l.gemm.n, l.folds.row_folds, l.folds.col_folds, l.report.total_cycles,
      l.report.stall_cycles, l.report.overall_util_pct, l.report.mapping_efficiency_pct, l.npusim_array_cycles);
}

void run_scalesim_single(const CostOptions& o, const npu::Npu& npu, std::ostream& out) {
  npu::SystolicGemm gemm;
  std::string layer_json, layer_text;
  if (!o.conv.empty()) {
    const auto row = conv_from_option(o.conv);
    gemm = npu::scalesim_conv_gemm(row.conv);
    const auto& c = row.conv;
    const std::uint64_t oh = npu::scalesim_output_size(c.ifmap_height, c.filter_height, c.stride_height);
    const std::uint64_t ow = npu::scalesim_output_size(c.ifmap_width, c.filter_width, c.stride_width);
    layer_json = fmt::format("\"layer\": {{{}, \"ofmap\": [{}, {}]}}, ", conv_json(c), oh, ow);
    layer_text = fmt::format("conv             {} -> OFMAP {}x{} (SCALE-Sim's ceil rule)\n", conv_text(c), oh, ow);
  } else {
    const auto dims = parse_positive_list("--gemm", o.gemm, 3, "R,P,C");
    gemm = {dims[0], dims[1], dims[2]};
  }
  const ScaleSimLine line = scalesim_line(npu, gemm);
  if (o.json) {
    out << fmt::format("{{\"npu\": {}, \"convention\": \"scalesim\", {}{}}}\n", json_string(npu.config().name),
                       layer_json, scalesim_fields_json(line));
    return;
  }
  const auto layout = npu::layout_of(npu.config().systolic.dataflow, gemm);
  std::ostringstream text;
  text << fmt::format("npu              {}\n", npu_label(npu));
  text << layer_text;
  text << fmt::format("gemm             m={} k={} n={} ({} over PE rows, {} over PE columns, {} streamed)\n", gemm.m,
                      gemm.k, gemm.n, layout.over_rows, layout.over_cols, layout.streamed);
  text << fmt::format("folds            {} x {} = {}\n", line.folds.row_folds, line.folds.col_folds, line.folds.count());
  text << fmt::format("cycles           {} (SCALE-Sim v2 COMPUTE_REPORT \"Total Cycles\")\n", line.report.total_cycles);
  text << fmt::format("stall_cycles     {}\n", line.report.stall_cycles);
  text << fmt::format("overall_util     {:.4f} %\n", line.report.overall_util_pct);
  text << fmt::format("mapping_eff      {:.4f} %\n", line.report.mapping_efficiency_pct);
  text << fmt::format("npusim cycles    {} (the array's own count: used rows and columns only, cycles counted)\n",
                      line.npusim_array_cycles);
  out << text.str();
}

// --- npusim convention ----------------------------------------------------------------------

// The cost model counts MACs, bytes and cycles in 64 bits: a GEMM is held to 2^58 MACs for the
// whole batch (2^48 per sample at a batch of 1024, as networks are), far beyond any real layer.
void check_gemm_size(const npu::GemmShape& shape, std::uint32_t batch, const std::string& what) {
  constexpr std::uint64_t max_macs = std::uint64_t{1} << 58;
  std::optional<std::uint64_t> macs = std::uint64_t{batch};
  for (const std::uint64_t factor : {shape.rows, shape.depth, shape.cols, shape.groups})
    macs = macs ? traces::checked_mul(*macs, factor) : std::nullopt;
  if (!macs || *macs > max_macs)
    throw UsageError(fmt::format("{} --batch {}: R x P x C x groups x batch = {} MACs: allowed at most {}", what, batch,
                                 macs ? fmt::format("{}", *macs) : std::string("more than 2^64"), max_macs));
}

npu::LayerCost npusim_cost(const npu::Npu& npu, const npu::GemmShape& shape, std::uint32_t batch,
                           const std::string& mapping_text, const std::string& what) {
  if (mapping_text.empty()) {
    if (auto reason = npu::mapping_violation(npu, shape, batch, {batch, 1, 1}); !reason.empty())
      throw UsageError(fmt::format("{} --batch {}: {}", what, batch, reason));
    check_gemm_size(shape, batch, what);
    return npu::best_gemm_cost(npu, shape, batch);
  }
  const auto m = parse_positive_list("--mapping", mapping_text, 3, "BR,BP,k");
  const npu::BatchMapping mapping{static_cast<std::uint32_t>(m[0]), static_cast<std::uint32_t>(m[1]),
                                  static_cast<std::uint32_t>(m[2])};
  if (auto reason = npu::mapping_violation(npu, shape, batch, mapping); !reason.empty())
    throw UsageError(fmt::format("--mapping {}: {}", mapping_text, reason));
  check_gemm_size(shape, batch, what);
  return npu::gemm_cost_unchecked(npu, shape, batch, mapping);
}

std::string npusim_fields_json(const npu::Npu& npu, const npu::LayerCost& cost) {
  const double latency_us = static_cast<double>(cost.cycles) / npu.config().clock_mhz;
  return fmt::format(
      "\"mapping\": {{\"b_r\": {}, \"b_p\": {}, \"k\": {}}}, \"mode\": \"{}\", \"cycles\": {}, \"latency_us\": {}, "
      "\"compute_cycles\": {}, \"stall_cycles\": {}, \"offchip_bytes\": {}, \"macs\": {}, \"mac_utilisation\": {}, {}, {}",
      cost.mapping.b_r, cost.mapping.b_p, cost.mapping.k, npu::to_string(npu::mode_of(cost.mapping)), cost.cycles,
      latency_us, cost.compute_cycles, cost.stall_cycles, cost.offchip_bytes, cost.macs, cost.mac_utilisation,
      memory_report_json(memory_report(npu, cost, false)), energy_json(npu, cost));
}

// The lines of the text report that show the memory hierarchy at work; a figure the model
// does not give for this NPU is left out.
std::string memory_report_text(const npu::LayerCost& cost, const MemoryReport& r) {
  std::string text;
  if (r.roofline_cycles)
    text += fmt::format("roofline_cycles  {} (no schedule of this mapping is faster; cycles are {:.3f}x that)\n",
                        *r.roofline_cycles,
                        *r.roofline_cycles == 0 ? 1.0
                                                   : static_cast<double>(cost.cycles) /
                                                         static_cast<double>(*r.roofline_cycles));
  text += fmt::format("offchip_bytes    {}", cost.offchip_bytes);
  if (r.bytes)
    text += fmt::format(" (input {}, weight {}, output {}, psum {})", r.bytes->input, r.bytes->weight, r.bytes->output,
                        r.bytes->psum);
  text += "\n";
  if (r.compulsory_bytes)
    text += fmt::format("compulsory_bytes {} (weights, the input lines read and the outputs, each once)\n",
                        *r.compulsory_bytes);
  if (r.tiling) {
    const npu::Tiling& t = *r.tiling;
    const auto plural = [](std::uint64_t n, const char* one, const char* many) {
      return fmt::format("{} {}", n, n == 1 ? one : many);
    };
    text += fmt::format("tiling           {}: R-blocks of {} x {}, C-blocks of {}, {}\n", npu::to_string(t.order),
                        plural(t.band_rows, "output row", "output rows"),
                        plural(t.band_samples, "grid row", "grid rows"), plural(t.col_block, "column", "columns"),
                        plural(t.channel_chunks, "channel chunk", "channel chunks"));
    text += fmt::format("                 input {}, weights {}; loads issued {} (input) and {} (weights) ahead\n",
                        t.input_resident ? "resident" : "streamed", t.weights_resident ? "resident" : "streamed",
                        plural(t.input_prefetch, "step", "steps"), plural(t.weight_prefetch, "step", "steps"));
  }
  return text;
}

void run_npusim_single(const CostOptions& o, const npu::Npu& npu, std::ostream& out) {
  npu::GemmShape shape;
  std::string what, layer_text, layer_json;
  if (!o.conv.empty()) {
    const auto row = conv_from_option(o.conv);
    shape = npusim_conv_gemm(row.conv, "--conv");
    what = "--conv " + o.conv;
    layer_json = fmt::format("\"layer\": {{{}}}, ", conv_json(row.conv));
    layer_text = fmt::format("conv             {} (no padding, floor rule)\n", conv_text(row.conv));
  } else {
    const auto dims = parse_positive_list("--gemm", o.gemm, 3, "R,P,C");
    shape = {dims[0], dims[1], dims[2], 1};
    what = "--gemm " + o.gemm;
  }
  shape.groups = o.groups;
  const npu::LayerCost cost = npusim_cost(npu, shape, o.batch, o.mapping, what);
  const std::uint64_t packed = npu::groups_per_pass(npu, shape, cost.mapping);
  if (o.json) {
    out << fmt::format(
        "{{\"npu\": {}, \"convention\": \"npusim\", {}\"gemm\": {{\"r\": {}, \"p\": {}, \"c\": {}, \"groups\": {}}}, "
        "\"batch\": {}, \"groups_per_pass\": {}, {}}}\n",
        json_string(npu.config().name), layer_json, shape.rows, shape.depth, shape.cols, shape.groups, o.batch, packed,
        npusim_fields_json(npu, cost));
    return;
  }
  const double latency_us = static_cast<double>(cost.cycles) / npu.config().clock_mhz;
  std::ostringstream text;
  text << fmt::format("npu              {}\n", npu_label(npu));
  text << layer_text;
  text << fmt::format("gemm             R={} P={} C={} groups={}, batch {}\n", shape.rows, shape.depth, shape.cols,
                      shape.groups, o.batch);
  text << fmt::format("mapping          <B_R={}, B_P={}, k={}> ({}-batching){}\n", cost.mapping.b_r, cost.mapping.b_p,
                      cost.mapping.k, npu::to_string(npu::mode_of(cost.mapping)),
                      o.mapping.empty() ? ", best allowed" : "");
  if (shape.groups > 1)
    text << fmt::format("groups           {} a pass, {} passes\n", packed, (shape.groups + packed - 1) / packed);
  text << fmt::format("cycles           {} ({:.3f} us)\n", cost.cycles, latency_us);
  text << fmt::format("compute_cycles   {}\n", cost.compute_cycles);
  text << fmt::format("stall_cycles     {}\n", cost.stall_cycles);
  text << memory_report_text(cost, memory_report(npu, cost, false));
  text << fmt::format("macs             {}\n", cost.macs);
  text << fmt::format("mac_utilisation  {:.4f}\n", cost.mac_utilisation);
  const npu::EnergyParts e = npu::layer_energy(npu, cost);
  text << fmt::format("energy_pj        {:.6g} (MAC {:.6g}, SRAM {:.6g}, DRAM {:.6g}, vector {:.6g}, static {:.6g})\n",
                      e.total_pj(), e.mac_pj, e.sram_pj, e.dram_pj, e.vector_pj, e.static_pj);
  out << text.str();
}

// --- topology -------------------------------------------------------------------------------

// One JSON object per line and layer (diffable against COMPUTE_REPORT.csv row by row), then
// one line with the totals.
void run_topology(const CostOptions& o, const npu::Npu& npu, bool scalesim, std::ostream& out) {
  const auto rows = convs_from_topology(o.topology);
  std::ostringstream json, text;
  std::uint64_t total_cycles = 0, total_macs = 0;
  text << fmt::format("npu       {}\n", npu_label(npu));
  text << fmt::format("topology  {} ({} layers, {} convention{})\n", o.topology, rows.size(),
                      scalesim ? "SCALE-Sim v2" : "npusim", scalesim ? "" : fmt::format(", batch {}", o.batch));
  text << fmt::format("{:>5}  {:<24} {:>10} {:>8} {:>8} {:>12}  {}\n", "layer", "name", "m", "k", "n", "cycles",
                      scalesim ? "overall_util_%" : "mapping");
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const auto& row = rows[i];
    std::uint64_t cycles = 0;
    std::string fields, gemm_text, extra;
    if (scalesim) {
      const ScaleSimLine line = scalesim_line(npu, npu::scalesim_conv_gemm(row.conv));
      cycles = line.report.total_cycles;
      total_macs += line.gemm.m * line.gemm.k * line.gemm.n;
      fields = scalesim_fields_json(line);
      gemm_text = fmt::format("{:>10} {:>8} {:>8}", line.gemm.m, line.gemm.k, line.gemm.n);
      extra = fmt::format("{:.2f}", line.report.overall_util_pct);
    } else {
      const npu::GemmShape shape = npusim_conv_gemm(row.conv, row.name);
      const npu::LayerCost cost = npusim_cost(npu, shape, o.batch, "", fmt::format("--topology layer {}", row.name));
      cycles = cost.cycles;
      total_macs += cost.macs;
      fields = fmt::format("\"gemm\": {{\"r\": {}, \"p\": {}, \"c\": {}}}, \"batch\": {}, {}", shape.rows, shape.depth,
                           shape.cols, o.batch, npusim_fields_json(npu, cost));
      gemm_text = fmt::format("{:>10} {:>8} {:>8}", shape.rows * o.batch, shape.depth, shape.cols);
      extra = npu::to_string(cost.mapping);
    }
    total_cycles += cycles;
    json << fmt::format("{{\"layer_id\": {}, \"name\": {}, {}, {}}}\n", i, json_string(row.name), conv_json(row.conv),
                        fields);
    text << fmt::format("{:>5}  {:<24} {} {:>12}  {}\n", i, row.name, gemm_text, cycles, extra);
  }
  json << fmt::format("{{\"layer_id\": \"total\", \"layers\": {}, \"cycles\": {}, \"macs\": {}}}\n", rows.size(),
                      total_cycles, total_macs);
  text << fmt::format("{:>5}  {:<24} {:>10} {:>8} {:>8} {:>12}\n", "total", "", "", "", "", total_cycles);
  out << (o.json ? json.str() : text.str());
}

}  // namespace

CLI::App* add_cost_command(CLI::App& app, CostOptions& o) {
  auto* cmd = app.add_subcommand("cost", "Cycles and traffic of one layer, or of a SCALE-Sim topology, on the NPU");
  cmd->add_option("--npu", o.npu_file, "NPU YAML or SCALE-Sim .cfg file (default: the embedded configs/npu/default.yaml)");
  cmd->add_option("--gemm", o.gemm, "Layer as a GEMM: R,P,C (activations R x P, weights P x C)");
  cmd->add_option("--conv", o.conv, "Layer as SCALE-Sim describes it: H,W,Fh,Fw,C,K,S (IFMAP, filter, channels, filters, stride)");
  cmd->add_option("--topology", o.topology, "Every layer of a SCALE-Sim topology CSV, one after another");
  cmd->add_option("--batch", o.batch, "Samples in the batch (default 1)");
  cmd->add_option("--mapping", o.mapping, "B_R,B_P,k (default: the best allowed mapping)");
  cmd->add_option("--groups", o.groups, "Identical GEMMs run back to back (grouped convolution)");
  cmd->add_option("--convention", o.convention, "npusim (default) or scalesim: report cycles as SCALE-Sim v2 does")
      ->check(CLI::IsMember({"npusim", "scalesim"}));
  cmd->add_flag("--json", o.json, "Print JSON: one object, or one per line and layer with --topology");
  cmd->add_option("--set", o.overrides, "Override an NPU key: npu.KEY=VALUE (repeatable)");
  return cmd;
}

void run_cost(const CostOptions& o, std::ostream& out) {
  const int layers_given = !o.gemm.empty() + !o.conv.empty() + !o.topology.empty();
  if (layers_given != 1)
    throw UsageError("cost: give exactly one of --gemm R,P,C, --conv H,W,Fh,Fw,C,K,S or --topology FILE.csv");
  if (o.batch == 0) throw UsageError("--batch 0: allowed a batch of at least 1");
  if (o.groups == 0) throw UsageError("--groups 0: allowed at least 1");
  if (!o.topology.empty() && (!o.mapping.empty() || o.groups != 1))
    throw UsageError("--topology: --mapping and --groups apply to one layer; each topology layer gets its best mapping");
  const npu::Npu npu = load_npu_option(o.npu_file, o.overrides);
  const bool scalesim = o.convention == "scalesim";
  if (scalesim) {
    require_scalesim_npu(npu);
    if (o.batch != 1) throw UsageError(fmt::format("--batch {}: allowed 1 with --convention scalesim (SCALE-Sim v2 has no batch)", o.batch));
    if (!o.mapping.empty() || o.groups != 1)
      throw UsageError("--convention scalesim: --mapping and --groups do not apply (SCALE-Sim runs one plain layer)");
  }
  if (!o.topology.empty()) return run_topology(o, npu, scalesim, out);
  if (scalesim) return run_scalesim_single(o, npu, out);
  run_npusim_single(o, npu, out);
}

}  // namespace npusim::sim
