package influence

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/goinfluence/goinfluence/gradients"
	"github.com/goinfluence/goinfluence/hessian"
	"github.com/goinfluence/goinfluence/linalg"
	"github.com/goinfluence/goinfluence/models"
)

// curvatureProblem is a model with random parameters on random data: its
// exact curvature, the matching matrix-free operator, and query and training
// gradients.
type curvatureProblem struct {
	h            *linalg.Dense64
	op           *models.HVP
	query, train *gradients.Batch
}

func newCurvatureProblem(t *testing.T, m models.Model, features, classes int, seed uint64) *curvatureProblem {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 17))
	for i := range m.Params() {
		m.Params()[i] = 0.5 * rng.NormFloat64()
	}
	data := func(n int) (*linalg.Dense64, []int) {
		x := linalg.NewDense64(n, features, nil)
		for i := range x.Data {
			x.Data[i] = rng.NormFloat64()
		}
		y := make([]int, n)
		for i := range y {
			y[i] = rng.IntN(classes)
		}
		return x, y
	}
	xt, yt := data(150)
	xq, yq := data(6)
	op, err := models.NewHVP(m, xt, yt, nil)
	if err != nil {
		t.Fatal(err)
	}
	return &curvatureProblem{h: m.Curvature(xt, yt, nil), op: op, query: m.Gradients(xq, yq), train: m.Gradients(xt, yt)}
}

func relFrobenius(got, want *linalg.Dense64) float64 {
	var d, w float64
	for i, v := range want.Data {
		d += (got.Data[i] - v) * (got.Data[i] - v)
		w += v * v
	}
	return math.Sqrt(d / w)
}

func TestIterativeAgainstExact(t *testing.T) {
	mlp, err := models.NewMLP([]int{5, 4, 3}, models.Tanh, 0.05, 1)
	if err != nil {
		t.Fatal(err)
	}
	problems := []struct {
		name string
		p    *curvatureProblem
	}{
		{"softmax", newCurvatureProblem(t, models.NewSoftmax(6, 4, 0.05), 6, 4, 1)},
		{"mlp", newCurvatureProblem(t, mlp, 5, 3, 2)},
	}
	const damping = 0.01
	for _, pr := range problems {
		p := pr.p
		ctx := context.Background()
		dim := p.op.Dim()
		exact, err := NewAnalyzer(Exact(p.h, damping)).Scores(ctx, p.query, p.train)
		if err != nil {
			t.Fatal(err)
		}
		lr, _, err := hessian.Arnoldi(ctx, nil, p.op, hessian.ArnoldiOptions{Iterations: 20, TopK: 1})
		if err != nil {
			t.Fatal(err)
		}
		lmax := lr.Values[0] + damping
		methods := []struct {
			m      *Iterative
			maxErr float64
		}{
			{CG(p.op, damping, hessian.CGOptions{Tol: 1e-12}), 1e-8},
			{LiSSA(p.op, damping, hessian.LiSSAOptions{Scale: lmax, Tol: 1e-9, Depth: 100000}), 1e-4},
			{Arnoldi(p.op, damping, hessian.ArnoldiOptions{Iterations: dim, Seed: 4}), 1e-8},
			{Nystrom(p.op, damping, hessian.NystromOptions{Rank: dim, Seed: 4}), 1e-8},
		}
		for _, mc := range methods {
			got, err := NewAnalyzer(mc.m).Scores(ctx, p.query, p.train)
			if err != nil {
				t.Fatalf("%s %s: %v", pr.name, mc.m.Name(), err)
			}
			e := relFrobenius(got, exact)
			rep := mc.m.Report()
			t.Logf("%s (P=%d) %s: relative error %.2g against Cholesky; iterations %v, HVPs %d", pr.name, dim, mc.m.Name(), e, rep.Iterations, rep.HVPs)
			if e > mc.maxErr {
				t.Errorf("%s %s: relative error %.3g > %g", pr.name, mc.m.Name(), e, mc.maxErr)
			}
			if rep == nil || rep.Method != mc.m.Name() {
				t.Errorf("%s %s: report %+v", pr.name, mc.m.Name(), rep)
			}
		}
	}
}

