#include "workloads/network.hpp"

#include <algorithm>
#include <cmath>
#include <map>
#include <limits>
#include <numeric>
#include <optional>
#include <queue>

#include <boost/graph/adjacency_list.hpp>
#include <boost/graph/depth_first_search.hpp>
#include <fmt/format.h>

#include "traces/checked.hpp"
#include "traces/input_file.hpp"

namespace npusim::workloads {

std::string to_string(LayerType type) { return layer_type_names()[static_cast<std::size_t>(type)]; }

const std::vector<std::string>& layer_type_names() {
  static const std::vector<std::string> names{"conv",   "fc",     "maxpool", "avgpool", "global_avgpool",
                                              "add",    "concat", "matmul",  "vector",  "resample"};
  return names;
}

const std::vector<std::string>& file_layer_type_names() {
  // The file types are the enum's first ones, through concat.
  static const std::vector<std::string> names(
      layer_type_names().begin(), layer_type_names().begin() + static_cast<std::ptrdiff_t>(LayerType::concat) + 1);
  return names;
}

std::string to_string(const TensorShape& s) {
  return fmt::format("{}x{}x{}", s.height, s.width, s.channels);
}

std::vector<double> LoweredNetwork::exit_probabilities() const {
  std::vector<double> p;
  for (const auto& e : exits) p.push_back(e.probability);
  return p;
}

namespace {

using Graph = boost::adjacency_list<boost::vecS, boost::vecS, boost::bidirectionalS>;
using Vertex = Graph::vertex_descriptor;

constexpr const char* network_input = "input";

// Far above any real network (ResNet-50's largest tensor has 0.8 M elements, its largest layer
// 0.1 G MACs), and low enough that a batch of 1024 through the cost model stays inside 64 bits.
constexpr std::uint64_t max_tensor_elements = std::uint64_t{1} << 31;
constexpr std::uint64_t max_layer_macs = std::uint64_t{1} << 48;

std::optional<std::uint64_t> elements_of(const TensorShape& t) {
  const auto area = traces::checked_mul<std::uint64_t>(t.height, t.width);
  return area ? traces::checked_mul<std::uint64_t>(*area, t.channels) : std::nullopt;
}

// One node of the graph: a backbone layer or a classifier layer of an exit.
struct Node {
  const LayerDef* def = nullptr;
  int exit_index = -1;
};

class Lowering {
 public:
  explicit Lowering(const NetworkDef& net) : net_(net) {}

  LoweredNetwork run() {
    collect_nodes();
    graph_ = Graph(nodes_.size());
    connect();
    reject_cycles();
    order_backbone();
    const auto exit_order = order_exits();
    LoweredNetwork out;
    out.name = net_.name;
    out.description = net_.description;
    out.input = net_.input;
    std::vector<std::size_t> position(nodes_.size());
    std::vector<TensorShape> shapes(nodes_.size());
    emitted_.assign(nodes_.size(), false);
    const auto emit = [&](std::size_t v) {
      emitted_[v] = true;
      position[v] = out.layers.size();
      out.layers.push_back(lower_layer(v, shapes));
      for (auto from : inputs_[v])
        out.layers.back().work.inputs.push_back(from == kNetworkInput ? -1 : static_cast<std::int64_t>(position[from]));
    };
    std::size_t next_exit = 0;
    for (std::size_t v : backbone_order_) {
      emit(v);
      while (next_exit < exit_order.size() && attach_[exit_order[next_exit]] == v) {
        const std::size_t e = exit_order[next_exit++];
        LoweredExit lowered;
        lowered.name = net_.exits[e].name;
        lowered.after_layer = position[v];
        lowered.probability = net_.exits[e].probability;
        for (std::size_t c : classifier_order(e)) {
          for (auto from : inputs_[c])
            if (from != kNetworkInput && from < backbone_count_ && !emitted_[from])
              fail_at(*nodes_[c].def, fmt::format("input {} runs after the exit's layer {}: a classifier may only "
                                                  "read layers up to the one it hangs off",
                                                  nodes_[from].def->name, net_.exits[e].after));
          lowered.classifier_layers.push_back(out.layers.size());
          emit(c);
          out.layers.back().exit_index = static_cast<int>(out.exits.size());
        }
        out.exits.push_back(std::move(lowered));
      }
    }
    mark_live_activations(out, position, shapes);
    std::uint64_t running = 0;
    std::size_t layer = 0;
    for (auto& e : out.exits) {
      for (; layer <= e.decided_after(); ++layer) running = add_count(running, out.layers[layer].macs, "MACs");
      e.macs_to_exit = running;
    }
    for (const auto& l : out.layers) {
      out.total_macs = add_count(out.total_macs, l.macs, "MACs");
      out.total_params = add_count(out.total_params, l.params, "parameters");
      if (l.exit_index < 0) {
        out.backbone_macs = add_count(out.backbone_macs, l.macs, "MACs");
        out.backbone_params = add_count(out.backbone_params, l.params, "parameters");
      }
    }
    return out;
  }

