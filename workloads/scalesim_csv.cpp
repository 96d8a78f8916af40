#include "workloads/scalesim_csv.hpp"

#include <algorithm>
#include <charconv>
#include <vector>

#include <fmt/format.h>

#include "traces/input_file.hpp"

namespace npusim::workloads {
namespace {

std::string trim(const std::string& text) {
  const auto begin = text.find_first_not_of(" \t\r");
  if (begin == std::string::npos) return "";
  return text.substr(begin, text.find_last_not_of(" \t\r") - begin + 1);
}

// SCALE-Sim pads its columns ("224         ,") and reads them with Python's int(), which skips
// blanks: so do these files' readers, unlike npusim's own trace CSV.
std::vector<std::string> split(const std::string& line) {
  std::vector<std::string> fields;
  std::size_t begin = 0;
  while (true) {
    const auto comma = line.find(',', begin);
    fields.push_back(trim(line.substr(begin, comma == std::string::npos ? std::string::npos : comma - begin)));
    if (comma == std::string::npos) break;
    begin = comma + 1;
  }
  if (fields.size() > 1 && fields.back().empty()) fields.pop_back();
  return fields;
}

// Layer names reach CSV and JSON outputs verbatim.
void check_name(const std::string& name, const std::string& where) {
  if (name.empty()) throw NetworkError(fmt::format("{}: Layer name is empty", where));
  if (!traces::is_valid_name(name))
    throw NetworkError(fmt::format("{}: Layer name = \"{}\": allowed {}", where, traces::printable(name), traces::name_rule));
}

const char* const columns[] = {"Layer name", "IFMAP Height", "IFMAP Width", "Filter Height",
                               "Filter Width", "Channels", "Num Filter", "Strides"};

// The step that turns `from` (the previous row's output) into `to` (a row's IFMAP) when the two
// do not chain. Same channels and no larger: a max pooling whose stride and window give exactly
// `to` (SCALE-Sim leaves pooling out). Otherwise (more channels, or larger: the row reads some
// other tensor, a branch or a block's input) a resampling pass that reads and writes `to` once.
LayerDef implicit_step(const std::string& row, const TensorShape& from, const TensorShape& to, const std::string& where) {
  LayerDef step;
  step.name = row + ".implicit";
  step.origin = where;
  step.implicit = true;
  npu::LayerSpec spec;
  spec.name = step.name;
  spec.kind = npu::LayerKind::pooling;
  if (to.channels == from.channels && to.height <= from.height && to.width <= from.width) {
    step.type = LayerType::maxpool;
    const auto window = [](std::uint32_t in, std::uint32_t out, std::uint32_t& kernel, std::uint32_t& stride) {
      stride = std::max<std::uint32_t>(1, in / out);
      kernel = in - (out - 1) * stride;
    };
    spec.in_height = from.height;
    spec.in_width = from.width;
    window(from.height, to.height, spec.kernel_height, spec.stride_height);
    window(from.width, to.width, spec.kernel_width, spec.stride_width);
  } else {
    step.type = LayerType::resample;
    spec.in_height = to.height;
    spec.in_width = to.width;
  }
  spec.in_channels = spec.out_channels = to.channels;
  step.kernel_height = spec.kernel_height;
  step.kernel_width = spec.kernel_width;
  step.stride_height = spec.stride_height;
  step.stride_width = spec.stride_width;
  step.work = npu::lower(spec);
  return step;
}

}  // namespace

void import_scalesim_csv(std::istream& in, const std::string& source, NetworkDef& net, ScaleSimChaining chaining) {
  std::string line;
  std::size_t number = 0;
  bool header_seen = false;
  TensorShape previous{};
  while (std::getline(in, line)) {
    ++number;
    if (trim(line).empty()) continue;
    const auto fields = split(line);
    const std::string where = fmt::format("{}:{}", source, number);
    if (!header_seen) {
      if (fields.size() != 8 || fields[0] != columns[0])
        throw NetworkError(fmt::format("{}: expected the SCALE-Sim header: {}", where,
                                       fmt::join(columns, ", ")));
      header_seen = true;
      continue;
    }
    if (fields.size() != 8)
      throw NetworkError(fmt::format("{}: {} fields: allowed 8 ({})", where, fields.size(),
                                     fmt::join(columns, ", ")));
    std::uint32_t v[8] = {};
    for (int i = 1; i < 8; ++i) {
      const std::string& f = fields[i];
      const auto [end, ec] = std::from_chars(f.data(), f.data() + f.size(), v[i]);
      if (ec != std::errc{} || end != f.data() + f.size() || f.empty() || v[i] == 0)
        throw NetworkError(fmt::format("{}: {} = {}: allowed a positive integer", where, columns[i], f));
    }
    LayerDef layer;
    layer.name = fields[0];
    layer.type = LayerType::conv;
    layer.kernel_height = v[3];
    layer.kernel_width = v[4];
    layer.out_channels = v[6];
    layer.stride_height = layer.stride_width = v[7];
    layer.origin = where;
    check_name(layer.name, where);
    if (net.layers.empty()) {
      net.input = {v[1], v[2], v[5]};
    } else {
      const std::int64_t pad_h = (std::int64_t{v[1]} - previous.height);
      const std::int64_t pad_w = (std::int64_t{v[2]} - previous.width);
      const bool chains = v[5] == previous.channels && pad_h >= 0 && pad_w >= 0 && pad_h % 2 == 0 && pad_w % 2 == 0;
      if (!chains && chaining == ScaleSimChaining::strict)
        throw NetworkError(fmt::format(
            "{}: layer {}: IFMAP {}x{}x{} does not follow from {}'s {} output (rows must chain: same "
            "channels, input = output + symmetric padding)",
            where, layer.name, v[1], v[2], v[5], net.layers.back().name, to_string(previous)));
      if (chains) {
        layer.padding_height = static_cast<std::uint32_t>(pad_h / 2);
        layer.padding_width = static_cast<std::uint32_t>(pad_w / 2);
      } else {
        check_name(layer.name + ".implicit", where);
        net.layers.push_back(implicit_step(layer.name, previous, {v[1], v[2], v[5]}, where));
      }
    }
    if (v[3] > v[1] || v[4] > v[2])
      throw NetworkError(fmt::format("{}: layer {}: filter {}x{} is larger than the IFMAP {}x{}",
                                     where, layer.name, v[3], v[4], v[1], v[2]));
    previous = {(v[1] - v[3]) / v[7] + 1, (v[2] - v[4]) / v[7] + 1, v[6]};
    net.layers.push_back(std::move(layer));
  }
  if (!header_seen) throw NetworkError(fmt::format("{}: empty file: expected the SCALE-Sim header", source));
  if (net.layers.empty()) throw NetworkError(fmt::format("{}: no layers after the header", source));
}

std::vector<ScaleSimLayer> read_scalesim_topology(std::istream& in, const std::string& source) {
  static const char* const fields_named[] = {"IFMAP Height", "IFMAP Width", "Filter Height", "Filter Width",
                                             "Channels",     "Num Filter",  "Stride Height", "Stride Width"};
  std::vector<ScaleSimLayer> layers;
  std::string line;
  std::size_t number = 0;
  bool header_seen = false;
  while (std::getline(in, line)) {
    ++number;
    if (trim(line).empty()) continue;
    if (!header_seen) {
      header_seen = true;
      continue;
    }
    const auto fields = split(line);
    const std::string where = fmt::format("{}:{}", source, number);
    if (fields.size() != 8 && fields.size() != 9)
      throw NetworkError(fmt::format("{}: {} fields: allowed 8 (Layer name, IFMAP Height, IFMAP Width, Filter "
                                     "Height, Filter Width, Channels, Num Filter, Strides) or 9 (two strides)",
                                     where, fields.size()));
    std::uint32_t v[8] = {};
    for (std::size_t i = 1; i < fields.size(); ++i) {
      const std::string& f = fields[i];
      const auto [end, ec] = std::from_chars(f.data(), f.data() + f.size(), v[i - 1]);
      if (ec != std::errc{} || end != f.data() + f.size() || f.empty() || v[i - 1] == 0)
        throw NetworkError(fmt::format("{}: {} = {}: allowed a positive integer", where,
                                       fields.size() == 8 && i == 7 ? "Strides" : fields_named[i - 1], f));
    }
    if (fields.size() == 8) v[7] = v[6];
    ScaleSimLayer layer{fields[0], v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], where};
    check_name(layer.name, where);
    if (layer.filter_height > layer.ifmap_height || layer.filter_width > layer.ifmap_width)
      throw NetworkError(fmt::format("{}: layer {}: filter {}x{} is larger than the IFMAP {}x{}", where, layer.name,
                                     layer.filter_height, layer.filter_width, layer.ifmap_height, layer.ifmap_width));
    if (layer.name.find("DP") != std::string::npos) {
      const std::uint32_t channels = layer.channels;
      layer.channels = 1;
      for (std::uint32_t c = 0; c < channels; ++c) {
        layers.push_back(layer);
        layers.back().name = fmt::format("{}Channel_{}", fields[0], c);
      }
    } else {
      layers.push_back(std::move(layer));
    }
  }
  if (layers.empty()) throw NetworkError(fmt::format("{}: no layers after the header", source));
  return layers;
}

}  // namespace npusim::workloads
