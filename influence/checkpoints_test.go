package influence

import (
	"context"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"gonum.org/v1/gonum/mat"

	"github.com/goinfluence/goinfluence/datasets"
	"github.com/goinfluence/goinfluence/gradients"
	"github.com/goinfluence/goinfluence/hessian"
	"github.com/goinfluence/goinfluence/linalg"
	"github.com/goinfluence/goinfluence/models"
)

// randomCheckpoints returns c checkpoints of nq queries and nt training
// examples with independent random gradients, learning rates 0.5, 1.5, …
// and training probabilities drawn from [0, 1].
func randomCheckpoints(rng *rand.Rand, c, nq, nt int) []Checkpoint {
	cps := make([]Checkpoint, c)
	for i := range cps {
		p := make([]float64, nt)
		for t := range p {
			p[t] = rng.Float64()
		}
		cps[i] = Checkpoint{Query: randomBatch(rng, nq), Train: randomBatch(rng, nt), LR: 0.5 + float64(i), TrainProb: p}
	}
	return cps
}

func TestTracInCP(t *testing.T) {
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(3, 4))
	cps := randomCheckpoints(rng, 2, 4, 11)
	want := make([]float64, 4*11)
	for _, cp := range cps {
		gq, gt := cp.Query.Flatten(), cp.Train.Flatten()
		for i := 0; i < gq.Rows; i++ {
			for j := 0; j < gt.Rows; j++ {
				var s float64
				for k, v := range gq.Row(i) {
					s += v * gt.At(j, k)
				}
				want[i*11+j] += cp.LR * s
			}
		}
	}
	for _, be := range streamBackends(t) {
		got, err := TracInCP(ctx, be, cps)
		if err != nil {
			t.Fatal(err)
		}
		if got.Rows != 4 || got.Cols != 11 {
			t.Fatalf("%s: scores are %d×%d, want 4×11", be.Name(), got.Rows, got.Cols)
		}
		for i, w := range want {
			if math.Abs(got.Data[i]-w) > 1e-10*(1+math.Abs(w)) {
				t.Fatalf("%s: score %d = %v, want %v", be.Name(), i, got.Data[i], w)
			}
		}
	}
}

func TestTracInCPOneCheckpointIsIdentity(t *testing.T) {
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(5, 6))
	cps := randomCheckpoints(rng, 1, 3, 8)
	cps[0].LR = 1
	got, err := TracInCP(ctx, linalg.CPU(), cps)
	if err != nil {
		t.Fatal(err)
	}
	an := &Analyzer{Method: Identity(), Backend: linalg.CPU()}
	want, err := an.Scores(ctx, cps[0].Query, cps[0].Train)
	if err != nil {
		t.Fatal(err)
	}
	for i, w := range want.Data {
		if math.Abs(got.Data[i]-w) > 1e-12*(1+math.Abs(w)) {
			t.Fatalf("score %d = %v, want %v", i, got.Data[i], w)
		}
	}
}

// toMat copies m into a gonum matrix.
func toMat(m *linalg.Dense64) *mat.Dense {
	out := mat.NewDense(m.Rows, m.Cols, nil)
	for i := 0; i < m.Rows; i++ {
		for j := 0; j < m.Cols; j++ {
			out.Set(i, j, m.At(i, j))
		}
	}
	return out
}

// referenceFeatures returns the flattened gradients of b, each layer
// multiplied by its Rademacher matrix (stream l<<2, as documented for
// gradients.Projection) when k > 0.
func referenceFeatures(b *gradients.Batch, k int, seed uint64) *mat.Dense {
	g := toMat(b.Flatten())
	if k == 0 {
		return g
	}
	out := mat.NewDense(b.N, k*len(b.Layers), nil)
	off := 0
	for li := range b.Layers {
		d := b.Layers[li].Dim()
		p := toMat(gradients.RademacherMatrix(k, d, seed, uint32(li)<<2))
		var f mat.Dense
		f.Mul(g.Slice(0, b.N, off, off+d), p.T())
		out.Slice(0, b.N, li*k, (li+1)*k).(*mat.Dense).Copy(&f)
		off += d
	}
	return out
}

