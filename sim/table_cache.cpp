#include "sim/table_cache.hpp"

#include <elf.h>
#include <link.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <sstream>
#include <string_view>
#include <system_error>

#include <fmt/format.h>

#include "npu_model/control_block_bytes.hpp"

namespace npusim::sim {

namespace {

constexpr std::string_view magic = "npusim-table-cache 1\n";
// Far above any table (ResNet-50 at batch 1..32 takes about 0.5 MB): a larger file is not read.
constexpr std::uintmax_t largest_file_bytes = std::uintmax_t{1} << 30;

std::uint64_t fnv1a(std::string_view bytes, std::uint64_t hash = 0xcbf29ce484222325ull) {
  for (const char c : bytes) hash = (hash ^ static_cast<unsigned char>(c)) * 0x100000001b3ull;
  return hash;
}

void append_u64(std::string& out, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

void append_section(std::string& out, std::string_view bytes) {
  append_u64(out, bytes.size());
  out.append(bytes);
}

// Reads a length-prefixed section at `at`; false when the file ends first.
bool read_section(std::string_view file, std::size_t& at, std::string_view& section) {
  if (file.size() - at < 8) return false;
  std::uint64_t length = 0;
  for (int i = 0; i < 8; ++i) length |= std::uint64_t{static_cast<unsigned char>(file[at + i])} << (8 * i);
  at += 8;
  if (length > file.size() - at) return false;
  section = file.substr(at, length);
  at += length;
  return true;
}

std::string read_file(const std::filesystem::path& file) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(file, ec)) return {};
  const auto size = std::filesystem::file_size(file, ec);
  if (ec || size > largest_file_bytes) return {};
  std::ifstream in(file, std::ios::binary);
  std::ostringstream bytes;
  bytes << in.rdbuf();
  return in.bad() ? std::string{} : std::move(bytes).str();
}

}  // namespace

std::string executable_build_id() {
  std::string id;
  // The first object listed is the executable itself; its notes are mapped with it.
  dl_iterate_phdr(
      [](dl_phdr_info* info, std::size_t, void* data) -> int {
        auto& out = *static_cast<std::string*>(data);
        for (int i = 0; i < info->dlpi_phnum; ++i) {
          const ElfW(Phdr)& segment = info->dlpi_phdr[i];
          if (segment.p_type != PT_NOTE) continue;
          const std::size_t align = segment.p_align == 8 ? 8 : 4;
          const auto pad = [align](std::size_t n) { return (n + align - 1) & ~(align - 1); };
          const char* note = reinterpret_cast<const char*>(info->dlpi_addr + segment.p_vaddr);
          const char* end = note + segment.p_memsz;
          while (static_cast<std::size_t>(end - note) >= sizeof(ElfW(Nhdr))) {
            const auto* header = reinterpret_cast<const ElfW(Nhdr)*>(note);
            const char* name = note + sizeof(ElfW(Nhdr));
            const char* desc = name + pad(header->n_namesz);
            if (desc + header->n_descsz > end) break;
            if (header->n_type == NT_GNU_BUILD_ID && header->n_namesz == 4 && std::memcmp(name, "GNU", 4) == 0) {
              out.assign(desc, header->n_descsz);
              return 1;
            }
            note = desc + pad(header->n_descsz);
          }
        }
        return 1;
      },
      &id);
  return id;
}

TableCache::TableCache(std::filesystem::path dir) : dir_(std::move(dir)), build_id_(executable_build_id()) {
  std::error_code ec;
  std::filesystem::create_directories(dir_, ec);
  if (!std::filesystem::is_directory(dir_))
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
  const auto file = file_for_key(key);

  const std::string stored = read_file(file);
  if (stored.size() > magic.size() + 8 && std::string_view(stored).substr(0, magic.size()) == magic) {
    const std::string_view body(stored.data(), stored.size() - 8);
    std::uint64_t checksum = 0;
    for (int i = 0; i < 8; ++i)
      checksum |= std::uint64_t{static_cast<unsigned char>(stored[body.size() + i])} << (8 * i);
    std::size_t at = magic.size();
    std::string_view id, stored_key, payload;
    if (checksum == fnv1a(body) && read_section(body, at, id) && read_section(body, at, stored_key) &&
        read_section(body, at, payload) && at == body.size() && id == build_id_ && stored_key == key) {
      try {
        auto table = npu::ControlBlockTable::from_bytes(payload);
        ++hits_;
        return table;
      } catch (const std::invalid_argument&) {
        // Bytes this build did not write: built again below, and replaced.
      }
    }
  }

  ++misses_;
  npu::ControlBlockTable table = build();
  std::string bytes(magic);
  append_section(bytes, build_id_);
  append_section(bytes, key);
  append_section(bytes, table.to_bytes());
  append_u64(bytes, fnv1a(bytes));
  // A name no other writer uses: two runs that build the same table at once each rename a whole
  // file into place, and the second replaces the first with the same bytes.
  const auto partial = file.string() + fmt::format(".{}.{:x}.partial", ::getpid(), reinterpret_cast<std::uintptr_t>(this));
  {
    std::ofstream out(partial, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    out.close();
    std::error_code ec;
    if (out) std::filesystem::rename(partial, file, ec);
    if (!out || ec) std::filesystem::remove(partial, ec);
  }
  return table;
}

}  // namespace npusim::sim
