package main

import (
	"errors"
	"flag"
	"fmt"

	"github.com/goinfluence/goinfluence/linalg"
)

// memLimitUsage documents --mem-limit once for every command that has it.
const memLimitUsage = "refuse allocations sized from file headers above this many bytes, e.g. 512MiB, 4GiB, 1.5TB; " +
	"auto: 80% of the machine's memory (the smaller of MemTotal and the cgroup memory.max); 0 or none: no limit"

// memLimit is the value of --mem-limit in the library's convention: 0 for
// the machine default, linalg.NoMemoryLimit for none, else bytes.
type memLimit int64

func (m *memLimit) String() string {
	switch {
	case m == nil || *m == 0:
		return "auto"
	case *m < 0:
		return "none"
	}
	return linalg.FormatBytes(int64(*m))
}

func (m *memLimit) Set(s string) error {
	switch s {
	case "auto":
		*m = 0
		return nil
	case "none":
		*m = memLimit(linalg.NoMemoryLimit)
		return nil
	}
	v, err := linalg.ParseBytes(s)
	if err != nil {
		return errors.New("want auto, none, 0 or a size such as 512MiB or 4GiB")
	}
	if v == 0 {
		v = linalg.NoMemoryLimit
	}
	*m = memLimit(v)
	return nil
}

// addMemLimit defines --mem-limit on fs.
func addMemLimit(fs *flag.FlagSet) *memLimit {
	m := new(memLimit)
	fs.Var(m, "mem-limit", memLimitUsage)
	return m
}

// bytes returns the limit for the library's MemoryLimit fields.
func (m *memLimit) bytes() int64 { return int64(*m) }

// withMemFlag names the flag that sets the limit in a memory-limit error,
// so that the user sees how to raise it.
func withMemFlag(cmd string, err error) error {
	if errors.Is(err, linalg.ErrMemoryLimit) {
		return fmt.Errorf("%s: %w (--mem-limit)", cmd, err)
	}
	return err
}
