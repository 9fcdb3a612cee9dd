package atomicfile

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

func TestWriteFile(t *testing.T) {
	errWrite := errors.New("write failed")
	for _, tc := range []struct {
		name    string
		old     string // "" : no file before
		write   func(w io.Writer) error
		panics  bool
		wantErr error
		want    string
	}{
		{name: "new", write: writeString("hello"), want: "hello"},
		{name: "replace", old: "old", write: writeString("new"), want: "new"},
		{name: "empty", old: "old", write: func(io.Writer) error { return nil }, want: ""},
		{name: "error/new", write: fail("partial", errWrite), wantErr: errWrite},
		{name: "error/replace", old: "old", write: fail("partial", errWrite), wantErr: errWrite, want: "old"},
		{name: "panic/replace", old: "old", write: func(w io.Writer) error {
			io.WriteString(w, "partial")
			panic("boom")
		}, panics: true, want: "old"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "out.st")
			if tc.old != "" {
				if err := os.WriteFile(path, []byte(tc.old), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			var err error
			func() {
				defer func() {
					if r := recover(); (r != nil) != tc.panics {
						t.Errorf("recovered %v, want a panic: %t", r, tc.panics)
					}
				}()
				err = WriteFile(path, tc.write)
			}()
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("WriteFile: %v, want %v", err, tc.wantErr)
			}
			got, rerr := os.ReadFile(path)
			switch {
			case tc.old == "" && tc.wantErr != nil:
				if !errors.Is(rerr, os.ErrNotExist) {
					t.Errorf("failed write left %s (%v)", path, rerr)
				}
			case rerr != nil:
				t.Fatal(rerr)
			case string(got) != tc.want:
				t.Errorf("file holds %q, want %q", got, tc.want)
			}
			if tc.wantErr == nil && !tc.panics {
				fi, err := os.Stat(path)
				if err != nil {
					t.Fatal(err)
				}
				if fi.Mode().Perm() != 0o644 {
					t.Errorf("mode %v, want 0644", fi.Mode().Perm())
				}
			}
			onlyFiles(t, dir, tc.old != "" || tc.wantErr == nil, "out.st")
		})
	}
}

func TestCreateCleanup(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "cpu.prof")
	f, err := Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if f.Name() != path {
		t.Errorf("Name() = %q, want the target %q", f.Name(), path)
	}
	io.WriteString(f, "partial")
	f.Close() // not committed: discarded
	onlyFiles(t, dir, false, "cpu.prof")
	if err := f.Commit(); err == nil {
		t.Error("Commit after Close succeeded")
	}

	f, err = Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Cleanup()
	io.WriteString(f, "profile")
	if err := f.Commit(); err != nil {
		t.Fatal(err)
	}
	f.Cleanup() // after Commit: a no-op
	if b, err := os.ReadFile(path); err != nil || string(b) != "profile" {
		t.Errorf("read %q, %v; want \"profile\"", b, err)
	}
	onlyFiles(t, dir, true, "cpu.prof")
}

func TestWriteFileMissingDir(t *testing.T) {
	path := filepath.Join(t.TempDir(), "no", "out.st")
	err := WriteFile(path, writeString("x"))
	var pe *os.PathError
	if !errors.As(err, &pe) || pe.Path != path || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("WriteFile in a missing directory: %v, want a *PathError naming %s", err, path)
	}
}

// onlyFiles fails unless dir holds exactly name (when want) or nothing:
// no temporary file may be left behind.
func onlyFiles(t *testing.T, dir string, want bool, name string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if want && (len(names) != 1 || names[0] != name) || !want && len(names) != 0 {
		t.Errorf("directory holds %q; want only %s: %t", names, name, want)
	}
}

func writeString(s string) func(io.Writer) error {
	return func(w io.Writer) error {
		_, err := io.WriteString(w, s)
		return err
	}
}

func fail(partial string, err error) func(io.Writer) error {
	return func(w io.Writer) error {
		io.WriteString(w, partial)
		return err
	}
}
