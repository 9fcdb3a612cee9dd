package eval

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/goinfluence/goinfluence/datasets"
	"github.com/goinfluence/goinfluence/gradients"
	"github.com/goinfluence/goinfluence/internal/atomicfile"
	"github.com/goinfluence/goinfluence/linalg"
	"github.com/goinfluence/goinfluence/models"
)

// QualityOptions configures Quality. Zero values take the defaults.
type QualityOptions struct {
	// Methods are the registry keys to run, in table order; empty means
	// every registered method but the store-backed variants (MethodSpec.Of),
	// which repeat a method through stores on disk and are run by key.
	Methods []string `json:"methods,omitempty"`
	// Output is the measured output of LDS and LOO (default Margin).
	Output models.Output   `json:"output"`
	LDS    LDSOptions      `json:"lds"`
	LOO    LOOTruthOptions `json:"loo"`
	AUC    AUCOptions      `json:"auc"`
	Config MethodConfig    `json:"config"`
	// NoLDS, NoLOO and NoAUC leave a column out (and its retraining).
	NoLDS bool `json:"no_lds,omitempty"`
	NoLOO bool `json:"no_loo,omitempty"`
	NoAUC bool `json:"no_auc,omitempty"`
	// PlotDir, when set, receives PNG plots: the LDS scatter of PlotMethod
	// (default exact, else EK-FAC, else the first method run) for one test
	// point, and the ROC curves of every method.
	PlotDir    string `json:"-"`
	PlotMethod string `json:"-"`
	// LDSPlot and ROCPlot, when set, are the plots' file names instead
	// of names derived in PlotDir.
	LDSPlot string `json:"-"`
	ROCPlot string `json:"-"`
}

// QualityRow is one method's line of the table. Correlations are null in
// JSON where not measured.
type QualityRow struct {
	Key     string   `json:"key"`
	Method  string   `json:"method"`
	LOO     *float64 `json:"loo_pearson,omitempty"`
	LOOSp   *float64 `json:"loo_spearman,omitempty"`
	LDS     *float64 `json:"lds,omitempty"`
	AUC     *float64 `json:"auc,omitempty"`
	Seconds float64  `json:"seconds"` // wall time of scoring the test set (fits and projections included)
	// SelfSeconds is the wall time of the noisy-label self-influence.
	SelfSeconds float64 `json:"self_seconds,omitempty"`
	// Skipped says why the method did not run at all; Failed the error it
	// stopped with (divergence, no convergence), which costs the table
	// that row only; Notes why a column is missing.
	Skipped string   `json:"skipped,omitempty"`
	Failed  string   `json:"failed,omitempty"`
	Notes   []string `json:"notes,omitempty"`
}

// QualityResult is the quality table of one task.
type QualityResult struct {
	Setup         Setup          `json:"setup"`
	Options       QualityOptions `json:"options"`
	Model         string         `json:"model"`
	Params        int            `json:"params"`
	NTrain        int            `json:"n_train"`
	NTest         int            `json:"n_test"`
	TrainAccuracy float64        `json:"train_accuracy"`
	TestAccuracy  float64        `json:"test_accuracy"`
	Backend       string         `json:"backend"`
	Rows          []QualityRow   `json:"rows"`
	// Retrained counts the models trained for this table (0 when every
	// ground truth came from the cache); TruthSeconds is the wall time
	// spent on ground truths and the models the methods needed.
	Retrained    int      `json:"retrained"`
	TruthSeconds float64  `json:"truth_seconds"`
	Seconds      float64  `json:"seconds"`
	Plots        []string `json:"plots,omitempty"`
	// StoreComparisons compares, for each method whose f16 and i8
	// store-backed variants both ran, the two (DESIGN §11).
	StoreComparisons []StoreComparison `json:"store_comparisons,omitempty"`
}

