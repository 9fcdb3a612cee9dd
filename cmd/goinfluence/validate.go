package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
	"gonum.org/v1/gonum/floats"

	"github.com/goinfluence/goinfluence/datasets"
	"github.com/goinfluence/goinfluence/eval"
	"github.com/goinfluence/goinfluence/linalg"
)

func runValidateLOO(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("validate loo", stderr)
	tf := addTaskFlags(fs, "breast-cancer")
	tests := fs.Int("test-points", 3, "test points to explain")
	remove := fs.Int("remove", 40, "training points removed per test point, largest |score| first")
	method := fs.String("method", "exact", "influence method validated: "+methodKeys())
	damping := fs.String("damping", eval.DefaultMethodConfig().Damping, "damping of diagonal, K-FAC, EK-FAC and LoGra: l2 (the model's λ), heuristic or a number")
	asJSON := fs.Bool("json", false, "print one JSON object instead of a table")
	plotPath := fs.String("plot", "", "write a scatter plot of predicted vs actual to this PNG file")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *tf.model != "lr" {
		return fmt.Errorf("%w: validate loo retrains to the optimum and needs --model lr", errUsage)
	}
	if err := checkOutputs("validate loo", paths("--plot", *plotPath), nil); err != nil {
		return err
	}
	progress := newProgress(stderr)
	task, err := tf.task(ctx, progress)
	if err != nil {
		return err
	}
	p, err := task.Problem()
	if err != nil {
		return err
	}
	grad := make([]float64, len(p.Model.Params()))
	p.Model.Objective(p.Train.X, p.Train.Y, nil, grad)
	progress.stage(fmt.Sprintf("trained %s: %d examples, ‖∇R‖ = %.2g", p.Model.Kind(), p.Train.Len(), floats.Norm(grad, 2)))
	opt := eval.LOOOptions{
		TestPoints: *tests, Remove: *remove, Seed: *tf.seed,
		Progress: progress.counter("retraining without each removed point"),
	}
	if *method != "exact" {
		if _, err := eval.LookupMethod(*method); err != nil {
			return fmt.Errorf("%w: %v", errUsage, err)
		}
		opt.Method = *method
		opt.Scores = func(ctx context.Context, q *datasets.Dataset) (*linalg.Dense64, error) {
			return task.Scores(ctx, *method, q, eval.NegLoss, eval.MethodConfig{Damping: *damping})
		}
	}
	res, err := eval.LOO(ctx, p, opt)
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
	fmt.Fprintf(stdout, "LOO validation of %s influence, %s %s (λ = %g, N = %d, backend %s)\n",
		res.Method, res.Dataset, res.Model, res.L2, res.NTrain, res.Backend)
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
