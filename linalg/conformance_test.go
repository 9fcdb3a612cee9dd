package linalg_test

import (
	"testing"

	"github.com/goinfluence/goinfluence/linalg"
	"github.com/goinfluence/goinfluence/linalg/backendtest"
)

// TestConformance runs the conformance suite on every registered backend
// that opens here (cpu always, openblas where libopenblas loads).
func TestConformance(t *testing.T) {
	for _, name := range linalg.Backends() {
		t.Run(name, func(t *testing.T) {
			be, err := linalg.Open(name)
			if err != nil {
				t.Skipf("%s: not available: %v", name, err)
			}
			if be.Name() != name {
				t.Fatalf("backend registered as %q calls itself %q", name, be.Name())
			}
			backendtest.Run(t, be)
		})
	}
}