// StoreComparison sets a method computed through an i8 store (exact
// integer scoring, DESIGN §11) beside the same through an f16 store: the
// question is whether quantising the stored rows and the queries costs
// quality. LDS values are nil where not measured.
type StoreComparison struct {
	Of     string `json:"of"`     // key of the in-memory method
	Method string `json:"method"` // its name
	// LDSMemory is the in-memory method's LDS, when it ran; LDSF16 and
	// LDSI8 the variants'; LDSDiff is LDSI8 − LDSF16.
	LDSMemory *float64 `json:"lds_memory,omitempty"`
	LDSF16    *float64 `json:"lds_f16,omitempty"`
	LDSI8     *float64 `json:"lds_i8,omitempty"`
	LDSDiff   *float64 `json:"lds_diff,omitempty"`
	// K is the number of most helpful training examples per query whose
	// overlap |top_K(i8) ∩ top_K(f16)| / K is averaged over the queries
	// (Overlap) and minimised (OverlapMin), by TopOverlap.
	K          int     `json:"k"`
	Overlap    float64 `json:"overlap_mean"`
	OverlapMin float64 `json:"overlap_min"`
	// MemoryOverlap is the mean top-K overlap of the f16 variant with the
	// in-memory method, when it ran: whether the store path computes the
	// method.
	MemoryOverlap *float64 `json:"memory_overlap_mean,omitempty"`
	// SecondsF16 and SecondsI8 are the variants' scoring wall times, as
	// QualityRow.Seconds (store builds included).
	SecondsF16 float64 `json:"seconds_f16"`
	SecondsI8  float64 `json:"seconds_i8"`
}

