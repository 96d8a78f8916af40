#include "sim/config_node.hpp"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <limits>
#include <optional>
#include <sstream>

#include <fmt/format.h>
#include <yaml-cpp/eventhandler.h>

namespace npusim::sim {

ConfigNode ConfigNode::load_file(const std::filesystem::path& file) {
  std::string text;
  try {
    text = traces::read_input_file(file);
  } catch (const traces::InputFileError& e) {
    throw ConfigError(e.what());
  }
  return load_text(text, file.string());
}

namespace {

// The whole number between the '[' at `open` in `part` and the next ']', or nullopt when there
// is no ']' or something else stands between them.
std::optional<std::size_t> bracket_index(std::string_view part, std::size_t open) {
  const auto close = part.find(']', open);
  if (close == std::string_view::npos) return std::nullopt;
  std::size_t index = 0;
  const auto [end, ec] = std::from_chars(part.data() + open + 1, part.data() + close, index);
  if (ec != std::errc{} || end != part.data() + close) return std::nullopt;
  return index;
}

// Sees the parser's events before any node is built: a second document and a tag are refused
// here, where their lines are known. Aliases arrive as single events, so this pass is linear
// in the text whatever the anchors would expand to.
class StrictYaml final : public YAML::EventHandler {
 public:
  explicit StrictYaml(const std::string& source) : source_(source) {}
  void OnDocumentStart(const YAML::Mark& mark) override {
    if (++documents_ > 1)
      throw ConfigError(fmt::format("{}:{}: a second YAML document: allowed one document per file (no second ---)",
                                    source_, mark.line + 1));
  }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
  void OnAlias(const YAML::Mark&, YAML::anchor_t) override {}
  void OnScalar(const YAML::Mark& mark, const std::string& tag, YAML::anchor_t, const std::string&) override {
    check_tag(mark, tag);
  }
  void OnSequenceStart(const YAML::Mark& mark, const std::string& tag, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {
    check_tag(mark, tag);
  }
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark& mark, const std::string& tag, YAML::anchor_t, YAML::EmitterStyle::value) override {
    check_tag(mark, tag);
  }
  void OnMapEnd() override {}

 private:
  // yaml-cpp reports "?" for an untagged plain node and "!" for a quoted scalar; anything else
  // was written as a tag.
  void check_tag(const YAML::Mark& mark, const std::string& tag) const {
    if (tag.empty() || tag == "?" || tag == "!") return;
    throw ConfigError(fmt::format("{}:{}: tag {}: allowed plain YAML without tags", source_, mark.line + 1, tag));
  }
  const std::string& source_;
  int documents_ = 0;
};

// Throws ConfigError naming `source` and the line for a second document or a tag in `text`, and
// YAML::ParserException for text that is not YAML.
void check_strict_yaml(const std::string& text, const std::string& source) {
  std::istringstream in(text);
  YAML::Parser parser(in);
  StrictYaml strict(source);
  while (parser.HandleNextDocument(strict)) {
  }
}

[[noreturn]] void throw_not_yaml(const std::string& source, const YAML::ParserException& e) {
  throw ConfigError(fmt::format("{}:{}: not valid YAML: {}", source, e.mark.line + 1, e.msg));
}

}  // namespace

ConfigNode ConfigNode::load_text(const std::string& text, const std::string& source) {
  try {
    check_strict_yaml(text, source);
  } catch (const YAML::ParserException& e) {
    throw_not_yaml(source, e);
  }
  return load_embedded_text(text, source);
}

ConfigNode ConfigNode::load_embedded_text(const std::string& text, const std::string& source) {
  auto name = std::make_shared<const std::string>(source);
  try {
    YAML::Node root = YAML::Load(text);
    if (!root.IsMap())
      throw ConfigError(fmt::format("{}:1: the document must be a YAML mapping (key: value)", source));
    return ConfigNode(root, name, "", std::make_shared<std::vector<std::string>>());
  } catch (const YAML::ParserException& e) {
    throw_not_yaml(source, e);
  }
}

namespace {

// Aliases share nodes, so a small file can describe a tree of 10^12 nodes (a "billion
// laughs"): the search gives up after `budget` nodes, and the message names the including file.
bool contains(const YAML::Node& root, const YAML::Node& target, std::size_t& budget) {
  if (budget == 0) return false;
  --budget;
  if (root.is(target)) return true;
  if (root.IsMap()) {
    for (const auto& item : root)
      if (contains(item.first, target, budget) || contains(item.second, target, budget)) return true;
  } else if (root.IsSequence()) {
    for (const auto& item : root)
      if (contains(item, target, budget)) return true;
  }
  return false;
}

int line_of(const YAML::Node& node) {
  const auto mark = node.Mark();
  return mark.is_null() ? 0 : mark.line + 1;
}

// Fills `target` (a file's own mapping) with what `from` (an included file's) has and it does
// not. Inserted nodes are shared, not copied, so they keep their file and line.
void compose(YAML::Node target, const YAML::Node& from, bool top_level) {
  for (const auto& item : from) {
    const std::string key = item.first.Scalar();
    if (top_level && key == "include") continue;
    YAML::Node mine = target[key];
    if (!mine.IsDefined() || mine.IsNull()) {
      mine = item.second;
    } else if (mine.IsMap() && item.second.IsMap()) {
      compose(mine, item.second, false);
    } else if (top_level && key == "devices" && mine.IsSequence() && item.second.IsSequence()) {
      YAML::Node both(YAML::NodeType::Sequence);
      for (const auto& d : item.second) both.push_back(d);
      for (const auto& d : mine) both.push_back(d);
      mine = both;
    }
  }
}

struct Composer {
  std::vector<ConfigNode::Document>* documents;
  std::vector<std::filesystem::path> chain;  // the files being included, outermost first

