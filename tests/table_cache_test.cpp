// The table cache (sim/table_cache.hpp): a table read back equals the one built, field for
// field; every input of the build moves the key; damaged, foreign or misplaced files are
// rebuilt, never used; and a run with the cache writes the same bytes as one without.

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <bit>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "npu_model/control_block_bytes.hpp"
#include "sim/cli.hpp"
#include "sim/network_yaml.hpp"
#include "sim/npu_yaml.hpp"
#include "sim/run_memo.hpp"
#include "sim/table_cache.hpp"
#include "workloads/control_blocks.hpp"
#include "scratch_dir.hpp"

namespace npusim {
namespace {

npu::Npu preset(const std::string& name) {
  return sim::load_npu_file(std::string(NPUSIM_SOURCE_DIR) + "/configs/npu/" + name + ".yaml");
}

std::string read_bytes(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

void write_bytes(const std::filesystem::path& file, const std::string& bytes) {
  std::ofstream(file, std::ios::binary | std::ios::trunc) << bytes;
}

// `file` with byte `at` changed and its checksum (FNV-1a, 64 bits, over all but the last 8
// bytes, which hold it little-endian) made to match again.
std::string with_checksum(std::string file, std::size_t at) {
  file[at] = static_cast<char>(file[at] ^ 0x5a);
  std::uint64_t hash = 0xcbf29ce484222325ull;
  for (std::size_t i = 0; i + 8 < file.size(); ++i) hash = (hash ^ static_cast<unsigned char>(file[i])) * 0x100000001b3ull;
  for (int i = 0; i < 8; ++i) file[file.size() - 8 + i] = static_cast<char>((hash >> (8 * i)) & 0xff);
  return file;
}

class TableCacheTest : public testing::ScratchDirTest {
 protected:
  // The cache's answer for ResNet-56 on `npu`, counting the builds it asked for.
  npu::ControlBlockTable cached(sim::TableCache& cache, const npu::Npu& npu, std::uint32_t max_batch = 4) {
    return cache.get(npu.config(), workloads::layer_works(network_), max_batch, [&] {
      ++builds_;
      return workloads::control_block_table(npu, network_, max_batch);
    });
  }

  workloads::LoweredNetwork network_ = sim::load_model("resnet56");
  int builds_ = 0;
};

TEST(TableBytes, ReadBackEqualsTheTableFieldForField) {
  // Dot-product and systolic NPUs, with and without activations kept on chip (placements and
  // on-chip bytes before layers), at several table sizes.
  for (const std::string name : {"default", "baseline", "spe-only", "systolic"}) {
    for (const std::string model : {"resnet56", "mobilenetv2"}) {
      const auto npu = preset(name);
      const auto table = workloads::control_block_table(npu, sim::load_model(model), 3);
      const auto back = npu::ControlBlockTable::from_bytes(table.to_bytes());
      EXPECT_TRUE(back == table) << name << " " << model;
      EXPECT_EQ(back.to_bytes(), table.to_bytes());
    }
  }
}

// Bytes with a distinct value in every field of every entry read back into those values and
// write out unchanged: a field the reader and the writer both dropped, or read in another order,
// would shift every later one. 37 fields an entry, then the on-chip bytes of each entry.
TEST(TableBytes, EveryFieldOfAnEntryRoundTrips) {
  constexpr std::uint64_t layers = 2, max_batch = 3, fields = 37;
  // Fields holding a flag or an enumeration, by position: their values must stay in range.
  const std::set<std::uint64_t> flags{21, 22, 25, 26, 29}, order{16}, epilogue{27};
  std::string bytes;
  const auto put = [&](std::uint64_t v) {
    for (int i = 0; i < 8; ++i) bytes.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  };
  put(layers);
  put(max_batch);
  std::vector<std::uint64_t> values;
  for (std::uint64_t e = 0; e < layers * max_batch; ++e)
    for (std::uint64_t f = 0; f < fields; ++f) {
      std::uint64_t v = 1000 * (e + 1) + f;
      if (flags.count(f)) v = (e + f) % 2;
      if (order.count(f)) v = e % 2;
      if (epilogue.count(f)) v = e % 3;
      if (f == 10) v = std::bit_cast<std::uint64_t>(0.25 * static_cast<double>(e + 1));  // mac_utilisation
      values.push_back(v);
      put(v);
    }
  for (std::uint64_t e = 0; e < layers * max_batch; ++e) put(7'000'000 + e);
  const auto table = npu::ControlBlockTable::from_bytes(bytes);
  EXPECT_EQ(table.to_bytes(), bytes);
  ASSERT_EQ(table.layer_count(), layers);
  ASSERT_EQ(table.max_batch(), max_batch);
  // Entries are layer-major: entry e is layer e / max_batch at batch e % max_batch + 1.
  for (std::uint64_t e = 0; e < layers * max_batch; ++e) {
    const auto& c = table.entry(static_cast<std::uint32_t>(e % max_batch + 1), e / max_batch);
    const std::uint64_t* v = &values[e * fields];
    EXPECT_EQ(c.cycles, v[0]);
    EXPECT_EQ(c.compute_cycles, v[1]);
    EXPECT_EQ(c.stall_cycles, v[2]);
    EXPECT_EQ(c.offchip_bytes, v[3]);
    EXPECT_EQ(c.bytes.input, v[4]);
    EXPECT_EQ(c.bytes.weight, v[5]);
    EXPECT_EQ(c.bytes.output, v[6]);
    EXPECT_EQ(c.bytes.psum, v[7]);
    EXPECT_EQ(c.bytes.epilogue, v[8]);
    EXPECT_EQ(c.macs, v[9]);
    EXPECT_EQ(c.mac_utilisation, std::bit_cast<double>(v[10]));
    EXPECT_EQ(c.compulsory_bytes, v[11]);
    EXPECT_EQ(c.roofline_cycles, v[12]);
    EXPECT_EQ(c.mapping.b_r, v[13]);
    EXPECT_EQ(c.mapping.b_p, v[14]);
    EXPECT_EQ(c.mapping.k, v[15]);
    EXPECT_EQ(static_cast<std::uint64_t>(c.tiling.order), v[16]);
    EXPECT_EQ(c.tiling.band_rows, v[17]);
    EXPECT_EQ(c.tiling.band_samples, v[18]);
    EXPECT_EQ(c.tiling.col_block, v[19]);
    EXPECT_EQ(c.tiling.channel_chunks, v[20]);
    EXPECT_EQ(c.tiling.input_resident, v[21] == 1);
    EXPECT_EQ(c.tiling.weights_resident, v[22] == 1);
    EXPECT_EQ(c.tiling.input_prefetch, v[23]);
    EXPECT_EQ(c.tiling.weight_prefetch, v[24]);
    EXPECT_EQ(c.placement.input_on_chip, v[25] == 1);
    EXPECT_EQ(c.placement.output_on_chip, v[26] == 1);
    EXPECT_EQ(static_cast<std::uint64_t>(c.placement.epilogue), v[27]);
    EXPECT_EQ(c.placement.reserved_input_bytes, v[28]);
    EXPECT_EQ(c.fused_into_previous, v[29] == 1);
    EXPECT_EQ(c.on_chip.input_read_bytes, v[30]);
    EXPECT_EQ(c.on_chip.input_write_bytes, v[31]);
    EXPECT_EQ(c.on_chip.weight_read_bytes, v[32]);
    EXPECT_EQ(c.on_chip.weight_write_bytes, v[33]);
    EXPECT_EQ(c.on_chip.output_read_bytes, v[34]);
    EXPECT_EQ(c.on_chip.output_write_bytes, v[35]);
    EXPECT_EQ(c.on_chip.vector_ops, v[36]);
    EXPECT_EQ(table.on_chip_bytes_before(static_cast<std::uint32_t>(e % max_batch + 1), e / max_batch), 7'000'000 + e);
  }
}

TEST(TableBytes, RefusesBytesNoTableWrites) {
  const auto table = workloads::control_block_table(preset("default"), sim::load_model("resnet56"), 2);
  const std::string bytes = table.to_bytes();
  // Cut short anywhere, or with bytes after the table.
  for (const std::size_t keep : {std::size_t{0}, std::size_t{7}, std::size_t{8}, std::size_t{20}, bytes.size() / 2,
                                 bytes.size() - 8, bytes.size() - 1})
    EXPECT_THROW(npu::ControlBlockTable::from_bytes(std::string_view(bytes).substr(0, keep)), std::invalid_argument)
        << keep;
  EXPECT_THROW(npu::ControlBlockTable::from_bytes(bytes + std::string(8, '\0')), std::invalid_argument);
  // Counts the bytes cannot hold: no memory is reserved for them.
  std::string huge = bytes;
  huge[7] = '\x7f';  // layer count near 2^63
  EXPECT_THROW(npu::ControlBlockTable::from_bytes(huge), std::invalid_argument);
  std::string no_batch = bytes;
  for (int i = 8; i < 16; ++i) no_batch[i] = '\0';  // max_batch 0
  EXPECT_THROW(npu::ControlBlockTable::from_bytes(no_batch), std::invalid_argument);
  // The first entry's fields follow the two counts (16 bytes), 8 bytes each: its input_resident
  // flag is field 21 and its loop order field 16 (of 37).
  std::string flag = bytes;
  flag[16 + 8 * 21] = 2;
  EXPECT_THROW(npu::ControlBlockTable::from_bytes(flag), std::invalid_argument);
  std::string order = bytes;
  order[16 + 8 * 16] = 2;
  EXPECT_THROW(npu::ControlBlockTable::from_bytes(order), std::invalid_argument);
}

// Every field ControlBlockTable::build reads moves the key: the list below names them all (the
// sizes checked in control_block_bytes.cpp make a new field fail the build until it is added
// there; it belongs here too).
TEST(TableKey, EveryInputMovesIt) {
  const npu::NpuConfig base_npu = preset("default").config();
  const auto base_layers = workloads::layer_works(sim::load_model("resnet56"));
  const std::string base = npu::control_block_key(base_npu, base_layers, 8);
  EXPECT_EQ(npu::control_block_key(base_npu, base_layers, 8), base);
  EXPECT_NE(npu::control_block_key(base_npu, base_layers, 9), base);

  using NpuChange = std::function<void(npu::NpuConfig&)>;
  const std::vector<std::pair<std::string, NpuChange>> npu_changes{
      {"name", [](auto& c) { c.name += "x"; }},
      {"clock_mhz", [](auto& c) { ++c.clock_mhz; }},
      {"array", [](auto& c) { c.array = npu::ArrayKind::systolic; }},
      {"systolic.rows", [](auto& c) { ++c.systolic.rows; }},
      {"systolic.cols", [](auto& c) { ++c.systolic.cols; }},
      {"systolic.dataflow", [](auto& c) { c.systolic.dataflow = npu::Dataflow::output_stationary; }},
      {"systolic.stall_free", [](auto& c) { c.systolic.stall_free = !c.systolic.stall_free; }},
      {"pe_count", [](auto& c) { ++c.pe_count; }},
      {"pe_width", [](auto& c) { ++c.pe_width; }},
      {"input_rows", [](auto& c) { ++c.input_rows; }},
      {"element_bytes", [](auto& c) { ++c.element_bytes; }},
      {"accumulator_bytes", [](auto& c) { ++c.accumulator_bytes; }},
      {"vector_lanes", [](auto& c) { ++c.vector_lanes; }},
      {"buffers.input_bytes", [](auto& c) { ++c.buffers.input_bytes; }},
      {"buffers.weight_bytes", [](auto& c) { ++c.buffers.weight_bytes; }},
      {"buffers.output_bytes", [](auto& c) { ++c.buffers.output_bytes; }},
      {"offchip.bandwidth_gb_per_s", [](auto& c) { c.offchip.bandwidth_gb_per_s *= 1.0000001; }},
      {"offchip.latency_ns", [](auto& c) { ++c.offchip.latency_ns; }},
      {"offchip.queue_depth", [](auto& c) { ++c.offchip.queue_depth; }},
      {"modes", [](auto& c) { c.modes.pop_back(); }},
      {"modes order", [](auto& c) { std::swap(c.modes.front(), c.modes.back()); }},
      {"stack_factors", [](auto& c) { c.stack_factors.push_back(8); }},
      {"fuse_epilogue", [](auto& c) { c.fuse_epilogue = !c.fuse_epilogue; }},
      {"keep_activations_on_chip", [](auto& c) { c.keep_activations_on_chip = !c.keep_activations_on_chip; }},
      {"energy.node_nm", [](auto& c) { c.energy.node_nm += 1; }},
      {"energy.supply_v", [](auto& c) { c.energy.supply_v += 0.1; }},
      {"energy.mac_pj", [](auto& c) { c.energy.mac_pj = 0.0; }},
      {"energy.vector_op_pj", [](auto& c) { c.energy.vector_op_pj = 0.0; }},
      {"energy.input_buffer_pj_per_byte", [](auto& c) { c.energy.input_buffer_pj_per_byte = 0.0; }},
      {"energy.weight_buffer_pj_per_byte", [](auto& c) { c.energy.weight_buffer_pj_per_byte = 0.0; }},
      {"energy.output_buffer_pj_per_byte", [](auto& c) { c.energy.output_buffer_pj_per_byte = 0.0; }},
      {"energy.dram_pj_per_byte", [](auto& c) { c.energy.dram_pj_per_byte += 1; }},
      {"energy.static_mw", [](auto& c) { c.energy.static_mw += 1; }},
      {"energy.table", [](auto& c) { c.energy.table += "x"; }},
  };
  // A set energy differs from another set value, not only from an unset one.
  npu::NpuConfig set_once = base_npu, set_twice = base_npu;
  set_once.energy.mac_pj = 1.0;
  set_twice.energy.mac_pj = 2.0;
  EXPECT_NE(npu::control_block_key(set_once, base_layers, 8), npu::control_block_key(set_twice, base_layers, 8));
  std::set<std::string> keys{base};
  for (const auto& [field, change] : npu_changes) {
    npu::NpuConfig changed = base_npu;
    change(changed);
    EXPECT_TRUE(keys.insert(npu::control_block_key(changed, base_layers, 8)).second) << field;
  }

  // A layer in the middle, a GEMM one and a vector-path one.
  std::size_t gemm = 0, vector = 0;
  for (std::size_t i = 1; i < base_layers.size(); ++i) {
    if (!gemm && !base_layers[i].on_vector_path) gemm = i;
    if (!vector && base_layers[i].on_vector_path) vector = i;
  }
  ASSERT_GT(gemm, 0u);
  ASSERT_GT(vector, 0u);
  using LayerChange = std::function<void(npu::LayerWork&)>;
  const std::vector<std::pair<std::string, LayerChange>> layer_changes{
      {"name", [](auto& l) { l.name += "x"; }},
      {"kind",
       [](auto& l) {
         l.kind = l.kind == npu::LayerKind::concatenation ? npu::LayerKind::pooling : npu::LayerKind::concatenation;
       }},
      {"inputs", [](auto& l) { l.inputs.push_back(0); }},
      {"input_elements", [](auto& l) { ++l.input_elements; }},
      {"on_vector_path", [](auto& l) { l.on_vector_path = !l.on_vector_path; }},
      {"gemm.rows", [](auto& l) { ++l.gemm.rows; }},
      {"gemm.depth", [](auto& l) { ++l.gemm.depth; }},
      {"gemm.cols", [](auto& l) { ++l.gemm.cols; }},
      {"gemm.groups", [](auto& l) { ++l.gemm.groups; }},
      {"gemm.window.in_height", [](auto& l) { ++l.gemm.window.in_height; }},
      {"gemm.window.in_width", [](auto& l) { ++l.gemm.window.in_width; }},
      {"gemm.window.kernel_height", [](auto& l) { ++l.gemm.window.kernel_height; }},
      {"gemm.window.kernel_width", [](auto& l) { ++l.gemm.window.kernel_width; }},
      {"gemm.window.stride_height", [](auto& l) { ++l.gemm.window.stride_height; }},
      {"gemm.window.stride_width", [](auto& l) { ++l.gemm.window.stride_width; }},
      {"gemm.window.padding_height", [](auto& l) { ++l.gemm.window.padding_height; }},
      {"gemm.window.padding_width", [](auto& l) { ++l.gemm.window.padding_width; }},
      {"vector.input_elements", [](auto& l) { ++l.vector.input_elements; }},
      {"vector.output_elements", [](auto& l) { ++l.vector.output_elements; }},
      {"vector.operations", [](auto& l) { ++l.vector.operations; }},
      {"vector.kind",
       [](auto& l) { l.vector.kind = l.vector.kind == npu::VectorKind::add ? npu::VectorKind::pooling : npu::VectorKind::add; }},
      {"vector.height", [](auto& l) { ++l.vector.height; }},
      {"vector.width", [](auto& l) { ++l.vector.width; }},
      {"vector.channels", [](auto& l) { ++l.vector.channels; }},
      {"vector.kernel_height", [](auto& l) { ++l.vector.kernel_height; }},
      {"vector.kernel_width", [](auto& l) { ++l.vector.kernel_width; }},
      {"vector.stride_height", [](auto& l) { ++l.vector.stride_height; }},
      {"vector.stride_width", [](auto& l) { ++l.vector.stride_width; }},
      {"vector.padding_height", [](auto& l) { ++l.vector.padding_height; }},
      {"vector.padding_width", [](auto& l) { ++l.vector.padding_width; }},
      {"out_height", [](auto& l) { ++l.out_height; }},
      {"out_width", [](auto& l) { ++l.out_width; }},
      {"out_channels", [](auto& l) { ++l.out_channels; }},
  };
  for (const std::size_t at : {gemm, vector}) {
    for (const auto& [field, change] : layer_changes) {
      auto changed = base_layers;
      change(changed[at]);
      EXPECT_TRUE(keys.insert(npu::control_block_key(base_npu, changed, 8)).second) << field << " of layer " << at;
    }
  }
  auto fewer = base_layers;
  fewer.pop_back();
  EXPECT_TRUE(keys.insert(npu::control_block_key(base_npu, fewer, 8)).second);
  // A field's bytes cannot pass for the next one's: a name one character longer with the same
  // bytes after it moves the key.
  auto shifted = base_layers;
  shifted[0].name += '\0';
  EXPECT_TRUE(keys.insert(npu::control_block_key(base_npu, shifted, 8)).second);
}

TEST(TableCache, TheBuildHasAnIdentity) {
  // Debian's g++ links with --build-id; without one the cache would build every table.
  EXPECT_FALSE(sim::code_build_id().empty());
}

TEST_F(TableCacheTest, BuildsOnceAndReadsBackTheSameTable) {
  const auto npu = preset("default");
  sim::TableCache cache(dir_);
  const auto first = cached(cache, npu);
  const auto second = cached(cache, npu);
  EXPECT_EQ(builds_, 1);
  EXPECT_EQ(cache.hits(), 1u);
  EXPECT_EQ(cache.misses(), 1u);
  EXPECT_TRUE(first == second);
  EXPECT_TRUE(second == workloads::control_block_table(npu, network_, 4));
  // Another cache on the same directory (another run) finds it too; another NPU or max_batch
  // does not.
  sim::TableCache later(dir_);
  cached(later, npu);
  EXPECT_EQ(builds_, 1);
  cached(later, preset("spe-only"));
  cached(later, npu, 5);
  EXPECT_EQ(builds_, 3);
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir_), std::filesystem::directory_iterator()), 3);
}

