#pragma once
// Declared policy parameters: each policy lists its parameters with type, default, range and
// meaning. The same declarations validate YAML, fill in defaults and generate documentation.

#include <cstdint>
#include <map>
#include <string>
#include <variant>
#include <vector>

namespace npusim::scheduler {

enum class ParameterType { integer, real, boolean, choice };
std::string to_string(ParameterType type);

using ParameterValue = std::variant<std::int64_t, double, bool, std::string>;
std::string to_string(const ParameterValue& value);

struct ParameterSpec {
  std::string name;  // snake_case with its unit: timeout_ms, max_batch
  ParameterType type = ParameterType::real;
  ParameterValue default_value = 0.0;
  double min = 0.0;  // inclusive bounds for integer and real parameters
  double max = 0.0;
  std::string description;
  std::vector<std::string> choices;  // the words a choice parameter accepts

  static ParameterSpec integer(std::string name, std::int64_t default_value, std::int64_t min, std::int64_t max,
                               std::string description);
  static ParameterSpec real(std::string name, double default_value, double min, double max, std::string description);
  static ParameterSpec boolean(std::string name, bool default_value, std::string description);
  // One word of `choices`; the default must be one of them.
  static ParameterSpec choice(std::string name, std::string default_value, std::vector<std::string> choices,
                              std::string description);

  // "an integer in [1, 256]", "a number in [0, 1e+06]", "true or false", "one of mean, slo".
  std::string allowed() const;
  bool accepts(const ParameterValue& value) const;
};

// Values for every declared parameter of one policy: the given ones, defaults for the rest.
class ParameterValues {
 public:
  ParameterValues() = default;
  // Throws std::invalid_argument naming the parameter when a value is unknown, of the wrong
  // type or out of range.
  ParameterValues(const std::vector<ParameterSpec>& specs, const std::map<std::string, ParameterValue>& given);

  // Throw std::out_of_range for an undeclared name or std::bad_variant_access for a wrong type.
  std::int64_t integer(const std::string& name) const { return std::get<std::int64_t>(values_.at(name)); }
  double real(const std::string& name) const { return std::get<double>(values_.at(name)); }
  bool boolean(const std::string& name) const { return std::get<bool>(values_.at(name)); }
  const std::string& choice(const std::string& name) const { return std::get<std::string>(values_.at(name)); }
  const std::map<std::string, ParameterValue>& all() const { return values_; }

 private:
  std::map<std::string, ParameterValue> values_;
};

}  // namespace npusim::scheduler
