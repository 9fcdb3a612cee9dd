package models

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/goinfluence/goinfluence/internal/safetensors"
	"github.com/goinfluence/goinfluence/linalg"
)

func TestCheckpointRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(8, 8))
	for _, tc := range []struct {
		name  string
		m     Model
		sizes string
	}{
		{"logistic", NewLogistic(5, 0.1), "5,2"},
		{"softmax", NewSoftmax(5, 4, 1e-3), "5,4"},
		{"mlp-relu", mustMLP([]int{5, 7, 6, 3}, ReLU, 1.0/3, 2), "5,7,6,3"},
		{"mlp-tanh-0", mustMLP([]int{5, 3}, Tanh, 0, 2), "5,3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for i := range tc.m.Params() {
				tc.m.Params()[i] = rng.NormFloat64()
			}
			path := filepath.Join(t.TempDir(), "model.safetensors")
			if err := Save(path, tc.m); err != nil {
				t.Fatal(err)
			}
			got, err := Load(path)
			if err != nil {
				t.Fatal(err)
			}
			if got.Kind() != tc.m.Kind() || got.L2() != tc.m.L2() || got.Classes() != tc.m.Classes() ||
				!slices.Equal(got.Layers(), tc.m.Layers()) {
				t.Errorf("loaded %s l2=%v classes=%d layers=%v, saved %s l2=%v classes=%d layers=%v",
					got.Kind(), got.L2(), got.Classes(), got.Layers(), tc.m.Kind(), tc.m.L2(), tc.m.Classes(), tc.m.Layers())
			}
			if !slices.Equal(got.Params(), tc.m.Params()) {
				t.Error("parameters differ after the round trip")
			}
			if want, ok := tc.m.(*MLP); ok {
				g := got.(*MLP)
				if g.Activation() != want.Activation() || !slices.Equal(g.Sizes(), want.Sizes()) {
					t.Errorf("loaded %v %v, saved %v %v", g.Activation(), g.Sizes(), want.Activation(), want.Sizes())
				}
			}
			x := linalg.NewDense64(4, 5, nil)
			for i := range x.Data {
				x.Data[i] = rng.NormFloat64()
			}
			if !slices.Equal(got.Probs(x).Data, tc.m.Probs(x).Data) {
				t.Error("probabilities differ after the round trip")
			}

			f, err := safetensors.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if f.Metadata["format"] != CheckpointFormat || f.Metadata["kind"] != tc.m.Kind() || f.Metadata["sizes"] != tc.sizes {
				t.Errorf("metadata %v", f.Metadata)
			}
			for _, l := range tc.m.Layers() {
				in, ok := f.Info(l.Name)
				if !ok || in.DType != safetensors.F64 || !slices.Equal(in.Shape, []int{l.DOut, l.DIn}) {
					t.Errorf("tensor %s: %+v, %v", l.Name, in, ok)
				}
			}
		})
	}
}

// TestCheckpointFloat32 checks that a checkpoint written by another tool in
// float32 loads, converted.
func TestCheckpointFloat32(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f32.safetensors")
	data, err := safetensors.EncodeFloat64s(safetensors.F32, []float64{0.5, -1, 2, 0.25, 4, -8})
	if err != nil {
		t.Fatal(err)
	}
	meta := map[string]string{"format": CheckpointFormat, "kind": "softmax", "l2": "0.5", "sizes": "2,2"}
	if err := safetensors.WriteFile(path, []safetensors.Tensor{{Name: "linear", DType: safetensors.F32, Shape: []int{2, 3}, Data: data}}, meta); err != nil {
		t.Fatal(err)
	}
	m, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(m.Params(), []float64{0.5, -1, 2, 0.25, 4, -8}) || m.L2() != 0.5 {
		t.Errorf("loaded %v, l2 %v", m.Params(), m.L2())
	}
}

