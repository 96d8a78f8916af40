// A plugin built for another policy API: the loader must refuse it.
namespace npusim::scheduler {
class PolicyRegistry;
}
extern "C" int npusim_policy_api_version() { return 999; }
extern "C" void npusim_register_policies(npusim::scheduler::PolicyRegistry&) {}
