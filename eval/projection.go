package eval

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"time"

	"github.com/goinfluence/goinfluence/ekfac"
	"github.com/goinfluence/goinfluence/gradients"
	"github.com/goinfluence/goinfluence/hessian"
	"github.com/goinfluence/goinfluence/influence"
	"github.com/goinfluence/goinfluence/linalg"
	"github.com/goinfluence/goinfluence/models"
)

// ProjectionKs are the projected sizes k_in = k_out that ProjectionAccuracy
// compares by default: from far below to about the layer widths of its MLP.
var ProjectionKs = []int{16, 32, 64}

// ProjectionRow is the agreement of EK-FAC in one projected space with
// EK-FAC on the full gradients.
type ProjectionRow struct {
	K        int     `json:"k"` // k_in = k_out
	Pearson  float64 `json:"pearson"`
	Spearman float64 `json:"spearman"`
	Pooled   float64 `json:"pooled_spearman"`
}

// ProjectionResult holds the rows of ProjectionAccuracy.
type ProjectionResult struct {
	Model     string          `json:"model"`
	Seed      uint64          `json:"seed"`
	ProjSeed  uint64          `json:"projection_seed"`
	Damping   string          `json:"damping"`
	TestIndex []int           `json:"test_indices"`
	Rows      []ProjectionRow `json:"rows"`
	Seconds   float64         `json:"seconds"`
}

// ProjectionAccuracy trains the digits MLP of opt (as CurvatureAccuracy
// does), fits EK-FAC on the expected Fisher in full and in Kronecker-projected
// (LoGra) spaces with k_in = k_out = k for each k, and correlates, per test
// point, the projected scores of every training example with the full ones.
// Damping is the heuristic 0.1 × mean Λ of each space. Nil ks means
// ProjectionKs.
func ProjectionAccuracy(ctx context.Context, opt CurvatureOptions, ks []int, projSeed uint64) (*ProjectionResult, error) {
	if ks == nil {
		ks = ProjectionKs
	}
	start := time.Now()
	be, err := linalg.OrAuto(opt.Backend)
	if err != nil {
		return nil, fmt.Errorf("eval: ProjectionAccuracy: %w", err)
	}
	opt.Backend = be
	m, train, test, err := trainDigitsMLP(ctx, &opt)
	if err != nil {
		return nil, err
	}
	tests := rand.New(rand.NewPCG(opt.Seed, 0x70726f6a)).Perm(test.Len())[:opt.TestPoints] // "proj"
	sort.Ints(tests)
	qx := test.Subset(tests)
	fit, query, tr := expectedFisher(m, train.X), m.Gradients(qx.X, qx.Y), m.Gradients(train.X, train.Y)
	damp := ekfac.ScoreOptions{Damping: hessian.Damping{Heuristic: true}}
	scores := func(fit, q, t *gradients.Batch) (*linalg.Dense64, error) {
		f, err := ekfac.Fit(ctx, ekfac.EKFAC, be, ekfac.BatchSource(fit), nil)
		if err != nil {
			return nil, err
		}
		return (&influence.Analyzer{Method: influence.EKFAC(f, damp), Backend: be}).Scores(ctx, q, t)
	}
	opt.stage("EK-FAC on the full gradients")
	ref, err := scores(fit, query, tr)
	if err != nil {
		return nil, err
	}
	res := &ProjectionResult{Model: models.Describe(m), Seed: opt.Seed, ProjSeed: projSeed, Damping: "heuristic", TestIndex: tests}
	for _, k := range ks {
		opt.stage(fmt.Sprintf("EK-FAC in the Kronecker-projected space, k_in = k_out = %d", k))
		p := gradients.Projection{Kind: gradients.Kronecker, KIn: k, KOut: k, Seed: projSeed}
		var pb [3]*gradients.Batch
		for i, b := range []*gradients.Batch{fit, query, tr} {
			if pb[i], err = p.Apply(ctx, b); err != nil {
				return nil, err
			}
		}
		s, err := scores(pb[0], pb[1], pb[2])
		if err != nil {
			return nil, fmt.Errorf("eval: k = %d: %w", k, err)
		}
		row := ProjectionRow{K: k}
		row.Pearson, row.Spearman, _, _, row.Pooled = correlateRows(s, ref)
		res.Rows = append(res.Rows, row)
	}
	res.Seconds = time.Since(start).Seconds()
	return res, nil
}

// Markdown renders the result as a table.
func (r *ProjectionResult) Markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s on digits, split seed %d, projection seed %d, damping %s; mean over %d test points.\n\n",
		r.Model, r.Seed, r.ProjSeed, r.Damping, len(r.TestIndex))
	b.WriteString("| k_in = k_out | Spearman | Pearson | pooled Spearman |\n|---:|---:|---:|---:|\n")
	for _, row := range r.Rows {
		fmt.Fprintf(&b, "| %d | %.3f | %.3f | %.3f |\n", row.K, row.Spearman, row.Pearson, row.Pooled)
	}
	return b.String()
}