TEST_F(TableCacheTest, DamagedOrForeignFilesAreBuiltAgainAndReplaced) {
  const auto npu = preset("default");
  sim::TableCache cache(dir_);
  const auto built = cached(cache, npu);
  const auto file = cache.file_for(npu.config(), workloads::layer_works(network_), 4);
  const std::string good = read_bytes(file);
  ASSERT_GT(good.size(), 1000u);

  std::vector<std::pair<std::string, std::string>> damaged{
      {"empty", ""},
      {"cut short", good.substr(0, good.size() / 2)},
      {"one byte more", good + "x"},
      {"a flipped byte", good},
      {"a flipped checksum", good},
      {"another magic", "npusim-table-cache 2\n" + good.substr(21)},
      {"another build", with_checksum(good, 21 + 8)},
  };
  damaged[3].second[good.size() / 2] ^= 0x10;
  damaged[4].second[good.size() - 1] ^= 0x01;
  // Another table's whole, valid file under this table's name (a collision of the file name).
  cached(cache, npu, 3);
  damaged.emplace_back("another key", read_bytes(cache.file_for(npu.config(), workloads::layer_works(network_), 3)));
  int expected_builds = builds_;
  for (const auto& [what, bytes] : damaged) {
    write_bytes(file, bytes);
    EXPECT_TRUE(cached(cache, npu) == built) << what;
    EXPECT_EQ(builds_, ++expected_builds) << what;
    EXPECT_EQ(read_bytes(file), good) << what << ": the file is replaced by the table built";
  }
  // A directory in the file's place: built every time, and nothing is left behind.
  std::filesystem::remove(file);
  std::filesystem::create_directory(file);
  EXPECT_TRUE(cached(cache, npu) == built);
  EXPECT_TRUE(cached(cache, npu) == built);
  EXPECT_EQ(builds_, expected_builds + 2);
  for (const auto& entry : std::filesystem::directory_iterator(dir_))
    EXPECT_EQ(entry.path().string().find(".partial"), std::string::npos) << entry.path();
}

