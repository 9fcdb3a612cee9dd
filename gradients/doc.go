// Package gradients holds per-example gradients and reads and writes them as
// gradient files.
//
// A Batch holds the gradients of N examples over an ordered list of layers.
// A layer is either factored or dense. A factored layer with a DOut × DIn
// weight stores, per example, the layer's input activations a_t (DIn values)
// and the gradients of its outputs s_t (DOut values) for each of Tokens token
// rows; the example's gradient is Σ_t s_t a_tᵀ, which is never formed unless
// asked for. A dense layer stores the flattened gradient itself.
//
// # File format
//
// A gradient file is a safetensors file holding, for each layer L:
//
//	L.a     [n, T, d_in] or [n, d_in]     factored: activations
//	L.s     [n, T, d_out] or [n, d_out]   factored: output gradients
//	L.grad  [n, D]                        dense: gradient, index row·d_in + col
//
// and optionally ids, an I64 [n] tensor of example identifiers. Values are
// F32, F64, F16 or BF16. Layer names may contain dots: a tensor name splits
// into layer and field at its last dot, so "encoder.fc1.a" is field a of
// layer "encoder.fc1". The header metadata holds
//
//	format  goinfluence.gradients/v1
//	layers  L1,L2,…  (the layer order; lexical order of names when absent)
//
// Open maps a file, Parse reads one held in memory and NewReader one behind
// an io.ReaderAt; WriteFile writes a Batch whole and Writer a batch at a
// time, for files larger than memory; both write atomically (temp file and
// rename) and give the same bytes. Readers check the whole header when a
// file is opened and the values when examples are read.
//
// # Projections
//
// Projection is the one description of a seeded random projection
// (Rademacher, SJLT, Gaussian or Kronecker, with its sizes and seed): stores
// record it, and queries are projected by it to be scored against them.
// Apply projects a Batch, ApplyWith on a backend that has the capability
// (linalg/accel), ProjectFile a whole file chunk by chunk. Every error is an *Error naming the file, layer, field
// and example at fault, and wraps one of ErrShape, ErrDType, ErrTruncated,
// ErrNonFinite, ErrFormat or ErrRange for use with errors.Is.
package gradients