  YAML::Node load(const std::filesystem::path& file) {
    // Reads, parses and checks it is a mapping; the composed tree is built from this parse.
    YAML::Node root = ConfigNode::load_file(file).yaml();
    chain.push_back(std::filesystem::weakly_canonical(file));
    if (root["include"]) {
      const YAML::Node include = root["include"];
      std::vector<YAML::Node> names;
      if (include.IsScalar()) names.push_back(include);
      else if (include.IsSequence())
        for (const auto& n : include) names.push_back(n);
      std::vector<YAML::Node> included;
      for (const auto& name : names) {
        if (!name.IsScalar() || name.Scalar().empty())
          throw ConfigError(fmt::format("{}:{}: include = {}: allowed a file name or a list of file names",
                                        file.string(), line_of(include), name.IsScalar() ? name.Scalar() : "<map>"));
        const auto path = file.parent_path() / name.Scalar();
        const auto canonical = std::filesystem::weakly_canonical(path);
        if (std::find(chain.begin(), chain.end(), canonical) != chain.end()) {
          std::string cycle;
          for (const auto& c : chain) cycle += c.filename().string() + " -> ";
          throw ConfigError(fmt::format("{}:{}: include = {}: allowed a file that does not include itself ({}{})",
                                        file.string(), line_of(name), name.Scalar(), cycle, canonical.filename().string()));
        }
        if (chain.size() >= 16)
          throw ConfigError(fmt::format("{}:{}: include = {}: allowed at most 16 levels of includes", file.string(),
                                        line_of(name), name.Scalar()));
        if (!std::filesystem::exists(path))
          throw ConfigError(fmt::format("{}:{}: include = {}: no such file ({})", file.string(), line_of(name),
                                        name.Scalar(), path.string()));
        included.push_back(load(path));
      }
      // Later includes win over earlier ones, and the file itself over all of them.
      for (auto it = included.rbegin(); it != included.rend(); ++it) compose(root, *it, true);
      root.remove("include");
    }
    chain.pop_back();
    documents->push_back({root, file.string()});
    return root;
  }
};

}  // namespace

ConfigNode ConfigNode::load_composed(const std::filesystem::path& file) {
  auto documents = std::make_shared<std::vector<Document>>();
  Composer composer{documents.get(), {}};
  YAML::Node root;
  try {
    root = composer.load(file);
  } catch (const YAML::Exception& e) {
    throw ConfigError(fmt::format("{}:{}: not valid YAML: {}", file.string(), e.mark.line + 1, e.msg));
  }
  return ConfigNode(root, std::make_shared<const std::string>(file.string()), "",
                    std::make_shared<std::vector<std::string>>(),
                    documents->size() > 1 ? Documents(documents) : nullptr);
}

std::string ConfigNode::source_of(const YAML::Node& node) const {
  if (documents_)
    for (const auto& d : *documents_)
      if (std::size_t budget = 1'000'000; contains(d.root, node, budget)) return d.source;
  return *source_;
}

int ConfigNode::line() const {
  const auto mark = node_.Mark();
  return mark.is_null() ? 0 : mark.line + 1;
}

std::string ConfigNode::where_of(const std::string& path, int line_number, const YAML::Node& node) const {
  for (const auto& set : *overrides_) {
    const bool inside = path.size() >= set.size() && path.compare(0, set.size(), set) == 0 &&
                        (path.size() == set.size() || path[set.size()] == '.' || path[set.size()] == '[');
    if (inside) return fmt::format("{} (--set {})", *source_, set);
  }
  const std::string source = source_of(node);
  return line_number > 0 ? fmt::format("{}:{}", source, line_number) : source;
}

std::string ConfigNode::where() const { return where_of(path_, line(), node_); }

void ConfigNode::apply_override(const std::string& assignment, const std::vector<ExclusiveKeys>& exclusive) {
  const auto equals = assignment.find('=');
  const std::string usage = "--set " + assignment + ": allowed KEY=VALUE, e.g. npu.pe_count=32";
  if (equals == std::string::npos || equals == 0) throw ConfigError(usage);
  const std::string path = assignment.substr(0, equals);
  YAML::Node value;
  try {
    check_strict_yaml(assignment.substr(equals + 1), "--set " + assignment + ": the value, line");
    value = YAML::Load(assignment.substr(equals + 1));
  } catch (const YAML::Exception& e) {
    throw ConfigError(fmt::format("--set {}: the value is not valid YAML: {}", assignment, e.msg));
  }
  // Walk with node handles: operator[] on a mapping creates missing keys.
  std::vector<YAML::Node> chain{node_};
  std::string walked;
  std::string parent_pattern;  // the path walked before the last key, indices as "[]"
  std::string last_key;
  std::string_view rest = path;
  while (!rest.empty()) {
    const auto dot = rest.find('.');
    const std::string_view part = rest.substr(0, dot);
    rest = dot == std::string_view::npos ? std::string_view{} : rest.substr(dot + 1);
    const auto bracket = part.find('[');
    const std::string key(part.substr(0, bracket));
    if (key.empty()) throw ConfigError(usage);
    YAML::Node current = chain.back();
    if (current.IsDefined() && !current.IsNull() && !current.IsMap())
      throw ConfigError(fmt::format("--set {}: {} is not a mapping", assignment, walked.empty() ? "the document" : walked));
    if (!last_key.empty()) parent_pattern += (parent_pattern.empty() ? "" : ".") + last_key;
    last_key = key;
    walked += (walked.empty() ? "" : ".") + key;
    chain.push_back(current[key]);
    for (auto open = bracket; open != std::string_view::npos; open = part.find('[', open + 1)) {
      const auto bracketed = bracket_index(part, open);
      if (!bracketed) throw ConfigError(usage);
      const std::size_t index = *bracketed;
      YAML::Node list = chain.back();
      if (!list.IsSequence() || index >= list.size())
        throw ConfigError(fmt::format("--set {}: {} has no item [{}]", assignment, walked, index));
      walked += fmt::format("[{}]", index);
      last_key += "[]";
      chain.push_back(list[index]);
    }
  }
  chain.back() = value;
  overrides_->push_back(path);
  if (chain.size() < 2) return;
  YAML::Node parent = chain[chain.size() - 2];
  for (const auto& pair : exclusive) {
    if (pair.parent != parent_pattern || !parent.IsMap()) continue;
    if (last_key == pair.first) parent.remove(std::string(pair.second));
    if (last_key == pair.second) parent.remove(std::string(pair.first));
  }
}

std::string ConfigNode::child_path(std::string_view key) const {
  return path_.empty() ? std::string(key) : fmt::format("{}.{}", path_, key);
}

bool ConfigNode::has(std::string_view key) const {
  return node_.IsMap() && node_[std::string(key)].IsDefined();
}

ConfigNode ConfigNode::at(std::string_view key) const {
  if (!node_.IsMap())
    fail(display_value(), fmt::format("a mapping with key {}", key));
  YAML::Node value = node_[std::string(key)];
  if (!value.IsDefined())
    throw ConfigError(fmt::format("{}: {} is missing: required key", location(), child_path(key)));
  return child(value, child_path(key));
}

void ConfigNode::for_each_key(const std::function<void(const std::string&, int, const YAML::Node&)>& visit) const {
  std::vector<std::string> seen;
  for (const auto& item : node_) {
    // A key composed in from an include has no mark of its own; its value has.
    const YAML::Node& marked = item.first.Mark().is_null() ? item.second : item.first;
    const int key_line = line_of(marked);
    if (!item.first.IsScalar())
      throw ConfigError(fmt::format("{}: {} has a key that is not a name", where_of(path_, key_line, marked),
                                    path_.empty() ? "the document" : path_));
    const std::string key = item.first.Scalar();
    visit(key, key_line, marked);
    // YAML parsers keep one of two equal keys silently; a config that says a thing twice is
    // a mistake.
    if (std::find(seen.begin(), seen.end(), key) != seen.end())
      throw ConfigError(fmt::format("{}: {} is given twice", where_of(child_path(key), key_line, marked),
                                    child_path(key)));
    seen.push_back(key);
  }
}

std::vector<std::string> ConfigNode::keys() const {
  if (!node_.IsMap()) fail(display_value(), "a mapping");
  std::vector<std::string> out;
  for_each_key([&](const std::string& key, int, const YAML::Node&) {
    if (std::find(out.begin(), out.end(), key) == out.end()) out.push_back(key);
  });
  return out;
}

void ConfigNode::expect_keys(std::initializer_list<std::string_view> allowed) const {
  expect_keys(std::vector<std::string>(allowed.begin(), allowed.end()));
}

void ConfigNode::expect_keys(const std::vector<std::string>& allowed) const {
  if (!node_.IsMap())
    fail(display_value(), fmt::format("a mapping with keys {}", fmt::join(allowed, ", ")));
  for_each_key([&](const std::string& key, int key_line, const YAML::Node& marked) {
    if (std::find(allowed.begin(), allowed.end(), key) == allowed.end())
      throw ConfigError(fmt::format("{}: {} is not a known key: allowed keys are {}",
                                    where_of(child_path(key), key_line, marked), child_path(key),
                                    fmt::join(allowed, ", ")));
  });
}

ConfigNode ConfigNode::deepest(std::string_view dotted) const {
  // Each step builds a new ConfigNode rather than assigning to the old one: assigning a
  // YAML::Node rewrites the node it refers to, which would change the document being searched.
  std::optional<ConfigNode> current(std::in_place, *this);
  while (!dotted.empty()) {
    const auto dot = dotted.find('.');
    std::string_view part = dotted.substr(0, dot);
    dotted = dot == std::string_view::npos ? std::string_view{} : dotted.substr(dot + 1);
    const auto bracket = part.find('[');
    const std::string_view key = part.substr(0, bracket);
    if (!current->has(key)) return *current;
    current.emplace(current->at(key));
    // Follow list indices such as "schedule[1]".
    for (auto open = bracket; open != std::string_view::npos; open = part.find('[', open + 1)) {
      const auto index = bracket_index(part, open);
      if (!index || !current->node_.IsSequence() || *index >= current->node_.size()) return *current;
      current.emplace(current->as_list()[*index]);
    }
  }
  return *current;
}

std::string ConfigNode::flow_text() const {
  YAML::Emitter out;
  out << YAML::Flow << node_;
  if (!out.good()) fail(display_value(), "a YAML value");
  return out.c_str();
}

std::string ConfigNode::display_value() const {
  if (node_.IsScalar()) return node_.Scalar().empty() ? "\"\"" : node_.Scalar();
  if (node_.IsMap()) return "<map>";
  if (node_.IsSequence()) return "<list>";
  return "<empty>";
}

template <typename Unsigned>
Unsigned ConfigNode::as_unsigned() const {
  const std::string allowed = fmt::format("a whole number in [0, {}]", std::numeric_limits<Unsigned>::max());
  if (!node_.IsScalar()) fail(display_value(), allowed);
  const std::string& text = node_.Scalar();
  Unsigned value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc{} || end != text.data() + text.size() || text.empty())
    fail(display_value(), allowed);
  return value;
}

