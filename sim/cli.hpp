#pragma once
// The npusim command line. Contract: exit 0 on success; exit 2 with exactly one line
// "npusim: error: ..." on stderr for any bad file, key, value or option; exit 1 with
// "npusim: internal error: ..." for anything else; nothing is written to stdout before the
// whole answer is known. `memo` (npusim run only) carries NPU presets, zoo networks and tables
// between the runs of one process, as a sweep worker's points; the output is the same with or
// without it.

#include <iosfwd>

namespace npusim::sim {

class RunMemo;  // sim/run_memo.hpp

int run_cli(int argc, const char* const* argv, std::ostream& out, std::ostream& err, RunMemo* memo = nullptr);

}  // namespace npusim::sim
