package eval

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/goinfluence/goinfluence/ekfac"
	"github.com/goinfluence/goinfluence/influence"
	"github.com/goinfluence/goinfluence/linalg"
	"github.com/goinfluence/goinfluence/models"
)

// RankRanks are the query ranks RankAccuracy compares by default (issue 15:
// rank-32 queries, with neighbours on either side).
var RankRanks = []int{8, 16, 32, 64}

// RankOptions configures RankAccuracy. Zero values take the defaults noted.
type RankOptions struct {
	Ranks []int // query ranks r > 0; default RankRanks
	// Output is the query's output f, scored with the gradients of −f, as
	// in the quality table; default models.Margin.
	Output models.Output
	// Config gives the damping (default the model's λ, as the harness's
	// EK-FAC row) and the seed of the Fisher's sampled labels (default the
	// task's).
	Config MethodConfig
	// Precision is the precision of every scoring, reference included.
	Precision ekfac.Precision
}

// RankRow is EK-FAC with each query's preconditioned gradient truncated to
// rank r, against the full-rank scores.
type RankRow struct {
	Rank int `json:"rank"` // 0: full rank, the reference
	// Pearson and Spearman correlate, per test point, the scores of every
	// training example with the full-rank ones, averaged over the test
	// points; MinPearson is the worst test point. The reference's row has
	// 1 in each.
	Pearson    float64 `json:"pearson"`
	Spearman   float64 `json:"spearman"`
	MinPearson float64 `json:"min_pearson"`
	// Exact is set when r is at least min(d_out, d_in) of every layer: the
	// truncation keeps everything and the scores equal the reference's up
	// to rounding.
	Exact bool `json:"exact"`
	// Seconds is the wall time of the scoring (preconditioning, the
	// truncated SVDs and the pairwise products), the factors fitted.
	Seconds float64 `json:"seconds"`
}

// RankResult is the outcome of RankAccuracy.
type RankResult struct {
	Dataset   string    `json:"dataset"`
	Model     string    `json:"model"` // e.g. "mlp 784-64-10 relu"
	Params    int       `json:"params"`
	Setup     string    `json:"setup"` // the training, as Setup.Describe
	NTrain    int       `json:"n_train"`
	NTest     int       `json:"n_test"` // the queries: every test example
	Output    string    `json:"output"`
	Damping   string    `json:"damping"`
	Precision string    `json:"precision"`
	Backend   string    `json:"backend"`
	FitSecs   float64   `json:"fit_seconds"`
	Rows      []RankRow `json:"rows"` // the full-rank reference first
	Seconds   float64   `json:"seconds"`
}

// RankAccuracy measures what truncating query gradients to low rank
// (ekfac.ScoreOptions.Rank) costs in accuracy and saves in time on the
// task's MLP. It fits EK-FAC on the true Fisher (training gradients at
// labels drawn from the model, as the harness's EK-FAC), scores every test
// example against every training example at full rank, then at each rank
// r, and correlates each test point's rank-r scores with its full-rank
// ones. The task's model must be an MLP.
func RankAccuracy(ctx context.Context, t *Task, opt RankOptions) (*RankResult, error) {
	start := time.Now()
	m, ok := t.Model.(*models.MLP)
	if !ok {
		return nil, fmt.Errorf("eval: RankAccuracy needs an mlp, not %s", t.Model.Kind())
	}
	if opt.Ranks == nil {
		opt.Ranks = RankRanks
	}
	for _, r := range opt.Ranks {
		if r < 1 {
			return nil, fmt.Errorf("eval: RankAccuracy: rank %d, want ≥ 1", r)
		}
	}
	if opt.Output == "" {
		opt.Output = models.Margin
	}
	in := &Inputs{Model: m, Train: t.Train, Queries: t.Test, Output: opt.Output, Backend: t.Backend,
		Config: t.methodConfig(opt.Config)}
	damp, err := in.Config.fittedDamping(m)
	if err != nil {
		return nil, err
	}
	res := &RankResult{Dataset: t.Setup.Dataset, Model: models.Describe(m), Params: models.NumParams(m),
		Setup: t.Setup.Describe(), NTrain: t.Train.Len(), NTest: t.Test.Len(), Output: string(opt.Output),
		Damping: in.Config.Damping, Precision: opt.Precision.String(), Backend: t.Backend.Name()}
	query, train := in.QueryGradients(), in.TrainGradients()

	t.stage("fitting EK-FAC on the sampled Fisher")
	t0 := time.Now()
	f, err := ekfac.Fit(ctx, ekfac.EKFAC, t.Backend, ekfac.BatchSource(in.FitGradients()), nil)
	if err != nil {
		return nil, err
	}
	res.FitSecs = time.Since(t0).Seconds()
	minDim := 0 // the largest min(d_out, d_in) over the layers
	for _, l := range train.Layers {
		minDim = max(minDim, min(l.DOut, l.DIn))
	}

	scores := func(rank int) (*linalg.Dense64, float64, error) {
		an := &influence.Analyzer{Backend: t.Backend,
			Method: influence.Factors(f, ekfac.ScoreOptions{Damping: damp, Rank: rank, Precision: opt.Precision})}
		t0 := time.Now()
		s, err := an.Scores(ctx, query, train)
		return s, time.Since(t0).Seconds(), err
	}
	t.stage("scoring at full rank")
	ref, secs, err := scores(0)
	if err != nil {
		return nil, err
	}
	res.Rows = append(res.Rows, RankRow{Pearson: 1, Spearman: 1, MinPearson: 1, Exact: true, Seconds: secs})
	for _, r := range opt.Ranks {
		t.stage(fmt.Sprintf("scoring at rank %d", r))
		s, secs, err := scores(r)
		if err != nil {
			return nil, fmt.Errorf("eval: rank %d: %w", r, err)
		}
		row := RankRow{Rank: r, Exact: r >= minDim, Seconds: secs}
		row.Pearson, row.Spearman, row.MinPearson, _, _ = correlateRows(s, ref)
		res.Rows = append(res.Rows, row)
	}
	res.Seconds = time.Since(start).Seconds()
	return res, nil
}

// Markdown renders the result as a table under a line naming the model.
func (r *RankResult) Markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "**%s**, %s (%d parameters; %s): EK-FAC on the sampled Fisher (fit %.2f s), damping %s, %s scoring, "+
		"output %s; %d test points × %d training examples, backend %s.\n\n",
		r.Dataset, r.Model, r.Params, r.Setup, r.FitSecs, r.Damping, r.Precision, r.Output, r.NTest, r.NTrain, r.Backend)
	b.WriteString("| query rank | Pearson | Spearman | min Pearson | scoring time (s) | × full-rank time |\n|---:|---:|---:|---:|---:|---:|\n")
	full := r.Rows[0].Seconds
	for _, row := range r.Rows {
		name := "full"
		if row.Rank > 0 {
			name = fmt.Sprint(row.Rank)
			if row.Exact {
				name += " (≥ every layer's rank)"
			}
		}
		fmt.Fprintf(&b, "| %s | %.4f | %.4f | %.4f | %.2f | %.2f |\n",
			name, row.Pearson, row.Spearman, row.MinPearson, row.Seconds, row.Seconds/full)
	}
	return b.String()
}

// WriteText writes the Markdown table.
func (r *RankResult) WriteText(w io.Writer) error {
	_, err := io.WriteString(w, r.Markdown())
	return err
}