func TestCheckpointLoadErrors(t *testing.T) {
	dir := t.TempDir()
	f64 := func(v ...float64) []byte {
		b, err := safetensors.EncodeFloat64s(safetensors.F64, v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	mlpMeta := func(kv ...string) map[string]string {
		m := map[string]string{"format": CheckpointFormat, "kind": "mlp", "l2": "0.1", "sizes": "1,2", "activation": "tanh"}
		for i := 0; i < len(kv); i += 2 {
			if kv[i+1] == "<delete>" {
				delete(m, kv[i])
			} else {
				m[kv[i]] = kv[i+1]
			}
		}
		return m
	}
	fc1 := safetensors.Tensor{Name: "fc1", DType: safetensors.F64, Shape: []int{2, 2}, Data: f64(1, 2, 3, 4)}
	ints, err := safetensors.EncodeInt64s(safetensors.I64, []int64{1, 2, 3, 4})
	if err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name    string
		meta    map[string]string
		tensors []safetensors.Tensor
		field   string // expected CheckpointError field
	}{
		{"valid", mlpMeta(), []safetensors.Tensor{fc1}, ""},
		{"no metadata", nil, []safetensors.Tensor{fc1}, `metadata "format"`},
		{"wrong format", mlpMeta("format", "torch"), []safetensors.Tensor{fc1}, `metadata "format"`},
		{"no kind", mlpMeta("kind", "<delete>"), []safetensors.Tensor{fc1}, `metadata "kind"`},
		{"unknown kind", mlpMeta("kind", "svm"), []safetensors.Tensor{fc1}, `metadata "kind"`},
		{"bad l2", mlpMeta("l2", "lots"), []safetensors.Tensor{fc1}, `metadata "l2"`},
		{"negative l2", mlpMeta("l2", "-1"), []safetensors.Tensor{fc1}, `metadata "l2"`},
		{"NaN l2", mlpMeta("l2", "NaN"), []safetensors.Tensor{fc1}, `metadata "l2"`},
		{"no sizes", mlpMeta("sizes", "<delete>"), []safetensors.Tensor{fc1}, `metadata "sizes"`},
		{"bad sizes", mlpMeta("sizes", "1,x"), []safetensors.Tensor{fc1}, `metadata "sizes"`},
		{"huge sizes", mlpMeta("sizes", "1,99999999999999999999"), []safetensors.Tensor{fc1}, `metadata "sizes"`},
		{"one class", mlpMeta("sizes", "1,1"), []safetensors.Tensor{fc1}, `metadata "sizes"`},
		{"zero width", mlpMeta("sizes", "1,0,2"), []safetensors.Tensor{fc1}, `metadata "sizes"`},
		{"no activation", mlpMeta("activation", "<delete>"), []safetensors.Tensor{fc1}, `metadata "activation"`},
		{"bad activation", mlpMeta("activation", "gelu"), []safetensors.Tensor{fc1}, `metadata "activation"`},
		{"missing tensor", mlpMeta("sizes", "1,2,2"), []safetensors.Tensor{fc1}, `tensor "fc2"`},
		{"no tensors", mlpMeta(), nil, `tensor "fc1"`},
		{"shape mismatch", mlpMeta("sizes", "1,3"), []safetensors.Tensor{fc1}, `tensor "fc1"`},
		{"transposed", mlpMeta(), []safetensors.Tensor{{Name: "fc1", DType: safetensors.F64, Shape: []int{4}, Data: f64(1, 2, 3, 4)}}, `tensor "fc1"`},
		{"extra tensor", mlpMeta(), []safetensors.Tensor{fc1, {Name: "fc9", DType: safetensors.F64, Shape: []int{1}, Data: f64(1)}}, `tensor "fc9"`},
		{"integer tensor", mlpMeta(), []safetensors.Tensor{{Name: "fc1", DType: safetensors.I64, Shape: []int{2, 2}, Data: ints}}, `tensor "fc1"`},
		{"NaN value", mlpMeta(), []safetensors.Tensor{{Name: "fc1", DType: safetensors.F64, Shape: []int{2, 2}, Data: f64(1, math.NaN(), 3, 4)}}, `tensor "fc1"`},
		{"logistic with 3 classes", mlpMeta("kind", "logistic", "sizes", "1,3"), []safetensors.Tensor{{Name: "linear", DType: safetensors.F64, Shape: []int{1, 2}, Data: f64(1, 2)}}, `metadata "sizes"`},
		{"softmax wrong layer", mlpMeta("kind", "softmax"), []safetensors.Tensor{fc1}, `tensor "linear"`},
		{"softmax three sizes", mlpMeta("kind", "softmax", "sizes", "1,2,2"), []safetensors.Tensor{fc1}, `metadata "sizes"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_")+".safetensors")
			if err := safetensors.WriteFile(path, tc.tensors, tc.meta); err != nil {
				t.Fatal(err)
			}
			m, err := Load(path)
			if tc.field == "" {
				if err != nil {
					t.Fatalf("valid checkpoint: %v", err)
				}
				return
			}
			var ce *CheckpointError
			if !errors.As(err, &ce) || m != nil {
				t.Fatalf("Load = %v, %v; want a *CheckpointError", m, err)
			}
			if ce.Field != tc.field || ce.Path != path || !strings.Contains(err.Error(), path) {
				t.Errorf("error %q: field %q, want %q", err, ce.Field, tc.field)
			}
		})
	}
}

// TestCheckpointCorrupt damages a valid file at random and checks that Load
// never panics and never returns non-finite parameters; a damaged header may
// still parse (a digit of l2 changed), so only changes of length must fail.
func TestCheckpointCorrupt(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "good.safetensors")
	if err := Save(path, mustMLP([]int{3, 4, 2}, ReLU, 0.1, 1)); err != nil {
		t.Fatal(err)
	}
	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Load(filepath.Join(dir, "missing.safetensors")); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 200; i++ {
		b := slices.Clone(good)
		switch i % 4 {
		case 0: // truncate
			b = b[:rng.IntN(len(b))]
		case 1: // flip bytes in the header
			hdr := min(len(b), 8+int(b[0])+int(b[1])<<8)
			for k := 0; k < 1+rng.IntN(3); k++ {
				b[rng.IntN(hdr)] ^= byte(1 + rng.IntN(255))
			}
		case 2: // overwrite data with random bytes (may give NaN or Inf)
			for k := len(b) - 64; k < len(b); k++ {
				b[k] = byte(rng.Uint32())
			}
		case 3: // append garbage
			b = append(b, "garbage"...)
		}
		p := filepath.Join(dir, fmt.Sprintf("bad%d.safetensors", i))
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		func() {
			defer func() {
				if r := recover(); r != nil {
					t.Fatalf("case %d: Load panicked: %v", i, r)
				}
			}()
			m, err := Load(p)
			if err == nil && (i%4 == 0 || i%4 == 3) {
				t.Errorf("case %d: truncated or extended file loaded", i)
			}
			if err == nil && m == nil {
				t.Errorf("case %d: nil model and nil error", i)
			}
			if err == nil && !isFiniteVec(m.Params()) {
				t.Errorf("case %d: loaded non-finite parameters", i)
			}
		}()
	}
}

// fakeModel is a model of a kind checkpoints do not know.
type fakeModel struct{ *MLP }

func (fakeModel) Kind() string { return "fake" }

func TestCheckpointSaveErrors(t *testing.T) {
	dir := t.TempDir()
	nan := mustMLP([]int{2, 2}, ReLU, 0, 1)
	nan.Params()[3] = math.NaN()
	for _, tc := range []struct {
		name string
		m    Model
		path string
	}{
		{"nil model", nil, filepath.Join(dir, "a")},
		{"NaN parameter", nan, filepath.Join(dir, "b")},
		{"unknown kind", fakeModel{mustMLP([]int{2, 2}, ReLU, 0, 1)}, filepath.Join(dir, "c")},
		{"missing directory", mustMLP([]int{2, 2}, ReLU, 0, 1), filepath.Join(dir, "no", "such", "dir")},
	} {
		if err := Save(tc.path, tc.m); err == nil {
			t.Errorf("%s: no error", tc.name)
		}
		if tc.name != "missing directory" {
			if _, err := os.Stat(tc.path); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("%s: file written despite the error", tc.name)
			}
		}
	}
}

func ExampleSave() {
	dir, err := os.MkdirTemp("", "checkpoint")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "mlp.safetensors")

	m, err := NewMLP([]int{64, 32, 10}, Tanh, 1e-4, 7)
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := Save(path, m); err != nil {
		fmt.Println(err)
		return
	}
	loaded, err := Load(path)
	if err != nil {
		fmt.Println(err)
		return
	}
	l := loaded.(*MLP)
	fmt.Println(l.Kind(), l.Sizes(), l.Activation(), l.L2())
	fmt.Println("same parameters:", slices.Equal(l.Params(), m.Params()))
	// Output:
	// mlp [64 32 10] tanh 0.0001
	// same parameters: true
}
