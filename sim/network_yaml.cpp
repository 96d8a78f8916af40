#include "sim/network_yaml.hpp"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <numeric>
#include <sstream>

#include <fmt/format.h>

#include "sim/embedded_models.hpp"
#include "traces/input_file.hpp"
#include "workloads/onnx_import.hpp"
#include "workloads/scalesim_csv.hpp"

namespace npusim::sim {
namespace {

std::string origin_of(const ConfigNode& node) { return node.where(); }

// kernel: 3 or [3, 1] (height, width).
void read_pair(const ConfigNode& node, std::string_view key, std::uint32_t& height, std::uint32_t& width) {
  if (!node.has(key)) return;
  const ConfigNode value = node.at(key);
  if (value.display_value() == "<list>") {
    const auto items = value.as_list();
    if (items.size() != 2) value.fail(value.display_value(), "a number or [height, width]");
    height = items[0].as_uint32();
    width = items[1].as_uint32();
  } else {
    height = width = value.as_uint32();
  }
}

bool read_bool(const ConfigNode& node) {
  const std::string text = node.as_string();
  if (text == "true") return true;
  if (text == "false") return false;
  node.fail(text, "true or false");
}

workloads::LayerDef parse_layer(const ConfigNode& node) {
  using workloads::LayerType;
  workloads::LayerDef layer;
  layer.origin = origin_of(node);
  layer.type = static_cast<LayerType>(node.at("type").as_choice(workloads::file_layer_type_names(), "a layer type"));
  switch (layer.type) {
    case LayerType::conv:
      node.expect_keys({"name", "type", "inputs", "out_channels", "kernel", "stride", "padding",
                        "groups", "bias", "in_channels"});
      break;
    case LayerType::fc:
      node.expect_keys({"name", "type", "inputs", "out_channels", "bias", "in_features"});
      break;
    case LayerType::maxpool:
    case LayerType::avgpool:
      node.expect_keys({"name", "type", "inputs", "kernel", "stride", "padding"});
      break;
    case LayerType::global_avgpool:
    case LayerType::add:
    case LayerType::concat:
    case LayerType::matmul:  // not among the file types as_choice accepts
    case LayerType::vector:
    case LayerType::resample:
      node.expect_keys({"name", "type", "inputs"});
      break;
  }
  layer.name = node.at("name").as_name();
  if (node.has("inputs")) {
    const ConfigNode inputs = node.at("inputs");
    if (inputs.display_value() == "<list>") {
      for (const auto& item : inputs.as_list()) layer.inputs.push_back(item.as_string());
    } else {
      layer.inputs.push_back(inputs.as_string());
    }
  }
  if (node.has("out_channels")) layer.out_channels = node.at("out_channels").as_uint32();
  else if (layer.type == LayerType::conv || layer.type == LayerType::fc)
    node.at("out_channels");  // reports the missing key
  read_pair(node, "kernel", layer.kernel_height, layer.kernel_width);
  read_pair(node, "stride", layer.stride_height, layer.stride_width);
  read_pair(node, "padding", layer.padding_height, layer.padding_width);
  if (node.has("groups")) layer.groups = node.at("groups").as_uint32();
  if (node.has("bias")) layer.bias = read_bool(node.at("bias"));
  if (node.has("in_channels")) layer.expected_in_channels = node.at("in_channels").as_uint32();
  if (node.has("in_features")) layer.expected_in_channels = node.at("in_features").as_uint32();
  if ((layer.type == LayerType::maxpool || layer.type == LayerType::avgpool) && !node.has("kernel"))
    node.at("kernel");
  return layer;
}

workloads::ExitDef parse_exit(const ConfigNode& node) {
  node.expect_keys({"name", "after", "probability", "classifier"});
  workloads::ExitDef exit;
  exit.origin = origin_of(node);
  exit.name = node.at("name").as_name();
  exit.after = node.at("after").as_string();
  exit.probability = node.at("probability").as_double();
  if (node.has("classifier"))
    for (const auto& item : node.at("classifier").as_list()) exit.classifier.push_back(parse_layer(item));
  return exit;
}

workloads::ScaleSimChaining chaining(bool strict) {
  return strict ? workloads::ScaleSimChaining::strict : workloads::ScaleSimChaining::implicit_steps;
}

std::string read_file(const std::filesystem::path& file) {
  try {
    return traces::read_input_file(file);
  } catch (const traces::InputFileError& e) {
    throw ConfigError(e.what());
  }
}

// ONNX models carry their weights, so they may be far larger than a configuration file:
// protobuf reads less than 2 GiB.
constexpr std::uint64_t max_onnx_bytes = std::uint64_t{2047} << 20;

// `where` prefixes a file error ("net.yaml:3: network.backbone: "), empty for a command line name.
workloads::OnnxBackbone read_onnx(const std::filesystem::path& file, const std::string& where) {
#ifdef NPUSIM_HAS_ONNX
  std::string bytes;
  try {
    bytes = traces::read_input_file(file, max_onnx_bytes);
  } catch (const traces::InputFileError& e) {
    throw ConfigError(where + e.what());
  }
  return workloads::import_onnx(bytes, file.string());
#else
  throw ConfigError(fmt::format("{}{}: this npusim was built without ONNX import (NPUSIM_ONNX=OFF): allowed zoo "
                                "names, network YAML and SCALE-Sim CSV",
                                where, file.string()));
#endif
}

// Levenshtein distance, for suggesting the names closest to one that names nothing.
std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> row(b.size() + 1);
  std::iota(row.begin(), row.end(), std::size_t{0});
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diagonal = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

std::vector<std::string> closest_names(const std::string& wanted, const std::map<std::string, std::string>& names) {
  std::vector<std::pair<std::size_t, std::string>> ranked;
  for (const auto& [name, layer] : names)
    if (!layer.empty()) ranked.emplace_back(edit_distance(wanted, name), name);
  const std::size_t shown = std::min<std::size_t>(3, ranked.size());
  std::partial_sort(ranked.begin(), ranked.begin() + static_cast<std::ptrdiff_t>(shown), ranked.end());
  std::vector<std::string> out;
  for (std::size_t i = 0; i < shown; ++i) out.push_back(traces::printable(ranked[i].second));
  return out;
}

// An exit of an ONNX backbone: `after` names a node or tensor of the graph (or is left out for
// the final exit); the classifier is `classes: N` (global average pool + FC to N), a layer list,
// or a second ONNX file whose input is the tensor the exit hangs off.
workloads::ExitDef parse_onnx_exit(const ConfigNode& node, const workloads::OnnxBackbone& backbone,
                                   const std::filesystem::path& base_dir) {
  node.expect_keys({"name", "after", "probability", "classes", "classifier"});
  workloads::ExitDef exit;
  exit.origin = origin_of(node);
  exit.name = node.at("name").as_name();
  exit.probability = node.at("probability").as_double();
  exit.after = backbone.last_layer;
  if (node.has("after")) {
    const ConfigNode after = node.at("after");
    const std::string wanted = after.as_string();
    const auto found = backbone.layer_of.find(wanted);
    if (found == backbone.layer_of.end())
      after.fail(wanted, fmt::format("a node or tensor name of {}; closest: {}", backbone.net.source,
                                     fmt::join(closest_names(wanted, backbone.layer_of), ", ")));
    if (found->second.empty())
      after.fail(wanted, "a node or tensor computed from the input (this is the input, a constant, or unused)");
    exit.after = found->second;
  }
  if (node.has("classes") && node.has("classifier"))
    node.fail_here("give one of classes (global average pool + FC) or classifier (layers or an ONNX file)");
  if (node.has("classes")) {
    const ConfigNode classes = node.at("classes");
    const std::uint32_t count = classes.as_uint32();
    if (count < 1) classes.fail(classes.display_value(), "at least 1 class");
    workloads::LayerDef pool;
    pool.name = exit.name + ".pool";
    pool.type = workloads::LayerType::global_avgpool;
    pool.origin = exit.origin;
    workloads::LayerDef fc;
    fc.name = exit.name + ".fc";
    fc.type = workloads::LayerType::fc;
    fc.out_channels = count;
    fc.bias = true;
    fc.origin = exit.origin;
    exit.classifier = {pool, fc};
  } else if (node.has("classifier") && node.at("classifier").display_value() != "<list>") {
    const ConfigNode file = node.at("classifier");
    auto head = read_onnx(base_dir / file.as_string(), fmt::format("{}: {}: ", origin_of(file), file.path()));
    // Its layers keep their names under the exit's; its input is the tensor the exit hangs off.
    const auto renamed = [&](const std::string& name) { return name == "input" ? exit.after : exit.name + "." + name; };
    for (auto& layer : head.net.layers) {
      layer.name = renamed(layer.name);
      for (auto& from : layer.inputs) from = renamed(from);
      if (layer.inputs.empty()) layer.inputs.push_back(exit.after);
      exit.classifier.push_back(std::move(layer));
    }
  } else if (node.has("classifier")) {
    for (const auto& item : node.at("classifier").as_list()) exit.classifier.push_back(parse_layer(item));
  }
  return exit;
}

}  // namespace

workloads::NetworkDef parse_network(const ConfigNode& document, const std::filesystem::path& base_dir,
                                    const ModelLoadOptions& options) {
  document.expect_keys({"network"});
  const ConfigNode node = document.at("network");
  node.expect_keys({"name", "description", "input", "layers", "scalesim_csv", "strict", "backbone", "exits"});
  workloads::NetworkDef net;
  net.source = document.source();
  net.name = node.at("name").as_name();
  if (node.has("description")) {
    const ConfigNode description = node.at("description");
    net.description = description.as_string();
    // It reaches `describe models` and JSON verbatim, as names do.
    for (const char c : net.description)
      if (c < 0x20 || c > 0x7E)
        description.fail(traces::printable(net.description), "a description of printable ASCII characters");
  }
  if (int{node.has("layers")} + int{node.has("scalesim_csv")} + int{node.has("backbone")} != 1)
    node.fail_here("give exactly one of layers (a layer list), scalesim_csv (a SCALE-Sim file) or backbone (an ONNX model)");
  if (node.has("backbone")) {
    for (const char* key : {"input", "strict"})
      if (node.has(key)) node.at(key).fail_here("does not apply to an ONNX backbone (the model gives its input)");
    const ConfigNode file = node.at("backbone");
    auto backbone = read_onnx(base_dir / file.as_string(), fmt::format("{}: {}: ", origin_of(file), file.path()));
    net.input = backbone.net.input;
    net.layers = std::move(backbone.net.layers);
    if (net.description.empty()) net.description = backbone.net.description;
    double early = 0;
    bool final_given = false;
    for (const auto& item : node.at("exits").as_list()) {
      net.exits.push_back(parse_onnx_exit(item, backbone, base_dir));
      final_given = final_given || net.exits.back().after == backbone.last_layer;
      early += net.exits.back().probability;
    }
    // The final classifier is the model's own output: an exit there may be left out, and then
    // takes the share no early exit does.
    if (!final_given) {
      if (early > 1.0 + 1e-6)
        node.at("exits").fail(fmt::format("probabilities summing to {}", early),
                              "early exits whose probabilities sum to at most 1 (the final exit takes the rest)");
      // Rounded so that 1 - (0.4 + 0.3) reads 0.3, not 0.30000000000000004.
      const double rest = std::round(std::max(0.0, 1.0 - early) * 1e12) / 1e12;
      net.exits.push_back({"final", backbone.last_layer, rest, {}, origin_of(node.at("exits"))});
    }
    return net;
  }
  if (node.has("scalesim_csv")) {
    if (node.has("input")) node.at("input").fail_here("the SCALE-Sim file's first row sets the input");
    const std::filesystem::path csv = base_dir / node.at("scalesim_csv").as_string();
    std::string text;
    try {
      text = traces::read_input_file(csv);
    } catch (const traces::InputFileError& e) {
      throw ConfigError(fmt::format("{}: network.scalesim_csv: {}", origin_of(node.at("scalesim_csv")), e.what()));
    }
    const bool strict = options.strict_scalesim || (node.has("strict") && read_bool(node.at("strict")));
    std::istringstream in(text);
    workloads::import_scalesim_csv(in, csv.string(), net, chaining(strict));
  } else {
    if (node.has("strict")) node.at("strict").fail_here("applies to a scalesim_csv backbone only");
    const ConfigNode input = node.at("input");
    input.expect_keys({"height", "width", "channels"});
    net.input = {input.at("height").as_uint32(), input.at("width").as_uint32(), input.at("channels").as_uint32()};
    for (const auto& item : node.at("layers").as_list()) net.layers.push_back(parse_layer(item));
  }
  for (const auto& item : node.at("exits").as_list()) net.exits.push_back(parse_exit(item));
  return net;
}

std::vector<ZooEntry> model_zoo() {
  std::vector<ZooEntry> zoo;
  for (const auto& model : embedded::models) {
    const auto doc = ConfigNode::load_text(std::string(model.yaml), std::string(model.name));
    const auto net = parse_network(doc, ".");
    zoo.push_back({net.name, net.description});
  }
  std::sort(zoo.begin(), zoo.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  return zoo;
}

bool is_zoo_model(const std::string& name) {
  for (const auto& model : embedded::models)
    if (name == model.name) return true;
  return false;
}

workloads::LoweredNetwork load_model(const std::string& name_or_file, const ModelLoadOptions& options) {
  for (const auto& model : embedded::models)
    if (name_or_file == model.name) {
      const std::string source = fmt::format("<zoo {}>", model.name);
      return workloads::lower_network(parse_network(ConfigNode::load_embedded_text(std::string(model.yaml), source), "."));
    }
  const std::filesystem::path file(name_or_file);
  if (file.extension() == ".csv") {
    const std::string text = read_file(file);
    std::istringstream in(text);
    workloads::NetworkDef net;
    net.source = file.string();
    net.name = file.stem().string();
    workloads::import_scalesim_csv(in, file.string(), net, chaining(options.strict_scalesim));
    // A bare backbone: every sample runs to the last layer. Exits come from an overlay.
    net.exits.push_back({"final", net.layers.back().name, 1.0, {}, file.string()});
    return workloads::lower_network(net);
  }
  if (file.extension() == ".onnx") {
    auto backbone = read_onnx(file, "");
    workloads::NetworkDef net = std::move(backbone.net);
    net.name = file.stem().string();
    // A bare backbone: every sample runs to the model's output. Exits come from an overlay.
    net.exits.push_back({"final", backbone.last_layer, 1.0, {}, file.string()});
    return workloads::lower_network(net);
  }
  if (!std::filesystem::exists(file) && file.extension().empty()) {
    std::vector<std::string> names;
    for (const auto& model : embedded::models) names.emplace_back(model.name);
    throw ConfigError(fmt::format("{}: not a zoo model ({}) and no such file", name_or_file, fmt::join(names, ", ")));
  }
  return workloads::lower_network(parse_network(ConfigNode::load_file(file), file.parent_path(), options));
}

}  // namespace npusim::sim