// referenceTRAK computes TRAK with gonum's general inverse.
func referenceTRAK(cps []Checkpoint, k int, seed uint64, perCheckpoint bool, damping float64) *mat.Dense {
	nq, nt := cps[0].Query.N, cps[0].Train.N
	sum := mat.NewDense(nq, nt, nil)
	for c, cp := range cps {
		s := seed
		if perCheckpoint {
			s += uint64(c)
		}
		phiQ, phi := referenceFeatures(cp.Query, k, s), referenceFeatures(cp.Train, k, s)
		_, dim := phi.Dims()
		var h mat.Dense
		h.Mul(phi.T(), phi)
		d := damping
		if d == 0 {
			d = 0.1 * mat.Trace(&h) / float64(dim)
		}
		for i := 0; i < dim; i++ {
			h.Set(i, i, h.At(i, i)+d)
		}
		var inv, tmp, sc mat.Dense
		if err := inv.Inverse(&h); err != nil {
			panic(err)
		}
		tmp.Mul(phiQ, &inv)
		sc.Mul(&tmp, phi.T())
		sum.Add(sum, &sc)
	}
	c := float64(len(cps))
	for j := 0; j < nt; j++ {
		var q float64
		for _, cp := range cps {
			q += 1 - cp.TrainProb[j]
		}
		q /= c
		for i := 0; i < nq; i++ {
			sum.Set(i, j, sum.At(i, j)/c*q)
		}
	}
	return sum
}

func TestTRAKAgainstInverse(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name          string
		checkpoints   int
		k             int
		damping       float64
		perCheckpoint bool
	}{
		{"raw heuristic", 2, 0, 0, false},
		{"raw absolute", 3, 0, 0.7, false},
		{"projected heuristic", 3, 8, 0, false},
		{"projected absolute", 2, 8, 2.5, false},
		{"projected seed per checkpoint", 3, 8, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(7, uint64(tc.checkpoints*100+tc.k)))
			cps := randomCheckpoints(rng, tc.checkpoints, 5, 30)
			opt := TRAKOptions{Damping: hessian.Damping{Heuristic: tc.damping == 0, Value: tc.damping}, SeedPerCheckpoint: tc.perCheckpoint}
			if tc.k > 0 {
				opt.Projection = gradients.Projection{Kind: gradients.Rademacher, K: tc.k, Seed: 42}
			}
			want := referenceTRAK(cps, tc.k, 42, tc.perCheckpoint, tc.damping)
			for _, be := range streamBackends(t) {
				got, err := TRAK(ctx, be, cps, opt)
				if err != nil {
					t.Fatal(err)
				}
				if got.Rows != 5 || got.Cols != 30 {
					t.Fatalf("%s: scores are %d×%d, want 5×30", be.Name(), got.Rows, got.Cols)
				}
				for i := 0; i < 5; i++ {
					for j := 0; j < 30; j++ {
						w := want.At(i, j)
						if g := got.At(i, j); math.Abs(g-w) > 1e-9*(1+math.Abs(w)) {
							t.Fatalf("%s: score (%d, %d) = %v, want %v", be.Name(), i, j, g, w)
						}
					}
				}
			}
		})
	}
}

// TestTRAKProjectionSeeds checks that SeedPerCheckpoint changes the scores
// and that the same seed for every checkpoint is the default.
func TestTRAKProjectionSeeds(t *testing.T) {
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(9, 10))
	cps := randomCheckpoints(rng, 2, 3, 20)
	proj := gradients.Projection{Kind: gradients.Rademacher, K: 8, Seed: 1}
	same, err := TRAK(ctx, linalg.CPU(), cps, TRAKOptions{Projection: proj, Damping: hessian.Damping{Heuristic: true}})
	if err != nil {
		t.Fatal(err)
	}
	per, err := TRAK(ctx, linalg.CPU(), cps, TRAKOptions{Projection: proj, SeedPerCheckpoint: true, Damping: hessian.Damping{Heuristic: true}})
	if err != nil {
		t.Fatal(err)
	}
	differ := false
	for i := range same.Data {
		differ = differ || same.Data[i] != per.Data[i]
	}
	if !differ {
		t.Fatal("SeedPerCheckpoint did not change the projection")
	}
}

