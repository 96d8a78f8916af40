#include "sim/network_yaml.hpp"

#include <algorithm>
#include <fstream>
#include <sstream>

#include <fmt/format.h>

#include "sim/embedded_models.hpp"
#include "traces/input_file.hpp"
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

}  // namespace

workloads::NetworkDef parse_network(const ConfigNode& document, const std::filesystem::path& base_dir,
                                    const ModelLoadOptions& options) {
  document.expect_keys({"network"});
  const ConfigNode node = document.at("network");
  node.expect_keys({"name", "description", "input", "layers", "scalesim_csv", "strict", "exits"});
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
  if (node.has("layers") == node.has("scalesim_csv"))
    node.fail_here("give exactly one of layers (a layer list) or scalesim_csv (a SCALE-Sim file)");
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
      return workloads::lower_network(parse_network(ConfigNode::load_text(std::string(model.yaml), source), "."));
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
  if (!std::filesystem::exists(file) && file.extension().empty()) {
    std::vector<std::string> names;
    for (const auto& model : embedded::models) names.emplace_back(model.name);
    throw ConfigError(fmt::format("{}: not a zoo model ({}) and no such file", name_or_file, fmt::join(names, ", ")));
  }
  return workloads::lower_network(parse_network(ConfigNode::load_file(file), file.parent_path(), options));
}

}  // namespace npusim::sim
