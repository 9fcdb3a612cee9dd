package linalg

import (
	"errors"
	"fmt"
	"math"
	"math/bits"
	"os"
	"strconv"
	"strings"
	"sync"
)

// ErrMemoryLimit is matched by errors.Is for every *MemoryError.
var ErrMemoryLimit = errors.New("over the memory limit")

// MemoryError reports an allocation refused by CheckMemory: sizes taken from
// a file header can ask for far more memory than the machine has, and Go
// cannot recover from running out of it (the process dies with "fatal error:
// runtime: out of memory"), so they are checked before allocating.
type MemoryError struct {
	What  string // what would be allocated, e.g. `layer "fc1": covariance A`
	Shape string // its shape and element type, e.g. "3000000² float64"
	Bytes int64  // bytes needed (math.MaxInt64 if the product overflows)
	Limit int64  // the limit it is over
}

func (e *MemoryError) Error() string {
	s := e.What + " needs " + FormatBytes(e.Bytes)
	if e.Shape != "" {
		s += " (" + e.Shape + ")"
	}
	return s + ", over the memory limit of " + FormatBytes(e.Limit)
}

func (e *MemoryError) Is(target error) bool { return target == ErrMemoryLimit }

// NoMemoryLimit, given as a limit, turns CheckMemory off.
const NoMemoryLimit int64 = -1

// CheckMemory returns a *MemoryError if bytes exceed limit. A limit of 0
// means DefaultMemoryLimit(), a negative limit no limit at all, so that the
// zero value of an options struct is the safe default.
func CheckMemory(what, shape string, bytes, limit int64) error {
	if limit == 0 {
		limit = DefaultMemoryLimit()
	}
	if limit < 0 || bytes <= limit {
		return nil
	}
	return &MemoryError{What: what, Shape: shape, Bytes: bytes, Limit: limit}
}

// Float64Bytes returns the bytes of a float64 array of the given dimensions,
// saturating at math.MaxInt64 instead of overflowing: header dimensions
// are untrusted, and a wrapped product would pass any check. A negative
// dimension counts as zero.
func Float64Bytes(dims ...int) int64 {
	n := uint64(8)
	for _, d := range dims {
		if d <= 0 {
			return 0
		}
		hi, lo := bits.Mul64(n, uint64(d))
		if hi != 0 || lo > math.MaxInt64 {
			return math.MaxInt64
		}
		n = lo
	}
	return int64(n)
}

// AddBytes adds byte counts, saturating at math.MaxInt64.
func AddBytes(v ...int64) int64 {
	var s int64
	for _, x := range v {
		if x > math.MaxInt64-s {
			return math.MaxInt64
		}
		s += x
	}
	return s
}

// FallbackMemory is the machine memory assumed where it cannot be read
// (systems without /proc/meminfo).
const FallbackMemory int64 = 16 << 30

// MemoryFraction is the part of the machine's memory DefaultMemoryLimit
// grants: the rest is left to the runtime, the OS and other processes.
const MemoryFraction = 0.8

var defaultLimit = sync.OnceValue(func() int64 {
	total := readMemTotal("/proc/meminfo")
	if total <= 0 {
		total = FallbackMemory
	}
	if c := readCgroupMax("/sys/fs/cgroup/memory.max"); c > 0 && c < total {
		total = c
	}
	return int64(float64(total) * MemoryFraction)
})

// DefaultMemoryLimit returns MemoryFraction of the machine's memory: the
// smaller of MemTotal in /proc/meminfo and the cgroup v2 memory.max, if set,
// or of FallbackMemory where neither can be read. It is read once.
func DefaultMemoryLimit() int64 { return defaultLimit() }

// readMemTotal returns MemTotal of a meminfo file in bytes, or 0.
func readMemTotal(path string) int64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == "MemTotal:" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil || kb <= 0 || kb > math.MaxInt64/1024 {
				return 0
			}
			return kb * 1024
		}
	}
	return 0
}

// readCgroupMax returns a cgroup v2 memory.max in bytes, or 0 if it is
// "max" or unreadable.
func readCgroupMax(path string) int64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	v, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil || v <= 0 {
		return 0
	}
	return v
}

var byteUnits = []struct {
	suffix string
	mult   int64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40}, {"PiB", 1 << 50},
	{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12}, {"PB", 1e15},
	{"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"T", 1 << 40}, {"P", 1 << 50},
	{"B", 1},
}

// ParseBytes parses a byte count: a non-negative number with an optional
// unit, binary (KiB, MiB, GiB, TiB, PiB; K, M, G, T, P mean the same) or
// decimal (KB, MB, GB, TB, PB), e.g. "512MiB", "1.5GiB", "4G", "1000000".
// Units are case-insensitive; fractions are rounded down to whole bytes.
func ParseBytes(s string) (int64, error) {
	t := strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range byteUnits {
		if len(t) > len(u.suffix) && strings.EqualFold(t[len(t)-len(u.suffix):], u.suffix) {
			t, mult = strings.TrimSpace(t[:len(t)-len(u.suffix)]), u.mult
			break
		}
	}
	if t == "" || strings.ContainsAny(t, "+-_") || strings.ContainsAny(strings.ToLower(t), "xpin") {
		return 0, fmt.Errorf("linalg: byte count %q: want a number ≥ 0 with an optional unit (KiB, MiB, GiB, TiB, KB, MB, GB, TB)", s)
	}
	if n, err := strconv.ParseInt(t, 10, 64); err == nil {
		if n > math.MaxInt64/mult {
			return 0, fmt.Errorf("linalg: byte count %q overflows int64", s)
		}
		return n * mult, nil
	}
	v, err := strconv.ParseFloat(t, 64)
	if err != nil || math.IsNaN(v) || v < 0 {
		return 0, fmt.Errorf("linalg: byte count %q: want a number ≥ 0 with an optional unit (KiB, MiB, GiB, TiB, KB, MB, GB, TB)", s)
	}
	b := v * float64(mult)
	if b >= math.MaxInt64 {
		return 0, fmt.Errorf("linalg: byte count %q overflows int64", s)
	}
	return int64(b), nil
}

// FormatBytes writes a byte count in binary units with about three
// significant digits, e.g. "512 B", "1.5 KiB", "67 TiB".
func FormatBytes(n int64) string {
	if n < 1024 {
		return strconv.FormatInt(n, 10) + " B"
	}
	v, unit := float64(n), ""
	for _, u := range []string{"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"} {
		if v < 1024 {
			break
		}
		v, unit = v/1024, u
	}
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f %s", v, unit)
	case v >= 10:
		return strings.TrimSuffix(fmt.Sprintf("%.1f", v), ".0") + " " + unit
	}
	return strings.TrimSuffix(strings.TrimSuffix(fmt.Sprintf("%.2f", v), "0"), ".0") + " " + unit
}
