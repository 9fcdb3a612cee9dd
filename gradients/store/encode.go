package store

import (
	"encoding/binary"
	"math"
	"unsafe"

	"github.com/goinfluence/goinfluence/gradients"
	"github.com/goinfluence/goinfluence/internal/safetensors"
	"github.com/goinfluence/goinfluence/quant"
)

// encodeRows encodes whole rows of dim values as a store of dtype dt holds
// them: the values, and for i8 one scale per row (package quant; the rule
// quantises the rows rounded to float32). A value that dt cannot hold is a
// *safetensors.RangeError with its index in v.
func encodeRows(dt gradients.DType, dim int, v []float64) ([]byte, []float32, error) {
	if dt != gradients.I8 {
		enc, err := safetensors.EncodeFloat64s(safetensors.DType(dt), v)
		return enc, nil, err
	}
	n := len(v) / dim
	enc := make([]byte, len(v))
	scales := make([]float32, n)
	row := make([]float32, dim)
	for r := range n {
		for j, x := range v[r*dim : (r+1)*dim] {
			row[j] = float32(x)
			if math.IsInf(float64(row[j]), 0) && !math.IsInf(x, 0) {
				return nil, nil, &safetensors.RangeError{Index: r*dim + j, Value: x, DType: safetensors.F32}
			}
		}
		s, err := quant.Quantize(int8s(enc[r*dim:(r+1)*dim]), row)
		if err != nil {
			return nil, nil, err // unreachable: the callers pass finite rows
		}
		scales[r] = s
	}
	return enc, scales, nil
}

// int8s views b as int8 values, without a copy.
func int8s(b []byte) []int8 {
	if len(b) == 0 {
		return nil
	}
	return unsafe.Slice((*int8)(unsafe.Pointer(unsafe.SliceData(b))), len(b))
}

// Int8s views the raw bytes of an i8 store's rows (Chunk.Raw) as the int8
// values they hold, without a copy.
func Int8s(raw []byte) []int8 { return int8s(raw) }

// encodeScales returns the little-endian bytes of the scales tensor.
func encodeScales(scales []float32) []byte {
	out := make([]byte, 4*len(scales))
	for i, s := range scales {
		binary.LittleEndian.PutUint32(out[4*i:], math.Float32bits(s))
	}
	return out
}

// decodeScales decodes little-endian float32 scales from src into dst.
func decodeScales(dst []float32, src []byte) {
	for i := range dst {
		dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(src[4*i:]))
	}
}
