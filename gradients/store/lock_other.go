//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package store

import (
	"os"
	"path/filepath"
	"sync"
)

// Without flock, the build lock excludes only the Builders of this process:
// a table of the directories whose lock is held stands in for the kernel's.
var (
	lockMu   sync.Mutex
	lockHeld = map[string]*os.File{}
)

func tryLock(f *os.File, dir string) (bool, error) {
	key, err := filepath.Abs(dir)
	if err != nil {
		return false, err
	}
	lockMu.Lock()
	defer lockMu.Unlock()
	if _, ok := lockHeld[key]; ok {
		return false, nil
	}
	lockHeld[key] = f
	return true, nil
}

func unlock(f *os.File) error {
	lockMu.Lock()
	defer lockMu.Unlock()
	for k, g := range lockHeld {
		if g == f {
			delete(lockHeld, k)
		}
	}
	return nil
}