 private:
  // A tensor is live at the boundary before layer b when a layer before b produced it and a
  // layer at or after b still reads it (the network input counts as produced before layer 0).
  void mark_live_activations(LoweredNetwork& out, const std::vector<std::size_t>& position,
                             const std::vector<TensorShape>& shapes) const {
    // Tensors were checked against max_tensor_elements while lowering, so these cannot overflow.
    const auto elements = [](const TensorShape& t) { return *elements_of(t); };
    std::vector<std::int64_t> delta(out.layers.size() + 1, 0);
    const auto live_between = [&](std::size_t first_boundary, std::size_t last_reader, std::uint64_t size) {
      if (last_reader < first_boundary) return;
      delta[first_boundary] += static_cast<std::int64_t>(size);
      delta[last_reader + 1] -= static_cast<std::int64_t>(size);
    };
    std::vector<std::size_t> last_reader(nodes_.size(), 0);
    std::vector<bool> read(nodes_.size(), false);
    std::size_t input_last_reader = 0;
    for (std::size_t c = 0; c < nodes_.size(); ++c)
      for (auto from : inputs_[c]) {
        if (from == kNetworkInput) {
          input_last_reader = std::max(input_last_reader, position[c]);
        } else {
          last_reader[from] = read[from] ? std::max(last_reader[from], position[c]) : position[c];
          read[from] = true;
        }
      }
    live_between(0, input_last_reader, elements(net_.input));
    for (std::size_t v = 0; v < nodes_.size(); ++v)
      if (read[v]) live_between(position[v] + 1, last_reader[v], elements(shapes[v]));
    std::int64_t live = 0;
    for (std::size_t b = 0; b < out.layers.size(); ++b) {
      live += delta[b];
      out.layers[b].live_elements_before = static_cast<std::uint64_t>(live);
    }
  }

  [[noreturn]] void fail(const std::string& message) const {
    throw NetworkError(fmt::format("{}: {}", net_.source, message));
  }
  std::uint64_t add_count(std::uint64_t total, std::uint64_t more, const char* what) const {
    const auto sum = traces::checked_add(total, more);
    if (!sum) fail(fmt::format("the network's {} per sample exceed {}: allowed networks whose totals fit", what,
                               std::numeric_limits<std::uint64_t>::max()));
    return *sum;
  }
  // Every tensor a layer reads or writes is held to max_tensor_elements per sample.
  void check_tensor(const LayerDef& d, const TensorShape& t, const char* which) const {
    const auto elements = elements_of(t);
    if (!elements || *elements > max_tensor_elements)
      fail_at(d, fmt::format("{} {} has {} elements per sample: allowed at most {}", which, to_string(t),
                             elements ? fmt::format("{}", *elements) : std::string("more than 2^64"),
                             max_tensor_elements));
  }
  [[noreturn]] void fail_at(const LayerDef& def, const std::string& message) const {
    throw NetworkError(fmt::format("{}: layer {}: {}", def.origin.empty() ? net_.source : def.origin,
                                   def.name, message));
  }

