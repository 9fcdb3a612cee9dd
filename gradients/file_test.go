package gradients

import (
	"bytes"
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/goinfluence/goinfluence/internal/safetensors"
)

// randVals returns n float32-representable values, so that F32 files hold
// them exactly.
func randVals(rnd *rand.Rand, n int) []float64 {
	v := make([]float64, n)
	for i := range v {
		v[i] = float64(float32(rnd.NormFloat64()))
	}
	return v
}

func factored(rnd *rand.Rand, name string, n, tokens, din, dout int, axis bool) Layer {
	return Layer{Name: name, DIn: din, DOut: dout, Tokens: tokens, TokenAxis: axis,
		A: randVals(rnd, n*tokens*din), S: randVals(rnd, n*tokens*dout)}
}

func dense(rnd *rand.Rand, name string, n, d int) Layer {
	return Layer{Name: name, D: d, Grad: randVals(rnd, n*d)}
}

// mixed returns a batch with every kind of layer, dotted names and ids.
func mixed(n int) *Batch {
	rnd := rand.New(rand.NewPCG(uint64(n), 7))
	ids := make([]int64, n)
	for i := range ids {
		ids[i] = int64(1000 + 3*i)
	}
	return &Batch{N: n, IDs: ids, Layers: []Layer{
		factored(rnd, "encoder.fc1", n, 3, 4, 2, true),
		dense(rnd, "emb.weight", n, 6),
		factored(rnd, "head", n, 1, 5, 3, false),
		factored(rnd, "head.a", n, 1, 2, 2, true),
	}}
}

// fileBytes returns the gradient file holding b.
func fileBytes(t testing.TB, b *Batch, dtype DType, meta map[string]string) []byte {
	t.Helper()
	ts, md, err := encode(b, dtype, meta)
	if err != nil {
		t.Fatal(err)
	}
	return rawBytes(t, ts, md)
}

