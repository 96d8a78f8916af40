#include "npu_model/control_block_bytes.hpp"

#include <cstdint>
#include <stdexcept>

#include <fmt/format.h>

#include "npu_model/byte_fields.hpp"
#include "npu_model/fluid_batching_engine.hpp"

namespace npusim::npu {

// The key and the table's bytes name every field. A field added to one of these types must be
// added below as well; with libstdc++ on a 64-bit target the sizes make the build fail until
// it is, unless the new field fits into padding (Tiling and LayerCost have some), which is why
// tests/table_cache_test.cpp also names every field.
#if defined(__GLIBCXX__) && UINTPTR_MAX == UINT64_MAX
static_assert(sizeof(NpuConfig) == 320 && sizeof(SystolicConfig) == 16 && sizeof(BufferConfig) == 24 &&
                  sizeof(OffchipConfig) == 16 && sizeof(EnergyConfig) == 144,
              "NpuConfig changed: add the new field to control_block_key");
static_assert(sizeof(LayerWork) == 224 && sizeof(GemmShape) == 64 && sizeof(ConvWindow) == 32 &&
                  sizeof(VectorWork) == 64,
              "LayerWork changed: add the new field to control_block_key");
static_assert(sizeof(LayerCost) == 240 && sizeof(TrafficBytes) == 40 && sizeof(BatchMapping) == 12 &&
                  sizeof(Tiling) == 40 && sizeof(Placement) == 16 && sizeof(OnChipAccesses) == 56,
              "LayerCost changed: add the new field to ControlBlockTable::to_bytes and from_bytes");
#endif

namespace {

// A table entry's bytes: its LayerCost's 37 fields and its on-chip bytes, 8 bytes each.
constexpr std::size_t entry_bytes = (37 + 1) * 8;

void write_window(ByteWriter& w, const ConvWindow& c) {
  for (const std::uint32_t v : {c.in_height, c.in_width, c.kernel_height, c.kernel_width, c.stride_height,
                                c.stride_width, c.padding_height, c.padding_width})
    w.u32(v);
}

void write_vector_work(ByteWriter& w, const VectorWork& v) {
  w.u64(v.input_elements);
  w.u64(v.output_elements);
  w.u64(v.operations);
  w.enumeration(v.kind);
  for (const std::uint32_t x : {v.height, v.width, v.channels, v.kernel_height, v.kernel_width, v.stride_height,
                                v.stride_width, v.padding_height, v.padding_width})
    w.u32(x);
}

void write_cost(ByteWriter& w, const LayerCost& c) {
  for (const std::uint64_t v : {c.cycles, c.compute_cycles, c.stall_cycles, c.offchip_bytes, c.bytes.input,
                                c.bytes.weight, c.bytes.output, c.bytes.psum, c.bytes.epilogue, c.macs})
    w.u64(v);
  w.real(c.mac_utilisation);
  w.u64(c.compulsory_bytes);
  w.u64(c.roofline_cycles);
  w.u32(c.mapping.b_r);
  w.u32(c.mapping.b_p);
  w.u32(c.mapping.k);
  const Tiling& t = c.tiling;
  w.enumeration(t.order);
  w.u32(t.band_rows);
  w.u32(t.band_samples);
  w.u64(t.col_block);
  w.u32(t.channel_chunks);
  w.flag(t.input_resident);
  w.flag(t.weights_resident);
  w.u32(t.input_prefetch);
  w.u32(t.weight_prefetch);
  w.flag(c.placement.input_on_chip);
  w.flag(c.placement.output_on_chip);
  w.enumeration(c.placement.epilogue);
  w.u64(c.placement.reserved_input_bytes);
  w.flag(c.fused_into_previous);
  const OnChipAccesses& a = c.on_chip;
  for (const std::uint64_t v : {a.input_read_bytes, a.input_write_bytes, a.weight_read_bytes, a.weight_write_bytes,
                                a.output_read_bytes, a.output_write_bytes, a.vector_ops})
    w.u64(v);
}

LayerCost read_cost(ByteReader& r) {
  LayerCost c;
  for (std::uint64_t* v : {&c.cycles, &c.compute_cycles, &c.stall_cycles, &c.offchip_bytes, &c.bytes.input,
                           &c.bytes.weight, &c.bytes.output, &c.bytes.psum, &c.bytes.epilogue, &c.macs})
    *v = r.u64();
  c.mac_utilisation = r.real();
  c.compulsory_bytes = r.u64();
  c.roofline_cycles = r.u64();
  c.mapping.b_r = r.u32();
  c.mapping.b_p = r.u32();
  c.mapping.k = r.u32();
  Tiling& t = c.tiling;
  t.order = r.enumeration(LoopOrder::inputs_outer);
  t.band_rows = r.u32();
  t.band_samples = r.u32();
  t.col_block = r.u64();
  t.channel_chunks = r.u32();
  t.input_resident = r.flag();
  t.weights_resident = r.flag();
  t.input_prefetch = r.u32();
  t.weight_prefetch = r.u32();
  c.placement.input_on_chip = r.flag();
  c.placement.output_on_chip = r.flag();
  c.placement.epilogue = r.enumeration(EpilogueOperand::off_chip);
  c.placement.reserved_input_bytes = r.u64();
  c.fused_into_previous = r.flag();
  OnChipAccesses& a = c.on_chip;
  for (std::uint64_t* v : {&a.input_read_bytes, &a.input_write_bytes, &a.weight_read_bytes, &a.weight_write_bytes,
                           &a.output_read_bytes, &a.output_write_bytes, &a.vector_ops})
    *v = r.u64();
  return c;
}

}  // namespace

std::string control_block_key(const NpuConfig& c, const std::vector<LayerWork>& layers, std::uint32_t max_batch) {
  ByteWriter w;
  w.section(c.name);
  w.u32(c.clock_mhz);
  w.enumeration(c.array);
  w.u32(c.systolic.rows);
  w.u32(c.systolic.cols);
  w.enumeration(c.systolic.dataflow);
  w.flag(c.systolic.stall_free);
  for (const std::uint32_t v : {c.pe_count, c.pe_width, c.input_rows, c.element_bytes, c.accumulator_bytes, c.vector_lanes})
    w.u32(v);
  w.u64(c.buffers.input_bytes);
  w.u64(c.buffers.weight_bytes);
  w.u64(c.buffers.output_bytes);
  w.real(c.offchip.bandwidth_gb_per_s);
  w.u32(c.offchip.latency_ns);
  w.u32(c.offchip.queue_depth);
  w.u64(c.modes.size());
  for (const BatchingMode m : c.modes) w.enumeration(m);
  w.u64(c.stack_factors.size());
  for (const std::uint32_t k : c.stack_factors) w.u32(k);
  w.flag(c.fuse_epilogue);
  w.flag(c.keep_activations_on_chip);
  const EnergyConfig& e = c.energy;
  w.real(e.node_nm);
  w.real(e.supply_v);
  for (const auto* v : {&e.mac_pj, &e.vector_op_pj, &e.input_buffer_pj_per_byte, &e.weight_buffer_pj_per_byte,
                        &e.output_buffer_pj_per_byte})
    w.optional_real(*v);
  w.real(e.dram_pj_per_byte);
  w.real(e.static_mw);
  w.section(e.table);

  w.u64(layers.size());
  for (const LayerWork& l : layers) {
    w.section(l.name);
    w.enumeration(l.kind);
    w.u64(l.inputs.size());
    for (const std::int64_t i : l.inputs) w.i64(i);
    w.u64(l.input_elements);
    w.flag(l.on_vector_path);
    for (const std::uint64_t v : {l.gemm.rows, l.gemm.depth, l.gemm.cols, l.gemm.groups}) w.u64(v);
    write_window(w, l.gemm.window);
    write_vector_work(w, l.vector);
    w.u32(l.out_height);
    w.u32(l.out_width);
    w.u32(l.out_channels);
  }
  w.u32(max_batch);
  return w.take();
}

std::string ControlBlockTable::to_bytes() const {
  ByteWriter w;
  w.u64(layer_count_);
  w.u32(max_batch_);
  for (const LayerCost& c : entries_) write_cost(w, c);
  for (const std::uint64_t b : on_chip_bytes_) w.u64(b);
  return w.take();
}

ControlBlockTable ControlBlockTable::from_bytes(std::string_view bytes) {
  ByteReader r(bytes, "control-block table bytes");
  ControlBlockTable table;
  table.layer_count_ = r.u64();
  table.max_batch_ = r.u32();
  // The counts fix the size: anything else is refused before memory is reserved for them.
  const std::size_t rest = bytes.size() - 16;
  if (table.max_batch_ == 0 || table.layer_count_ > rest / entry_bytes / table.max_batch_ ||
      table.layer_count_ * table.max_batch_ * entry_bytes != rest)
    throw std::invalid_argument(fmt::format("control-block table bytes: {} bytes do not hold {} layers at batch 1..{} "
                                            "({} bytes an entry after the first 16)",
                                            bytes.size(), table.layer_count_, table.max_batch_, entry_bytes));
  const std::size_t entries = table.layer_count_ * table.max_batch_;
  table.entries_.reserve(entries);
  for (std::size_t i = 0; i < entries; ++i) table.entries_.push_back(read_cost(r));
  table.on_chip_bytes_.reserve(entries);
  for (std::size_t i = 0; i < entries; ++i) table.on_chip_bytes_.push_back(r.u64());
  r.finish();
  return table;
}

}  // namespace npusim::npu
