package safetensors

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/x448/float16"
)

// DType is a tensor element type, spelled as in the file header.
type DType string

// Supported element types.
const (
	F64  DType = "F64"
	F32  DType = "F32"
	F16  DType = "F16"
	BF16 DType = "BF16"
	I64  DType = "I64"
	I32  DType = "I32"
	I16  DType = "I16"
	I8   DType = "I8"
	U64  DType = "U64"
	U32  DType = "U32"
	U16  DType = "U16"
	U8   DType = "U8"
	Bool DType = "BOOL"
)

// Size returns the size of one element in bytes, or 0 for an unknown dtype.
func (d DType) Size() int {
	switch d {
	case F64, I64, U64:
		return 8
	case F32, I32, U32:
		return 4
	case F16, BF16, I16, U16:
		return 2
	case I8, U8, Bool:
		return 1
	}
	return 0
}

// IsFloat reports whether d is a floating-point dtype.
func (d DType) IsFloat() bool { return d == F64 || d == F32 || d == F16 || d == BF16 }

// IsInt reports whether d is an integer dtype.
func (d DType) IsInt() bool {
	switch d {
	case I64, I32, I16, I8, U64, U32, U16, U8:
		return true
	}
	return false
}

// RangeError reports a finite value that the target dtype cannot represent.
type RangeError struct {
	Index int     // index of the value in the encoded slice
	Value float64 // the value
	DType DType   // the target dtype
}

func (e *RangeError) Error() string {
	return fmt.Sprintf("safetensors: value %g at index %d overflows %s", e.Value, e.Index, e.DType)
}

// DecodeFloat64s converts the little-endian values of a float dtype in src
// into dst, which must have exactly len(src)/dtype.Size() elements.
func DecodeFloat64s(dst []float64, dtype DType, src []byte) error {
	if !dtype.IsFloat() {
		return fmt.Errorf("%w: %s is not a float dtype", ErrDType, dtype)
	}
	if len(src) != len(dst)*dtype.Size() {
		return fmt.Errorf("%w: %d bytes for %d %s values", ErrFormat, len(src), len(dst), dtype)
	}
	le := binary.LittleEndian
	switch dtype {
	case F64:
		for i := range dst {
			dst[i] = math.Float64frombits(le.Uint64(src[8*i:]))
		}
	case F32:
		for i := range dst {
			dst[i] = float64(math.Float32frombits(le.Uint32(src[4*i:])))
		}
	case F16:
		for i := range dst {
			dst[i] = float64(float16.Frombits(le.Uint16(src[2*i:])).Float32())
		}
	case BF16:
		for i := range dst {
			dst[i] = float64(math.Float32frombits(uint32(le.Uint16(src[2*i:])) << 16))
		}
	}
	return nil
}

// DecodeInt64s converts the little-endian values of an integer dtype in src
// into dst, which must have exactly len(src)/dtype.Size() elements. U64 values
// above math.MaxInt64 are an error.
func DecodeInt64s(dst []int64, dtype DType, src []byte) error {
	if !dtype.IsInt() {
		return fmt.Errorf("%w: %s is not an integer dtype", ErrDType, dtype)
	}
	if len(src) != len(dst)*dtype.Size() {
		return fmt.Errorf("%w: %d bytes for %d %s values", ErrFormat, len(src), len(dst), dtype)
	}
	le := binary.LittleEndian
	for i := range dst {
		switch dtype {
		case I64:
			dst[i] = int64(le.Uint64(src[8*i:]))
		case I32:
			dst[i] = int64(int32(le.Uint32(src[4*i:])))
		case I16:
			dst[i] = int64(int16(le.Uint16(src[2*i:])))
		case I8:
			dst[i] = int64(int8(src[i]))
		case U64:
			u := le.Uint64(src[8*i:])
			if u > math.MaxInt64 {
				return fmt.Errorf("%w: U64 value %d at index %d overflows int64", ErrFormat, u, i)
			}
			dst[i] = int64(u)
		case U32:
			dst[i] = int64(le.Uint32(src[4*i:]))
		case U16:
			dst[i] = int64(le.Uint16(src[2*i:]))
		case U8:
			dst[i] = int64(src[i])
		}
	}
	return nil
}

