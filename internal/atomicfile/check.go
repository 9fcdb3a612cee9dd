package atomicfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// A Path is a file named on a command line: the flag (or other role) that
// named it, used in errors, and the path itself.
type Path struct {
	Flag string // e.g. "--out"; may be empty
	Name string
}

// String returns the flag and the path, e.g. "--out scores.st".
func (p Path) String() string {
	if p.Flag == "" {
		return p.Name
	}
	return p.Flag + " " + p.Name
}

// SameFileError records an output that is the same file as an input, or as
// another output.
type SameFileError struct {
	Output Path
	Other  Path
	Input  bool // Other is an input, not another output
}

func (e *SameFileError) Error() string {
	return fmt.Sprintf("%s is the same file as %s", e.Output, e.Other)
}

// OutputError records an output that cannot be written where it is named:
// its directory is missing, or it is a directory.
type OutputError struct {
	Output Path
	Err    error
}

func (e *OutputError) Error() string { return e.Output.String() + ": " + e.Err.Error() }

func (e *OutputError) Unwrap() error { return e.Err }

// ErrIsDir is the error of an OutputError whose output is a directory.
var ErrIsDir = errors.New("is a directory, not a file")

// Check returns an error if an output is the same file as an input or as
// another output, or if an output cannot be written: its directory does not
// exist or it is itself a directory. Files are compared by identity
// (os.SameFile), so a symbolic or hard link to an input counts as that
// input. Outputs that do not exist yet are compared by directory and name.
// Inputs that do not exist are skipped: reading them will fail with a
// clearer error. Empty names are skipped, so that unset optional flags can
// be passed as they are.
//
// The first problem found is returned, as a *SameFileError or an
// *OutputError.
func Check(outputs, inputs []Path) error {
	type stat struct {
		p    Path
		file fs.FileInfo // nil when the file does not exist
		dir  fs.FileInfo // the directory holding the file
	}
	var outs []stat
	for _, o := range outputs {
		if o.Name == "" {
			continue
		}
		s := stat{p: o}
		var err error
		if s.dir, err = os.Stat(filepath.Dir(o.Name)); err != nil {
			return &OutputError{Output: o, Err: err}
		}
		if !s.dir.IsDir() {
			return &OutputError{Output: o, Err: &fs.PathError{Op: "stat", Path: filepath.Dir(o.Name), Err: errors.New("not a directory")}}
		}
		if fi, err := os.Stat(o.Name); err == nil {
			if fi.IsDir() {
				return &OutputError{Output: o, Err: ErrIsDir}
			}
			s.file = fi
		}
		for _, prev := range outs {
			if same(s.file, prev.file) || s.file == nil && prev.file == nil &&
				filepath.Base(o.Name) == filepath.Base(prev.p.Name) && os.SameFile(s.dir, prev.dir) {
				return &SameFileError{Output: o, Other: prev.p}
			}
		}
		outs = append(outs, s)
	}
	for _, in := range inputs {
		if in.Name == "" {
			continue
		}
		fi, err := os.Stat(in.Name)
		if err != nil {
			continue
		}
		for _, o := range outs {
			if same(o.file, fi) {
				return &SameFileError{Output: o.p, Other: in, Input: true}
			}
		}
	}
	return nil
}

func same(a, b fs.FileInfo) bool { return a != nil && b != nil && os.SameFile(a, b) }
