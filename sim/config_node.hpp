#pragma once
// Reading YAML configuration with exact error locations. Every error names the file, the line,
// the dotted YAML path, the bad value and what is allowed, in one line.

#include <cstdint>
#include <filesystem>
#include <functional>
#include <initializer_list>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <yaml-cpp/yaml.h>

#include "traces/input_file.hpp"

namespace npusim::sim {

// A configuration the user gave is wrong. what() is the complete one-line message, with any
// control character it quotes escaped.
class ConfigError : public std::runtime_error {
 public:
  explicit ConfigError(const std::string& message) : std::runtime_error(traces::one_line(message)) {}
};

// One node of a loaded YAML document plus its source file and dotted path (e.g.
// "npu.buffers.weight_kib"). Cheap to copy.
// Two sibling keys of which a file gives exactly one (simulation.samples and
// simulation.duration_s). `parent` is the dotted path of the mapping that holds them, with "[]"
// for any list index ("devices[].exits").
struct ExclusiveKeys {
  std::string_view parent;
  std::string_view first, second;
};

class ConfigNode {
 public:
  // The files a composed document was built from, includes before the files including them.
  struct Document {
    YAML::Node root;
    std::string source;
  };
  using Documents = std::shared_ptr<const std::vector<Document>>;

  // Throws ConfigError if the file is missing, not a regular file, larger than
  // traces::max_input_bytes, unreadable, or not valid YAML.
  static ConfigNode load_file(const std::filesystem::path& file);
  // `source` names the text in messages (a file name, or "<embedded default>"). The text must
  // be one YAML document without tags (!foo): anything else is a ConfigError naming the line.
  static ConfigNode load_text(const std::string& text, const std::string& source);
  // The same for text compiled into npusim (the zoo, the NPU presets, the default scenario),
  // without the strict pass, which parses the text a second time: a test runs every embedded
  // text through load_text instead. A sweep point spent about a seventh of its time there.
  static ConfigNode load_embedded_text(const std::string& text, const std::string& source);
  // A file whose top-level `include:` (a file name or a list, relative to the including file)
  // names files to compose it from (docs/config.md, "Composing files"): mappings merge key by
  // key, the including file wins, later includes win over earlier ones, and the top-level
  // `devices` lists concatenate. Every node keeps its own file and line for messages.
  // Throws ConfigError for a missing file, bad YAML, or an include cycle.
  static ConfigNode load_composed(const std::filesystem::path& file);

  const std::string& path() const { return path_; }
  const std::string& source() const { return *source_; }
  int line() const;  // 1-based; 0 when unknown
  // Where this node came from, for messages: "file:line", or "file (--set a.b)" for a value
  // given on the command line.
  std::string where() const;
  // The file this node was read from (of a composed document, the file that gave it), or the
  // source name of an embedded text.
  std::string source_file() const { return source_of(node_); }

  // Applies a command-line override "a.b[2].c=VALUE" to this document (VALUE is YAML: 3,
  // fast, [1, 2]). Missing mappings are created; list indices must exist. Setting one key of an
  // `exclusive` pair removes its sibling, so an override can switch a file from one form to the
  // other. Throws ConfigError.
  void apply_override(const std::string& assignment, const std::vector<ExclusiveKeys>& exclusive = {});

  bool has(std::string_view key) const;
  ConfigNode at(std::string_view key) const;  // throws ConfigError if missing
  // The keys of this mapping in file order. Throws ConfigError unless this is a mapping of
  // distinct scalar keys.
  std::vector<std::string> keys() const;
  // Throws ConfigError unless this is a mapping whose keys are all in `allowed`.
  void expect_keys(std::initializer_list<std::string_view> allowed) const;
  void expect_keys(const std::vector<std::string>& allowed) const;
  // The node for a dotted path below this one, or this node if some part is absent.
  ConfigNode deepest(std::string_view dotted) const;

  std::uint32_t as_uint32() const;
  std::uint64_t as_uint64() const;
  // The index of this scalar in `choices`; otherwise fails with "allowed <what>: a, b, c".
  std::size_t as_choice(const std::vector<std::string>& choices, std::string_view what) const;
  double as_double() const;
  std::string as_string() const;
  // A string that may reach CSV and JSON outputs: fails unless traces::is_valid_name holds.
  std::string as_name() const;
  std::vector<ConfigNode> as_list() const;
  std::string display_value() const;  // the scalar as written, or <map>/<list>
  // The value as YAML flow text ("fast", "[1, 2]", "{a: 1}"), which --set reads back as the
  // same value. Throws ConfigError if it cannot be written.
  std::string flow_text() const;
  // The parsed node itself, for code that composes documents.
  const YAML::Node& yaml() const { return node_; }

  // Throws ConfigError "<source>:<line>: <path> = <value>: allowed <allowed>".
  [[noreturn]] void fail(const std::string& value, const std::string& allowed) const;
  [[noreturn]] void fail_here(const std::string& message) const;

 private:

  ConfigNode(YAML::Node node, std::shared_ptr<const std::string> source, std::string path,
             std::shared_ptr<std::vector<std::string>> overrides, Documents documents = nullptr)
      : node_(std::move(node)), source_(std::move(source)), path_(std::move(path)),
        overrides_(std::move(overrides)), documents_(std::move(documents)) {}
  ConfigNode child(YAML::Node node, std::string path) const {
    return ConfigNode(std::move(node), source_, std::move(path), overrides_, documents_);
  }
  std::string location() const { return where(); }
  // `node` (a value or a key) decides the file when the document was composed.
  std::string where_of(const std::string& path, int line, const YAML::Node& node) const;
  std::string source_of(const YAML::Node& node) const;
  // Calls visit(key, line, node that carries the line) for each key of this mapping, after
  // checking it is a name; throws ConfigError for a key given twice.
  void for_each_key(const std::function<void(const std::string&, int, const YAML::Node&)>& visit) const;
  template <typename Unsigned>
  Unsigned as_unsigned() const;
  std::string child_path(std::string_view key) const;

  YAML::Node node_;
  std::shared_ptr<const std::string> source_;
  std::string path_;
  std::shared_ptr<std::vector<std::string>> overrides_;  // paths set by apply_override
  Documents documents_;                                   // set when composed from includes
};

}  // namespace npusim::sim
