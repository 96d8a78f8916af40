#include "scheduler/parameters.hpp"

#include <algorithm>
#include <stdexcept>

#include <fmt/format.h>
#include <fmt/ranges.h>

namespace npusim::scheduler {

std::string to_string(ParameterType type) {
  switch (type) {
    case ParameterType::integer: return "integer";
    case ParameterType::real: return "number";
    case ParameterType::boolean: return "boolean";
    case ParameterType::choice: return "choice";
  }
  return "?";
}

std::string to_string(const ParameterValue& value) {
  if (const auto* i = std::get_if<std::int64_t>(&value)) return std::to_string(*i);
  if (const auto* d = std::get_if<double>(&value)) return fmt::format("{}", *d);
  if (const auto* s = std::get_if<std::string>(&value)) return *s;
  return std::get<bool>(value) ? "true" : "false";
}

ParameterSpec ParameterSpec::integer(std::string name, std::int64_t default_value, std::int64_t min,
                                     std::int64_t max, std::string description) {
  return {std::move(name), ParameterType::integer, default_value, static_cast<double>(min),
          static_cast<double>(max), std::move(description)};
}

ParameterSpec ParameterSpec::real(std::string name, double default_value, double min, double max,
                                  std::string description) {
  return {std::move(name), ParameterType::real, default_value, min, max, std::move(description)};
}

ParameterSpec ParameterSpec::boolean(std::string name, bool default_value, std::string description) {
  return {std::move(name), ParameterType::boolean, default_value, 0.0, 1.0, std::move(description)};
}

ParameterSpec ParameterSpec::choice(std::string name, std::string default_value, std::vector<std::string> choices,
                                    std::string description) {
  if (std::find(choices.begin(), choices.end(), default_value) == choices.end())
    throw std::invalid_argument(fmt::format("{}: default {} is not one of its choices", name, default_value));
  return {std::move(name), ParameterType::choice, std::move(default_value), 0.0, 0.0, std::move(description),
          std::move(choices)};
}

std::string ParameterSpec::allowed() const {
  switch (type) {
    case ParameterType::integer: return fmt::format("an integer in [{}, {}]", min, max);
    case ParameterType::real: return fmt::format("a number in [{}, {}]", min, max);
    case ParameterType::boolean: return "true or false";
    case ParameterType::choice: return fmt::format("one of {}", fmt::join(choices, ", "));
  }
  return "?";
}

bool ParameterSpec::accepts(const ParameterValue& value) const {
  switch (type) {
    case ParameterType::integer: {
      const auto* v = std::get_if<std::int64_t>(&value);
      return v && static_cast<double>(*v) >= min && static_cast<double>(*v) <= max;
    }
    case ParameterType::real: {
      const auto* v = std::get_if<double>(&value);
      return v && *v >= min && *v <= max;
    }
    case ParameterType::boolean: return std::holds_alternative<bool>(value);
    case ParameterType::choice: {
      const auto* v = std::get_if<std::string>(&value);
      return v && std::find(choices.begin(), choices.end(), *v) != choices.end();
    }
  }
  return false;
}

ParameterValues::ParameterValues(const std::vector<ParameterSpec>& specs,
                                 const std::map<std::string, ParameterValue>& given) {
  for (const auto& spec : specs) values_[spec.name] = spec.default_value;
  for (const auto& [name, value] : given) {
    auto it = values_.find(name);
    if (it == values_.end()) throw std::invalid_argument(fmt::format("{} is not a parameter", name));
    const auto& spec = *std::find_if(specs.begin(), specs.end(), [&](const ParameterSpec& s) { return s.name == name; });
    if (!spec.accepts(value))
      throw std::invalid_argument(fmt::format("{} = {}: allowed {}", name, to_string(value), spec.allowed()));
    it->second = value;
  }
}

}  // namespace npusim::scheduler
