// A shared library that is not a policy plugin.
extern "C" int something_else() { return 1; }
