package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// LockName is the name of the lock file in a store directory. A Builder
// holds an exclusive lock on it from Create or Resume to Close, so that two
// builds cannot interleave their shards and manifests, nor the cleanup of
// Resume remove the temporary files of a build still running. The lock is
// the operating system's (flock where there is one), so a build that dies
// releases it; the file itself stays and is ignored by readers.
const LockName = "build.lock"

// ErrLocked is the cause of the error of Create or Resume on a store that
// another Builder holds.
var ErrLocked = errors.New("locked")

// holder is what a Builder writes into the lock file once it holds the
// lock, for the error of the next one to name it.
type holder struct {
	PID     int       `json:"pid"`
	Host    string    `json:"host"`
	Since   time.Time `json:"since"`
	Command string    `json:"command"`
}

func (h holder) String() string {
	return fmt.Sprintf("pid %d on host %s since %s (%s)", h.PID, h.Host, h.Since.UTC().Format(time.RFC3339), h.Command)
}

// lock is a held build lock.
type lock struct {
	f *os.File
}

// acquireLock takes the build lock of the store in dir without waiting. If
// another Builder holds it, the error wraps ErrLocked and names the holder
// as recorded in the lock file.
func acquireLock(dir string) (*lock, error) {
	path := filepath.Join(dir, LockName)
	// No O_TRUNC: the file may name the current holder.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, &Error{Path: path, Err: pathless(err)}
	}
	held, err := tryLock(f, dir)
	if err != nil {
		f.Close()
		return nil, &Error{Path: path, Err: err}
	}
	if !held {
		who := "another build (it has not yet recorded itself)"
		if buf, err := io.ReadAll(io.LimitReader(f, 1<<16)); err == nil {
			var h holder
			if json.Unmarshal(buf, &h) == nil && h.PID != 0 {
				who = h.String()
			}
		}
		f.Close()
		return nil, &Error{Path: dir, Err: fmt.Errorf("%w by %s", ErrLocked, who)}
	}
	host, _ := os.Hostname()
	h := holder{PID: os.Getpid(), Host: host, Since: time.Now().UTC().Truncate(time.Second), Command: strings.Join(os.Args, " ")}
	buf, _ := json.Marshal(h) // holder always marshals
	buf = append(buf, '\n')
	// The record only serves error messages, so failing to write it does
	// not fail the build.
	if f.Truncate(0) == nil {
		f.WriteAt(buf, 0)
	}
	return &lock{f: f}, nil
}

// release gives the lock up. The file stays: removing it would let a
// Builder that opened it before the removal lock a file that the next one
// no longer sees.
func (l *lock) release() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := unlock(l.f)
	if cerr := l.f.Close(); err == nil {
		err = cerr
	}
	l.f = nil
	return err
}
