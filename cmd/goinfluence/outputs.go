package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/goinfluence/goinfluence/gradients/store"
	"github.com/goinfluence/goinfluence/internal/atomicfile"
)

// checkOutputs fails, before any work is done, if an output of the command
// cmd would replace one of its inputs or another of its outputs, or cannot
// be written where it is named. Every command that writes calls it right
// after parsing its flags: the writes themselves are atomic (package
// atomicfile), but an atomic write over an input still destroys the input.
// Naming one file twice is a usage error (exit status 2); a missing
// directory is not.
func checkOutputs(cmd string, outputs, inputs []atomicfile.Path) error {
	err := atomicfile.Check(outputs, inputs)
	var same *atomicfile.SameFileError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &same):
		return fmt.Errorf("%w: %s: %w", errUsage, cmd, err)
	}
	return fmt.Errorf("%s: %w", cmd, err)
}

// paths names each of names as given with flag; empty names are kept, and
// skipped by atomicfile.Check, so that optional flags can be passed as they
// are.
func paths(flag string, names ...string) []atomicfile.Path {
	ps := make([]atomicfile.Path, len(names))
	for i, n := range names {
		ps[i] = atomicfile.Path{Flag: flag, Name: n}
	}
	return ps
}

// storeDirFiles names the files of the store directory dir, given with
// flag: its manifest and its shards, so that no output replaces one of them
// and no input is one of them when the store is written. A directory that
// does not exist, or cannot be listed, gives only the manifest; opening the
// store reports the problem.
func storeDirFiles(flag, dir string) []atomicfile.Path {
	ps := paths(flag, filepath.Join(dir, store.ManifestName))
	ents, err := os.ReadDir(dir)
	if err != nil {
		return ps
	}
	for _, e := range ents {
		if name := e.Name(); strings.HasPrefix(name, "shard-") && strings.HasSuffix(name, ".safetensors") {
			ps = append(ps, atomicfile.Path{Flag: flag, Name: filepath.Join(dir, name)})
		}
	}
	return ps
}
