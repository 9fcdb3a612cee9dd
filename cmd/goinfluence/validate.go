package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"github.com/goinfluence/goinfluence/eval"
)

func runValidateLOO(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("validate loo", stderr)
	dataset := fs.String("dataset", "breast-cancer", "data set: breast-cancer (logistic regression) or digits (softmax regression)")
	tests := fs.Int("test-points", 3, "test points to explain")
	remove := fs.Int("remove", 40, "training points removed per test point, largest |score| first")
	l2 := fs.Float64("l2", 0, "L2 strength λ on the mean loss (0: the data set's default, 0.01)")
	seed := fs.Uint64("seed", 1, "seed for the train/test split and the choice of test points")
	asJSON := fs.Bool("json", false, "print one JSON object instead of a table")
	plotPath := fs.String("plot", "", "write a scatter plot of predicted vs actual to this PNG file")
	if err := parse(fs, args); err != nil {
		return err
	}
	progress := newProgress(stderr)
	progress.stage(fmt.Sprintf("training on %s", *dataset))
	p, err := eval.NewProblem(ctx, *dataset, *l2, *seed)
	if err != nil {
		return err
	}
	progress.stage(fmt.Sprintf("trained %s: %d examples, ‖∇R‖ = %.2g after %d Newton steps",
		p.Model.Kind(), p.Train.Len(), p.Fit.GradNorm, p.Fit.Iterations))
	res, err := eval.LOO(ctx, p, eval.LOOOptions{
		TestPoints: *tests, Remove: *remove, Seed: *seed,
		Progress: progress.counter("retraining without each removed point"),
	})
	progress.done()
	if err != nil {
		return err
	}
	if *plotPath != "" {
		if err := eval.PlotLOO(*plotPath, res); err != nil {
			return err
		}
		progress.stage("wrote " + *plotPath)
	}
	if *asJSON {
		return json.NewEncoder(stdout).Encode(res)
	}
	fmt.Fprintf(stdout, "LOO validation of exact influence, %s %s (λ = %g, N = %d, backend %s)\n",
		res.Dataset, res.Model, res.L2, res.NTrain, res.Backend)
	fmt.Fprintf(stdout, "%-10s %10s %10s\n", "test", "Pearson", "Spearman")
	for _, t := range res.PerTest {
		fmt.Fprintf(stdout, "%-10d %10.4f %10.4f\n", t.Test, t.Pearson, t.Spearman)
	}
	fmt.Fprintf(stdout, "%-10s %10.4f %10.4f   (%d points, %d retrainings, max ‖∇R‖ %.1g, %.1f s)\n",
		"all", res.Pearson, res.Spearman, len(res.Points), res.Retrained, res.GradNorm, res.Seconds)
	return nil
}

// progress reports stages on stderr: a bar when stderr is a terminal, a
// plain line per stage otherwise (so logs stay readable).
type progress struct {
	w   io.Writer
	tty bool
	bar *progressbar.ProgressBar
}

func newProgress(w io.Writer) *progress {
	f, ok := w.(*os.File)
	return &progress{w: w, tty: ok && term.IsTerminal(int(f.Fd()))}
}

func (p *progress) stage(msg string) {
	p.done()
	fmt.Fprintln(p.w, msg)
}

// counter returns a callback for a stage of known length.
func (p *progress) counter(msg string) func(done, total int) {
	p.done()
	if !p.tty {
		fmt.Fprintln(p.w, msg)
		return func(done, total int) {
			if done == total {
				fmt.Fprintf(p.w, "%s: %d/%d done\n", msg, done, total)
			}
		}
	}
	return func(done, total int) {
		if p.bar == nil {
			p.bar = progressbar.NewOptions(total, progressbar.OptionSetWriter(p.w),
				progressbar.OptionSetDescription(msg), progressbar.OptionShowCount(),
				progressbar.OptionClearOnFinish())
		}
		_ = p.bar.Set(done)
	}
}

func (p *progress) done() {
	if p.bar != nil {
		_ = p.bar.Finish()
		p.bar = nil
	}
}