// Quality runs every method of opt on the task and measures each against
// the retraining ground truths: LOO (Pearson of score/N with the change of
// −f over random single removals), LDS (Spearman over random α-subsets) and
// noisy-label AUC (self-influence on a model trained with flipped labels,
// ranking the flipped examples first). Ground truths, ensembles and
// checkpoints come from the cache when there; only the scoring is redone.
func (t *Task) Quality(ctx context.Context, opt QualityOptions) (*QualityResult, error) {
	start := time.Now()
	retrained0 := t.Retrained()
	if opt.Output == "" {
		opt.Output = models.Margin
	}
	if _, err := models.ParseOutput(string(opt.Output)); err != nil {
		return nil, err
	}
	opt.Config = t.methodConfig(opt.Config)
	if !opt.NoAUC {
		if err := opt.AUC.defaults(); err != nil {
			return nil, err
		}
	}
	specs, err := selectMethods(opt.Methods)
	if err != nil {
		return nil, err
	}
	res := &QualityResult{
		Setup: t.Setup, Options: opt, Model: t.ModelName(), Params: models.NumParams(t.Model),
		NTrain: t.Train.Len(), NTest: t.Test.Len(), Backend: t.Backend.Name(),
		TrainAccuracy: models.Accuracy(t.Model, t.Train.X, t.Train.Y),
		TestAccuracy:  models.Accuracy(t.Model, t.Test.X, t.Test.Y),
	}
	var truthTime time.Duration
	timed := func(f func() error) error {
		s := time.Now()
		err := f()
		truthTime += time.Since(s)
		return err
	}
	var (
		lds     *LDSTruth
		loo     *LOOTruth
		noisy   *world
		flipped []bool
	)
	if !opt.NoLDS {
		if err := timed(func() (err error) { lds, err = t.LDSTruth(ctx, opt.LDS); return }); err != nil {
			return nil, err
		}
	}
	if !opt.NoLOO {
		if err := timed(func() (err error) { loo, err = t.LOOTruth(ctx, opt.LOO); return }); err != nil {
			return nil, err
		}
	}
	if !opt.NoAUC {
		if err := timed(func() (err error) { noisy, flipped, err = t.noisy(ctx, opt.AUC); return }); err != nil {
			return nil, err
		}
	}
	clean := t.worlds["clean"]
	cleanIn := t.inputs(clean, opt, true, &truthTime)
	var noisyIn *Inputs
	if noisy != nil {
		noisyIn = t.inputs(noisy, opt, false, &truthTime)
	}
	type curve struct {
		name     string
		fpr, tpr []float64
		auc      float64
	}
	var curves []curve
	ldsPlot := ldsCandidate{rank: math.MaxInt}
	// The scores of the store-backed variants and of the methods they
	// compute are kept for StoreComparisons.
	compared := map[string]bool{}
	for _, spec := range specs {
		if spec.Of != "" {
			compared[spec.Key], compared[spec.Of] = true, true
		}
	}
	kept := map[string]*linalg.Dense64{}
	for _, spec := range specs {
		row := QualityRow{Key: spec.Key, Method: spec.Name}
		if spec.Missing != "" {
			row.Skipped = spec.Missing
			res.Rows = append(res.Rows, row)
			t.stage(fmt.Sprintf("%s: skipped (%s)", spec.Name, spec.Missing))
			continue
		}
		t.stage(fmt.Sprintf("%s: scoring %d test points against %d training examples", spec.Name, t.Test.Len(), t.Train.Len()))
		if !opt.NoLDS || !opt.NoLOO {
			s0, t0 := time.Now(), truthTime
			out, err := spec.Run(ctx, cleanIn, false)
			if errors.Is(err, ErrSkipped) {
				row.Skipped = skipReason(err)
				res.Rows = append(res.Rows, row)
				t.stage(fmt.Sprintf("%s: skipped (%s)", spec.Name, row.Skipped))
				continue
			}
			if err != nil {
				if ctx.Err() != nil {
					return nil, fmt.Errorf("eval: %s: %w", spec.Name, err)
				}
				row.Failed = err.Error()
				res.Rows = append(res.Rows, row)
				t.stage(fmt.Sprintf("%s: failed: %v", spec.Name, err))
				continue
			}
			row.Seconds = (time.Since(s0) - (truthTime - t0)).Seconds()
			row.Notes = append(row.Notes, out.Notes...)
			if compared[spec.Key] {
				kept[spec.Key] = out.Scores
			}
			if lds != nil {
				r, err := LDS(lds, out.Scores, opt.Output)
				if err != nil {
					return nil, err
				}
				row.LDS = finite(r.Mean)
				if rank := plotRank(opt.PlotMethod, spec.Key); rank < ldsPlot.rank {
					ldsPlot = ldsCandidate{rank, spec.Key, spec.Name, out.Scores, r}
				}
			}
			if loo != nil {
				r, err := LOOCorrelation(loo, out.Scores, opt.Output)
				if err != nil {
					return nil, err
				}
				row.LOO, row.LOOSp = finite(r.Pearson), finite(r.Spearman)
			}
		}
		if noisyIn != nil {
			s0, t0 := time.Now(), truthTime
			out, err := spec.Run(ctx, noisyIn, true)
			if errors.Is(err, ErrSkipped) {
				row.Notes = append(row.Notes, "AUC "+skipReason(err))
			} else if err != nil {
				if ctx.Err() != nil {
					return nil, fmt.Errorf("eval: %s (noisy labels): %w", spec.Name, err)
				}
				row.Notes = append(row.Notes, "AUC failed: "+err.Error())
			} else {
				row.SelfSeconds = (time.Since(s0) - (truthTime - t0)).Seconds()
				a := AUC(out.Self, flipped)
				row.AUC = finite(a)
				fpr, tpr := ROC(out.Self, flipped)
				curves = append(curves, curve{spec.Name, fpr, tpr, a})
			}
		}
		t.stage(fmt.Sprintf("%s: %s", spec.Name, row.summary()))
		res.Rows = append(res.Rows, row)
	}
	if res.StoreComparisons, err = storeComparisons(specs, res.Rows, kept); err != nil {
		return nil, err
	}
	if (opt.PlotDir != "" || opt.LDSPlot != "") && ldsPlot.scores != nil {
		path := opt.LDSPlot
		if path == "" {
			path = filepath.Join(opt.PlotDir, fmt.Sprintf("lds-%s-%s-%s.png", t.Setup.Dataset, t.Setup.Model, ldsPlot.key))
		}
		if err := PlotLDS(path, lds, ldsPlot.scores, opt.Output, ldsPlot.res, ldsPlot.name); err != nil {
			return nil, err
		}
		res.Plots = append(res.Plots, path)
	}
	if (opt.PlotDir != "" || opt.ROCPlot != "") && len(curves) > 0 {
		path := opt.ROCPlot
		if path == "" {
			path = filepath.Join(opt.PlotDir, fmt.Sprintf("roc-%s-%s.png", t.Setup.Dataset, t.Setup.Model))
		}
		var cs []ROCCurve
		for _, c := range curves {
			cs = append(cs, ROCCurve{Name: c.name, FPR: c.fpr, TPR: c.tpr, AUC: c.auc})
		}
		title := fmt.Sprintf("noisy-label detection by self-influence, %s %s, %g%% flipped", t.Setup.Dataset, res.Model, 100*opt.AUC.Fraction)
		if err := PlotROC(path, title, cs); err != nil {
			return nil, err
		}
		res.Plots = append(res.Plots, path)
	}
	res.Retrained = t.Retrained() - retrained0
	res.TruthSeconds = truthTime.Seconds()
	res.Seconds = time.Since(start).Seconds()
	return res, nil
}