  void collect_nodes() {
    if (net_.layers.empty()) fail("the network has no layers");
    // Names reach CSV and JSON outputs verbatim.
    if (!net_.name.empty() && !traces::is_valid_name(net_.name))
      fail(fmt::format("network name \"{}\": allowed {}", traces::printable(net_.name), traces::name_rule));
    for (const auto& exit : net_.exits)
      if (!traces::is_valid_name(exit.name))
        throw NetworkError(fmt::format("{}: exit name \"{}\": allowed {}", exit.origin.empty() ? net_.source : exit.origin,
                                       traces::printable(exit.name), traces::name_rule));
    const auto add = [&](const LayerDef& def, int exit_index) {
      if (def.name.empty()) fail_at(def, "every layer needs a name");
      if (!traces::is_valid_name(def.name))
        throw NetworkError(fmt::format("{}: layer name \"{}\": allowed {}", def.origin.empty() ? net_.source : def.origin,
                                       traces::printable(def.name), traces::name_rule));
      if (def.name == network_input) fail_at(def, "the name 'input' is reserved for the network input");
      if (!index_.emplace(def.name, nodes_.size()).second) fail_at(def, "duplicate layer name");
      nodes_.push_back({&def, exit_index});
    };
    for (const auto& def : net_.layers) add(def, -1);
    backbone_count_ = nodes_.size();
    for (std::size_t e = 0; e < net_.exits.size(); ++e)
      for (const auto& def : net_.exits[e].classifier) add(def, static_cast<int>(e));
  }

  // Input edges. A node with no inputs of its own reads the previous node of its list.
  void connect() {
    inputs_.assign(nodes_.size(), {});
    attach_.assign(net_.exits.size(), 0);
    for (std::size_t e = 0; e < net_.exits.size(); ++e) {
      const auto& exit = net_.exits[e];
      const auto it = index_.find(exit.after);
      if (it == index_.end() || it->second >= backbone_count_)
        throw NetworkError(fmt::format("{}: exit {}: after = {} is not a backbone layer",
                                       exit.origin.empty() ? net_.source : exit.origin, exit.name,
                                       exit.after));
      attach_[e] = it->second;
    }
    for (std::size_t v = 0; v < nodes_.size(); ++v) {
      const Node& node = nodes_[v];
      const bool first_of_list =
          v == 0 || (node.exit_index >= 0 && (nodes_[v - 1].exit_index != node.exit_index));
      if (node.def->inputs.empty()) {
        if (!first_of_list) add_input(v, v - 1);
        else if (node.exit_index >= 0) add_input(v, attach_[static_cast<std::size_t>(node.exit_index)]);
        else inputs_[v].push_back(kNetworkInput);
        continue;
      }
      for (const auto& name : node.def->inputs) {
        if (name == network_input) {
          if (node.exit_index >= 0) fail_at(*node.def, "a classifier layer cannot read the network input");
          inputs_[v].push_back(kNetworkInput);
          continue;
        }
        const auto it = index_.find(name);
        if (it == index_.end()) fail_at(*node.def, fmt::format("input {} is not a layer", name));
        const Node& from = nodes_[it->second];
        if (from.exit_index >= 0 && from.exit_index != node.exit_index)
          fail_at(*node.def, fmt::format("input {} belongs to the classifier of exit {}", name,
                                         net_.exits[static_cast<std::size_t>(from.exit_index)].name));
        add_input(v, it->second);
      }
    }
  }

  void add_input(std::size_t to, std::size_t from) {
    inputs_[to].push_back(from);
    boost::add_edge(from, to, graph_);
  }

  struct CycleFinder : boost::default_dfs_visitor {
    std::pair<Vertex, Vertex>* back_edge_found;
    bool* found;
    void back_edge(Graph::edge_descriptor e, const Graph& g) const {
      if (!*found) {
        *back_edge_found = {boost::source(e, g), boost::target(e, g)};
        *found = true;
      }
    }
  };

  void reject_cycles() {
    std::pair<Vertex, Vertex> edge{};
    bool found = false;
    CycleFinder finder;
    finder.back_edge_found = &edge;
    finder.found = &found;
    boost::depth_first_search(graph_, boost::visitor(finder));
    if (found) {
      const LayerDef& closing = *nodes_[edge.first].def;
      fail_at(closing, fmt::format("its output feeds {}, which it depends on: the layers form a cycle",
                                   nodes_[edge.second].def->name));
    }
  }

