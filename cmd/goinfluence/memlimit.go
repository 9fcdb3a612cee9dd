package main

import (
	"errors"
	"flag"
	"fmt"

	"github.com/goinfluence/goinfluence/gradients"
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

// checkRead refuses, before decoding, examples [lo, hi) of a gradient file
// whose float64 values need more than limit bytes.
func checkRead(cmd string, f *gradients.File, path string, lo, hi int, limit int64) error {
	err := linalg.CheckMemory(fmt.Sprintf("%s: %d examples", path, hi-lo), "float64", f.ReadBytes(lo, hi), limit)
	return withMemFlag(cmd, err)
}

// checkScoreMemory refuses score outputs sized from the inputs' headers that
// do not fit in limit: the summed n_query × n_train float64 scores and
// their float32 copy for the file, plus, with top-k, the rankings (indices
// and scores, both sides).
func checkScoreMemory(cmd string, nq, nt, layers, topk int, limit int64) error {
	need := linalg.AddBytes(linalg.Float64Bytes(nq, nt), linalg.Float64Bytes(nq, nt)/2,
		linalg.Float64Bytes(layers, nq, nt), linalg.Float64Bytes(4, nq, min(topk, nt)))
	err := linalg.CheckMemory("scores", fmt.Sprintf("%d queries × %d training examples, %d layers", nq, nt, layers), need, limit)
	return withMemFlag(cmd, err)
}

// checkStoreScoreMemory refuses the buffers of store score sized from the
// store and query headers: the top-k rankings (ids, indices and scores of
// both sides) and, with --scores-out, the full float32 score matrix with its
// ids.
func checkStoreScoreMemory(nq, count, topk int, scoresOut bool, limit int64) error {
	k := min(topk, count)
	if err := linalg.CheckMemory("top-k rankings", fmt.Sprintf("%d queries × %d, both sides", nq, k),
		linalg.Float64Bytes(6, nq, k), limit); err != nil {
		return withMemFlag("store score", err)
	}
	if !scoresOut {
		return nil
	}
	need := linalg.AddBytes(linalg.Float64Bytes(nq, count)/2, linalg.Float64Bytes(count))
	err := linalg.CheckMemory("--scores-out matrix", fmt.Sprintf("%d queries × %d rows, float32", nq, count), need, limit)
	return withMemFlag("store score", err)
}

// checkProjectMemory refuses a projection whose projected examples (held
// whole until written) or whose chunk of input examples would not fit in
// limit, from the header alone.
func checkProjectMemory(f *gradients.File, path string, p gradients.Projection, chunk int, limit int64) error {
	var per int64
	for _, l := range f.Layers() {
		if p.Kind == gradients.Kronecker {
			per = linalg.AddBytes(per, linalg.Float64Bytes(l.Tokens, p.KIn), linalg.Float64Bytes(l.Tokens, p.KOut))
		} else {
			per = linalg.AddBytes(per, linalg.Float64Bytes(p.K))
		}
	}
	for _, l := range f.Layers() {
		if p.Kind != gradients.Kronecker && l.Factored {
			// The dense projections flatten an example to DOut × DIn.
			if err := linalg.CheckMemory(fmt.Sprintf("%s: layer %s: flattened gradient", path, l.Name),
				fmt.Sprintf("%d × %d float64", l.DOut, l.DIn), linalg.Float64Bytes(l.DOut, l.DIn), limit); err != nil {
				return withMemFlag("project", err)
			}
		}
	}
	out := linalg.Float64Bytes(f.N(), max(1, int(per/8)))
	if err := linalg.CheckMemory(fmt.Sprintf("%s: projected examples", path), fmt.Sprintf("%d × %d float64", f.N(), per/8),
		out, limit); err != nil {
		return withMemFlag("project", err)
	}
	return checkRead("project", f, path, 0, min(chunk, f.N()), limit)
}
