// Package safetensors reads and writes the safetensors tensor file format.
//
// A file is an 8-byte little-endian header length N, N bytes of JSON header
// and a data buffer. The header maps each tensor name to its dtype, shape and
// [begin, end) byte offsets into the data buffer; the optional "__metadata__"
// entry maps strings to strings. Values are little-endian and row-major.
//
// The reader is strict, in the manner of the reference implementation: the
// header must be valid JSON no longer than MaxHeader bytes, every dtype must
// be known, every byte range must match its shape, and the tensors must tile
// the data buffer exactly, without gaps or overlaps. Parse never panics on bad
// input; its errors wrap ErrTruncated, ErrDType or ErrFormat and name the
// tensor at fault.
//
// Parse works in place over a byte slice, so tensors opened with Open are read
// straight from a memory-mapped file. The writer lays tensors out in the order
// given and pads the header with spaces to a multiple of 8 bytes, so that the
// data buffer stays aligned for every dtype.
package safetensors
