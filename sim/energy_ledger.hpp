#pragma once

#include <cmath>
#include <cstdint>
#include <optional>

#include "npu_model/energy.hpp"

namespace npusim::sim {

// The serving engine counts energy in whole zeptojoules (1e-21 J, 1e-9 pJ) in 128-bit integers.
// Integer sums are exact, so a total does not depend on the order or the grouping of its terms:
// a stretch of layers settled at once from running sums adds exactly what its layers add one by
// one. Each term is rounded once, where it is priced (docs/metrics.md, "Energy").
__extension__ typedef __int128 Zeptojoules;

// The largest term the ledger takes, 1e15 pJ (1 kJ, far beyond any layer), keeps every sum of
// up to 1e13 terms inside 128 bits.
inline constexpr double max_energy_term_pj = 1e15;
inline bool fits_energy_ledger(double pj) { return pj >= 0.0 && pj <= max_energy_term_pj; }

// The first of a priced action's terms, its parts and one sample's share of it, that the ledger
// cannot take; none when all fit.
inline std::optional<double> term_outside_energy_ledger(const npu::EnergyParts& parts, double share_pj) {
  for (const double pj : {parts.mac_pj, parts.sram_pj, parts.dram_pj, parts.vector_pj, parts.static_pj, share_pj})
    if (!fits_energy_ledger(pj)) return pj;
  return std::nullopt;
}

// `pj` rounded to whole zeptojoules. Requires fits_energy_ledger(pj).
inline Zeptojoules zeptojoules_of(double pj) { return static_cast<Zeptojoules>(std::round(pj * 1e9)); }

inline double pj_of(Zeptojoules zj) { return static_cast<double>(zj) / 1e9; }

// npu::EnergyParts, counted in zeptojoules.
struct EnergyCount {
  Zeptojoules mac = 0, sram = 0, dram = 0, vector = 0, leakage = 0;

  // Requires every part to fit the ledger.
  static EnergyCount of(const npu::EnergyParts& parts) {
    return {zeptojoules_of(parts.mac_pj), zeptojoules_of(parts.sram_pj), zeptojoules_of(parts.dram_pj),
            zeptojoules_of(parts.vector_pj), zeptojoules_of(parts.static_pj)};
  }
  npu::EnergyParts parts_pj() const { return {pj_of(mac), pj_of(sram), pj_of(dram), pj_of(vector), pj_of(leakage)}; }

  EnergyCount& operator+=(const EnergyCount& o) {
    mac += o.mac;
    sram += o.sram;
    dram += o.dram;
    vector += o.vector;
    leakage += o.leakage;
    return *this;
  }
  friend EnergyCount operator-(EnergyCount a, const EnergyCount& b) {
    a.mac -= b.mac;
    a.sram -= b.sram;
    a.dram -= b.dram;
    a.vector -= b.vector;
    a.leakage -= b.leakage;
    return a;
  }
};

}  // namespace npusim::sim
