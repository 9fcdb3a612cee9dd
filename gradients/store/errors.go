package store

import (
	"errors"
	"strings"

	"github.com/goinfluence/goinfluence/gradients"
)

// Sentinel causes, matched with errors.Is. The ones shared with package
// gradients are the same values, so that a check holds whichever package
// found the problem.
var (
	ErrShape     = gradients.ErrShape
	ErrDType     = gradients.ErrDType
	ErrNonFinite = gradients.ErrNonFinite
	ErrRange     = gradients.ErrRange
	ErrFormat    = gradients.ErrFormat

	ErrExists    = errors.New("store already exists")
	ErrChecksum  = errors.New("sha256 mismatch")
	ErrDuplicate = errors.New("duplicate id")
	ErrInput     = errors.New("input differs from the store's")
)

// Error describes a problem with a store and where it is: the file (the
// manifest, a shard, or the store directory) and the manifest field or shard
// tensor at fault.
type Error struct {
	Path  string
	Field string
	Err   error
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("store")
	if e.Path != "" {
		b.WriteString(": ")
		b.WriteString(e.Path)
	}
	if e.Field != "" {
		b.WriteString(": ")
		b.WriteString(e.Field)
	}
	b.WriteString(": ")
	b.WriteString(e.Err.Error())
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }
