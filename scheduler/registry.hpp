#pragma once
// Policies by name: the built-in ones and those loaded from plugins (shared libraries).
// A registry is an ordinary object, one per simulation set-up: there is no global list.

#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "scheduler/parameters.hpp"
#include "scheduler/policy.hpp"

namespace npusim::scheduler {

struct PolicyInfo {
  std::string name;        // what scheduler.policy names in YAML
  std::string summary;     // one line for `npusim describe policies`
  std::vector<ParameterSpec> parameters;
  std::function<std::unique_ptr<Policy>(const ParameterValues&)> create;
  std::string origin = "built-in";  // or the plugin file it came from
  // A reference bound that sees the engine's Oracle (each sample's drawn exit, the arrivals to
  // come), not a deployable scheduler. Only policies compiled into the program, never a
  // plugin's, may be analysis only.
  bool analysis_only = false;
};

// A plugin is a shared library that exports, with C linkage:
//   int  npusim_policy_api_version();                  // returns policy_api_version
//   void npusim_register_policies(PolicyRegistry&);    // calls add() once per policy
// NPUSIM_POLICY_PLUGIN(registry) defines both; see examples/policy_plugin.
class PolicyRegistry {
 public:
  PolicyRegistry() = default;
  PolicyRegistry(const PolicyRegistry&) = delete;
  PolicyRegistry& operator=(const PolicyRegistry&) = delete;
  ~PolicyRegistry();  // unloads plugins: destroy their policies first

  // Throws PolicyError if the name is taken or empty, or a parameter is declared twice.
  void add(PolicyInfo info);
  // Throws PolicyError (one line naming the file) if the library does not load, lacks the
  // entry points, was built for a policy API this npusim cannot load (older than
  // oldest_loadable_policy_api_version or newer than policy_api_version), registers a taken name, or
  // registers an analysis-only policy: a plugin never gets the oracle.
  void load_plugin(const std::filesystem::path& library);

  const PolicyInfo* find(const std::string& name) const;
  std::vector<std::string> names() const;  // in registration order
  const std::vector<PolicyInfo>& policies() const { return policies_; }

 private:
  std::vector<PolicyInfo> policies_;
  std::vector<std::unique_ptr<void, int (*)(void*)>> plugins_;
  std::string loading_;  // the plugin being loaded, stamped on what it adds
};

// The registry with fcfs, static_batch, lazy_batching, prema, edf, exit_aware and clairvoyant.
void register_builtin_policies(PolicyRegistry& registry);

}  // namespace npusim::scheduler

#define NPUSIM_POLICY_PLUGIN(registry_name)                                               \
  extern "C" int npusim_policy_api_version() { return ::npusim::scheduler::policy_api_version; } \
  extern "C" void npusim_register_policies(::npusim::scheduler::PolicyRegistry& registry_name)