// rawBytes writes arbitrary tensors, to build malformed gradient files.
func rawBytes(t testing.TB, ts []safetensors.Tensor, meta map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := safetensors.Write(&buf, ts, meta); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func f32(t testing.TB, name string, v []float64, shape ...int) safetensors.Tensor {
	data, err := safetensors.EncodeFloat64s(safetensors.F32, v)
	if err != nil {
		t.Fatal(err)
	}
	return safetensors.Tensor{Name: name, DType: safetensors.F32, Shape: shape, Data: data}
}

func zeros(t testing.TB, name string, shape ...int) safetensors.Tensor {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return f32(t, name, make([]float64, n), shape...)
}

func TestRoundTrip(t *testing.T) {
	rnd := rand.New(rand.NewPCG(3, 4))
	for _, tc := range []struct {
		name  string
		batch *Batch
		dtype DType
		tol   float64 // relative
	}{
		{"factored token axis", &Batch{N: 4, Layers: []Layer{factored(rnd, "fc", 4, 3, 2, 5, true)}}, F32, 0},
		{"factored one token with axis", &Batch{N: 2, Layers: []Layer{factored(rnd, "fc", 2, 1, 2, 5, true)}}, F32, 0},
		{"factored no token axis", &Batch{N: 4, Layers: []Layer{factored(rnd, "fc", 4, 1, 2, 5, false)}}, F64, 0},
		{"dense", &Batch{N: 3, Layers: []Layer{dense(rnd, "w", 3, 7)}}, F32, 0},
		{"no examples", &Batch{N: 0, IDs: []int64{}, Layers: []Layer{factored(rnd, "fc", 0, 2, 2, 5, true), dense(rnd, "w", 0, 7)}}, F32, 0},
		{"no layers", &Batch{N: 2, IDs: []int64{5, 6}}, F32, 0},
		{"mixed F64", mixed(5), F64, 0},
		{"mixed F32", mixed(5), F32, 0},
		{"mixed F16", mixed(5), F16, 0x1p-11},
		{"mixed BF16", mixed(5), BF16, 0x1p-8},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "g.safetensors")
			if err := WriteFile(path, tc.batch, tc.dtype, map[string]string{"model": "m1", "layers": "ignored"}); err != nil {
				t.Fatal(err)
			}
			f, err := Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if f.N() != tc.batch.N || !reflect.DeepEqual(f.IDs(), tc.batch.IDs) {
				t.Errorf("N = %d, IDs = %v; want %d, %v", f.N(), f.IDs(), tc.batch.N, tc.batch.IDs)
			}
			if md := f.Metadata(); md["format"] != Format || md["model"] != "m1" {
				t.Errorf("metadata %v", md)
			}
			infos := f.Layers()
			if len(infos) != len(tc.batch.Layers) {
				t.Fatalf("%d layers, want %d", len(infos), len(tc.batch.Layers))
			}
			for i, in := range infos {
				l := &tc.batch.Layers[i]
				want := LayerInfo{Name: l.Name, Factored: l.Factored(), D: l.Dim(), DType: tc.dtype}
				if l.Factored() {
					want.TokenAxis, want.Tokens, want.DIn, want.DOut = l.TokenAxis, l.Tokens, l.DIn, l.DOut
				}
				if in != want {
					t.Errorf("layer %d: %+v, want %+v", i, in, want)
				}
			}
			got, err := f.ReadAll()
			if err != nil {
				t.Fatal(err)
			}
			if got.N != tc.batch.N || len(got.Layers) != len(tc.batch.Layers) {
				t.Fatalf("got N=%d with %d layers", got.N, len(got.Layers))
			}
			for i := range got.Layers {
				g, w := &got.Layers[i], &tc.batch.Layers[i]
				if g.Name != w.Name || g.Factored() != w.Factored() || g.Tokens != w.Tokens || g.TokenAxis != w.TokenAxis ||
					g.DIn != w.DIn || g.DOut != w.DOut || g.D != w.D {
					t.Errorf("layer %d: got %+v", i, *g)
				}
				for _, p := range [][2][]float64{{g.A, w.A}, {g.S, w.S}, {g.Grad, w.Grad}} {
					if len(p[0]) != len(p[1]) {
						t.Fatalf("layer %q: %d values, want %d", g.Name, len(p[0]), len(p[1]))
					}
					for j := range p[0] {
						if math.Abs(p[0][j]-p[1][j]) > tc.tol*math.Abs(p[1][j]) {
							t.Fatalf("layer %q value %d: %g, want %g", g.Name, j, p[0][j], p[1][j])
						}
					}
				}
			}
		})
	}
}

func TestLayerOrder(t *testing.T) {
	ts := []safetensors.Tensor{zeros(t, "b.grad", 1, 2), zeros(t, "c.a", 1, 2), zeros(t, "c.s", 1, 2), zeros(t, "a.grad", 1, 3)}
	for _, tc := range []struct {
		meta map[string]string
		want []string
	}{
		{nil, []string{"a", "b", "c"}},
		{map[string]string{"format": Format}, []string{"a", "b", "c"}},
		{map[string]string{"format": "pt"}, []string{"a", "b", "c"}},
		{map[string]string{"layers": "c,a,b"}, []string{"c", "a", "b"}},
		{map[string]string{"layers": "b,c,a"}, []string{"b", "c", "a"}},
	} {
		f, err := parse(rawBytes(t, ts, tc.meta), "order")
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, l := range f.Layers() {
			got = append(got, l.Name)
		}
		b, err := f.ReadAll()
		if err != nil {
			t.Fatal(err)
		}
		for i := range b.Layers {
			if b.Layers[i].Name != got[i] {
				t.Errorf("batch layer %d is %q, want %q", i, b.Layers[i].Name, got[i])
			}
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("metadata %v: order %v, want %v", tc.meta, got, tc.want)
		}
	}
}