TEST_F(TableCacheTest, ADirectoryThatCannotBeOneIsRefused) {
  std::ofstream(dir_ / "file") << "x";
  EXPECT_THROW(sim::TableCache(dir_ / "file"), sim::TableCacheError);
  EXPECT_THROW(sim::TableCache(dir_ / "file" / "below"), sim::TableCacheError);
}

// With a RunMemo, a table read or built once comes from memory after: the file is not read
// again (deleting it changes nothing), and the table equals the one built.
TEST_F(TableCacheTest, AMemoKeepsTablesBetweenRuns) {
  const auto npu = preset("default");
  sim::RunMemo memo;
  sim::TableCache first_run(dir_, &memo);
  const auto built = cached(first_run, npu);
  EXPECT_EQ(builds_, 1);
  EXPECT_EQ(memo.tables_kept(), 1u);
  for (const auto& file : std::filesystem::directory_iterator(dir_)) std::filesystem::remove(file.path());
  sim::TableCache second_run(dir_, &memo);
  const auto kept = cached(second_run, npu);
  EXPECT_EQ(builds_, 1);
  EXPECT_EQ(second_run.hits(), 1u);
  EXPECT_TRUE(kept == built);
  // A table read from the directory (not built here) is kept too.
  sim::TableCache writer(dir_);
  cached(writer, npu, 5);
  EXPECT_EQ(builds_, 2);
  sim::TableCache reader(dir_, &memo);
  const auto read_back = cached(reader, npu, 5);
  EXPECT_EQ(builds_, 2);
  EXPECT_EQ(memo.tables_kept(), 2u);
  EXPECT_TRUE(*memo.table(npu::control_block_key(npu.config(), workloads::layer_works(network_), 5)) == read_back);
}

