#pragma once
// Minimal JSON text helpers for reports: npusim prints JSON, it never parses it.

#include <string>
#include <string_view>

namespace npusim::sim {

// A JSON string literal, quotes included, with ", \ and control characters escaped.
std::string json_string(std::string_view text);

}  // namespace npusim::sim