// TestTRAKQWeighting checks that Q_t = mean_c (1 − p_c(y_t)) multiplies
// training column t and nothing else.
func TestTRAKQWeighting(t *testing.T) {
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(11, 12))
	const nt = 12
	cps := randomCheckpoints(rng, 3, 4, nt)
	// Unweighted scores: p = 0 everywhere.
	zero := make([]Checkpoint, len(cps))
	for c := range cps {
		zero[c] = cps[c]
		zero[c].TrainProb = make([]float64, nt)
	}
	// Example 5 is learnt perfectly at every checkpoint.
	for c := range cps {
		cps[c].TrainProb[5] = 1
	}
	opt := TRAKOptions{Damping: hessian.Damping{Value: 0.3}}
	base, err := TRAK(ctx, linalg.CPU(), zero, opt)
	if err != nil {
		t.Fatal(err)
	}
	got, err := TRAK(ctx, linalg.CPU(), cps, opt)
	if err != nil {
		t.Fatal(err)
	}
	for j := 0; j < nt; j++ {
		var q float64
		for c := range cps {
			q += 1 - cps[c].TrainProb[j]
		}
		q /= float64(len(cps))
		for i := 0; i < got.Rows; i++ {
			w := base.At(i, j) * q
			if g := got.At(i, j); math.Abs(g-w) > 1e-12*(1+math.Abs(w)) {
				t.Fatalf("score (%d, %d) = %v, want %v × Q = %v", i, j, g, base.At(i, j), w)
			}
			if j == 5 && got.At(i, j) != 0 {
				t.Fatalf("score (%d, 5) = %v for an example with p = 1", i, got.At(i, j))
			}
		}
	}
}