// DataInf through the Analyzer equals its formula evaluated by loops, per
// layer, on a two-layer MLP.
func TestDataInfScores(t *testing.T) {
	mlp, err := models.NewMLP([]int{4, 5, 3}, models.ReLU, 0.05, 3)
	if err != nil {
		t.Fatal(err)
	}
	p := newCurvatureProblem(t, mlp, 4, 3, 3)
	m := DataInf(p.train, hessian.DataInfOptions{Damping: hessian.Damping{Heuristic: true}})
	got, err := NewAnalyzer(m).Scores(context.Background(), p.query, p.train)
	if err != nil {
		t.Fatal(err)
	}
	lam := m.Report().Damping
	if len(lam) != 2 {
		t.Fatalf("damping %v, want one per layer", lam)
	}
	gq, gt := p.query.Flatten(), p.train.Flatten()
	want := linalg.NewDense64(p.query.N, p.train.N, nil)
	off := 0
	for l, layer := range p.train.Layers {
		d := layer.Dim()
		var mean float64
		for i := 0; i < gt.Rows; i++ {
			g := gt.Row(i)[off : off+d]
			for _, v := range g {
				mean += v * v
			}
		}
		if w := 0.1 * mean / float64(gt.Rows*d); math.Abs(lam[l]-w) > 1e-13*w {
			t.Errorf("layer %d: λ = %v, want %v", l, lam[l], w)
		}
		for q := 0; q < gq.Rows; q++ {
			v := gq.Row(q)[off : off+d]
			pv := make([]float64, d)
			for i := 0; i < gt.Rows; i++ {
				g := gt.Row(i)[off : off+d]
				var gv, gg float64
				for j := range g {
					gv += g[j] * v[j]
					gg += g[j] * g[j]
				}
				for j := range pv {
					pv[j] += (v[j] - gv/(lam[l]+gg)*g[j]) / (float64(gt.Rows) * lam[l])
				}
			}
			for j := 0; j < gt.Rows; j++ {
				var s float64
				for k, x := range gt.Row(j)[off : off+d] {
					s += pv[k] * x
				}
				want.Data[q*want.Cols+j] += s
			}
		}
		off += d
	}
	if e := relFrobenius(got, want); e > 1e-12 {
		t.Errorf("DataInf scores: relative error %.3g against the loop", e)
	}
}

func TestIterativeErrors(t *testing.T) {
	p := newCurvatureProblem(t, models.NewSoftmax(3, 3, 0.1), 3, 3, 5)
	other := newCurvatureProblem(t, models.NewSoftmax(4, 3, 0.1), 4, 3, 6)
	indefinite := p.h.Clone()
	for i := 0; i < indefinite.Rows; i++ {
		indefinite.Data[i*indefinite.Stride+i] -= 10
	}
	indefOp, err := hessian.NewDense(indefinite, nil)
	if err != nil {
		t.Fatal(err)
	}
	renamed := *p.train
	renamed.Layers = append([]gradients.Layer(nil), p.train.Layers...)
	renamed.Layers[0].Name = "other"
	cases := []struct {
		name string
		m    Method
		is   error
		want string
	}{
		{"dimension", CG(other.op, 0.1, hessian.CGOptions{}), nil, "curvature has dimension 15 but gradients have 12"},
		{"no operator", LiSSA(nil, 0.1, hessian.LiSSAOptions{Scale: 1}), nil, "no Hessian-vector product operator"},
		{"indefinite cg", CG(indefOp, 0, hessian.CGOptions{}), hessian.ErrIndefinite, "influence: cg: hessian: cg: right-hand side"},
		{"lissa scale", LiSSA(p.op, 0, hessian.LiSSAOptions{Scale: 1e-3}), hessian.ErrDiverged, "scale 0.001 is too small"},
		{"nystrom indefinite", Nystrom(indefOp, 0.1, hessian.NystromOptions{Rank: 5}), hessian.ErrIndefinite, "nystrom"},
		{"datainf layers", DataInf(&renamed, hessian.DataInfOptions{Damping: hessian.Damping{Value: 1}}), nil, `"linear" in the query, "other"`},
		{"datainf damping", DataInf(p.train, hessian.DataInfOptions{}), nil, "damping 0"},
	}
	for _, c := range cases {
		_, err := NewAnalyzer(c.m).Scores(context.Background(), p.query, p.train)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want %q", c.name, err, c.want)
			continue
		}
		if c.is != nil && !errors.Is(err, c.is) {
			t.Errorf("%s: %v does not wrap %v", c.name, err, c.is)
		}
	}
}

// A failed setup is retried; a successful one is reused.
func TestIterativeSetupOnce(t *testing.T) {
	p := newCurvatureProblem(t, models.NewSoftmax(3, 3, 0.1), 3, 3, 7)
	m := Arnoldi(p.op, 0.1, hessian.ArnoldiOptions{Iterations: 12, Seed: 1})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	an := NewAnalyzer(m)
	if _, err := an.Scores(ctx, p.query, p.train); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
	a, err := an.Scores(context.Background(), p.query, p.train)
	if err != nil {
		t.Fatal(err)
	}
	vals := m.Report().Eigenvalues
	self, err := an.SelfInfluence(context.Background(), p.train)
	if err != nil {
		t.Fatal(err)
	}
	if &m.Report().Eigenvalues[0] != &vals[0] || len(self) != p.train.N || a.Rows != p.query.N {
		t.Error("Arnoldi ran again for the second batch")
	}
	for i, s := range self {
		if !(s > 0) {
			t.Fatalf("self-influence %d is %v", i, s)
		}
	}
}

// The models' matrix-free products are hessian block operators.
var _ hessian.BlockOperator = (*models.HVP)(nil)