// A cache told to store when asked writes no file until store_built(), and then the file of
// each table it built, which a new cache reads back without building.
TEST_F(TableCacheTest, StoresWhenAskedWriteOnlyThen) {
  const auto npu = preset("default");
  sim::RunMemo memo;
  sim::TableCache driver(dir_, &memo, sim::TableCache::Store::when_asked);
  const auto built = cached(driver, npu);
  cached(driver, npu);  // a hit: nothing more to write
  EXPECT_EQ(builds_, 1);
  EXPECT_TRUE(std::filesystem::is_empty(dir_));
  driver.store_built();
  std::size_t files = 0;
  for (const auto& file : std::filesystem::directory_iterator(dir_)) {
    EXPECT_EQ(file.path().extension(), ".table") << file.path();
    ++files;
  }
  EXPECT_EQ(files, 1u);
  sim::TableCache reader(dir_);
  EXPECT_TRUE(cached(reader, npu) == built);
  EXPECT_EQ(builds_, 1);
  EXPECT_EQ(reader.hits(), 1u);
}

// The memo keeps RunMemo::kept_tables tables, the least recently used dropped first: a sweep
// over many NPUs does not grow a worker without bound, a table every point uses stays, and a
// dropped table is read from the directory again.
TEST_F(TableCacheTest, AMemoKeepsABoundedNumberOfTables) {
  const auto npu = preset("default");
  const auto layers = workloads::layer_works(network_);
  const auto key = [&](std::uint32_t max_batch) { return npu::control_block_key(npu.config(), layers, max_batch); };
  sim::RunMemo memo;
  sim::TableCache cache(dir_, &memo);
  const std::uint32_t sizes = static_cast<std::uint32_t>(sim::RunMemo::kept_tables) + 2;
  for (std::uint32_t max_batch = 1; max_batch <= sizes; ++max_batch) {
    cached(cache, npu, max_batch);
    cached(cache, npu, 1);  // used by every "point": never the least recently used
  }
  EXPECT_EQ(memo.tables_kept(), sim::RunMemo::kept_tables);
  EXPECT_NE(memo.table(key(1)), nullptr);
  EXPECT_EQ(memo.table(key(2)), nullptr);
  EXPECT_EQ(memo.table(key(3)), nullptr);
  for (std::uint32_t max_batch = 4; max_batch <= sizes; ++max_batch) EXPECT_NE(memo.table(key(max_batch)), nullptr);
  EXPECT_EQ(builds_, static_cast<int>(sizes));
  const auto misses = cache.misses();
  cached(cache, npu, 2);  // from the file, not built
  EXPECT_EQ(cache.misses(), misses);
  EXPECT_EQ(builds_, static_cast<int>(sizes));
}