  // Kahn's algorithm over the backbone, lowest file position first, so a file already written
  // in execution order keeps its order.
  void order_backbone() {
    std::vector<std::size_t> pending(backbone_count_, 0);
    for (std::size_t v = 0; v < backbone_count_; ++v)
      for (auto from : inputs_[v]) pending[v] += from != kNetworkInput ? 1 : 0;
    std::priority_queue<std::size_t, std::vector<std::size_t>, std::greater<>> ready;
    for (std::size_t v = 0; v < backbone_count_; ++v)
      if (pending[v] == 0) ready.push(v);
    while (!ready.empty()) {
      const std::size_t v = ready.top();
      ready.pop();
      backbone_order_.push_back(v);
      for (auto [e, end] = boost::out_edges(v, graph_); e != end; ++e) {
        const std::size_t to = boost::target(*e, graph_);
        if (to < backbone_count_ && --pending[to] == 0) ready.push(to);
      }
    }
    std::vector<std::size_t> sinks;
    for (std::size_t v = 0; v < backbone_count_; ++v) {
      bool feeds_backbone = false;
      for (auto [e, end] = boost::out_edges(v, graph_); e != end; ++e)
        feeds_backbone = feeds_backbone || boost::target(*e, graph_) < backbone_count_;
      if (!feeds_backbone) sinks.push_back(v);
    }
    if (sinks.size() != 1) {
      std::vector<std::string> names;
      for (auto v : sinks) names.push_back(nodes_[v].def->name);
      fail(fmt::format("the backbone must end in one layer (the final classifier); it ends in {}: {}",
                       sinks.size(), fmt::join(names, ", ")));
    }
    final_layer_ = sinks.front();
  }

  std::vector<std::size_t> order_exits() {
    if (net_.exits.empty())
      fail(fmt::format("no exits: the final classifier {} needs an exit entry with its probability",
                       nodes_[final_layer_].def->name));
    std::vector<std::size_t> rank(nodes_.size(), 0);
    for (std::size_t i = 0; i < backbone_order_.size(); ++i) rank[backbone_order_[i]] = i;
    std::vector<std::size_t> order(net_.exits.size());
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(),
                     [&](std::size_t a, std::size_t b) { return rank[attach_[a]] < rank[attach_[b]]; });
    double sum = 0.0;
    for (std::size_t i = 0; i < order.size(); ++i) {
      const ExitDef& exit = net_.exits[order[i]];
      const std::string where = exit.origin.empty() ? net_.source : exit.origin;
      if (!(exit.probability >= 0.0 && exit.probability <= 1.0))
        throw NetworkError(fmt::format("{}: exit {}: probability = {}: allowed a number in [0, 1]",
                                       where, exit.name, exit.probability));
      if (i > 0 && attach_[order[i]] == attach_[order[i - 1]])
        throw NetworkError(fmt::format("{}: exit {}: a second exit after {}", where, exit.name, exit.after));
      const bool is_final = attach_[order[i]] == final_layer_;
      if (is_final && !exit.classifier.empty())
        throw NetworkError(fmt::format("{}: exit {}: the final exit uses the backbone's classifier {} and takes no classifier layers",
                                       where, exit.name, exit.after));
      if (!is_final && exit.classifier.empty())
        throw NetworkError(fmt::format("{}: exit {}: an early exit needs classifier layers (pooling and fc)",
                                       where, exit.name));
      sum += exit.probability;
    }
    if (attach_[order.back()] != final_layer_)
      fail(fmt::format("no exit after the final classifier {}: give it an exit entry with its probability",
                       nodes_[final_layer_].def->name));
    if (std::fabs(sum - 1.0) > 1e-6)
      fail(fmt::format("exit probabilities sum to {}, not 1", sum));
    return order;
  }

  std::vector<std::size_t> classifier_order(std::size_t exit) const {
    std::vector<std::size_t> members;
    for (std::size_t v = backbone_count_; v < nodes_.size(); ++v)
      if (nodes_[v].exit_index == static_cast<int>(exit)) members.push_back(v);
    std::vector<std::size_t> order;
    std::vector<bool> done(nodes_.size(), false);
    for (std::size_t v = 0; v < backbone_count_; ++v) done[v] = true;
    while (order.size() < members.size())
      for (auto v : members) {
        if (done[v]) continue;
        bool ready = true;
        for (auto from : inputs_[v]) ready = ready && (from == kNetworkInput || done[from]);
        if (ready) {
          done[v] = true;
          order.push_back(v);
          break;
        }
      }
    return order;
  }

