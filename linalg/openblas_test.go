//go:build (linux || darwin) && (amd64 || arm64)

package linalg

import (
	"os"
	"runtime"
	"strings"
	"testing"
)

func TestLoadOpenBLASErrors(t *testing.T) {
	for _, tc := range []struct {
		name  string
		names []string
		want  []string
	}{
		{"missing library", []string{"libgoinfluence-nosuch.so.0", "libgoinfluence-nosuch.so"},
			[]string{"linalg: openblas: libgoinfluence-nosuch.so.0 not found: "}},
		{"no names", nil, []string{"linalg: openblas: "}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o, err := loadOpenBLAS(tc.names...)
			if err == nil {
				t.Fatalf("loaded %v", o)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

// TestLoadOpenBLASMissingSymbol loads the C library, which has none of the
// BLAS symbols.
func TestLoadOpenBLASMissingSymbol(t *testing.T) {
	libc := "libc.so.6"
	if runtime.GOOS == "darwin" {
		libc = "/usr/lib/libSystem.B.dylib"
	}
	_, err := loadOpenBLAS(libc)
	if err == nil {
		t.Fatalf("%s loaded as OpenBLAS", libc)
	}
	if want := "missing symbol cblas_sgemm"; !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not contain %q", err, want)
	}
}

// TestOpenBLASCore reports the kernels OpenBLAS runs. make test sets
// GOINFLUENCE_OPENBLAS_CORE beside OPENBLAS_CORETYPE when it runs the tests
// again under other kernels; the test then fails unless OpenBLAS really took
// them, so that a run meant for other kernels cannot silently repeat the
// first.
func TestOpenBLASCore(t *testing.T) {
	o, err := loadOpenBLAS(openBLASNames...)
	if err != nil {
		t.Skipf("no OpenBLAS: %v", err)
	}
	core := o.Core()
	t.Logf("OpenBLAS core %q (OPENBLAS_CORETYPE=%q)", core, os.Getenv("OPENBLAS_CORETYPE"))
	if want := os.Getenv("GOINFLUENCE_OPENBLAS_CORE"); want != "" && !strings.EqualFold(core, want) {
		t.Fatalf("OpenBLAS runs %q kernels, want %q", core, want)
	}
}
