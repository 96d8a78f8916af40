#pragma once
// Importer for SCALE-Sim topology files. Columns: Layer name, IFMAP Height, IFMAP Width,
// Filter Height, Filter Width, Channels, Num Filter, Strides (a trailing comma is allowed).
// Every row is a convolution (a fully connected layer is one whose filter covers its IFMAP).
// SCALE-Sim gives each row's input already padded, so a row chains when its IFMAP is the
// previous row's output plus symmetric zero padding, with the same channels. The first row's
// IFMAP is the network input. SCALE-Sim leaves pooling out, so most real topologies do not
// chain everywhere: a row that does not is joined to the previous one by an implicit step
// (docs/models.md), unless the import is strict.

#include <cstdint>
#include <istream>
#include <string>
#include <vector>

#include "workloads/network.hpp"

namespace npusim::workloads {

// How rows that do not chain are treated: joined by an implicit step, or refused.
enum class ScaleSimChaining { implicit_steps, strict };

// Fills net.input and net.layers (layer origins are "source:line"). An implicit step is a layer
// named "<row>.implicit" with LayerDef::implicit set, priced as vector work: a max pooling when
// the row's IFMAP has the previous output's channels and is no larger, else a resampling pass
// that writes the row's IFMAP. Throws NetworkError "<source>:<line>: ..." for a missing header, a
// bad number, or (strict) a row that does not chain.
void import_scalesim_csv(std::istream& in, const std::string& source, NetworkDef& net,
                         ScaleSimChaining chaining = ScaleSimChaining::implicit_steps);

// One layer of a SCALE-Sim topology file, read the way SCALE-Sim v2 reads it for its own runs:
// rows are independent layers (no chaining), the first line is the header, a row has 7
// numbers (one stride for both directions) or 8 (stride height, stride width), and a layer
// whose name contains "DP" (depthwise) becomes one single-channel layer per input channel,
// named NAME + "Channel_" + i.
struct ScaleSimLayer {
  std::string name;
  std::uint32_t ifmap_height = 1, ifmap_width = 1;
  std::uint32_t filter_height = 1, filter_width = 1;
  std::uint32_t channels = 1, filters = 1;
  std::uint32_t stride_height = 1, stride_width = 1;
  std::string origin;  // "source:line"
};

// Throws NetworkError "<source>:<line>: ..." for a bad number, a wrong field count or a filter
// larger than its IFMAP, and for a file with no layers.
std::vector<ScaleSimLayer> read_scalesim_topology(std::istream& in, const std::string& source);

}  // namespace npusim::workloads
