// The policy registry: declared parameters, plugin loading and its failures.

#include <gtest/gtest.h>

#include "scheduler/registry.hpp"

namespace npusim {
namespace {

std::string load_error(const std::string& file) {
  scheduler::PolicyRegistry registry;
  try {
    registry.load_plugin(file);
  } catch (const scheduler::PolicyError& e) {
    return e.what();
  }
  return "";
}

TEST(PolicyRegistry, LoadsTheExamplePluginAndChecksItsParameters) {
  scheduler::PolicyRegistry registry;
  scheduler::register_builtin_policies(registry);
  registry.load_plugin(NPUSIM_EXAMPLE_PLUGIN);
  const auto* info = registry.find("greedy_batch");
  ASSERT_NE(info, nullptr);
  EXPECT_EQ(info->origin, NPUSIM_EXAMPLE_PLUGIN);
  EXPECT_EQ(registry.names().back(), "greedy_batch");
  const scheduler::ParameterValues defaults(info->parameters, {});
  EXPECT_EQ(defaults.integer("batch_limit"), 8);
  EXPECT_THROW(scheduler::ParameterValues(info->parameters, {{"batch_limit", std::int64_t{0}}}), std::invalid_argument);
  EXPECT_THROW(scheduler::ParameterValues(info->parameters, {{"batch_limit", 2.5}}), std::invalid_argument);
  EXPECT_THROW(scheduler::ParameterValues(info->parameters, {{"limit", std::int64_t{2}}}), std::invalid_argument);
  EXPECT_NE(info->create(defaults), nullptr);
  // Loading it twice registers the name twice: refused, and the registry is unchanged.
  EXPECT_THROW(registry.load_plugin(NPUSIM_EXAMPLE_PLUGIN), scheduler::PolicyError);
  EXPECT_EQ(registry.names().size(), 8u);
}

// A choice parameter takes one word of its list, says which in its errors, and refuses a
// default outside the list when it is declared.
TEST(PolicyRegistry, ChoiceParametersTakeOneWordOfTheirList) {
  const auto spec = scheduler::ParameterSpec::choice("objective", "blend", {"mean", "slo", "blend"}, "what a plan costs");
  EXPECT_EQ(spec.allowed(), "one of mean, slo, blend");
  EXPECT_TRUE(spec.accepts(std::string("slo")));
  EXPECT_FALSE(spec.accepts(std::string("fast")));
  EXPECT_FALSE(spec.accepts(1.0));
  const scheduler::ParameterValues defaults({spec}, {});
  EXPECT_EQ(defaults.choice("objective"), "blend");
  const scheduler::ParameterValues chosen({spec}, {{"objective", std::string("mean")}});
  EXPECT_EQ(chosen.choice("objective"), "mean");
  EXPECT_THROW(scheduler::ParameterValues({spec}, {{"objective", std::string("fast")}}), std::invalid_argument);
  EXPECT_THROW(scheduler::ParameterSpec::choice("objective", "fast", {"mean", "slo"}, ""), std::invalid_argument);
}

// API 3 only appended SchedulerView::queue_index, so a plugin built for 2 still loads and decides.
TEST(PolicyRegistry, PluginsBuiltForTheOlderCompatibleApiStillLoad) {
  scheduler::PolicyRegistry registry;
  registry.load_plugin(NPUSIM_API_VERSION_2_PLUGIN);
  scheduler::SchedulerView view;
  const scheduler::SampleInfo waiting[] = {{1, 0, 100, 0, 0}};
  view.queue = waiting;
  const auto* info = registry.find("oldest_first_v2");
  ASSERT_NE(info, nullptr);
  auto policy = info->create(scheduler::ParameterValues(info->parameters, {}));
  const auto d = policy->decide(view);
  EXPECT_EQ(d.kind, scheduler::Decision::Kind::start);
  EXPECT_EQ(d.queue_positions, (std::vector<std::uint32_t>{0}));
}

TEST(PolicyRegistry, BadPluginsAreNamed) {
  EXPECT_EQ(load_error(NPUSIM_WRONG_VERSION_PLUGIN),
            std::string("policy plugin ") + NPUSIM_WRONG_VERSION_PLUGIN +
                " was built for policy API 999, this npusim loads " +
                std::to_string(scheduler::oldest_loadable_policy_api_version) + " to " +
                std::to_string(scheduler::policy_api_version) + ": rebuild it");
  EXPECT_EQ(load_error(NPUSIM_NO_ENTRY_PLUGIN),
            std::string("policy plugin ") + NPUSIM_NO_ENTRY_PLUGIN +
                " does not export npusim_policy_api_version and npusim_register_policies (use NPUSIM_POLICY_PLUGIN)");
  EXPECT_NE(load_error("/nonexistent/p.so").find("cannot load policy plugin /nonexistent/p.so"), std::string::npos);
}

// Only policies compiled into npusim may be handed the oracle; a plugin asking is refused, and
// none of its policies stays registered.
TEST(PolicyRegistry, APluginCannotRegisterAnAnalysisOnlyPolicy) {
  EXPECT_EQ(load_error(NPUSIM_ANALYSIS_ONLY_PLUGIN),
            std::string("policy plugin ") + NPUSIM_ANALYSIS_ONLY_PLUGIN +
                " registers peeking as analysis only, which only policies compiled into npusim may be (they see "
                "every sample's drawn exit)");
  scheduler::PolicyRegistry registry;
  EXPECT_THROW(registry.load_plugin(NPUSIM_ANALYSIS_ONLY_PLUGIN), scheduler::PolicyError);
  EXPECT_EQ(registry.find("peeking"), nullptr);
}

TEST(PolicyRegistry, BuiltInsAreSevenWithDistinctNamesAndOnlyClairvoyantIsAnalysisOnly) {
  scheduler::PolicyRegistry registry;
  scheduler::register_builtin_policies(registry);
  EXPECT_EQ(registry.names(), (std::vector<std::string>{"fcfs", "static_batch", "lazy_batching", "prema", "edf",
                                                        "exit_aware", "clairvoyant"}));
  for (const auto& info : registry.policies()) EXPECT_EQ(info.analysis_only, info.name == "clairvoyant") << info.name;
  EXPECT_THROW(scheduler::register_builtin_policies(registry), scheduler::PolicyError);
}

}  // namespace
}  // namespace npusim
