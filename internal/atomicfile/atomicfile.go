package atomicfile

import (
	"bufio"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// WriteFile writes path atomically with the data that write writes to w.
// The writer is buffered; WriteFile flushes it. The file gets mode 0644.
//
// If write returns an error or panics, or if syncing or renaming fails, the
// temporary file is removed and any file at path is untouched; a panic is
// passed on after the clean-up.
func WriteFile(path string, write func(w io.Writer) error) error {
	f, err := Create(path)
	if err != nil {
		return err
	}
	defer f.Cleanup()
	bw := bufio.NewWriterSize(f, 1<<20)
	if err := write(bw); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return &os.PathError{Op: "write", Path: path, Err: pathless(err)}
	}
	return f.Commit()
}

// File is an output being written: an *os.File open on a temporary file
// beside its target. Commit puts it in place; Cleanup, deferred right after
// Create, removes it unless it was committed.
type File struct {
	*os.File
	path string // the target
	done bool   // committed or cleaned up
}

// Create opens a temporary file in the directory of path, for writers that
// need an *os.File or write over a long time. The caller must call Commit
// to replace path with it, and should defer Cleanup.
func Create(path string) (*File, error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	if base == "" {
		return nil, &os.PathError{Op: "create", Path: path, Err: errors.New("no file name")}
	}
	tmp, err := os.CreateTemp(dir, "."+base+".tmp*")
	if err != nil {
		return nil, &os.PathError{Op: "create", Path: path, Err: pathless(err)}
	}
	return &File{File: tmp, path: path}, nil
}

// Name returns the path of the target, not of the temporary file, so that
// errors name the file the user asked for.
func (f *File) Name() string { return f.path }

// Commit syncs the temporary file, gives it mode 0644, closes it and
// renames it over the target. If any step fails the temporary file is
// removed and the target is untouched.
func (f *File) Commit() (err error) {
	if f.done {
		return &os.PathError{Op: "commit", Path: f.path, Err: os.ErrClosed}
	}
	defer func() {
		if err != nil {
			f.Cleanup()
			err = &os.PathError{Op: "write", Path: f.path, Err: pathless(err)}
		}
	}()
	if err := f.Chmod(0o644); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.File.Close(); err != nil {
		return err
	}
	if err := os.Rename(f.File.Name(), f.path); err != nil {
		os.Remove(f.File.Name())
		return err
	}
	f.done = true
	// Sync the directory so that the rename itself survives a crash; not
	// every platform allows it, hence best effort.
	if d, err := os.Open(filepath.Dir(f.path)); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// Cleanup closes and removes the temporary file unless the file was
// committed. It is safe to call more than once, and after Commit.
func (f *File) Cleanup() {
	if f.done {
		return
	}
	f.done = true
	f.File.Close()
	os.Remove(f.File.Name())
}

// Close is Cleanup: a File is only ever kept by Commit, so that an early
// return after Create never leaves a partial file in place.
func (f *File) Close() error {
	f.Cleanup()
	return nil
}

// pathless strips an *fs.PathError naming the temporary file, whose name
// means nothing to the user; the error returned names the target instead.
func pathless(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
