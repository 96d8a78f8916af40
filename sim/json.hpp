#pragma once
// Minimal JSON text helpers for reports: npusim prints JSON, it never parses it.

#include <string>
#include <string_view>

namespace npusim::sim {

// A JSON string literal, quotes included, that is always valid UTF-8 JSON whatever `text`
// holds (docs/metrics.md, "Names in outputs"): ", \ and every control character (U+0000 to
// U+001F, and DEL) are escaped; well-formed UTF-8 is copied as it is; each byte that is not
// part of a well-formed UTF-8 sequence (a stray continuation byte, a truncated sequence, an
// overlong form, a surrogate, a code point past U+10FFFF) becomes \ufffd, the replacement
// character.
std::string json_string(std::string_view text);

}  // namespace npusim::sim