func TestOpenErrors(t *testing.T) {
	i64 := func(name string, v []int64, shape ...int) safetensors.Tensor {
		data, _ := safetensors.EncodeInt64s(safetensors.I64, v)
		return safetensors.Tensor{Name: name, DType: safetensors.I64, Shape: shape, Data: data}
	}
	i32 := safetensors.Tensor{Name: "ids", DType: safetensors.I32, Shape: []int{2}, Data: make([]byte, 8)}
	u8 := safetensors.Tensor{Name: "fc.grad", DType: safetensors.U8, Shape: []int{2, 3}, Data: make([]byte, 6)}
	f16s := safetensors.Tensor{Name: "fc.s", DType: safetensors.F16, Shape: []int{2, 3}, Data: make([]byte, 12)}
	for _, tc := range []struct {
		name    string
		tensors []safetensors.Tensor
		meta    map[string]string
		want    error
		substrs []string
	}{
		{"a and s differ in n", []safetensors.Tensor{zeros(t, "fc.a", 2, 4), zeros(t, "fc.s", 3, 4)}, nil, ErrShape, []string{`layer "fc"`, "s:", "n, T or rank"}},
		{"a and s differ in T", []safetensors.Tensor{zeros(t, "enc.fc.a", 2, 3, 4), zeros(t, "enc.fc.s", 2, 2, 4)}, nil, ErrShape, []string{`layer "enc.fc"`, "[2 2 4]"}},
		{"a and s differ in rank", []safetensors.Tensor{zeros(t, "fc.a", 2, 1, 4), zeros(t, "fc.s", 2, 4)}, nil, ErrShape, []string{`layer "fc"`}},
		{"a rank 1", []safetensors.Tensor{zeros(t, "fc.a", 2), zeros(t, "fc.s", 2)}, nil, ErrShape, []string{`layer "fc"`, "a:", "[n, T, d]"}},
		{"zero d_out", []safetensors.Tensor{zeros(t, "fc.a", 2, 3), zeros(t, "fc.s", 2, 0)}, nil, ErrShape, []string{`layer "fc"`, "s:"}},
		{"missing s", []safetensors.Tensor{zeros(t, "fc.a", 2, 4)}, nil, ErrFormat, []string{`layer "fc"`, `missing tensor "fc.s"`}},
		{"missing a", []safetensors.Tensor{zeros(t, "fc.s", 2, 4)}, nil, ErrFormat, []string{`layer "fc"`, `missing tensor "fc.a"`}},
		{"grad with a", []safetensors.Tensor{zeros(t, "fc.a", 2, 4), zeros(t, "fc.s", 2, 4), zeros(t, "fc.grad", 2, 16)}, nil, ErrFormat, []string{`layer "fc"`, "grad"}},
		{"grad rank 3", []safetensors.Tensor{zeros(t, "fc.grad", 2, 4, 4)}, nil, ErrShape, []string{`layer "fc"`, "grad:", "[2 4 4]"}},
		{"unknown suffix", []safetensors.Tensor{zeros(t, "fc.weight", 2, 4)}, nil, ErrFormat, []string{`layer "fc"`, `"fc.weight"`}},
		{"no dot", []safetensors.Tensor{zeros(t, "weights", 2, 4)}, nil, ErrFormat, []string{`"weights"`}},
		{"comma in layer name", []safetensors.Tensor{zeros(t, "x,y.grad", 2, 4)}, nil, ErrFormat, []string{`layer "x,y"`, "comma"}},
		{"empty layer name", []safetensors.Tensor{zeros(t, ".grad", 2, 4)}, nil, ErrFormat, []string{`".grad"`}},
		{"integer layer", []safetensors.Tensor{u8}, nil, ErrDType, []string{`layer "fc"`, "grad:", "U8"}},
		{"a and s dtypes differ", []safetensors.Tensor{zeros(t, "fc.a", 2, 4), f16s}, nil, ErrDType, []string{`layer "fc"`, "F16", "F32"}},
		{"layers differ in n", []safetensors.Tensor{zeros(t, "x.grad", 2, 4), zeros(t, "y.grad", 3, 4)}, nil, ErrShape, []string{`layer "y"`, "3 examples", `"x" has 2`}},
		{"ids dtype", []safetensors.Tensor{zeros(t, "x.grad", 2, 4), i32}, nil, ErrDType, []string{"ids", "I32"}},
		{"ids length", []safetensors.Tensor{zeros(t, "x.grad", 2, 4), i64("ids", []int64{1, 2, 3}, 3)}, nil, ErrShape, []string{"ids", "[3]"}},
		{"ids rank", []safetensors.Tensor{zeros(t, "x.grad", 2, 4), i64("ids", []int64{1, 2}, 2, 1)}, nil, ErrShape, []string{"ids", "[2 1]"}},
		{"format", []safetensors.Tensor{zeros(t, "x.grad", 2, 4)}, map[string]string{"format": "goinfluence.scores/v1"}, ErrFormat, []string{"metadata", `"goinfluence.scores/v1"`}},
		{"layers missing", []safetensors.Tensor{zeros(t, "x.grad", 2, 4)}, map[string]string{"layers": "x,ghost"}, ErrFormat, []string{"metadata", `"ghost"`}},
		{"layers extra", []safetensors.Tensor{zeros(t, "x.grad", 2, 4), zeros(t, "y.grad", 2, 4)}, map[string]string{"layers": "x"}, ErrFormat, []string{"metadata", `omits layers ["y"]`}},
		{"layers empty", []safetensors.Tensor{zeros(t, "x.grad", 2, 4)}, map[string]string{"layers": ""}, ErrFormat, []string{"metadata", `["x"]`}},
		{"layers twice", []safetensors.Tensor{zeros(t, "x.grad", 2, 4)}, map[string]string{"layers": "x,x"}, ErrFormat, []string{`layer "x"`, "twice"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "bad.safetensors")
			if err := os.WriteFile(path, rawBytes(t, tc.tensors, tc.meta), 0o644); err != nil {
				t.Fatal(err)
			}
			f, err := Open(path)
			if err == nil {
				f.Close()
				t.Fatal("Open succeeded")
			}
			var e *Error
			if !errors.As(err, &e) || e.Path != path || !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want an *Error for %s wrapping %v", err, path, tc.want)
			}
			for _, s := range append(tc.substrs, path) {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("%q does not mention %q", err, s)
				}
			}
		})
	}
}

