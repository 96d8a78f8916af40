#pragma once
// The npusim command line. Contract: exit 0 on success; exit 2 with exactly one line
// "npusim: error: ..." on stderr for any bad file, key, value or option; exit 1 with
// "npusim: internal error: ..." for anything else; nothing is written to stdout before the
// whole answer is known.

#include <iosfwd>

namespace npusim::sim {

int run_cli(int argc, const char* const* argv, std::ostream& out, std::ostream& err);

}  // namespace npusim::sim
