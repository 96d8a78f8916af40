#include "sim/table_cache.hpp"

#include <elf.h>
#include <fcntl.h>
#include <link.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <cstdlib>
#include <fstream>
#include <string_view>
#include <system_error>

#include <fmt/format.h>

#include "npu_model/byte_fields.hpp"
#include "npu_model/control_block_bytes.hpp"
#include "workloads/network.hpp"

namespace npusim::sim {

namespace {

constexpr std::string_view magic = "npusim-table-cache 1\n";
// Far above any table (ResNet-50 at batch 1..32 takes about 0.8 MB): a larger file is not read.
constexpr std::uintmax_t largest_file_bytes = std::uintmax_t{1} << 30;

std::uint64_t fnv1a(std::string_view bytes, std::uint64_t hash = 0xcbf29ce484222325ull) {
  for (const char c : bytes) hash = (hash ^ static_cast<unsigned char>(c)) * 0x100000001b3ull;
  return hash;
}

std::string read_file(const std::filesystem::path& file) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(file, ec)) return {};
  const auto size = std::filesystem::file_size(file, ec);
  if (ec || size > largest_file_bytes) return {};
  // One buffer of the file's size, read into: a growing stream copies the bytes several times
  // into fresh pages, which cost a sweep point more than the reading itself. A file that
  // changed size meanwhile reads short or long, and is treated as missing.
  std::string bytes(static_cast<std::size_t>(size), '\0');
  std::ifstream in(file, std::ios::binary);
  in.read(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (static_cast<std::uintmax_t>(in.gcount()) != size || in.peek() != std::char_traits<char>::eof()) return {};
  return bytes;
}

// The loaded object (the executable or a shared library) whose segments hold `address`: its
// load address and its GNU build ID ("" when it has none). Not found: load address 0.
struct LoadedObject {
  std::uintptr_t load_address = 0;
  std::string build_id;
};

LoadedObject object_holding(const void* address) {
  struct Search {
    std::uintptr_t address;
    LoadedObject found;
  } search{reinterpret_cast<std::uintptr_t>(address), {}};
  dl_iterate_phdr(
      [](dl_phdr_info* info, std::size_t, void* data) -> int {
        auto& s = *static_cast<Search*>(data);
        const auto holds = [&](const ElfW(Phdr)& segment) {
          const std::uintptr_t start = info->dlpi_addr + segment.p_vaddr;
          return segment.p_type == PT_LOAD && s.address >= start && s.address - start < segment.p_memsz;
        };
        if (std::none_of(info->dlpi_phdr, info->dlpi_phdr + info->dlpi_phnum, holds)) return 0;
        s.found.load_address = info->dlpi_addr == 0 ? 1 : info->dlpi_addr;  // a non-PIE executable loads at 0
        for (int i = 0; i < info->dlpi_phnum; ++i) {
          const ElfW(Phdr)& segment = info->dlpi_phdr[i];
          if (segment.p_type != PT_NOTE) continue;
          const std::size_t align = segment.p_align == 8 ? 8 : 4;
          const auto pad = [align](std::size_t n) { return (n + align - 1) / align * align; };
          const char* notes = reinterpret_cast<const char*>(info->dlpi_addr + segment.p_vaddr);
          const std::size_t size = segment.p_memsz;
          // Offsets from the segment's start, each checked against its size before it is used.
          std::size_t at = 0;
          while (size - at >= sizeof(ElfW(Nhdr))) {
            ElfW(Nhdr) header;
            std::memcpy(&header, notes + at, sizeof header);
            const std::size_t name_at = at + sizeof header;
            if (pad(header.n_namesz) > size - name_at) break;
            const std::size_t desc_at = name_at + pad(header.n_namesz);
            if (header.n_descsz > size - desc_at) break;
            if (header.n_type == NT_GNU_BUILD_ID && header.n_namesz == 4 && std::memcmp(notes + name_at, "GNU", 4) == 0) {
              s.found.build_id.assign(notes + desc_at, header.n_descsz);
              return 1;
            }
            if (pad(header.n_descsz) > size - desc_at) break;
            at = desc_at + pad(header.n_descsz);
          }
        }
        return 1;
      },
      &search);
  return search.found;
}

}  // namespace