// Runs in one process that share a memo (as a sweep worker's points do) write the bytes of
// runs without one: three networks on two NPUs, in an order that reuses every table and
// network.
TEST_F(TableCacheTest, RunsSharingAMemoWriteTheSameBytes) {
  const std::string scenario = std::string(NPUSIM_SOURCE_DIR) + "/configs/robustness/r50-r56-mbv2-poisson-79.yaml";
  const std::string tables = (dir_ / "tables").string();
  sim::RunMemo memo;
  const auto run = [&](const std::string& out, const std::string& npu, const std::string& seed, sim::RunMemo* with) {
    const std::string out_dir = (dir_ / out).string();
    const std::vector<std::string> args{"npusim", "run", scenario, "--set", "simulation.samples=1500", "--set",
                                        "npu=" + npu, "--set", "simulation.seed=" + seed, "--samples-csv",
                                        "--out", out_dir, "--table-cache", tables};
    std::vector<const char*> argv;
    for (const auto& a : args) argv.push_back(a.c_str());
    std::ostringstream out_text, err_text;
    return sim::run_cli(static_cast<int>(argv.size()), argv.data(), out_text, err_text, with);
  };
  int runs = 0;
  for (const std::string npu : {"default", "spe-only", "default"})
    for (const std::string seed : {"1", "2"}) {
      const std::string name = npu + "-" + seed + "-" + std::to_string(runs++);
      ASSERT_EQ(run(name + "-alone", npu, seed, nullptr), 0) << name;
      ASSERT_EQ(run(name + "-memo", npu, seed, &memo), 0) << name;
      for (const std::string file : {"summary.json", "metrics.csv", "samples.csv", "scenario.yaml"}) {
        const std::string alone = read_bytes(dir_ / (name + "-alone") / file);
        ASSERT_FALSE(alone.empty()) << name << " " << file;
        EXPECT_EQ(read_bytes(dir_ / (name + "-memo") / file), alone) << name << " " << file;
      }
    }
  EXPECT_EQ(memo.tables_kept(), 6u);  // three networks on two NPUs
  EXPECT_EQ(memo.zoo_models_kept(), 3u);
  EXPECT_EQ(memo.npu_presets_kept(), 2u);
  // A preset with an npu.* override is built anew, never served as the plain preset it names.
  const auto slow = [&](const std::string& out, sim::RunMemo* with) {
    const std::string out_dir = (dir_ / out).string();
    const std::vector<std::string> args{"npusim", "run", scenario, "--set", "simulation.samples=1500", "--set",
                                        "npu=default", "--set", "npu.offchip.bandwidth_gb_per_s=6.4", "--out", out_dir};
    std::vector<const char*> argv;
    for (const auto& a : args) argv.push_back(a.c_str());
    std::ostringstream out_text, err_text;
    return sim::run_cli(static_cast<int>(argv.size()), argv.data(), out_text, err_text, with);
  };
  ASSERT_EQ(slow("slow-alone", nullptr), 0);
  ASSERT_EQ(slow("slow-memo", &memo), 0);
  EXPECT_EQ(read_bytes(dir_ / "slow-memo" / "summary.json"), read_bytes(dir_ / "slow-alone" / "summary.json"));
  EXPECT_NE(read_bytes(dir_ / "slow-memo" / "summary.json"), read_bytes(dir_ / "default-1-0-alone" / "summary.json"));
  EXPECT_EQ(memo.npu_presets_kept(), 2u);
}

