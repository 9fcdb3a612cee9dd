package gradients

import (
	"errors"
	"fmt"
	"strings"
)

// Sentinel causes, matched with errors.Is through an *Error.
var (
	ErrShape     = errors.New("shape mismatch")
	ErrDType     = errors.New("unsupported dtype")
	ErrTruncated = errors.New("truncated file")
	ErrNonFinite = errors.New("non-finite value")
	ErrFormat    = errors.New("malformed file")
	ErrRange     = errors.New("value out of range for dtype")
)

// Error describes a problem with gradient data and where it is: file, layer,
// tensor field and example index (-1 when the problem is not in one example).
type Error struct {
	Path    string
	Layer   string
	Field   string // "a", "s", "grad", "ids", "header", "metadata"…
	Example int
	Err     error
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("gradients")
	if e.Path != "" {
		fmt.Fprintf(&b, ": %s", e.Path)
	}
	if e.Layer != "" {
		fmt.Fprintf(&b, ": layer %q", e.Layer)
	}
	if e.Field != "" {
		fmt.Fprintf(&b, ": %s", e.Field)
	}
	if e.Example >= 0 {
		fmt.Fprintf(&b, ": example %d", e.Example)
	}
	fmt.Fprintf(&b, ": %v", e.Err)
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }
