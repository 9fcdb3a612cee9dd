package gradients

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// TestWriterMatchesWriteFile writes batches in chunks of every size and
// checks the files equal WriteFile's, byte for byte.
func TestWriterMatchesWriteFile(t *testing.T) {
	dir := t.TempDir()
	noIDs := mixed(7)
	noIDs.IDs = nil
	for _, tc := range []struct {
		name  string
		b     *Batch
		dtype DType
	}{
		{"mixed f32", mixed(7), F32},
		{"mixed f16", mixed(7), F16},
		{"no ids bf16", noIDs, BF16},
		{"f64 one", mixed(1), F64},
		{"empty", &Batch{N: 0, Layers: mixed(1).Layers[:0]}, F32},
	} {
		want := fileBytes(t, tc.b, tc.dtype, map[string]string{"k": "v"})
		for chunk := 1; chunk <= max(tc.b.N, 1); chunk++ {
			path := filepath.Join(dir, "w")
			w, err := NewWriter(path, tc.b.N, tc.b.LayerInfos(), tc.dtype, tc.b.IDs != nil, map[string]string{"k": "v"})
			if err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			for lo := 0; lo < tc.b.N; lo += chunk {
				if err := w.Write(tc.b.Slice(lo, min(lo+chunk, tc.b.N))); err != nil {
					t.Fatalf("%s, chunks of %d: %v", tc.name, chunk, err)
				}
			}
			if err := w.Close(); err != nil {
				t.Fatalf("%s: Close: %v", tc.name, err)
			}
			got, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("%s, chunks of %d: file differs from WriteFile's", tc.name, chunk)
			}
		}
	}
}

// TestWriterErrors checks that a Writer that fails or is left incomplete
// leaves the path as it was and names what went wrong.
func TestWriterErrors(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "g")
	if err := os.WriteFile(path, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	b := mixed(6)
	huge := mixed(6)
	huge.Layers[1].Grad[4*6+2] = 1e6 // example 4 of the dense layer: past F16
	wrongLayers := mixed(2)
	wrongLayers.Layers[0].Name = "other"
	noIDs := mixed(2)
	noIDs.IDs = nil
	tests := []struct {
		name  string
		write func(w *Writer) error
		want  []string
	}{
		{"short", func(w *Writer) error { return w.Write(b.Slice(0, 5)) }, []string{"5 of 6 examples written"}},
		{"too many", func(w *Writer) error {
			if err := w.Write(b.Slice(0, 5)); err != nil {
				return err
			}
			return w.Write(b.Slice(0, 2))
		}, []string{"7 examples written past the file's 6"}},
		{"range", func(w *Writer) error {
			if err := w.Write(huge.Slice(0, 3)); err != nil {
				return err
			}
			return w.Write(huge.Slice(3, 6))
		}, []string{"emb.weight", "example 4", "overflows F16"}},
		{"layers", func(w *Writer) error { return w.Write(wrongLayers) }, []string{`"other"`, `"encoder.fc1"`}},
		{"ids", func(w *Writer) error { return w.Write(noIDs) }, []string{"ids present false"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w, err := NewWriter(path, 6, b.LayerInfos(), F16, true, nil)
			if err != nil {
				t.Fatal(err)
			}
			err = tc.write(w)
			if cerr := w.Close(); err == nil {
				err = cerr
			} else if cerr == nil {
				t.Fatal("Close succeeded after a failed Write")
			}
			var e *Error
			if err == nil || !errors.As(err, &e) || e.Path != path {
				t.Fatalf("error %v, want an *Error naming %s", err, path)
			}
			for _, want := range tc.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not mention %q", err, want)
				}
			}
			if got, _ := os.ReadFile(path); string(got) != "old" {
				t.Errorf("the file at the path changed: %q", got)
			}
			if ents, _ := os.ReadDir(dir); len(ents) != 1 {
				t.Errorf("files left in the directory: %v", ents)
			}
		})
	}
}

// TestParseAndNewReader reads a file held in memory both ways and compares
// with Open.
func TestParseAndNewReader(t *testing.T) {
	b := mixed(5)
	buf := fileBytes(t, b, F32, nil)
	path := filepath.Join(t.TempDir(), "g")
	if err := os.WriteFile(path, buf, 0o644); err != nil {
		t.Fatal(err)
	}
	of, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer of.Close()
	want, err := of.ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	pf, err := Parse(buf)
	if err != nil {
		t.Fatal(err)
	}
	rf, err := NewReader(bytes.NewReader(buf), int64(len(buf)), 0)
	if err != nil {
		t.Fatal(err)
	}
	for name, f := range map[string]*File{"Parse": pf, "NewReader": rf} {
		got, err := f.ReadAll()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !reflect.DeepEqual(got, want) || !reflect.DeepEqual(f.Layers(), of.Layers()) {
			t.Errorf("%s: read differs from Open's", name)
		}
	}
	if _, err := NewReader(bytes.NewReader(buf), int64(len(buf)), 16); err == nil {
		t.Error("NewReader over its memory limit read the file")
	}
	if _, err := NewReader(bytes.NewReader(buf[:len(buf)-4]), int64(len(buf)), 0); err == nil {
		t.Error("NewReader read a short reader")
	}
}