// storeComparisons compares the i8 and f16 store-backed variants of each
// method of which both ran, in the order of the methods' first variant:
// rows holds the table's rows, scores the kept scores by key.
func storeComparisons(specs []MethodSpec, rows []QualityRow, scores map[string]*linalg.Dense64) ([]StoreComparison, error) {
	row := map[string]*QualityRow{}
	for i := range rows {
		row[rows[i].Key] = &rows[i]
	}
	variant := map[string]map[gradients.DType]string{} // of → dtype → key
	var order []string
	for _, spec := range specs {
		if spec.Of == "" {
			continue
		}
		if variant[spec.Of] == nil {
			variant[spec.Of] = map[gradients.DType]string{}
			order = append(order, spec.Of)
		}
		variant[spec.Of][spec.DType] = spec.Key
	}
	var out []StoreComparison
	for _, of := range order {
		kf, ki := variant[of][gradients.F16], variant[of][gradients.I8]
		f16, i8 := scores[kf], scores[ki]
		if f16 == nil || i8 == nil {
			continue
		}
		c := StoreComparison{Of: of, Method: of, K: OverlapK,
			LDSF16: row[kf].LDS, LDSI8: row[ki].LDS, SecondsF16: row[kf].Seconds, SecondsI8: row[ki].Seconds}
		if spec, err := LookupMethod(of); err == nil {
			c.Method = spec.Name
		}
		if c.LDSF16 != nil && c.LDSI8 != nil {
			d := *c.LDSI8 - *c.LDSF16
			c.LDSDiff = &d
		}
		ov, err := TopOverlap(i8, f16, OverlapK)
		if err != nil {
			return nil, err
		}
		c.Overlap, c.OverlapMin = meanOf(ov), slices.Min(ov)
		if mem := scores[of]; mem != nil {
			if r := row[of]; r != nil {
				c.LDSMemory = r.LDS
			}
			ov, err := TopOverlap(f16, mem, OverlapK)
			if err != nil {
				return nil, err
			}
			m := meanOf(ov)
			c.MemoryOverlap = &m
		}
		out = append(out, c)
	}
	return out, nil
}

// meanOf returns the mean of v (NaN when empty).
func meanOf(v []float64) float64 {
	s := 0.0
	for _, x := range v {
		s += x
	}
	return s / float64(len(v))
}

// ldsCandidate is a method whose LDS scatter may be plotted.
type ldsCandidate struct {
	rank      int
	key, name string
	scores    *linalg.Dense64
	res       *LDSResult
}

// plotRank orders the methods for the LDS plot: the one asked for, else
// exact, else EK-FAC, else the first that ran.
func plotRank(want, key string) int {
	switch {
	case want != "":
		if key == want {
			return 0
		}
		return math.MaxInt
	case key == "exact":
		return 0
	case key == "ekfac":
		return 1
	}
	return 2
}

