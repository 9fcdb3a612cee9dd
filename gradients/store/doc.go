// Package store keeps the (projected) per-example gradients of a training
// set on disk as a sharded, append-only, crash-safe store.
//
// # Layout
//
// A store is a directory holding
//
//	manifest.json               the committed state
//	shard-000000.safetensors    grads [rows, dim] (f16, bf16, f32 or i8), ids I64 [rows]
//	shard-000001.safetensors    …
//
// A store of dtype i8 holds rows quantised by package quant (DESIGN §11),
// each with its float32 scale in a third tensor, scales F32 [rows]; its
// rows are at most quant.MaxDim long. Iterators return the int8 values and
// scales raw (NextRaw, Chunk.Scales), or the rows they stand for, value
// times scale, in float32 (Next), for the uses that need floats, such as
// the curvature of the stored rows.
//
// The manifest records the format (goinfluence.store/v1), the dtype, the row
// dimension, the layers with their offsets in a row, the projection spec and
// seed that produced the rows, and each shard's file name, row count and
// SHA-256, together with the total row count:
//
//	{"format":"goinfluence.store/v1","dtype":"f16","dim":96,
//	 "layers":[{"name":"fc1","offset":0,"dim":64},{"name":"fc2","offset":64,"dim":32}],
//	 "projection":{"kind":"kronecker","k_in":8,"k_out":8},"seed":1,
//	 "shards":[{"file":"shard-000000.safetensors","rows":65536,"sha256":"…"}],
//	 "count":65536}
//
// # Writing
//
// A Builder, from Create or Resume, buffers rows and commits a shard whenever
// Options.ShardRows rows are buffered: the shard is written to a temporary
// name, synced and renamed into place, and only then is the manifest replaced,
// through the same temp-sync-rename sequence. A shard is therefore committed
// exactly when the manifest names it, and a build killed at any point leaves a
// store that opens with every committed shard intact. Resume removes what such
// a build left behind (temporary files and shards the manifest does not name)
// and appends after the last committed row; Builder.Committed tells the caller
// where to restart its input, and Skip checks that the restarted input holds
// the committed ids, in order.
//
// Build is the whole of a build as one call: it reads gradient files (a
// Source, whose files without ids get their positions as ids), projects
// them chunk by chunk with the manifest's gradients.Projection, adds them
// and, with BuildOptions.Resume, first checks a killed build's committed
// rows against the inputs (ids with Skip, the last row's bytes with
// SameRow). 'goinfluence store build' is its flags and this call.
// Manifest.CheckInput checks that gradients, once projected, have the
// store's layers, as queries scored against the store must.
//
// A store has one Builder at a time: Create and Resume take an exclusive lock
// on the file build.lock in the store directory until Close, and a second
// build is refused with the process holding it named. The operating system
// drops the lock of a build that dies; readers ignore it. Example ids are
// unique across the store, whatever the calls or files they came in.
//
// Values are narrowed to the store's dtype on the way in, rounding to nearest
// even. A NaN or infinite value, or a finite value the dtype cannot hold, is an
// error naming the example's id, and the rows of that call are rejected whole.
//
// # Reading
//
// Open checks the manifest and the header of every shard, which is cheap.
// Chunks walks the rows in order in the manner of bufio.Scanner,
// memory-mapping one shard at a time and widening half-precision values to
// float32 into a reused buffer. The rows seen do not depend on the chunk size
// or on how the rows were split into shards. Each shard's SHA-256 is checked
// against the manifest when an iterator first maps it, once per Store, so
// that a corrupted or swapped shard is an error rather than scores
// (OpenOptions.NoVerify skips this); Verify checks every shard at once. A
// shard that shrinks while mapped is an error (ErrFault), not a SIGBUS.
// Info summarises a store (manifest, bytes on disk, verification) as
// 'goinfluence store info' prints it, in text or JSON.
//
// Errors are *Error values naming the file and field at fault and wrapping one
// of the sentinel errors of this package, for use with errors.Is.
package store
