#include "scheduler/registry.hpp"

#include <dlfcn.h>
#include <sys/stat.h>

#include <algorithm>
#include <set>

#include <fmt/format.h>

#include "traces/input_file.hpp"

namespace npusim::scheduler {

PolicyRegistry::~PolicyRegistry() {
  // Plugin code (the factories) must go before its library does.
  policies_.clear();
  while (!plugins_.empty()) plugins_.pop_back();
}

void PolicyRegistry::add(PolicyInfo info) {
  if (info.name.empty()) throw PolicyError("a policy needs a name");
  // The name reaches summary.json and the CSV outputs.
  if (!traces::is_valid_name(info.name))
    throw PolicyError(fmt::format("policy name \"{}\": allowed {}", info.name, traces::name_rule));
  if (find(info.name))
    throw PolicyError(fmt::format("policy {} is registered twice ({} and {})", info.name, find(info.name)->origin,
                                  loading_.empty() ? "built-in" : loading_));
  if (!info.create) throw PolicyError(fmt::format("policy {} has no factory", info.name));
  if (info.analysis_only && !loading_.empty())
    throw PolicyError(fmt::format("policy plugin {} registers {} as analysis only, which only policies compiled into "
                                  "npusim may be (they see every sample's drawn exit)",
                                  loading_, info.name));
  std::set<std::string> seen;
  for (const auto& p : info.parameters)
    if (!seen.insert(p.name).second)
      throw PolicyError(fmt::format("policy {} declares parameter {} twice", info.name, p.name));
  if (!loading_.empty()) info.origin = loading_;
  policies_.push_back(std::move(info));
}

void PolicyRegistry::load_plugin(const std::filesystem::path& library) {
  const std::string file = library.string();
  // A path without a slash would make dlopen search the system; plugins are always files.
  const std::string opened = library.has_parent_path() ? file : "./" + file;
  // dlopen reads what it is given: a FIFO would block it and a device feed it forever.
  struct stat st {};
  if (::stat(opened.c_str(), &st) != 0)
    throw PolicyError(fmt::format("cannot load policy plugin {}: no such file", file));
  if (!S_ISREG(st.st_mode))
    throw PolicyError(fmt::format("cannot load policy plugin {}: not a regular file: allowed a shared library", file));
  void* handle = dlopen(opened.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!handle) {
    const char* why = dlerror();
    throw PolicyError(fmt::format("cannot load policy plugin {}: {}", file, why ? why : "unknown reason"));
  }
  std::unique_ptr<void, int (*)(void*)> owned(handle, dlclose);
  using VersionFn = int (*)();
  using RegisterFn = void (*)(PolicyRegistry&);
  auto version = reinterpret_cast<VersionFn>(dlsym(handle, "npusim_policy_api_version"));
  auto register_fn = reinterpret_cast<RegisterFn>(dlsym(handle, "npusim_register_policies"));
  if (!version || !register_fn)
    throw PolicyError(fmt::format("policy plugin {} does not export npusim_policy_api_version and "
                                  "npusim_register_policies (use NPUSIM_POLICY_PLUGIN)", file));
  if (version() < oldest_loadable_policy_api_version || version() > policy_api_version)
    throw PolicyError(fmt::format("policy plugin {} was built for policy API {}, this npusim loads {} to {}: rebuild it",
                                  file, version(), oldest_loadable_policy_api_version, policy_api_version));
  const std::size_t before = policies_.size();
  loading_ = file;
  // What the plugin registered, and any exception its code threw, must not outlive the library,
  // which closes as this call unwinds: the exception is rethrown as the loader's own.
  const auto forget_partial = [&] {
    loading_.clear();
    policies_.erase(policies_.begin() + static_cast<std::ptrdiff_t>(before), policies_.end());
  };
  try {
    register_fn(*this);
  } catch (const PolicyError& e) {
    std::string why = e.what();
    forget_partial();
    // The loader's own refusals (a taken name, an analysis-only policy) name the file already.
    if (why.find(file) != std::string::npos) throw PolicyError(why);
    throw PolicyError(fmt::format("policy plugin {}: registering its policies failed: {}", file, why));
  } catch (const std::exception& e) {
    std::string why = e.what();
    forget_partial();
    throw PolicyError(fmt::format("policy plugin {}: registering its policies failed: {}", file, why));
  } catch (...) {
    forget_partial();
    throw PolicyError(fmt::format("policy plugin {} threw while registering its policies", file));
  }
  loading_.clear();
  if (policies_.size() == before) throw PolicyError(fmt::format("policy plugin {} registered no policy", file));
  plugins_.push_back(std::move(owned));
}

const PolicyInfo* PolicyRegistry::find(const std::string& name) const {
  auto it = std::find_if(policies_.begin(), policies_.end(), [&](const PolicyInfo& p) { return p.name == name; });
  return it == policies_.end() ? nullptr : &*it;
}

std::vector<std::string> PolicyRegistry::names() const {
  std::vector<std::string> out;
  for (const auto& p : policies_) out.push_back(p.name);
  return out;
}

}  // namespace npusim::scheduler
