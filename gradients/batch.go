package gradients

import (
	"fmt"
	"math"

	"github.com/goinfluence/goinfluence/linalg"
)

// Layer holds the per-example gradients of one layer for the examples of a
// Batch, either factored (activations A and output gradients S per token row)
// or dense (the flattened gradient).
//
// For a factored layer with weight W (DOut × DIn, a bias being the last
// activation column of ones), example n has Tokens rows; A holds
// N·Tokens·DIn values laid out [n][t][i] and S holds N·Tokens·DOut values laid
// out [n][t][o]. The example's gradient is G_n = Σ_t s_{n,t} a_{n,t}ᵀ.
//
// For a dense layer Grad holds N·D values laid out [n][i], with i = row·DIn+col
// when the gradient comes from a DOut × DIn weight.
type Layer struct {
	Name string

	// Factored layers.
	DIn, DOut int
	Tokens    int  // token rows per example, ≥ 1
	TokenAxis bool // whether the file had a token axis ([n, T, d] rather than [n, d])
	A, S      []float64

	// Dense layers.
	D    int
	Grad []float64
}

// Factored reports whether the layer stores activations and output gradients.
func (l *Layer) Factored() bool { return l.Grad == nil && (l.A != nil || l.S != nil || l.DIn > 0) }

// Dim returns the length of the layer's flattened gradient.
func (l *Layer) Dim() int {
	if l.Factored() {
		return l.DIn * l.DOut
	}
	return l.D
}

// Acts returns the activations of example n as a Tokens × DIn matrix view.
func (l *Layer) Acts(n int) *linalg.Dense64 {
	sz := l.Tokens * l.DIn
	return linalg.NewDense64(l.Tokens, l.DIn, l.A[n*sz:(n+1)*sz])
}

// Outs returns the output gradients of example n as a Tokens × DOut matrix view.
func (l *Layer) Outs(n int) *linalg.Dense64 {
	sz := l.Tokens * l.DOut
	return linalg.NewDense64(l.Tokens, l.DOut, l.S[n*sz:(n+1)*sz])
}

// Gradient writes the flattened gradient of example n into dst (length Dim):
// Σ_t s_t a_tᵀ row-major for a factored layer, the stored row for a dense one.
func (l *Layer) Gradient(n int, dst []float64) {
	if !l.Factored() {
		copy(dst, l.Grad[n*l.D:(n+1)*l.D])
		return
	}
	clear(dst[:l.DIn*l.DOut])
	a, s := l.Acts(n), l.Outs(n)
	for t := 0; t < l.Tokens; t++ {
		at, st := a.Row(t), s.Row(t)
		for o, so := range st {
			if so == 0 {
				continue
			}
			row := dst[o*l.DIn : (o+1)*l.DIn]
			for i, ai := range at {
				row[i] += so * ai
			}
		}
	}
}

// Batch is the per-example gradients of N examples over an ordered list of
// layers. Layer order is the order of the flattened parameter vector.
type Batch struct {
	N      int
	IDs    []int64 // optional, length N
	Layers []Layer
}

// Dim returns the total flattened gradient length over all layers.
func (b *Batch) Dim() int {
	d := 0
	for i := range b.Layers {
		d += b.Layers[i].Dim()
	}
	return d
}

// Flatten returns the N × Dim matrix of flattened per-example gradients,
// layers concatenated in order.
func (b *Batch) Flatten() *linalg.Dense64 {
	g := linalg.NewDense64(b.N, b.Dim(), nil)
	off := 0
	for li := range b.Layers {
		l := &b.Layers[li]
		d := l.Dim()
		for n := 0; n < b.N; n++ {
			l.Gradient(n, g.Row(n)[off:off+d])
		}
		off += d
	}
	return g
}

// Validate checks shapes and that every value is finite. Errors name the
// layer, the tensor and the example.
func (b *Batch) Validate() error {
	if err := b.CheckShapes(); err != nil {
		return err
	}
	for li := range b.Layers {
		if err := b.Layers[li].CheckFinite(); err != nil {
			return err
		}
	}
	return nil
}

