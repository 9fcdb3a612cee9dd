package cuda

import (
	"context"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/goinfluence/goinfluence/ekfac"
	"github.com/goinfluence/goinfluence/gradients"
	"github.com/goinfluence/goinfluence/hessian"
)

// TestProjectionOnGPU runs the pipeline's projections through the
// backend's accel.Projector on the GPU and holds them to the host's, bit for
// bit, as the design promises.
func TestProjectionOnGPU(t *testing.T) {
	b := gpuKernels(t)
	rng := rand.New(rand.NewPCG(11, 12))
	fill := func(n int) []float64 {
		v := make([]float64, n)
		for i := range v {
			v[i] = rng.NormFloat64()
		}
		return v
	}
	const n = 37
	batch := &gradients.Batch{N: n, Layers: []gradients.Layer{
		{Name: "fc1", DIn: 65, DOut: 40, Tokens: 3, TokenAxis: true, A: fill(n * 3 * 65), S: fill(n * 3 * 40)},
		{Name: "fc2", DIn: 41, DOut: 10, Tokens: 1, A: fill(n * 41), S: fill(n * 10)},
	}}
	for _, p := range []gradients.Projection{
		{Kind: gradients.Rademacher, K: 300, Seed: 7},
		{Kind: gradients.SJLT, K: 64, Seed: 8},
		{Kind: gradients.Kronecker, KIn: 16, KOut: 8, Seed: 9},
	} {
		want, err := p.Apply(context.Background(), batch)
		if err != nil {
			t.Fatal(err)
		}
		dev := &strictProjector{Backend: b, t: t}
		got, err := p.ApplyWith(context.Background(), batch, gradients.ApplyOptions{Backend: dev})
		if err != nil {
			t.Fatal(err)
		}
		if dev.calls == 0 {
			t.Errorf("%v: no product ran on the GPU", p.Kind)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%v: the GPU's projection differs from the host's", p.Kind)
		}
	}
}

// strictProjector fails the test when a projection on the GPU fails, which
// ApplyWith would otherwise hide by computing on the host.
type strictProjector struct {
	*Backend
	t     *testing.T
	calls int
}

func (s *strictProjector) ProjectRademacher(dst, x []float64, d, k int, seed uint64, stream uint32) error {
	s.calls++
	err := s.Backend.ProjectRademacher(dst, x, d, k, seed, stream)
	if err != nil {
		s.t.Errorf("ProjectRademacher on the GPU: %v", err)
	}
	return err
}

func (s *strictProjector) ProjectSJLT(dst, x []float64, d, k int, seed uint64, stream uint32) error {
	s.calls++
	err := s.Backend.ProjectSJLT(dst, x, d, k, seed, stream)
	if err != nil {
		s.t.Errorf("ProjectSJLT on the GPU: %v", err)
	}
	return err
}

// TestPreconditionOnGPU runs EK-FAC preconditioning with the scaling on the
// GPU (accel.EKFACScaler) and holds it to the host's: the scaling is exact,
// the rotations are products on the backend, so to a float64 tolerance.
func TestPreconditionOnGPU(t *testing.T) {
	b := gpuKernels(t)
	rng := rand.New(rand.NewPCG(13, 14))
	batch := func(n int) *gradients.Batch {
		fill := func(k int) []float64 {
			v := make([]float64, k)
			for i := range v {
				v[i] = rng.NormFloat64()
			}
			return v
		}
		return &gradients.Batch{N: n, Layers: []gradients.Layer{
			{Name: "fc1", DIn: 33, DOut: 20, Tokens: 2, TokenAxis: true, A: fill(n * 2 * 33), S: fill(n * 2 * 20)},
		}}
	}
	ctx := context.Background()
	f, err := ekfac.Fit(ctx, ekfac.EKFAC, b.Host(), ekfac.BatchSource(batch(80)), nil)
	if err != nil {
		t.Fatal(err)
	}
	q := batch(11)
	opt := ekfac.ScoreOptions{Damping: hessian.Damping{Heuristic: true}}
	want, err := f.Precondition(ctx, b.Host(), q, opt)
	if err != nil {
		t.Fatal(err)
	}
	dev := &strictScaler{Backend: b, t: t}
	got, err := f.Precondition(ctx, dev, q, opt)
	if err != nil {
		t.Fatal(err)
	}
	if dev.calls != 1 {
		t.Fatalf("%d scaling calls on the GPU, want 1", dev.calls)
	}
	var num, den float64
	for i := range want.Data {
		num += (got.Data[i] - want.Data[i]) * (got.Data[i] - want.Data[i])
		den += want.Data[i] * want.Data[i]
	}
	if num > 1e-24*den {
		t.Errorf("relative error² %.3g against the host", num/den)
	}
}

// strictScaler fails the test when the scaling on the GPU fails.
type strictScaler struct {
	*Backend
	t     *testing.T
	calls int
}

func (s *strictScaler) ScaleEKFAC(x, lambda []float64, delta float64) error {
	s.calls++
	err := s.Backend.ScaleEKFAC(x, lambda, delta)
	if err != nil {
		s.t.Errorf("ScaleEKFAC on the GPU: %v", err)
	}
	return err
}