  LoweredLayer lower_layer(std::size_t v, std::vector<TensorShape>& shapes) const {
    const LayerDef& d = *nodes_[v].def;
    std::vector<TensorShape> in;
    for (auto from : inputs_[v]) in.push_back(from == kNetworkInput ? net_.input : shapes[from]);
    const auto single_input = [&]() {
      if (in.size() != 1)
        fail_at(d, fmt::format("a {} layer takes one input, got {}", to_string(d.type), in.size()));
      return in.front();
    };
    if (d.work) return take_computed_work(d, v, in, shapes);
    if (d.type == LayerType::matmul || d.type == LayerType::vector || d.type == LayerType::resample)
      fail_at(d, fmt::format("a {} layer comes only from an importer, with its work computed", to_string(d.type)));
    LoweredLayer out;
    out.name = d.name;
    out.type = d.type;
    npu::LayerSpec spec;
    spec.name = d.name;
    spec.kernel_height = d.kernel_height;
    spec.kernel_width = d.kernel_width;
    spec.stride_height = d.stride_height;
    spec.stride_width = d.stride_width;
    spec.padding_height = d.padding_height;
    spec.padding_width = d.padding_width;
    spec.groups = d.groups;
    switch (d.type) {
      case LayerType::conv:
      case LayerType::fc:
      case LayerType::maxpool:
      case LayerType::avgpool:
      case LayerType::global_avgpool: {
        out.input = single_input();
        spec.in_height = out.input.height;
        spec.in_width = out.input.width;
        spec.in_channels = out.input.channels;
        break;
      }
      case LayerType::matmul:
      case LayerType::vector:
      case LayerType::resample:  // refused above: they carry their work
        break;
      case LayerType::add:
      case LayerType::concat: {
        if (in.size() < 2)
          fail_at(d, fmt::format("a {} layer takes at least two inputs, got {}", to_string(d.type), in.size()));
        out.input = in.front();
        for (std::size_t i = 1; i < in.size(); ++i) {
          const bool same = d.type == LayerType::add
                                ? in[i] == in.front()
                                : in[i].height == in.front().height && in[i].width == in.front().width;
          if (!same)
            fail_at(d, fmt::format("input shapes do not match: {} is {} but {} is {}",
                                   input_name(v, 0), to_string(in.front()), input_name(v, i), to_string(in[i])));
        }
        spec.in_height = out.input.height;
        spec.in_width = out.input.width;
        spec.in_channels = out.input.channels;
        break;
      }
    }
    for (const auto& shape : in) check_tensor(d, shape, "input");
    if (d.expected_in_channels != 0) {
      const std::uint64_t actual = d.type == LayerType::fc
                                       ? std::uint64_t{out.input.height} * out.input.width * out.input.channels
                                       : out.input.channels;
      if (actual != d.expected_in_channels)
        fail_at(d, fmt::format("declares {} input {} but {} gives {} ({})", d.expected_in_channels,
                               d.type == LayerType::fc ? "features" : "channels", input_name(v, 0),
                               actual, to_string(out.input)));
    }
    switch (d.type) {
      case LayerType::matmul:
      case LayerType::vector:
      case LayerType::resample:
        break;
      case LayerType::conv:
        spec.kind = npu::LayerKind::convolution;
        spec.out_channels = d.out_channels;
        break;
      case LayerType::fc:
        spec.kind = npu::LayerKind::fully_connected;
        spec.in_channels = out.input.height * out.input.width * out.input.channels;
        spec.in_height = spec.in_width = 1;
        spec.out_channels = d.out_channels;
        break;
      case LayerType::maxpool:
      case LayerType::avgpool:
        spec.kind = npu::LayerKind::pooling;
        spec.out_channels = spec.in_channels;
        break;
      case LayerType::global_avgpool:
        spec.kind = npu::LayerKind::pooling;
        spec.out_channels = spec.in_channels;
        spec.kernel_height = spec.in_height;
        spec.kernel_width = spec.in_width;
        spec.stride_height = spec.stride_width = 1;
        spec.padding_height = spec.padding_width = 0;
        break;
      case LayerType::add:
        spec.kind = npu::LayerKind::elementwise;
        spec.out_channels = spec.in_channels;
        break;
      case LayerType::concat: {
        spec.kind = npu::LayerKind::concatenation;
        std::uint32_t channels = 0;
        for (const auto& s : in) {
          const auto sum = traces::checked_add(channels, s.channels);
          if (!sum) fail_at(d, fmt::format("the inputs' channels add up to more than {}: allowed at most that",
                                           std::numeric_limits<std::uint32_t>::max()));
          channels = *sum;
        }
        spec.out_channels = channels;
        break;
      }
    }
    if ((d.type == LayerType::conv || d.type == LayerType::fc) && d.out_channels == 0)
      fail_at(d, "out_channels must be at least 1");
    try {
      out.work = npu::lower(spec);
    } catch (const npu::InvalidLayer& e) {
      std::string message = e.what();
      const std::string prefix = fmt::format("layer {}: ", d.name);
      if (message.rfind(prefix, 0) == 0) message = message.substr(prefix.size());
      fail_at(d, fmt::format("{} (input {})", message, to_string(out.input)));
    }
    out.output = {out.work.out_height, out.work.out_width, out.work.out_channels};
    check_tensor(d, out.output, "output");
    if (!out.work.on_vector_path) {
      const auto grouped = count_gemm(d, out);
      out.params = grouped + (d.bias ? std::uint64_t{d.out_channels} : 0);
    }
    shapes[v] = out.output;
    return out;
  }