std::uint32_t ConfigNode::as_uint32() const { return as_unsigned<std::uint32_t>(); }
std::uint64_t ConfigNode::as_uint64() const { return as_unsigned<std::uint64_t>(); }

std::size_t ConfigNode::as_choice(const std::vector<std::string>& choices, std::string_view what) const {
  const std::string text = as_string();
  const auto it = std::find(choices.begin(), choices.end(), text);
  if (it == choices.end()) fail(text, fmt::format("{}: {}", what, fmt::join(choices, ", ")));
  return static_cast<std::size_t>(it - choices.begin());
}

double ConfigNode::as_double() const {
  const std::string allowed = "a number";
  if (!node_.IsScalar()) fail(display_value(), allowed);
  const std::string& text = node_.Scalar();
  char* end = nullptr;
  errno = 0;
  const double value = std::strtod(text.c_str(), &end);
  if (text.empty() || end != text.c_str() + text.size() || errno == ERANGE ||
      !(value == value))
    fail(display_value(), allowed);
  return value;
}

std::string ConfigNode::as_string() const {
  if (!node_.IsScalar()) fail(display_value(), "a string");
  return node_.Scalar();
}

std::string ConfigNode::as_name() const {
  const std::string name = as_string();
  if (!traces::is_valid_name(name)) fail(traces::printable(name), std::string(traces::name_rule));
  return name;
}

std::vector<ConfigNode> ConfigNode::as_list() const {
  if (!node_.IsSequence()) fail(display_value(), "a list, e.g. [a, b]");
  std::vector<ConfigNode> items;
  std::size_t i = 0;
  for (const auto& item : node_)
    items.push_back(child(item, fmt::format("{}[{}]", path_, i++)));
  return items;
}

void ConfigNode::fail(const std::string& value, const std::string& allowed) const {
  throw ConfigError(fmt::format("{}: {} = {}: allowed {}", location(), path_, value, allowed));
}

void ConfigNode::fail_here(const std::string& message) const {
  throw ConfigError(fmt::format("{}: {}: {}", location(), path_, message));
}

}  // namespace npusim::sim
