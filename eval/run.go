package eval

import (
	"context"
	"fmt"
	"io"

	"gonum.org/v1/gonum/floats"

	"github.com/goinfluence/goinfluence/datasets"
	"github.com/goinfluence/goinfluence/internal/atomicfile"
	"github.com/goinfluence/goinfluence/linalg"
	"github.com/goinfluence/goinfluence/models"
	"github.com/goinfluence/goinfluence/progress"
)

// This file holds one entry point per protocol, each taking the parameters
// a command line or a service gathers: open the task, run the protocol,
// write the files asked for. Callers only parse their own inputs and print
// the result (WriteText, Markdown, encoding/json).

// TaskSpec names a Task by the parameters of DefaultSetup and the few that
// override it, so that callers need not assemble a Setup themselves.
type TaskSpec struct {
	Dataset, Model string
	// L2, when nonzero, replaces the default λ of the data set and model.
	L2 float64
	// Seed draws the split of the built-in data sets, an MLP's
	// initialisation and its minibatches.
	Seed uint64
	// NTrain and NTest keep only the first rows of each split (0: all).
	NTrain, NTest int
	TaskOptions
}

// OpenTask returns the task of spec, training its reference model unless
// the cache holds it.
func OpenTask(ctx context.Context, spec TaskSpec) (*Task, error) {
	s, err := DefaultSetup(spec.Dataset, spec.Model)
	if err != nil {
		return nil, err
	}
	if spec.L2 != 0 {
		s.L2 = spec.L2
	}
	if spec.NTrain < 0 || spec.NTest < 0 || spec.Workers < 0 {
		return nil, fmt.Errorf("eval: task %s/%s: n-train %d, n-test %d and workers %d must be ≥ 0",
			spec.Dataset, spec.Model, spec.NTrain, spec.NTest, spec.Workers)
	}
	s.Seed, s.NTrain, s.NTest = spec.Seed, spec.NTrain, spec.NTest
	return NewTask(ctx, s, spec.TaskOptions)
}

// QualityRun is one run of the quality harness (Task.Quality) on the task
// of Task, with the files it leaves behind.
type QualityRun struct {
	Task    TaskSpec
	Quality QualityOptions
	// MarkdownFile and JSONFile, when set, receive the result as
	// QualityResult.Markdown and QualityResult.WriteJSON write it.
	MarkdownFile, JSONFile string
}

// RunQuality opens the task, runs Task.Quality and writes the files of r,
// each atomically. It reports every file written, plots included, through
// r.Task.Progress as "wrote PATH", so that a caller's log names them.
func RunQuality(ctx context.Context, r QualityRun) (*QualityResult, error) {
	t, err := OpenTask(ctx, r.Task)
	if err != nil {
		return nil, err
	}
	res, err := t.Quality(ctx, r.Quality)
	if err != nil {
		return nil, err
	}
	for _, path := range res.Plots {
		t.stage("wrote " + path)
	}
	if r.MarkdownFile != "" {
		err := atomicfile.WriteFile(r.MarkdownFile, func(w io.Writer) error {
			_, err := io.WriteString(w, res.Markdown())
			return err
		})
		if err != nil {
			return nil, err
		}
		t.stage("wrote " + r.MarkdownFile)
	}
	if r.JSONFile != "" {
		if err := res.WriteJSON(r.JSONFile); err != nil {
			return nil, err
		}
		t.stage("wrote " + r.JSONFile)
	}
	return res, nil
}

// LOORun is one leave-one-out validation (LOO) on the model of Task, which
// must be convex ("lr") so that retraining reaches the same optimum.
type LOORun struct {
	Task TaskSpec
	// TestPoints, Remove and the task's seed are those of LOOOptions.
	TestPoints, Remove int
	// Method is the registry key of the method validated; "" or "exact"
	// means exact influence. Damping configures it as MethodConfig.Damping.
	Method, Damping string
	// Plot, when set, receives the scatter of PlotLOO.
	Plot string
	// Retrained is told after each retraining (LOOOptions.Progress).
	Retrained progress.Func
}

// RunLOO opens the task, reports through r.Task.Progress how close its
// model is to the optimum (‖∇R‖), runs LOO and writes the plot.
func RunLOO(ctx context.Context, r LOORun) (*LOOResult, error) {
	if r.Task.Model != "lr" {
		return nil, fmt.Errorf("eval: LOO retrains to the optimum and needs model lr, not %q", r.Task.Model)
	}
	if r.Method != "" && r.Method != "exact" {
		if _, err := LookupMethod(r.Method); err != nil {
			return nil, err
		}
	}
	t, err := OpenTask(ctx, r.Task)
	if err != nil {
		return nil, err
	}
	p, err := t.Problem()
	if err != nil {
		return nil, err
	}
	grad := make([]float64, len(p.Model.Params()))
	p.Model.Objective(p.Train.X, p.Train.Y, nil, grad)
	t.stage(fmt.Sprintf("trained %s: %d examples, ‖∇R‖ = %.2g", p.Model.Kind(), p.Train.Len(), floats.Norm(grad, 2)))
	opt := LOOOptions{TestPoints: r.TestPoints, Remove: r.Remove, Seed: r.Task.Seed, Progress: r.Retrained, Backend: t.Backend}
	if r.Method != "" && r.Method != "exact" {
		opt.Method = r.Method
		opt.Scores = func(ctx context.Context, q *datasets.Dataset) (*linalg.Dense64, error) {
			return t.Scores(ctx, r.Method, q, models.NegLoss, MethodConfig{Damping: r.Damping})
		}
	}
	res, err := LOO(ctx, p, opt)
	if err != nil {
		return nil, err
	}
	if r.Plot != "" {
		if err := PlotLOO(r.Plot, res); err != nil {
			return nil, err
		}
		t.stage("wrote " + r.Plot)
	}
	return res, nil
}
