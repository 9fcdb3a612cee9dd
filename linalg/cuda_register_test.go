package linalg_test

// The cuda backend registers itself with linalg when imported. linalg's own
// tests cannot import it (cuda imports linalg), but this external test file
// is compiled into the same test binary, so its init runs before any test:
// TestConformance and the backend tests then cover the GPU on a machine
// that has one (make gpu-test), and skip it with the reason elsewhere.
import _ "github.com/goinfluence/goinfluence/cuda"

import (
	"testing"

	"github.com/goinfluence/goinfluence/linalg"
)

// TestCUDARegistered checks that the import above registers cuda, first in
// Auto's order, in this test binary.
func TestCUDARegistered(t *testing.T) {
	if names := linalg.Backends(); len(names) == 0 || names[0] != "cuda" {
		t.Fatalf("Backends() = %v, want cuda first", names)
	}
}