// inputs returns the method inputs of a world: queries are the test set
// for the clean world and none for a noisy one (self-influence only). Time
// spent training checkpoints and ensembles is added to truth, so that it is
// not charged to a method's wall time.
func (t *Task) inputs(w *world, opt QualityOptions, queries bool, truth *time.Duration) *Inputs {
	in := &Inputs{Model: w.model, Train: w.train, Output: opt.Output, Backend: t.Backend, Config: opt.Config, Progress: func(s string, _, _ int) { t.stage(s) }}
	if queries {
		in.Queries = t.Test
	}
	in.Snapshots = func(ctx context.Context) ([]Snapshot, error) {
		s := time.Now()
		defer func() { *truth += time.Since(s) }()
		return t.snapshots(ctx, w)
	}
	in.Ensemble = func(ctx context.Context, k int) ([]models.Model, error) {
		s := time.Now()
		defer func() { *truth += time.Since(s) }()
		return t.ensemble(ctx, w, k)
	}
	return in
}

// selectMethods returns the methods of keys, or of the default table
// (every method but the store-backed variants) when there are none.
func selectMethods(keys []string) ([]MethodSpec, error) {
	if len(keys) == 0 {
		return slices.DeleteFunc(Methods(), func(m MethodSpec) bool { return m.Of != "" }), nil
	}
	var out []MethodSpec
	for _, k := range keys {
		m, err := LookupMethod(k)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, nil
}

// skipReason returns the text of an ErrSkipped error after "skipped: ".
func skipReason(err error) string {
	s := err.Error()
	if i := strings.Index(s, ErrSkipped.Error()+": "); i >= 0 {
		return s[i+len(ErrSkipped.Error())+2:]
	}
	return s
}

func finite(v float64) *float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return nil
	}
	return &v
}

func (r *QualityRow) summary() string {
	switch {
	case r.Skipped != "":
		return "skipped: " + r.Skipped
	case r.Failed != "":
		return "failed: " + r.Failed
	}
	return fmt.Sprintf("LOO %s, LDS %s, AUC %s, %.2f s", fmtOpt(r.LOO), fmtOpt(r.LDS), fmtOpt(r.AUC), r.Seconds)
}

func fmtOpt(v *float64) string {
	if v == nil {
		return "–"
	}
	return fmt.Sprintf("%.3f", *v)
}

// Markdown renders the table under a paragraph naming the setup and the
// protocols' parameters.
func (r *QualityResult) Markdown() string {
	var b strings.Builder
	o := r.Options
	lds, loo, auc := o.LDS, o.LOO, o.AUC
	_ = lds.defaults(r.Setup.Model == "lr")
	if loo.Removals == 0 {
		loo.Removals = DefaultRemovals
	}
	_ = auc.defaults()
	fmt.Fprintf(&b, "**%s**, %s (%d parameters): %d training and %d test examples, train accuracy %.2f%%, test accuracy %.2f%%, backend %s. ",
		r.Setup.Dataset, r.Model, r.Params, r.NTrain, r.NTest, 100*r.TrainAccuracy, 100*r.TestAccuracy, r.Backend)
	fmt.Fprintf(&b, "Training: %s. Measured output: %s.\n\n", r.Setup.Describe(), o.Output)
	b.WriteString("| method | LOO (Pearson) | LDS (Spearman) | noisy-label AUC | scoring wall time (s) | notes |\n|---|---:|---:|---:|---:|---|\n")
	for _, row := range r.Rows {
		if row.Skipped != "" {
			fmt.Fprintf(&b, "| %s | – | – | – | – | skipped: %s |\n", row.Method, row.Skipped)
			continue
		}
		if row.Failed != "" {
			fmt.Fprintf(&b, "| %s | – | – | – | – | failed: %s |\n", row.Method, row.Failed)
			continue
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %.2f | %s |\n", row.Method, fmtOpt(row.LOO), fmtOpt(row.LDS), fmtOpt(row.AUC), row.Seconds,
			strings.Join(row.Notes, "; "))
	}
	fmt.Fprintf(&b, "\nLOO: %d random training examples removed one at a time, Pearson over them of score/N with the measured change of −f, mean over test points. "+
		"LDS: %d random subsets of %g·N, retrained (%d seed(s) each), Spearman over subsets of Σ_{i∈S} score with f, mean over test points. "+
		"AUC: %g%% of training labels flipped (seed %d), model retrained, examples ranked by self-influence. "+
		"Wall time: scoring every test point (fitting included, training of extra models excluded). "+
		"Ground truths and extra models: %d trainings this run, %.0f s.\n",
		loo.Removals, lds.Subsets, lds.Alpha, lds.Seeds, 100*auc.Fraction, auc.Seed, r.Retrained, r.TruthSeconds)
	if len(r.StoreComparisons) > 0 {
		b.WriteString("\n" + r.storeMarkdown())
	}
	return b.String()
}

