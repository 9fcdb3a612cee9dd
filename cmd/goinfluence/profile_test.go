package main

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// TestWithProfile: the profile file exists, with what run wrote, only when
// run succeeds; no path gives run a nil writer.
func TestWithProfile(t *testing.T) {
	dir := t.TempDir()
	failed := errors.New("failed")
	for _, tc := range []struct {
		name string
		err  error
	}{{"ok", nil}, {"failed", failed}} {
		path := filepath.Join(dir, tc.name+".prof")
		err := withProfile(path, func(w io.Writer) error {
			if _, err := io.WriteString(w, "profile"); err != nil {
				return err
			}
			return tc.err
		})
		if !errors.Is(err, tc.err) {
			t.Errorf("%s: error %v, want %v", tc.name, err, tc.err)
		}
		b, statErr := os.ReadFile(path)
		switch {
		case tc.err == nil && (statErr != nil || string(b) != "profile"):
			t.Errorf("%s: file %q, %v", tc.name, b, statErr)
		case tc.err != nil && statErr == nil:
			t.Errorf("%s: a failed run left %s", tc.name, path)
		}
	}
	if err := withProfile("", func(w io.Writer) error {
		if w != nil {
			return errors.New("writer without a path")
		}
		return nil
	}); err != nil {
		t.Error(err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("%d files left in %s, want the one profile", len(entries), dir)
	}
}