func TestOpenNotExist(t *testing.T) {
	_, err := Open(filepath.Join(t.TempDir(), "missing"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("got %v, want ErrNotExist", err)
	}
}

func TestNonFinite(t *testing.T) {
	for _, bad := range []float64{math.NaN(), math.Inf(1), math.Inf(-1)} {
		// Layer "enc.fc" has 3 tokens × 2 inputs per example; example 3 is bad.
		a := make([]float64, 5*3*2)
		a[3*6+4] = bad
		ts := []safetensors.Tensor{
			f32(t, "enc.fc.a", a, 5, 3, 2), zeros(t, "enc.fc.s", 5, 3, 1), zeros(t, "w.grad", 5, 2),
		}
		f, err := parse(rawBytes(t, ts, nil), "nan.safetensors")
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range [][2]int{{0, 5}, {2, 4}, {3, 4}} {
			_, err := f.Read(r[0], r[1])
			var e *Error
			if !errors.As(err, &e) || !errors.Is(err, ErrNonFinite) || e.Layer != "enc.fc" || e.Field != "a" || e.Example != 3 {
				t.Fatalf("Read(%d, %d) = %v, want a non-finite error in example 3 of layer enc.fc", r[0], r[1], err)
			}
			for _, s := range []string{"nan.safetensors", `layer "enc.fc"`, "example 3", "offset 4"} {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("%q does not mention %q", err, s)
				}
			}
		}
		if _, err := f.Read(0, 3); err != nil {
			t.Errorf("Read(0, 3), before the bad example: %v", err)
		}
		if _, err := f.Read(4, 5); err != nil {
			t.Errorf("Read(4, 5), after the bad example: %v", err)
		}
	}
}