// storeMarkdown renders StoreComparisons as a table under a paragraph
// saying what its columns are.
func (r *QualityResult) storeMarkdown() string {
	var b strings.Builder
	k := r.StoreComparisons[0].K
	fmt.Fprintf(&b, "**i8 vs f16 store** (DESIGN §11): the method's projected training gradients stored in an f16 store and in an i8 store "+
		"(rows quantised per row, queries quantised after preconditioning, exact integer sums), scored by StoreScorer. "+
		"Top-%d overlap: |top-%d(i8) ∩ top-%d(f16)| / %d of the most helpful training examples per test point, mean and minimum over test points; "+
		"f16/memory: the same between the f16 store and the in-memory method. Wall times as in the table (store builds included).\n\n", k, k, k, k)
	fmt.Fprintf(&b, "| method | LDS in memory | LDS f16 store | LDS i8 store | LDS i8 − f16 | top-%d overlap i8/f16, mean | min | top-%d overlap f16/memory | wall time f16 (s) | wall time i8 (s) |\n", k, k)
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, c := range r.StoreComparisons {
		diff := "–"
		if c.LDSDiff != nil {
			diff = fmt.Sprintf("%+.4f", *c.LDSDiff)
		}
		mem := "–"
		if c.MemoryOverlap != nil {
			mem = fmt.Sprintf("%.3f", *c.MemoryOverlap)
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %.3f | %.2f | %s | %.2f | %.2f |\n",
			c.Method, fmtOpt(c.LDSMemory), fmtLDS4(c.LDSF16), fmtLDS4(c.LDSI8), diff, c.Overlap, c.OverlapMin, mem, c.SecondsF16, c.SecondsI8)
	}
	return b.String()
}

// fmtLDS4 formats an LDS with four decimals, enough to read a difference
// of 0.01 from two of them.
func fmtLDS4(v *float64) string {
	if v == nil {
		return "–"
	}
	return fmt.Sprintf("%.4f", *v)
}

// WriteJSON writes the result to path, indented.
func (r *QualityResult) WriteJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(path, func(w io.Writer) error {
		_, err := w.Write(append(b, '\n'))
		return err
	})
}

// Scores runs the registered method key on the task's reference model,
// scoring queries (nil: the test set) against the training set with query
// gradients of −f for output o.
func (t *Task) Scores(ctx context.Context, key string, queries *datasets.Dataset, o models.Output, cfg MethodConfig) (*linalg.Dense64, error) {
	spec, err := LookupMethod(key)
	if err != nil {
		return nil, err
	}
	if spec.Missing != "" {
		return nil, fmt.Errorf("eval: %s: %w: %s", spec.Name, ErrSkipped, spec.Missing)
	}
	if o == "" {
		o = models.Margin
	}
	cfg = t.methodConfig(cfg)
	var truth time.Duration
	in := t.inputs(t.worlds["clean"], QualityOptions{Output: o, Config: cfg}, true, &truth)
	if queries != nil {
		in.Queries = queries
	}
	out, err := spec.Run(ctx, in, false)
	if err != nil {
		return nil, fmt.Errorf("eval: %s: %w", spec.Name, err)
	}
	return out.Scores, nil
}
