package safetensors

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/x448/float16"
)

// encode writes tensors to memory, failing the test on error.
func encode(t testing.TB, tensors []Tensor, meta map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := Write(&buf, tensors, meta); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// rawFile assembles a file from a literal header and data buffer.
func rawFile(header string, data []byte) []byte {
	b := binary.LittleEndian.AppendUint64(nil, uint64(len(header)))
	b = append(b, header...)
	return append(b, data...)
}

func TestRoundTripFloat(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	v := make([]float64, 1000)
	for i := range v {
		v[i] = rnd.NormFloat64() * math.Pow(10, float64(rnd.IntN(8)-4))
	}
	v = append(v, 0, math.Copysign(0, -1), 1, -2, 65504, math.Inf(1), math.Inf(-1))
	for _, tc := range []struct {
		dtype DType
		round func(float64) float64
	}{
		{F64, func(x float64) float64 { return x }},
		{F32, func(x float64) float64 { return float64(float32(x)) }},
		{F16, func(x float64) float64 { return float64(float16.Fromfloat32(float32(x)).Float32()) }},
		{BF16, nil},
	} {
		t.Run(string(tc.dtype), func(t *testing.T) {
			data, err := EncodeFloat64s(tc.dtype, v)
			if err != nil {
				t.Fatal(err)
			}
			f, err := Parse(encode(t, []Tensor{{Name: "x", DType: tc.dtype, Shape: []int{len(v)}, Data: data}}, nil))
			if err != nil {
				t.Fatal(err)
			}
			got, err := f.Float64s("x")
			if err != nil {
				t.Fatal(err)
			}
			for i, x := range v {
				want := x
				if tc.round != nil {
					want = tc.round(x)
				}
				// bf16 keeps 8 significant bits: the result is a float32
				// with 16 zero low bits, within half an ulp (2⁻⁸·|x|) of x.
				if tc.dtype == BF16 && !math.IsInf(x, 0) {
					if math.Float32bits(float32(got[i]))&0xffff != 0 || math.Abs(got[i]-x) > math.Abs(x)*0x1p-8 {
						t.Fatalf("bf16(%g) = %g", x, got[i])
					}
					continue
				}
				if got[i] != want || math.Signbit(got[i]) != math.Signbit(want) {
					t.Fatalf("%s(%g) = %g, want %g", tc.dtype, x, got[i], want)
				}
			}
		})
	}
}

func TestRoundTripInt(t *testing.T) {
	for _, tc := range []struct {
		dtype DType
		v     []int64
	}{
		{I64, []int64{math.MinInt64, -1, 0, 1, math.MaxInt64}},
		{I32, []int64{math.MinInt32, -1, 0, math.MaxInt32}},
		{I16, []int64{math.MinInt16, 7, math.MaxInt16}},
		{I8, []int64{math.MinInt8, 0, math.MaxInt8}},
		{U64, []int64{0, math.MaxInt64}},
		{U32, []int64{0, math.MaxUint32}},
		{U16, []int64{0, math.MaxUint16}},
		{U8, []int64{0, 1, 255}},
	} {
		data, err := EncodeInt64s(tc.dtype, tc.v)
		if err != nil {
			t.Fatalf("%s: %v", tc.dtype, err)
		}
		f, err := Parse(encode(t, []Tensor{{Name: "i", DType: tc.dtype, Shape: []int{len(tc.v)}, Data: data}}, nil))
		if err != nil {
			t.Fatalf("%s: %v", tc.dtype, err)
		}
		got, err := f.Int64s("i")
		if err != nil || !reflect.DeepEqual(got, tc.v) {
			t.Errorf("%s: got %v, %v; want %v", tc.dtype, got, err, tc.v)
		}
		if _, err := f.Float64s("i"); !errors.Is(err, ErrDType) {
			t.Errorf("%s: Float64s of an integer tensor: %v", tc.dtype, err)
		}
	}
}

func TestRounding(t *testing.T) {
	for _, tc := range []struct {
		dtype DType
		in    float64
		want  float64
	}{
		// Ties go to even.
		{F16, 1 + 0x1p-11, 1},
		{F16, 1 + 3*0x1p-11, 1 + 0x1p-9},
		{BF16, 1 + 0x1p-8, 1},
		{BF16, 1 + 3*0x1p-8, 1 + 0x1p-6},
		// Just above a tie rounds up, even where rounding to float32 first
		// would land on the tie.
		{F16, 1 + 0x1p-11 + 0x1p-40, 1 + 0x1p-10},
		{BF16, 1 + 0x1p-8 + 0x1p-40, 1 + 0x1p-7},
		// Subnormals and underflow.
		{F16, 0x1p-24, 0x1p-24},
		{F16, 0x1p-26, 0},
		{BF16, 0x1p-133, 0x1p-133},
		// Largest finite values.
		{F16, 65519, 65504},
		{BF16, math.MaxFloat32 / 2, 0x1p127},
		{BF16, 0x1.fep127, 0x1.fep127},
	} {
		b, err := EncodeFloat64s(tc.dtype, []float64{tc.in})
		if err != nil {
			t.Errorf("%s(%g): %v", tc.dtype, tc.in, err)
			continue
		}
		got := make([]float64, 1)
		if err := DecodeFloat64s(got, tc.dtype, b); err != nil || got[0] != tc.want {
			t.Errorf("%s(%x) = %x, %v; want %x", tc.dtype, tc.in, got[0], err, tc.want)
		}
	}
}

func TestEncodeOverflow(t *testing.T) {
	for _, tc := range []struct {
		dtype DType
		v     float64
	}{
		{F16, 65520},
		{F16, -1e6},
		{BF16, math.MaxFloat64},
		{BF16, math.MaxFloat32},
		{F32, 1e39},
	} {
		_, err := EncodeFloat64s(tc.dtype, []float64{0, tc.v})
		var re *RangeError
		if !errors.As(err, &re) || re.Index != 1 || re.Value != tc.v || !strings.Contains(err.Error(), string(tc.dtype)) {
			t.Errorf("%s(%g): got %v, want a RangeError at index 1", tc.dtype, tc.v, err)
		}
	}
	if _, err := EncodeInt64s(U8, []int64{256}); err == nil {
		t.Error("EncodeInt64s(U8, 256) succeeded")
	}
	if _, err := EncodeFloat64s(I32, nil); !errors.Is(err, ErrDType) {
		t.Errorf("EncodeFloat64s(I32): %v", err)
	}
}

func TestLayoutAndMetadata(t *testing.T) {
	meta := map[string]string{"format": "pt", "note": `quote " and é`}
	ts := []Tensor{
		{Name: "b.weight", DType: F32, Shape: []int{2, 3}, Data: make([]byte, 24)},
		{Name: "a", DType: U8, Shape: []int{3}, Data: []byte{1, 2, 3}},
		{Name: "empty", DType: F64, Shape: []int{0, 4}, Data: nil},
		{Name: "scalar", DType: I64, Shape: []int{}, Data: make([]byte, 8)},
	}
	buf := encode(t, ts, meta)
	if n := binary.LittleEndian.Uint64(buf); n%8 != 0 {
		t.Errorf("header length %d is not a multiple of 8", n)
	}
	f, err := Parse(buf)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(f.Metadata, meta) {
		t.Errorf("metadata %v, want %v", f.Metadata, meta)
	}
	if got, want := f.Names(), []string{"b.weight", "a", "empty", "scalar"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Names() = %v, want %v", got, want)
	}
	in, ok := f.Info("a")
	if want := (Info{Name: "a", DType: U8, Shape: []int{3}, Begin: 24, End: 27}); !ok || !reflect.DeepEqual(in, want) {
		t.Errorf("Info(a) = %+v, %v; want %+v", in, ok, want)
	}
	if !bytes.Equal(f.Bytes("a"), []byte{1, 2, 3}) {
		t.Errorf("Bytes(a) = %v", f.Bytes("a"))
	}
	if _, ok := f.Info("missing"); ok || f.Bytes("missing") != nil {
		t.Error("missing tensor found")
	}
	if _, err := f.Float64s("missing"); err == nil {
		t.Error("Float64s(missing) succeeded")
	}
	// Equal inputs give identical bytes.
	if !bytes.Equal(buf, encode(t, ts, meta)) {
		t.Error("Write is not deterministic")
	}
}

func TestParseErrors(t *testing.T) {
	f32 := func(name string, shape string, b, e int) string {
		return `"` + name + `":{"dtype":"F32","shape":` + shape + `,"data_offsets":[` + strconv.Itoa(b) + `,` + strconv.Itoa(e) + `]}`
	}
	bigLen := binary.LittleEndian.AppendUint64(nil, MaxHeader+1)
	for _, tc := range []struct {
		name   string
		file   []byte
		want   error
		substr string
	}{
		{"empty", nil, ErrTruncated, "8-byte"},
		{"short", []byte{1, 2, 3}, ErrTruncated, "8-byte"},
		{"header too long", append(bigLen, "{}"...), ErrFormat, "exceeds"},
		{"header beyond file", binary.LittleEndian.AppendUint64(nil, 16), ErrTruncated, "header length 16"},
		{"header length overflow", binary.LittleEndian.AppendUint64(nil, math.MaxUint64), ErrFormat, "header length"},
		{"empty header", rawFile("", nil), ErrFormat, "JSON"},
		{"bad JSON", rawFile(`{"x":`, nil), ErrFormat, "JSON"},
		{"not an object", rawFile(`[1,2]`, nil), ErrFormat, "JSON object"},
		{"trailing JSON", rawFile(`{} {}`, nil), ErrFormat, "trailing"},
		{"duplicate", rawFile(`{`+f32("x", "[1]", 0, 4)+`,`+f32("x", "[1]", 4, 8)+`}`, make([]byte, 8)), ErrFormat, `duplicate header entry "x"`},
		{"tensor not an object", rawFile(`{"x":3}`, nil), ErrFormat, `"x"`},
		{"unknown field", rawFile(`{"x":{"dtype":"F32","shape":[],"data_offsets":[0,4],"extra":1}}`, make([]byte, 4)), ErrFormat, `"x"`},
		{"missing dtype", rawFile(`{"x":{"shape":[],"data_offsets":[0,4]}}`, make([]byte, 4)), ErrFormat, `"x" has no dtype`},
		{"missing shape", rawFile(`{"x":{"dtype":"F32","data_offsets":[0,4]}}`, make([]byte, 4)), ErrFormat, `"x" has no shape`},
		{"missing offsets", rawFile(`{"x":{"dtype":"F32","shape":[]}}`, make([]byte, 4)), ErrFormat, `"x" has no data_offsets`},
		{"unknown dtype", rawFile(`{"x":{"dtype":"F8_E4M3","shape":[1],"data_offsets":[0,1]}}`, make([]byte, 1)), ErrDType, `"x" has dtype "F8_E4M3"`},
		{"size mismatch", rawFile(`{`+f32("x", "[2,3]", 0, 20)+`}`, make([]byte, 20)), ErrFormat, `"x": 20 bytes for shape [2 3]`},
		{"negative dim", rawFile(`{`+f32("x", "[-1,-4]", 0, 16)+`}`, make([]byte, 16)), ErrFormat, "invalid dimension -1"},
		{"fractional dim", rawFile(`{`+f32("x", "[1.5]", 0, 4)+`}`, make([]byte, 4)), ErrFormat, `"x"`},
		{"huge dims", rawFile(`{`+f32("x", "[4294967296,4294967296]", 0, 0)+`}`, nil), ErrFormat, "too many elements"},
		{"huge dim times size", rawFile(`{`+f32("x", "[4611686018427387904]", 0, 0)+`}`, nil), ErrFormat, `"x"`},
		{"dim beyond int64", rawFile(`{`+f32("x", "[99999999999999999999]", 0, 0)+`}`, nil), ErrFormat, `"x"`},
		{"offsets count", rawFile(`{"x":{"dtype":"F32","shape":[1],"data_offsets":[0]}}`, make([]byte, 4)), ErrFormat, "2"},
		{"offsets reversed", rawFile(`{`+f32("x", "[1]", 4, 0)+`}`, make([]byte, 4)), ErrFormat, "invalid data_offsets"},
		{"negative offset", rawFile(`{`+f32("x", "[1]", -4, 0)+`}`, make([]byte, 4)), ErrFormat, "invalid data_offsets"},
		{"offsets beyond data", rawFile(`{`+f32("x", "[2]", 0, 8)+`}`, make([]byte, 4)), ErrTruncated, `"x" ends at byte 8`},
		{"overlap", rawFile(`{`+f32("x", "[2]", 0, 8)+`,`+f32("y", "[2]", 4, 12)+`}`, make([]byte, 12)), ErrFormat, `"y" at [4, 12] overlaps "x"`},
		{"same range", rawFile(`{`+f32("x", "[1]", 0, 4)+`,`+f32("y", "[1]", 0, 4)+`}`, make([]byte, 4)), ErrFormat, "overlaps"},
		{"gap", rawFile(`{`+f32("x", "[1]", 4, 8)+`}`, make([]byte, 8)), ErrFormat, "gap"},
		{"trailing data", rawFile(`{`+f32("x", "[1]", 0, 4)+`}`, make([]byte, 5)), ErrFormat, "1 bytes after"},
		{"metadata not strings", rawFile(`{"__metadata__":{"a":1}}`, nil), ErrFormat, "__metadata__"},
		{"metadata twice", rawFile(`{"__metadata__":{},"__metadata__":{}}`, nil), ErrFormat, "duplicate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := Parse(tc.file)
			if err == nil {
				t.Fatalf("Parse succeeded: %v", f.Names())
			}
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.substr) {
				t.Errorf("got %q, want %v mentioning %q", err, tc.want, tc.substr)
			}
		})
	}
}

