package store

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/goinfluence/goinfluence/progress"
)

// InfoOptions configure Info.
type InfoOptions struct {
	// Verify also checks the SHA-256 of every shard against the manifest
	// (one sequential pass over each shard).
	Verify bool
	// Progress, when set, is told of the verification before it starts:
	// it reads every shard, which takes a while on a large store.
	Progress progress.Func
}

// Summary describes a store: its manifest, the bytes it takes on disk and
// whether its shards were verified. It is what 'goinfluence store info'
// prints, as text (WriteText) or as JSON (json.Marshal), so that a service
// reporting on a store says what the command line says.
type Summary struct {
	Dir      string
	Manifest Manifest
	// Bytes on disk of the manifest and the committed shards.
	Bytes int64
	// Verified is set when every shard's SHA-256 was checked against the
	// manifest and matched.
	Verified bool
}

// Info opens the store in dir and summarises it, first checking every
// shard's SHA-256 with opt.Verify. A verification failure is a
// *VerifyError naming the shard, so that callers can tell a store that
// opens but fails its check from one that does not open.
func Info(ctx context.Context, dir string, opt InfoOptions) (*Summary, error) {
	s, err := Open(dir)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	m := s.Manifest()
	if opt.Verify {
		opt.Progress.Report(fmt.Sprintf("checking the sha256 of %d shards of %s", len(m.Shards), dir), 0, len(m.Shards))
		if err := s.Verify(ctx); err != nil {
			return nil, &VerifyError{Err: err}
		}
	}
	sum := Summarize(dir, m)
	sum.Verified = opt.Verify
	return sum, nil
}

// VerifyError is returned by Info when a shard fails verification (or
// cannot be read for it). Its message is that of Err, which names the
// shard.
type VerifyError struct{ Err error }

func (e *VerifyError) Error() string { return e.Err.Error() }
func (e *VerifyError) Unwrap() error { return e.Err }

// Summarize returns the summary of the store in dir whose manifest is m,
// such as the manifest Build returns, without opening the store again.
// Files that cannot be read count as empty.
func Summarize(dir string, m Manifest) *Summary {
	var n int64
	names := []string{ManifestName}
	for _, sh := range m.Shards {
		names = append(names, sh.File)
	}
	for _, name := range names {
		if st, err := os.Stat(filepath.Join(dir, name)); err == nil {
			n += st.Size()
		}
	}
	return &Summary{Dir: dir, Manifest: m, Bytes: n}
}

// WriteText writes the summary for people: one field a line, then each
// layer with its offset and dimension, and the verification when done.
func (s *Summary) WriteText(w io.Writer) error {
	m := s.Manifest
	ew := &errWriter{w: w}
	ew.printf("store %s\n", s.Dir)
	ew.printf("  format      %s\n", m.Format)
	ew.printf("  rows        %d\n", m.Count)
	ew.printf("  shards      %d\n", len(m.Shards))
	ew.printf("  dtype       %s\n", dtypeName(m.DType))
	ew.printf("  dim         %d\n", m.Dim)
	ew.printf("  projection  %s\n", m.Projection.String())
	ew.printf("  bytes       %d (%.1f MiB)\n", s.Bytes, float64(s.Bytes)/(1<<20))
	ew.printf("  layers      %d\n", len(m.Layers))
	for _, l := range m.Layers {
		ew.printf("    %-24s offset %d, dim %d\n", l.Name, l.Offset, l.Dim)
	}
	if s.Verified {
		ew.printf("  verify      ok: sha256 of %d shards match the manifest\n", len(m.Shards))
	}
	return ew.err
}

// summaryJSON is the JSON layout of a Summary: the directory, the
// manifest's fields as manifest.json holds them, then bytes on disk and
// the verification.
type summaryJSON struct {
	Dir string `json:"dir"`
	manifestJSON
	Bytes    int64 `json:"bytes"`
	Verified bool  `json:"verified"`
}

// MarshalJSON writes s as one object: {"dir", the fields of manifest.json,
// "bytes", "verified"}.
func (s *Summary) MarshalJSON() ([]byte, error) {
	return json.Marshal(summaryJSON{Dir: s.Dir, manifestJSON: s.Manifest.toJSON(), Bytes: s.Bytes, Verified: s.Verified})
}

// WriteJSON writes s as indented JSON followed by a newline.
func (s *Summary) WriteJSON(w io.Writer) error {
	buf, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	_, err = w.Write(append(buf, '\n'))
	return err
}

// errWriter keeps the first write error, so that a summary of many lines
// checks it once.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) printf(format string, args ...any) {
	if e.err == nil {
		_, e.err = fmt.Fprintf(e.w, format, args...)
	}
}