func TestTruncated(t *testing.T) {
	full := fileBytes(t, mixed(3), F16, nil)
	for n := 0; n < len(full); n++ {
		_, err := parse(full[:n], "cut")
		if !errors.Is(err, ErrTruncated) && !errors.Is(err, ErrFormat) {
			t.Fatalf("file cut to %d of %d bytes: got %v", n, len(full), err)
		}
	}
	if _, err := parse(full[:len(full)-1], "cut"); !errors.Is(err, ErrTruncated) {
		t.Errorf("file missing its last byte: got %v, want ErrTruncated", err)
	}
}

func TestReadRange(t *testing.T) {
	const n = 6
	f, err := parse(fileBytes(t, mixed(n), BF16, nil), "range")
	if err != nil {
		t.Fatal(err)
	}
	all, err := f.ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	for lo := 0; lo <= n; lo++ {
		for hi := lo; hi <= n; hi++ {
			b, err := f.Read(lo, hi)
			if err != nil {
				t.Fatalf("Read(%d, %d): %v", lo, hi, err)
			}
			want := slice(all, lo, hi)
			if !reflect.DeepEqual(b, want) {
				t.Fatalf("Read(%d, %d) differs from ReadAll's examples", lo, hi)
			}
		}
	}
	for _, r := range [][2]int{{-1, 2}, {2, 1}, {0, n + 1}} {
		if _, err := f.Read(r[0], r[1]); !errors.Is(err, ErrShape) {
			t.Errorf("Read(%d, %d) = %v, want ErrShape", r[0], r[1], err)
		}
	}
	f.Close()
	if _, err := f.Read(0, 1); err == nil {
		t.Error("Read after Close succeeded")
	}
}

// slice returns examples [lo, hi) of b.
func slice(b *Batch, lo, hi int) *Batch {
	out := &Batch{N: hi - lo, IDs: append([]int64{}, b.IDs[lo:hi]...)}
	for _, l := range b.Layers {
		c := l
		if l.Factored() {
			c.A = append([]float64{}, l.A[lo*l.Tokens*l.DIn:hi*l.Tokens*l.DIn]...)
			c.S = append([]float64{}, l.S[lo*l.Tokens*l.DOut:hi*l.Tokens*l.DOut]...)
		} else {
			c.Grad = append([]float64{}, l.Grad[lo*l.D:hi*l.D]...)
		}
		out.Layers = append(out.Layers, c)
	}
	return out
}

func TestWriteErrors(t *testing.T) {
	nan := mixed(3)
	nan.Layers[1].Grad[2*6+1] = math.NaN()
	big := mixed(3)
	big.Layers[0].S[1*3*2+5] = 1e6
	comma := mixed(2)
	comma.Layers[2].Name = "a,b"
	for _, tc := range []struct {
		name    string
		batch   *Batch
		dtype   DType
		want    error
		substrs []string
	}{
		{"dtype", mixed(2), "I8", ErrDType, []string{"I8"}},
		{"nil", nil, F32, ErrShape, []string{"nil"}},
		{"NaN", nan, F32, ErrNonFinite, []string{`layer "emb.weight"`, "grad", "example 2"}},
		{"F16 overflow", big, F16, ErrRange, []string{`layer "encoder.fc1"`, "s:", "example 1", "1e+06", "offset 5"}},
		{"BF16 holds it", big, BF16, nil, nil},
		{"comma", comma, F32, ErrFormat, []string{`"a,b"`}},
		{"ids length", &Batch{N: 2, IDs: []int64{1}}, F32, ErrShape, []string{"ids"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "out.safetensors")
			err := WriteFile(path, tc.batch, tc.dtype, nil)
			if tc.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			for _, s := range append(tc.substrs, path) {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("%q does not mention %q", err, s)
				}
			}
			if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("failed WriteFile left a file: %v", err)
			}
		})
	}
}