func TestWriteErrors(t *testing.T) {
	for _, tc := range []struct {
		name    string
		tensors []Tensor
		substr  string
	}{
		{"reserved", []Tensor{{Name: "__metadata__", DType: U8, Shape: []int{0}}}, "reserved"},
		{"duplicate", []Tensor{{Name: "x", DType: U8, Shape: []int{0}}, {Name: "x", DType: U8, Shape: []int{0}}}, `duplicate tensor "x"`},
		{"dtype", []Tensor{{Name: "x", DType: "F128", Shape: []int{0}}}, `"x" has dtype "F128"`},
		{"size", []Tensor{{Name: "x", DType: F32, Shape: []int{2}, Data: make([]byte, 4)}}, `"x": 4 bytes`},
		{"negative", []Tensor{{Name: "x", DType: F32, Shape: []int{-1}}}, "invalid dimension"},
		{"bad UTF-8", []Tensor{{Name: "x\xff", DType: U8, Shape: []int{0}}}, "UTF-8"},
	} {
		var buf bytes.Buffer
		err := Write(&buf, tc.tensors, nil)
		if err == nil || !strings.Contains(err.Error(), tc.substr) {
			t.Errorf("%s: got %v, want an error mentioning %q", tc.name, err, tc.substr)
		}
		if buf.Len() != 0 {
			t.Errorf("%s: %d bytes written before the error", tc.name, buf.Len())
		}
	}
}

