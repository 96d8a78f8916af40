// libsystemc.so ships a main() that calls sc_main(). npusim's programs (CLI, tests, benchmarks)
// have main() of their own, so that one is never used, but the linker still needs sc_main.
// Linked into executables only, through the npusim_systemc_entry object library.
extern "C" int sc_main(int /*argc*/, char* /*argv*/[]) { return 1; }
