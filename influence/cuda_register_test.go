package influence_test

// The cuda backend registers itself with linalg when imported. This external
// test file is compiled into the same test binary as the package's own
// tests, so on a GPU machine (make gpu-test) the tests that run on every
// backend that opens (streamBackends) cover cuda too; elsewhere it does not
// open and they run on OpenBLAS and pure Go as before.
import _ "github.com/goinfluence/goinfluence/cuda"
