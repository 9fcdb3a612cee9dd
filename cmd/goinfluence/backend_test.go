package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/goinfluence/goinfluence/linalg"
)

// TestBackendCUDAWithoutGPU checks that the command links the cuda backend:
// without a GPU, --backend cuda and GOINFLUENCE_BACKEND=cuda fail with the
// cuda package's reason (no driver, no device), never "unknown backend",
// while auto falls through to OpenBLAS or pure Go without a word.
func TestBackendCUDAWithoutGPU(t *testing.T) {
	_, openErr := linalg.Open("cuda")
	if openErr == nil {
		t.Skip("a GPU opens here")
	}
	if strings.Contains(openErr.Error(), "unknown backend") {
		t.Fatalf("cuda is not registered in the command: %v", openErr)
	}
	dir := t.TempDir()
	grads := filepath.Join(dir, "g.safetensors")
	if err := os.WriteFile(grads, []byte("not read"), 0o644); err != nil {
		t.Fatal(err)
	}
	fit := []string{"fit", "--grads", grads, "--out", filepath.Join(dir, "factors")}
	tests := []struct {
		name string
		env  string
		args []string
		want string // what the error must say besides the cuda reason
	}{
		{"flag", "", append(fit, "--backend", "cuda"), "--backend cuda"},
		{"env", "cuda", []string{"demo"}, linalg.EnvBackend + "=cuda"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(linalg.EnvBackend, tc.env)
			var out, errOut bytes.Buffer
			err := run(context.Background(), tc.args, &out, &errOut)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), openErr.Error()) ||
				strings.Contains(err.Error(), "unknown backend") {
				t.Fatalf("error %v, want one containing %q and the cuda reason %q", err, tc.want, openErr)
			}
		})
	}
	t.Run("auto", func(t *testing.T) {
		t.Setenv(linalg.EnvBackend, "")
		be, err := openBackend("auto")
		if err != nil || be.Name() == "cuda" {
			t.Fatalf("--backend auto without a GPU: %v, %v", be, err)
		}
	})
}