std::string code_build_id() {
  // The objects whose code decides a table and its key: the cost model and mapper (npu_model),
  // the lowering of networks (workloads) and this cache. Linked statically, as the project
  // builds by default, they are all the executable; built as shared libraries, a changed cost
  // model changes its library's ID, not the executable's.
  const void* code[] = {reinterpret_cast<const void*>(&npu::ControlBlockTable::build),
                        reinterpret_cast<const void*>(&workloads::layer_works),
                        reinterpret_cast<const void*>(&code_build_id)};
  std::vector<std::uintptr_t> seen;
  std::string ids;
  for (const void* address : code) {
    const LoadedObject object = object_holding(address);
    if (object.load_address == 0 || object.build_id.empty()) return {};
    if (std::find(seen.begin(), seen.end(), object.load_address) != seen.end()) continue;
    seen.push_back(object.load_address);
    ids += object.build_id;
  }
  return ids;
}

TableCache::TableCache(std::filesystem::path dir, RunMemo* memo, Store store)
    : dir_(std::move(dir)), build_id_(code_build_id()), memo_(memo), store_(memo ? store : Store::at_once) {
  std::error_code ec;
  std::filesystem::create_directories(dir_, ec);
  std::error_code not_a_directory;
  if (!std::filesystem::is_directory(dir_, not_a_directory))
    throw TableCacheError(fmt::format("table cache {}: cannot create it as a directory{}", dir_.string(),
                                      ec ? ": " + ec.message() : std::string{}));
}

std::filesystem::path TableCache::file_for(const npu::NpuConfig& npu, const std::vector<npu::LayerWork>& layers,
                                           std::uint32_t max_batch) const {
  return file_for_key(npu::control_block_key(npu, layers, max_batch));
}

std::filesystem::path TableCache::file_for_key(const std::string& key) const {
  return dir_ / fmt::format("{:016x}.table", fnv1a(key, fnv1a(build_id_)));
}

npu::ControlBlockTable TableCache::get(const npu::NpuConfig& npu, const std::vector<npu::LayerWork>& layers,
                                       std::uint32_t max_batch, const std::function<npu::ControlBlockTable()>& build) {
  if (build_id_.empty()) return build();
  const std::string key = npu::control_block_key(npu, layers, max_batch);
  if (memo_) {
    if (const npu::ControlBlockTable* kept = memo_->table(key)) {
      ++hits_;
      return *kept;
    }
  }
  const auto file = file_for_key(key);

  // The file: the magic line, the build IDs, the key and the table as sections, then the
  // checksum of all that.
  const std::string stored = read_file(file);
  if (stored.size() > 8) {
    try {
      const std::string_view body(stored.data(), stored.size() - 8);
      npu::ByteReader checksum(std::string_view(stored).substr(body.size()), "a table cache file's checksum");
      npu::ByteReader r(body, "a table cache file");
      if (checksum.u64() == fnv1a(body) && r.raw(magic.size()) == magic && r.section() == build_id_ &&
          r.section() == key) {
        const std::string_view payload = r.section();
        r.finish();
        auto table = npu::ControlBlockTable::from_bytes(payload);
        if (table.layer_count() == layers.size() && table.max_batch() == max_batch) {
          ++hits_;
          if (memo_) memo_->keep_table(key, table);
          return table;
        }
      }
    } catch (const std::invalid_argument&) {
      // Bytes this build did not write: built again below, and replaced.
    }
  }

  ++misses_;
  npu::ControlBlockTable table = build();
  if (memo_) memo_->keep_table(key, table);
  if (store_ == Store::when_asked) unstored_.push_back(key);
  else store(key, table);
  return table;
}

void TableCache::store_built() {
  for (const auto& key : unstored_)
    if (const npu::ControlBlockTable* kept = memo_->table(key)) store(key, *kept);
  unstored_.clear();
}

void TableCache::store(const std::string& key, const npu::ControlBlockTable& table) const {
  const auto file = file_for_key(key);
  npu::ByteWriter w;
  w.raw(magic);
  w.section(build_id_);
  w.section(key);
  w.section(table.to_bytes());
  w.u64(fnv1a(w.written()));
  const std::string bytes = w.take();
  // A name no other writer uses (created exclusively): two runs that build the same table at
  // once each rename a whole file into place, and the second replaces the first with the same
  // bytes.
  std::string partial = file.string() + ".partial.XXXXXX";
  const int fd = ::mkstemp(partial.data());
  if (fd < 0) return;
  std::size_t written = 0;
  while (written < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + written, bytes.size() - written);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    written += static_cast<std::size_t>(n);
  }
  const bool whole = ::close(fd) == 0 && written == bytes.size();
  std::error_code ec;
  if (whole) std::filesystem::rename(partial, file, ec);
  if (!whole || ec) std::filesystem::remove(partial, ec);
}

}  // namespace npusim::sim
