#include <cstdlib>
#include <iostream>

#include "sim/cli.hpp"

int main(int argc, char** argv) {
  // SystemC prints its banner to stderr on first use; keep error output to one line.
  ::setenv("SYSTEMC_DISABLE_COPYRIGHT_MESSAGE", "1", 0);
  return npusim::sim::run_cli(argc, argv, std::cout, std::cerr);
}
