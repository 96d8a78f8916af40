#include "sim/model_report.hpp"

#include <sstream>

#include <fmt/format.h>

#include "sim/json.hpp"

namespace npusim::sim {
namespace {

struct Gemm {
  std::uint64_t r = 0, p = 0, c = 0, groups = 0;
};

Gemm gemm_of(const workloads::LoweredLayer& l) {
  if (l.work.on_vector_path) return {};
  return {l.work.gemm.rows, l.work.gemm.depth, l.work.gemm.cols, l.work.gemm.groups};
}

std::string exit_label(const workloads::LoweredNetwork& net, const workloads::LoweredLayer& l) {
  return l.exit_index < 0 ? "" : net.exits[static_cast<std::size_t>(l.exit_index)].name;
}

// An implicit step (one the importer added, docs/models.md) is marked with a star.
std::string kind_label(const workloads::LoweredLayer& l) {
  return workloads::to_string(l.type) + (l.implicit ? "*" : "");
}

}  // namespace

std::string model_text(const workloads::LoweredNetwork& net) {
  std::ostringstream out;
  out << fmt::format("network {}: {}\n", net.name, net.description);
  out << fmt::format("input {}; layers in execution order (R x P times P x C per group; vector-path layers have no GEMM)\n",
                     workloads::to_string(net.input));
  out << fmt::format("{:>4}  {:<28} {:<14} {:<7} {:>14} {:>8} {:>6} {:>6} {:>6} {:>14}\n", "#", "layer",
                     "kind", "exit", "output", "R", "P", "C", "groups", "MACs");
  std::size_t backbone = 0;
  std::size_t implicit = 0;
  for (std::size_t i = 0; i < net.layers.size(); ++i) {
    const auto& l = net.layers[i];
    const Gemm g = gemm_of(l);
    backbone += l.exit_index < 0 ? 1 : 0;
    implicit += l.implicit ? 1 : 0;
    out << fmt::format("{:>4}  {:<28} {:<14} {:<7} {:>14} {:>8} {:>6} {:>6} {:>6} {:>14}\n", i, l.name,
                       kind_label(l), exit_label(net, l), workloads::to_string(l.output),
                       g.r, g.p, g.c, g.groups, l.macs);
  }
  if (implicit > 0)
    out << fmt::format("* implicit: {} step{} not in the source, joining rows that do not chain (pooling, or "
                       "resampling when channels or size grow), priced as vector work; --strict refuses them\n",
                       implicit, implicit == 1 ? "" : "s");
  out << "exits (probability: share of samples that leave there; MACs a leaving sample costs)\n";
  for (const auto& e : net.exits)
    out << fmt::format("  {:<8} after #{:<4} {:<28} p = {:<6} {:>10.1f} MMAC\n", e.name, e.after_layer,
                       net.layers[e.after_layer].name, e.probability,
                       static_cast<double>(e.macs_to_exit) / 1e6);
  double expected = 0;
  for (const auto& e : net.exits) expected += e.probability * static_cast<double>(e.macs_to_exit);
  out << fmt::format("total: {} backbone + {} classifier layers, {:.1f} MMAC and {:.3f} M parameters "
                     "(backbone alone {:.1f} MMAC, {:.3f} M); {:.1f} MMAC expected per sample\n",
                     backbone, net.layers.size() - backbone, static_cast<double>(net.total_macs) / 1e6,
                     static_cast<double>(net.total_params) / 1e6, static_cast<double>(net.backbone_macs) / 1e6,
                     static_cast<double>(net.backbone_params) / 1e6, expected / 1e6);
  return out.str();
}

std::string model_json(const workloads::LoweredNetwork& net) {
  std::ostringstream out;
  out << fmt::format("{{\"name\": {}, \"description\": {}, \"input\": {{\"height\": {}, \"width\": {}, \"channels\": {}}}, \"layers\": [",
                     json_string(net.name), json_string(net.description), net.input.height,
                     net.input.width, net.input.channels);
  for (std::size_t i = 0; i < net.layers.size(); ++i) {
    const auto& l = net.layers[i];
    const Gemm g = gemm_of(l);
    const std::string exit = l.exit_index < 0 ? "null" : json_string(exit_label(net, l));
    out << (i ? ", " : "")
        << fmt::format("{{\"name\": {}, \"kind\": \"{}\", \"exit\": {}, \"output\": [{}, {}, {}], \"r\": {}, \"p\": {}, \"c\": {}, \"groups\": {}, \"macs\": {}, \"params\": {}, \"implicit\": {}, \"op\": {}}}",
                       json_string(l.name), workloads::to_string(l.type), exit, l.output.height,
                       l.output.width, l.output.channels, g.r, g.p, g.c, g.groups, l.macs, l.params,
                       l.implicit ? "true" : "false", l.op.empty() ? "null" : json_string(l.op));
  }
  out << "], \"exits\": [";
  for (std::size_t i = 0; i < net.exits.size(); ++i) {
    const auto& e = net.exits[i];
    out << (i ? ", " : "")
        << fmt::format("{{\"name\": {}, \"after_layer\": {}, \"after_index\": {}, \"probability\": {}, \"macs_to_exit\": {}}}",
                       json_string(e.name), json_string(net.layers[e.after_layer].name), e.after_layer,
                       e.probability, e.macs_to_exit);
  }
  out << fmt::format("], \"total_macs\": {}, \"total_params\": {}, \"backbone_macs\": {}, \"backbone_params\": {}}}\n",
                     net.total_macs, net.total_params, net.backbone_macs, net.backbone_params);
  return out.str();
}

}  // namespace npusim::sim
