#pragma once
// Importer for SCALE-Sim topology files. Columns: Layer name, IFMAP Height, IFMAP Width,
// Filter Height, Filter Width, Channels, Num Filter, Strides (a trailing comma is allowed).
// Every row is a convolution (a fully connected layer is one whose filter covers its IFMAP).
// SCALE-Sim gives each row's input already padded, so rows must form a chain: a row's IFMAP is
// the previous row's output plus symmetric zero padding, with the same channels. The first row's
// IFMAP is the network input.

#include <istream>
#include <string>

#include "workloads/network.hpp"

namespace npusim::workloads {

// Fills net.input and net.layers (layer origins are "source:line"). Throws NetworkError
// "<source>:<line>: ..." for a missing header, a bad number or a row that does not chain.
void import_scalesim_csv(std::istream& in, const std::string& source, NetworkDef& net);

}  // namespace npusim::workloads
