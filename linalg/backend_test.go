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
	if _, err := OrAuto(nil); err == nil || !strings.Contains(err.Error(), `"nosuch"`) {
		t.Errorf("%s=nosuch: OrAuto(nil) error %v, want Auto's", EnvBackend, err)
	}
	if b, err := OrAuto(CPU()); err != nil || b.Name() != "cpu" {
		t.Errorf("%s=nosuch: OrAuto(CPU()) = %v, %v, want the backend given", EnvBackend, b, err)
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

// TestDefaultForced checks that Default honours a forced backend and, when
// the forced one cannot open, panics with the reason rather than falling
// back to another backend.
func TestDefaultForced(t *testing.T) {
	tests := []struct {
		env  string
		want string // backend name, or "" for a panic
	}{
		{"cpu", "cpu"},
		{"auto", ""},
		{"nosuch", ""},
	}
	for _, tc := range tests {
		t.Run(tc.env, func(t *testing.T) {
			t.Setenv(EnvBackend, tc.env)
			want, wantErr := Auto()
			var got Backend
			var recovered any
			func() {
				defer func() { recovered = recover() }()
				got = Default()
			}()
			switch {
			case wantErr != nil:
				err, ok := recovered.(error)
				if !ok || err.Error() != wantErr.Error() || !strings.Contains(err.Error(), tc.env) {
					t.Errorf("%s=%s: Default() = %v, panic %v; want a panic with %v", EnvBackend, tc.env, got, recovered, wantErr)
				}
			case recovered != nil:
				t.Errorf("%s=%s: Default() panicked: %v", EnvBackend, tc.env, recovered)
			case got.Name() != want.Name() || tc.want != "" && got.Name() != tc.want:
				t.Errorf("%s=%s: Default() = %s, want %s", EnvBackend, tc.env, got.Name(), want.Name())
			}
		})
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
