// Package atomicfile writes output files so that no reader, and no crash,
// ever sees half of one, and refuses outputs that would replace an input.
//
// Every file goinfluence writes goes through WriteFile (or Create, for
// writers that stream, such as a CPU profile): the data goes to a temporary
// file beside the target, is synced, and is renamed over the target, and the
// directory is synced so that the rename itself survives a crash. On any
// error, or a panic in the caller's write function, the temporary file is
// removed and whatever was at the target before is left as it was. Having one
// implementation means one place where durability is got right.
//
// A rename cannot protect an input that is also the output: the command would
// read the input, then replace it with its own result. Check compares a
// command's outputs with its inputs, and with each other, by file identity
// (os.SameFile), so a symbolic or hard link to an input is caught as well as
// the same path. Commands call it before any expensive work, so that a
// mistyped flag fails in milliseconds rather than after an hour of fitting.
package atomicfile