func TestWriteMetadataUTF8(t *testing.T) {
	if err := Write(io.Discard, nil, map[string]string{"k": "\xff"}); !errors.Is(err, ErrFormat) {
		t.Errorf("metadata with invalid UTF-8: %v", err)
	}
}

func TestWriteFileOpen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "t.safetensors")
	data, _ := EncodeFloat64s(F32, []float64{1, 2, 3})
	ts := []Tensor{{Name: "w", DType: F32, Shape: []int{3}, Data: data}}
	if err := WriteFile(path, ts, map[string]string{"k": "v"}); err != nil {
		t.Fatal(err)
	}
	// A failed write leaves the previous file intact and no temporary behind.
	if err := WriteFile(path, []Tensor{{Name: "w", DType: F32, Shape: []int{9}}}, nil); err == nil {
		t.Fatal("invalid WriteFile succeeded")
	}
	if ents, _ := os.ReadDir(filepath.Dir(path)); len(ents) != 1 {
		t.Errorf("directory holds %d entries, want 1", len(ents))
	}
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	got, err := f.Float64s("w")
	if err != nil || !reflect.DeepEqual(got, []float64{1, 2, 3}) || f.Metadata["k"] != "v" {
		t.Errorf("got %v, %v, metadata %v", got, err, f.Metadata)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if f.Bytes("w") != nil {
		t.Error("Bytes after Close is not nil")
	}
	if err := f.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}

	// Errors from Open name the file.
	bad := filepath.Join(t.TempDir(), "bad.safetensors")
	os.WriteFile(bad, []byte{1}, 0o644)
	if _, err := Open(bad); !errors.Is(err, ErrTruncated) || !strings.Contains(err.Error(), bad) {
		t.Errorf("Open(bad) = %v", err)
	}
	if _, err := Open(filepath.Join(t.TempDir(), "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Open(missing) = %v", err)
	}
}