func TestCheckpointErrors(t *testing.T) {
	ctx := context.Background()
	good := func() []Checkpoint {
		return randomCheckpoints(rand.New(rand.NewPCG(13, 14)), 2, 2, 6)
	}
	for _, tc := range []struct {
		name   string
		edit   func([]Checkpoint) []Checkpoint
		opt    TRAKOptions
		tracin string // "" when TracInCP accepts the checkpoints
		trak   string
	}{
		{name: "none", edit: func([]Checkpoint) []Checkpoint { return nil }, tracin: "no checkpoints", trak: "no checkpoints"},
		{name: "nil train", edit: func(c []Checkpoint) []Checkpoint { c[1].Train = nil; return c },
			tracin: "checkpoint 1: missing", trak: "checkpoint 1: missing"},
		{name: "empty query", edit: func(c []Checkpoint) []Checkpoint {
			c[0].Query = &gradients.Batch{Layers: c[0].Query.Layers[:0]}
			return c
		},
			tracin: "checkpoint 0: 0 query", trak: "checkpoint 0: 0 query"},
		{name: "layer dims", edit: func(c []Checkpoint) []Checkpoint {
			c[1].Query.Layers[2].D = 4
			c[1].Query.Layers[2].Grad = c[1].Query.Layers[2].Grad[:2*4]
			return c
		}, tracin: `checkpoint 1: influence: layer "head"`, trak: `checkpoint 1: influence: layer "head"`},
		{name: "layer count", edit: func(c []Checkpoint) []Checkpoint { c[0].Train.Layers = c[0].Train.Layers[:2]; return c },
			tracin: "checkpoint 0: influence: query has 3 layers", trak: "checkpoint 0: influence: query has 3 layers"},
		{name: "train count differs", edit: func(c []Checkpoint) []Checkpoint {
			c[1].Train = c[1].Train.Slice(0, 5)
			c[1].TrainProb = c[1].TrainProb[:5]
			return c
		}, tracin: "checkpoint 1 has 2 query and 5 training", trak: "checkpoint 1 has 2 query and 5 training"},
		{name: "NaN gradient", edit: func(c []Checkpoint) []Checkpoint { c[1].Train.Layers[2].Grad[5*2+1] = math.NaN(); return c },
			tracin: "checkpoint 1: training gradients", trak: "example 2"},
		{name: "Inf query", edit: func(c []Checkpoint) []Checkpoint { c[0].Query.Layers[0].A[0] = math.Inf(-1); return c },
			tracin: "checkpoint 0: query gradients", trak: "checkpoint 0: query gradients"},
		{name: "prob count", edit: func(c []Checkpoint) []Checkpoint { c[1].TrainProb = c[1].TrainProb[:3]; return c },
			trak: "checkpoint 1: 3 training probabilities for 6"},
		{name: "prob range", edit: func(c []Checkpoint) []Checkpoint { c[0].TrainProb[4] = 1.5; return c },
			trak: "checkpoint 0: training example 4: probability 1.5"},
		{name: "prob NaN", edit: func(c []Checkpoint) []Checkpoint { c[1].TrainProb[3] = math.NaN(); return c },
			trak: "checkpoint 1: training example 3: probability NaN"},
		{name: "learning rate", edit: func(c []Checkpoint) []Checkpoint { c[1].LR = math.Inf(1); return c },
			tracin: "checkpoint 1: learning rate +Inf"},
		{name: "negative damping", edit: func(c []Checkpoint) []Checkpoint { return c }, opt: TRAKOptions{Damping: hessian.Damping{Value: -1}},
			trak: "bad damping: -1"},
		{name: "zero damping", edit: func(c []Checkpoint) []Checkpoint { return c }, opt: TRAKOptions{Damping: hessian.Damping{}},
			trak: "bad damping: 0, want a finite δ > 0 or the heuristic"},
		{name: "bad projection", edit: func(c []Checkpoint) []Checkpoint { return c },
			opt:  TRAKOptions{Projection: gradients.Projection{Kind: gradients.Rademacher}},
			trak: "checkpoint 0: projecting query gradients"},
		{name: "zero gradients", edit: func(c []Checkpoint) []Checkpoint {
			for _, l := range c[1].Train.Layers {
				clear(l.A)
				clear(l.S)
				clear(l.Grad)
			}
			return c
		}, trak: "checkpoint 1: H + 0·I"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cps := tc.edit(good())
			_, err := TracInCP(ctx, linalg.CPU(), cps)
			switch {
			case tc.tracin == "" && err != nil:
				t.Errorf("TracInCP: %v", err)
			case tc.tracin != "" && (err == nil || !strings.Contains(err.Error(), tc.tracin)):
				t.Errorf("TracInCP: error %v, want one containing %q", err, tc.tracin)
			}
			opt := tc.opt
			if opt.Damping == (hessian.Damping{}) && tc.name != "zero damping" {
				opt.Damping.Heuristic = true // the zero Damping is δ = 0, which TRAK refuses
			}
			_, err = TRAK(ctx, linalg.CPU(), tc.edit(good()), opt)
			switch {
			case tc.trak == "" && err != nil:
				t.Errorf("TRAK: %v", err)
			case tc.trak != "" && (err == nil || !strings.Contains(err.Error(), tc.trak)):
				t.Errorf("TRAK: error %v, want one containing %q", err, tc.trak)
			}
		})
	}
}

func TestCheckpointsCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	cps := randomCheckpoints(rand.New(rand.NewPCG(15, 16)), 2, 2, 5)
	if _, err := TracInCP(ctx, linalg.CPU(), cps); err == nil {
		t.Error("TracInCP ignored a cancelled context")
	}
	if _, err := TRAK(ctx, linalg.CPU(), cps, TRAKOptions{Damping: hessian.Damping{Heuristic: true}}); err == nil {
		t.Error("TRAK ignored a cancelled context")
	}
}