// EncodeFloat64s returns v in the little-endian layout of a float dtype.
// Narrowing rounds to nearest, ties to even. A finite value whose rounded
// magnitude overflows the dtype is a *RangeError; NaN and ±Inf are kept.
func EncodeFloat64s(dtype DType, v []float64) ([]byte, error) {
	if !dtype.IsFloat() {
		return nil, fmt.Errorf("%w: %s is not a float dtype", ErrDType, dtype)
	}
	out := make([]byte, len(v)*dtype.Size())
	le := binary.LittleEndian
	for i, x := range v {
		var inf bool
		switch dtype {
		case F64:
			le.PutUint64(out[8*i:], math.Float64bits(x))
			continue
		case F32:
			f := float32(x)
			le.PutUint32(out[4*i:], math.Float32bits(f))
			inf = math.IsInf(float64(f), 0)
		case F16:
			h := float16.Fromfloat32(roundToOdd32(x))
			le.PutUint16(out[2*i:], h.Bits())
			inf = h.IsInf(0)
		case BF16:
			b := bfloat16(roundToOdd32(x))
			le.PutUint16(out[2*i:], b)
			inf = b&0x7fff == 0x7f80
		}
		if inf && !math.IsInf(x, 0) {
			return nil, &RangeError{Index: i, Value: x, DType: dtype}
		}
	}
	return out, nil
}

// EncodeInt64s returns v in the little-endian layout of an integer dtype. A
// value outside the dtype's range is a *RangeError.
func EncodeInt64s(dtype DType, v []int64) ([]byte, error) {
	if !dtype.IsInt() {
		return nil, fmt.Errorf("%w: %s is not an integer dtype", ErrDType, dtype)
	}
	var lo, hi int64
	switch dtype {
	case I64:
		lo, hi = math.MinInt64, math.MaxInt64
	case I32:
		lo, hi = math.MinInt32, math.MaxInt32
	case I16:
		lo, hi = math.MinInt16, math.MaxInt16
	case I8:
		lo, hi = math.MinInt8, math.MaxInt8
	case U64:
		lo, hi = 0, math.MaxInt64
	case U32:
		lo, hi = 0, math.MaxUint32
	case U16:
		lo, hi = 0, math.MaxUint16
	case U8:
		lo, hi = 0, math.MaxUint8
	}
	sz := dtype.Size()
	out := make([]byte, len(v)*sz)
	le := binary.LittleEndian
	for i, x := range v {
		if x < lo || x > hi {
			return nil, &RangeError{Index: i, Value: float64(x), DType: dtype}
		}
		switch sz {
		case 8:
			le.PutUint64(out[8*i:], uint64(x))
		case 4:
			le.PutUint32(out[4*i:], uint32(x))
		case 2:
			le.PutUint16(out[2*i:], uint16(x))
		case 1:
			out[i] = byte(x)
		}
	}
	return out, nil
}

// roundToOdd32 narrows x to float32 rounding to odd: an inexact result gets
// its last mantissa bit set. Rounding that again to a format with at most 22
// mantissa bits then gives the correctly rounded result, which rounding to
// nearest twice would not (it can create a false tie).
func roundToOdd32(x float64) float32 {
	f := float32(x)
	if float64(f) == x || math.IsNaN(x) || math.IsInf(float64(f), 0) {
		return f
	}
	b := math.Float32bits(f)
	if b&1 == 0 {
		if math.Abs(float64(f)) < math.Abs(x) {
			b++ // away from zero in sign-magnitude
		} else {
			b--
		}
	}
	return math.Float32frombits(b)
}

// bfloat16 returns the bfloat16 bits of f, rounding to nearest, ties to even.
func bfloat16(f float32) uint16 {
	b := math.Float32bits(f)
	if f != f {
		return uint16(b>>16) | 0x40 // keep the sign, force a quiet NaN
	}
	b += 0x7fff + (b>>16)&1
	return uint16(b >> 16)
}
