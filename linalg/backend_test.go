package linalg

import (
	"math/rand/v2"
	"os"
	"strings"
	"testing"
)

// forEachBackend runs f as a subtest for every registered backend that opens
// here; the others are skipped.
func forEachBackend(t *testing.T, f func(t *testing.T, b Backend)) {
	t.Helper()
	for _, name := range Backends() {
		t.Run(name, func(t *testing.T) {
			b, err := Open(name)
			if err != nil {
				t.Skipf("backend %s not available: %v", name, err)
			}
			if b.Name() != name {
				t.Fatalf("backend registered as %q calls itself %q", name, b.Name())
			}
			f(t, b)
		})
	}
}

// randDense64 returns an r×c matrix of values in [-1, 1), stored as a view
// with Stride > Cols when view is set.
func randDense64(rng *rand.Rand, r, c int, view bool) *Dense64 {
	pad := 0
	if view {
		pad = 3
	}
	m := NewDense64(r, c+pad, nil)
	for i := range m.Data {
		m.Data[i] = 2*rng.Float64() - 1
	}
	if view {
		return m.Slice(0, r, 1, c+1)
	}
	return m
}

// randSym returns a random symmetric n×n matrix.
func randSym(rng *rand.Rand, n int, view bool) *Dense64 {
	a := randDense64(rng, n, n, view)
	for i := 0; i < n; i++ {
		for j := 0; j < i; j++ {
			a.Set(j, i, a.At(i, j))
		}
	}
	return a
}

func TestAuto(t *testing.T) {
	t.Setenv(EnvBackend, "cpu")
	b, err := Auto()
	if err != nil || b.Name() != "cpu" {
		t.Fatalf("%s=cpu: Auto() = %v, %v", EnvBackend, b, err)
	}

	t.Setenv(EnvBackend, "nosuch")
	if _, err := Auto(); err == nil || !strings.Contains(err.Error(), `"nosuch"`) || !strings.Contains(err.Error(), EnvBackend) {
		t.Errorf("%s=nosuch: Auto() error %v, want one naming the backend and the variable", EnvBackend, err)
	}
	if b := Default(); b == nil || b.Name() != "cpu" {
		t.Errorf("Default() with a bad %s = %v, want cpu", EnvBackend, b)
	}

	t.Setenv(EnvBackend, "")
	b, err = Auto()
	if err != nil {
		t.Fatalf("Auto() unset: %v", err)
	}
	// The best backend that opens.
	for _, name := range Backends() {
		if _, err := Open(name); err == nil {
			if b.Name() != name {
				t.Errorf("Auto() = %s, want %s", b.Name(), name)
			}
			break
		}
	}
}

// TestAutoFromEnvironment checks the backend named by the environment of the
// test run, if any, so that GOINFLUENCE_BACKEND=openblas go test fails when
// OpenBLAS cannot be used.
func TestAutoFromEnvironment(t *testing.T) {
	name := os.Getenv(EnvBackend)
	if name == "" || name == "auto" {
		t.Skipf("%s not set", EnvBackend)
	}
	b, err := Auto()
	if err != nil {
		t.Fatalf("%s=%s: %v", EnvBackend, name, err)
	}
	if b.Name() != name {
		t.Fatalf("%s=%s: Auto() = %s", EnvBackend, name, b.Name())
	}
}

func TestBackendsOrder(t *testing.T) {
	names := Backends()
	rank := map[string]int{}
	for i, n := range names {
		rank[n] = i
	}
	if _, ok := rank["cpu"]; !ok {
		t.Fatalf("cpu not registered: %v", names)
	}
	if r, ok := rank["openblas"]; ok && r > rank["cpu"] {
		t.Errorf("openblas after cpu in %v", names)
	}
	if _, err := Open("nosuch"); err == nil {
		t.Error("Open(nosuch) succeeded")
	}
}