// End to end: `npusim run --table-cache` gives the bytes of a run without it, first when it
// builds the table and then when it reads it back.
TEST_F(TableCacheTest, RunsWithTheCacheWriteTheSameBytes) {
  const std::string configs = std::string(NPUSIM_SOURCE_DIR) + "/configs/";
  const std::string tables = " --table-cache " + (dir_ / "tables").string();
  const auto run = [&](const std::string& scenario, const std::string& out, const std::string& extra) {
    const std::string command = std::string(NPUSIM_CLI_PATH) + " run " + scenario +
                                " --set simulation.samples=3000 --samples-csv --out " + (dir_ / out).string() + extra +
                                " >/dev/null 2>&1";
    return std::system(command.c_str());
  };
  const auto tables_stored = [&] {
    return std::distance(std::filesystem::directory_iterator(dir_ / "tables"), std::filesystem::directory_iterator());
  };
  // ResNet-50 on the default NPU (one table), then three networks on a systolic NPU sharing the
  // same directory (three more).
  const std::vector<std::pair<std::string, std::string>> scenarios{
      {"r50-", configs + "scenarios/resnet50-8cams.yaml"},
      {"mix-", configs + "robustness/r50-r56-mbv2-poisson-79.yaml --set npu=systolic"}};
  long expected_tables = 0;
  for (const auto& [name, scenario] : scenarios) {
    ASSERT_EQ(run(scenario, name + "plain", ""), 0) << name;
    ASSERT_EQ(run(scenario, name + "first", tables), 0) << name;
    ASSERT_EQ(run(scenario, name + "second", tables), 0) << name;
    expected_tables += name == "r50-" ? 1 : 3;
    EXPECT_EQ(tables_stored(), expected_tables) << name;
    for (const std::string file : {"summary.json", "metrics.csv", "samples.csv"}) {
      const std::string plain = read_bytes(dir_ / (name + "plain") / file);
      ASSERT_FALSE(plain.empty()) << name << file;
      EXPECT_EQ(read_bytes(dir_ / (name + "first") / file), plain) << name << file;
      EXPECT_EQ(read_bytes(dir_ / (name + "second") / file), plain) << name << file;
    }
  }
  // A cache directory that cannot be one: one line, exit status 2.
  std::ofstream(dir_ / "not-a-dir") << "x";
  const int status = run(scenarios[0].second, "bad", " --table-cache " + (dir_ / "not-a-dir").string());
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 2);
}

}  // namespace
}  // namespace npusim