  // Sets out.macs from the GEMM's shape, held to max_layer_macs; returns its weight count.
  std::uint64_t count_gemm(const LayerDef& d, LoweredLayer& out) const {
    const auto& g = out.work.gemm;
    const auto weights = traces::checked_mul(g.depth, g.cols);
    const auto grouped = weights ? traces::checked_mul(*weights, g.groups) : std::nullopt;
    const auto per_row = grouped ? traces::checked_mul(*grouped, g.rows) : std::nullopt;
    if (!per_row || *per_row > max_layer_macs)
      fail_at(d, fmt::format("needs {} MACs per sample (GEMM {} x {} x {} in {} groups): allowed at most {}",
                             per_row ? fmt::format("{}", *per_row) : std::string("more than 2^64"), g.rows, g.depth,
                             g.cols, g.groups, max_layer_macs));
    out.macs = *per_row;
    return *grouped;
  }

  // A layer whose importer computed its work: its shapes come from the source, not from its
  // producers' H x W x C, which may be a different view of the same elements.
  LoweredLayer take_computed_work(const LayerDef& d, std::size_t v, const std::vector<TensorShape>& in,
                                  std::vector<TensorShape>& shapes) const {
    LoweredLayer out;
    out.name = d.name;
    out.type = d.type;
    out.implicit = d.implicit;
    out.op = d.op;
    if (in.empty()) fail_at(d, "an imported layer needs at least one input");
    for (const auto& shape : in) check_tensor(d, shape, "input");
    out.input = in.front();
    out.work = *d.work;
    out.work.name = d.name;
    out.output = {out.work.out_height, out.work.out_width, out.work.out_channels};
    check_tensor(d, out.output, "output");
    if (!out.work.on_vector_path) count_gemm(d, out);
    out.params = d.params;
    shapes[v] = out.output;
    return out;
  }

  std::string input_name(std::size_t v, std::size_t i) const {
    const std::size_t from = inputs_[v][i];
    return from == kNetworkInput ? network_input : nodes_[from].def->name;
  }

  static constexpr std::size_t kNetworkInput = static_cast<std::size_t>(-1);
  const NetworkDef& net_;
  std::vector<Node> nodes_;
  std::map<std::string, std::size_t> index_;
  std::size_t backbone_count_ = 0;
  std::vector<std::vector<std::size_t>> inputs_;
  std::vector<std::size_t> attach_;
  Graph graph_;
  std::vector<std::size_t> backbone_order_;
  std::vector<bool> emitted_;
  std::size_t final_layer_ = 0;
};

}  // namespace

LoweredNetwork lower_network(const NetworkDef& network) { return Lowering(network).run(); }

std::vector<npu::LayerWork> layer_works(const LoweredNetwork& network) {
  std::vector<npu::LayerWork> works;
  works.reserve(network.layers.size());
  for (const auto& layer : network.layers) works.push_back(layer.work);
  return works;
}

}  // namespace npusim::workloads