// TestCheckpointsOnDigits trains a small MLP on digits, keeps three
// checkpoints and checks that, for most test digits, the training example
// each method scores most helpful has the same label (chance is about 1/10).
func TestCheckpointsOnDigits(t *testing.T) {
	if testing.Short() {
		t.Skip("trains a model")
	}
	ctx := context.Background()
	ds, err := datasets.Digits()
	if err != nil {
		t.Skip(err)
	}
	const nTrain, nTest = 300, 60
	x := linalg.NewDense64(nTrain+nTest, ds.X.Cols, nil)
	for i := 0; i < x.Rows; i++ {
		for j, v := range ds.X.Row(i) {
			x.Set(i, j, v/16)
		}
	}
	xt, yt := x.Slice(0, nTrain, 0, x.Cols), ds.Y[:nTrain]
	xq, yq := x.Slice(nTrain, nTrain+nTest, 0, x.Cols), ds.Y[nTrain:nTrain+nTest]
	m, err := models.NewMLP([]int{x.Cols, 16, ds.Classes}, models.ReLU, 1e-4, 1)
	if err != nil {
		t.Fatal(err)
	}
	const lr = 0.01
	var snaps [][]float64
	opt := models.AdamOptions{Epochs: 6, LR: lr, Seed: 2, EpochEnd: func(epoch int) error {
		if epoch%2 == 0 {
			snaps = append(snaps, append([]float64(nil), m.Params()...))
		}
		return nil
	}}
	if err := models.TrainAdam(ctx, m, xt.Clone(), yt, nil, opt); err != nil {
		t.Fatal(err)
	}
	if len(snaps) != 3 {
		t.Fatalf("%d checkpoints saved, want 3", len(snaps))
	}
	cps := make([]Checkpoint, len(snaps))
	for c, theta := range snaps {
		copy(m.Params(), theta)
		probs := m.Probs(xt.Clone())
		p := make([]float64, nTrain)
		for i := range p {
			p[i] = probs.At(i, yt[i])
		}
		cps[c] = Checkpoint{Query: m.Gradients(xq.Clone(), yq), Train: m.Gradients(xt.Clone(), yt), LR: lr, TrainProb: p}
	}
	tracin, err := TracInCP(ctx, nil, cps)
	if err != nil {
		t.Fatal(err)
	}
	trak, err := TRAK(ctx, nil, cps, TRAKOptions{Projection: gradients.Projection{Kind: gradients.Rademacher, K: 64, Seed: 3}, Damping: hessian.Damping{Heuristic: true}})
	if err != nil {
		t.Fatal(err)
	}
	for name, s := range map[string]*linalg.Dense64{"TracIn-CP": tracin, "TRAK": trak} {
		same := 0
		for q := 0; q < nTest; q++ {
			row := s.Row(q)
			best := 0
			for j, v := range row {
				if v > row[best] {
					best = j
				}
			}
			if yt[best] == yq[q] {
				same++
			}
		}
		t.Logf("%s: the most helpful training example has the query's label for %d of %d test digits", name, same, nTest)
		if same < nTest/2 {
			t.Errorf("%s: only %d of %d test digits have a most helpful training example of their label", name, same, nTest)
		}
	}
}

// TestTracInCPSelf holds the self-influence of TracIn-CP to the diagonal of
// TracInCP with the training gradients as queries.
func TestTracInCPSelf(t *testing.T) {
	rng := rand.New(rand.NewPCG(41, 42))
	cps := randomCheckpoints(rng, 3, 4, 9)
	for c := range cps {
		cps[c].Query = cps[c].Train
	}
	all, err := TracInCP(context.Background(), linalg.CPU(), cps)
	if err != nil {
		t.Fatal(err)
	}
	self, err := TracInCPSelf(context.Background(), cps)
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range self {
		if want := all.At(i, i); math.Abs(v-want) > 1e-12*math.Abs(want) {
			t.Errorf("example %d: self-influence %v, TracInCP diagonal %v", i, v, want)
		}
	}
	cps[1].LR = -1
	if _, err := TracInCPSelf(context.Background(), cps); err == nil {
		t.Error("a negative learning rate was accepted")
	}
}
