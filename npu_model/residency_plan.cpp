#include "npu_model/residency_plan.hpp"

#include <algorithm>
#include <optional>

namespace npusim::npu {
namespace {

bool is_elementwise(const LayerWork& w) { return w.kind == LayerKind::elementwise; }
bool is_concatenation(const LayerWork& w) { return w.kind == LayerKind::concatenation; }
bool is_global_pool(const LayerWork& w) {
  const VectorWork& v = w.vector;
  return w.kind == LayerKind::pooling && w.on_vector_path && w.out_height == 1 && w.out_width == 1 &&
         v.kernel_height == v.height && v.kernel_width == v.width && v.padding_height == 0 && v.padding_width == 0;
}

// The epilogue handles vector_lanes outputs a cycle, every fused operation (the add, a pool's
// accumulation, ReLU) one stage of the same pass. It keeps pace with the array when the array
// cannot finish more outputs a cycle: one per PE (per row or column of a systolic array), and no
// more than its MACs allow at P MACs an output.
bool epilogue_keeps_pace(const Npu& npu, const LayerWork& gemm) {
  const auto& config = npu.config();
  const std::uint64_t finishing_units =
      npu.is_systolic() ? std::max(config.systolic.rows, config.systolic.cols) : config.pe_count;
  const std::uint64_t macs_bound = (npu.macs_per_cycle() + gemm.gemm.depth - 1) / gemm.gemm.depth;
  return std::min(finishing_units, macs_bound) <= config.vector_lanes;
}

// Bytes of each of a global pool's sums: wide enough for the sum of its window (n values of b
// bits need b + ceil(log2 n) bits), in whole power-of-two bytes, at most an accumulator.
std::uint64_t pool_sum_bytes(const Npu& npu, const LayerWork& pool) {
  const auto& config = npu.config();
  const std::uint64_t window = std::uint64_t{pool.vector.kernel_height} * pool.vector.kernel_width;
  std::uint64_t bits = 8 * std::uint64_t{config.element_bytes};
  for (std::uint64_t n = 1; n < window; n *= 2) ++bits;
  std::uint64_t bytes = 1;
  while (bytes * 8 < bits) bytes *= 2;
  return std::min<std::uint64_t>(bytes, config.accumulator_bytes);
}

// The operand of the add at `i` that is not the layer right before it, when the add can run in
// that layer's epilogue: the layer is a GEMM and the add is its only reader.
std::optional<std::int64_t> fusable_operand(const Npu& npu, const std::vector<LayerWork>& layers,
                                            const std::vector<std::vector<std::size_t>>& readers, std::size_t i) {
  const LayerWork& add = layers[i];
  if (i == 0 || !is_elementwise(add) || add.inputs.size() != 2) return std::nullopt;
  const auto previous = static_cast<std::int64_t>(i - 1);
  if (layers[i - 1].on_vector_path || readers[i - 1].size() != 1 || !epilogue_keeps_pace(npu, layers[i - 1]))
    return std::nullopt;
  if (add.inputs[0] == previous && add.inputs[1] != previous) return add.inputs[1];
  if (add.inputs[1] == previous && add.inputs[0] != previous) return add.inputs[0];
  return std::nullopt;
}

}  // namespace

ResidencyPlan plan_residency(const Npu& npu, const std::vector<LayerWork>& layers, std::uint32_t batch,
                             bool allow_residency) {
  const std::size_t n = layers.size();
  ResidencyPlan plan;
  plan.layers.assign(n, {});
  plan.on_chip_bytes_before.assign(n, 0);
  if (std::none_of(layers.begin(), layers.end(), [](const LayerWork& w) { return !w.inputs.empty(); })) return plan;

  const auto& config = npu.config();
  const std::uint64_t capacity = config.buffers.input_bytes;
  const bool residency = allow_residency && config.keep_activations_on_chip;
  std::vector<std::vector<std::size_t>> all_readers(n);
  for (std::size_t j = 0; j < n; ++j)
    for (const std::int64_t from : layers[j].inputs)
      if (from >= 0) all_readers[static_cast<std::size_t>(from)].push_back(j);

  // host[j]: the layer whose run does layer j's work; j itself unless j runs in an epilogue.
  std::vector<std::size_t> add_host(n);
  for (std::size_t j = 0; j < n; ++j) add_host[j] = j;
  std::vector<bool> add_fused(n, false);
  std::vector<std::int64_t> epilogue_operand(n, -1);  // [GEMM]: the other operand of the add it runs
  if (config.fuse_epilogue)
    for (std::size_t i = 1; i < n; ++i)
      if (const auto operand = fusable_operand(npu, layers, all_readers, i)) {
        add_fused[i] = true;
        add_host[i] = i - 1;
        epilogue_operand[i - 1] = *operand;
      }

  // A global pool right after the GEMM (or fused add) that makes its input accumulates each
  // output block as it leaves the accumulators, so the tensor is never read back for it. Its
  // sums must stay on chip until read; a tap whose sums find no room is refused and the plan is
  // made again with that pool as a layer of its own.
  std::vector<bool> tap_refused(n, false);
  for (;;) {
    std::vector<std::size_t> host = add_host;
    std::vector<bool> tapped(n, false);  // [t]: a pool accumulates tensor t in its maker's epilogue
    if (config.fuse_epilogue && residency)
      for (std::size_t p = 1; p < n; ++p) {
        const auto& in = layers[p].inputs;
        if (tap_refused[p] || !is_global_pool(layers[p]) || in.size() != 1 || in[0] != static_cast<std::int64_t>(p - 1))
          continue;
        if (host[p - 1] != p - 1 && !add_fused[p - 1]) continue;
        const std::size_t h = host[p - 1];
        if (layers[h].on_vector_path || !epilogue_keeps_pace(npu, layers[h])) continue;
        host[p] = h;
        tapped[p - 1] = true;
      }
    const auto runs_in_epilogue = [&](std::size_t j) { return host[j] != j; };
    const auto is_tap = [&](std::size_t j) { return runs_in_epilogue(j) && !add_fused[j]; };

    std::vector<std::vector<std::size_t>> readers(n);
    for (std::size_t t = 0; t < n; ++t)
      for (const std::size_t j : all_readers[t])
        if (!is_tap(j)) readers[t].push_back(j);

    // Tensor t is layer t's output, made while its host runs and read while each reader's host
    // runs. A pool's tensor is its sums.
    std::vector<std::uint64_t> bytes(n);
    std::vector<std::size_t> last_read(n, 0);
    for (std::size_t t = 0; t < n; ++t) {
      const std::uint64_t width = is_tap(t) ? pool_sum_bytes(npu, layers[t]) : config.element_bytes;
      bytes[t] = std::uint64_t{batch} * output_elements(layers[t]) * width;
      for (const std::size_t j : readers[t]) last_read[t] = std::max(last_read[t], host[j]);
    }

    // A tensor may stay when it exists (not a GEMM output an add consumes in its epilogue), is
    // read again, and no reader needs it in DRAM: concatenations write their inputs in place,
    // and an add on the vector path reads both operands over the channel.
    const auto may_stay = [&](std::size_t t) {
      if (!residency) return false;
      if ((t + 1 < n && add_fused[t + 1]) || readers[t].empty() || is_concatenation(layers[t])) return false;
      return std::none_of(readers[t].begin(), readers[t].end(), [&](std::size_t j) {
        return is_concatenation(layers[j]) || (is_elementwise(layers[j]) && !add_fused[j]);
      });
    };
    // A layer whose input comes over the channel keeps an eighth of the input buffer (or its
    // whole input, if smaller) to stream it through. (An eighth beat a quarter on the zoo
    // at batch 1 and 16, but for Inception-v3 at batch 16, 0.03 % slower.)
    const auto streaming_room = [&](std::size_t j) -> std::uint64_t {
      if (runs_in_epilogue(j) || is_concatenation(layers[j])) return 0;
      return std::min(capacity / 8, std::uint64_t{batch} * layers[j].input_elements * config.element_bytes);
    };

    std::vector<bool> kept(n, false);
    std::vector<std::uint64_t> occupied(n, 0);  // [layer]: bytes of kept tensors held while it runs
    const auto inputs_kept = [&](std::size_t j, std::size_t assuming) {
      const auto& in = layers[j].inputs;
      return !in.empty() && std::all_of(in.begin(), in.end(), [&](std::int64_t x) {
        return x >= 0 && (kept[static_cast<std::size_t>(x)] || static_cast<std::size_t>(x) == assuming);
      });
    };
    // First come, first kept: in the order tensors are made, each stays if at every layer of its
    // life it fits beside the tensors already kept and the streaming room of that layer.
    for (std::size_t t = 0; t < n; ++t) {
      if (!may_stay(t)) continue;
      bool fits = true;
      for (std::size_t j = host[t]; j <= last_read[t] && fits; ++j)
        fits = occupied[j] + bytes[t] + (inputs_kept(j, t) ? 0 : streaming_room(j)) <= capacity;
      if (!fits) continue;
      kept[t] = true;
      for (std::size_t j = host[t]; j <= last_read[t]; ++j) occupied[j] += bytes[t];
    }
    bool refused = false;
    for (std::size_t p = 0; p < n; ++p)
      if (is_tap(p) && !kept[p]) refused = tap_refused[p] = true;
    if (refused) continue;

    for (std::size_t j = 0; j < n; ++j) {
      if (runs_in_epilogue(j)) {
        plan.layers[j].fused_into_previous = true;
        plan.layers[j].epilogue_host = host[j];
        continue;
      }
      Placement& p = plan.layers[j].placement;
      p.input_on_chip = inputs_kept(j, n);
      const std::size_t output = j + 1 < n && add_fused[j + 1] ? j + 1 : j;
      // A tensor only pools read goes nowhere once they have accumulated it.
      p.output_on_chip = kept[output] || (tapped[output] && readers[output].empty());
      if (j + 1 < n && add_fused[j + 1]) {
        const std::int64_t operand = epilogue_operand[j];
        p.epilogue = operand >= 0 && kept[static_cast<std::size_t>(operand)] ? EpilogueOperand::on_chip
                                                                             : EpilogueOperand::off_chip;
      }
      std::uint64_t own_input = 0;
      if (p.input_on_chip) {
        std::vector<std::int64_t> distinct = layers[j].inputs;
        std::sort(distinct.begin(), distinct.end());
        distinct.erase(std::unique(distinct.begin(), distinct.end()), distinct.end());
        for (const std::int64_t x : distinct) own_input += bytes[static_cast<std::size_t>(x)];
      }
      p.reserved_input_bytes = occupied[j] - own_input;
    }
    for (std::size_t t = 0; t < n; ++t)
      if (kept[t])
        for (std::size_t b = host[t] + 1; b <= last_read[t]; ++b) plan.on_chip_bytes_before[b] += bytes[t];
    return plan;
  }
}

}  // namespace npusim::npu
