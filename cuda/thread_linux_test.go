package cuda

import "syscall"

// threadID returns the calling OS thread, to check that every driver call
// of a device runs on its locked thread.
func threadID() int { return syscall.Gettid() }