// CheckShapes is Validate without the check of the values, for callers
// that check them in a pass of their own (Layer.CheckFinite).
func (b *Batch) CheckShapes() error {
	if b.IDs != nil && len(b.IDs) != b.N {
		return &Error{Field: "ids", Example: -1, Err: fmt.Errorf("%w: %d ids for %d examples", ErrShape, len(b.IDs), b.N)}
	}
	seen := map[string]bool{}
	for li := range b.Layers {
		l := &b.Layers[li]
		if seen[l.Name] {
			return &Error{Layer: l.Name, Example: -1, Err: fmt.Errorf("%w: layer listed twice", ErrShape)}
		}
		seen[l.Name] = true
		if l.Factored() {
			if l.Tokens < 1 || l.DIn < 1 || l.DOut < 1 {
				return &Error{Layer: l.Name, Example: -1, Err: fmt.Errorf("%w: tokens=%d d_in=%d d_out=%d", ErrShape, l.Tokens, l.DIn, l.DOut)}
			}
			if len(l.A) != b.N*l.Tokens*l.DIn {
				return &Error{Layer: l.Name, Field: "a", Example: -1, Err: fmt.Errorf("%w: %d values, want %d×%d×%d", ErrShape, len(l.A), b.N, l.Tokens, l.DIn)}
			}
			if len(l.S) != b.N*l.Tokens*l.DOut {
				return &Error{Layer: l.Name, Field: "s", Example: -1, Err: fmt.Errorf("%w: %d values, want %d×%d×%d", ErrShape, len(l.S), b.N, l.Tokens, l.DOut)}
			}
			continue
		}
		if l.D < 1 || len(l.Grad) != b.N*l.D {
			return &Error{Layer: l.Name, Field: "grad", Example: -1, Err: fmt.Errorf("%w: %d values for %d examples of dimension %d", ErrShape, len(l.Grad), b.N, l.D)}
		}
	}
	return nil
}

// CheckFinite returns an error naming the layer, the tensor and the example
// of the first NaN or ±Inf among the layer's values, nil if there is none.
// The layer's shape must be valid (Batch.CheckShapes).
func (l *Layer) CheckFinite() error {
	if !l.Factored() {
		return checkFinite(l.Name, "grad", l.Grad, l.D)
	}
	if err := checkFinite(l.Name, "a", l.A, l.Tokens*l.DIn); err != nil {
		return err
	}
	return checkFinite(l.Name, "s", l.S, l.Tokens*l.DOut)
}

func checkFinite(layer, field string, v []float64, per int) error {
	if allFinite(v) {
		return nil
	}
	for i, x := range v {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return &Error{Layer: layer, Field: field, Example: i / per, Err: fmt.Errorf("%w: %v at offset %d", ErrNonFinite, x, i%per)}
		}
	}
	return nil
}

// allFinite reports whether no value of v is NaN or ±Inf: x − x is 0 for
// every finite x and NaN otherwise, and NaN survives any sum. Eight
// independent sums keep the loop from waiting on one addition chain; it is
// run on every batch a fit or scoring takes, so it must cost less than a
// pass of the products that follow.
func allFinite(v []float64) bool {
	var s0, s1, s2, s3, s4, s5, s6, s7 float64
	i := 0
	for ; i+8 <= len(v); i += 8 {
		w := v[i : i+8 : i+8]
		s0 += w[0] - w[0]
		s1 += w[1] - w[1]
		s2 += w[2] - w[2]
		s3 += w[3] - w[3]
		s4 += w[4] - w[4]
		s5 += w[5] - w[5]
		s6 += w[6] - w[6]
		s7 += w[7] - w[7]
	}
	for ; i < len(v); i++ {
		s0 += v[i] - v[i]
	}
	return (s0+s1)+(s2+s3)+(s4+s5)+(s6+s7) == 0
}

// Slice returns the examples [lo, hi) as a batch sharing b's storage.
func (b *Batch) Slice(lo, hi int) *Batch {
	if lo < 0 || hi > b.N || lo > hi {
		panic(fmt.Sprintf("gradients: slice [%d:%d] of %d examples", lo, hi, b.N))
	}
	s := &Batch{N: hi - lo, Layers: make([]Layer, len(b.Layers))}
	if b.IDs != nil {
		s.IDs = b.IDs[lo:hi]
	}
	for i, l := range b.Layers {
		if l.Factored() {
			l.A = l.A[lo*l.Tokens*l.DIn : hi*l.Tokens*l.DIn]
			l.S = l.S[lo*l.Tokens*l.DOut : hi*l.Tokens*l.DOut]
		} else {
			l.Grad = l.Grad[lo*l.D : hi*l.D]
		}
		s.Layers[i] = l
	}
	return s
}
