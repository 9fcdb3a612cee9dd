package gradients

import (
	"errors"
	"reflect"
	"testing"

	"github.com/goinfluence/goinfluence/internal/safetensors"
)

func FuzzParseGradients(f *testing.F) {
	f.Add(fileBytes(f, mixed(2), F16, nil))
	f.Add(fileBytes(f, mixed(1), BF16, map[string]string{"k": "v"}))
	f.Add(fileBytes(f, &Batch{N: 0}, F32, nil))
	one := mixed(2)
	one.Layers = one.Layers[:1]
	f.Add(fileBytes(f, one, F32, nil))
	f.Add(rawBytes(f, []safetensors.Tensor{zeros(f, "x.grad", 2, 3), zeros(f, "y.a", 2, 1), zeros(f, "y.s", 2, 1)}, nil))
	f.Add(rawBytes(f, []safetensors.Tensor{f32(f, "e.a", []float64{1, 2}, 1, 1, 2), f32(f, "e.s", []float64{3}, 1, 1, 1)}, map[string]string{"layers": "e", "format": Format}))
	f.Add(rawBytes(f, []safetensors.Tensor{zeros(f, "x.grad", 0, 3), zeros(f, "y.a", 0, 5, 1), zeros(f, "y.s", 0, 5, 2)}, nil))
	f.Fuzz(func(t *testing.T, buf []byte) {
		g, err := parse(buf, "fuzz")
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.Path != "fuzz" {
				t.Fatalf("error %v is not an *Error naming the file", err)
			}
			return
		}
		b, err := g.ReadAll()
		if err != nil {
			if !errors.Is(err, ErrNonFinite) {
				t.Fatalf("ReadAll of an opened file: %v", err)
			}
			return
		}
		if err := b.Validate(); err != nil {
			t.Fatalf("ReadAll returned an invalid batch: %v", err)
		}
		if b.N > 0 {
			if _, err := g.Read(b.N/2, b.N); err != nil {
				t.Fatalf("Read(%d, %d): %v", b.N/2, b.N, err)
			}
		}
		// Any accepted file is rewritten losslessly as F64.
		h, err := parse(fileBytes(t, b, F64, nil), "again")
		if err != nil {
			t.Fatalf("re-parsing: %v", err)
		}
		c, err := h.ReadAll()
		if err != nil {
			t.Fatalf("re-reading: %v", err)
		}
		if !reflect.DeepEqual(b, c) {
			t.Fatalf("batch changed on rewrite:\n%+v\n%+v", b, c)
		}
	})
}
