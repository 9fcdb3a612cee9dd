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
	tf := addTaskFlags(fs, "breast-cancer")
	tests := fs.Int("test-points", 3, "test points to explain")
	remove := fs.Int("remove", 40, "training points removed per test point, largest |score| first")
	method := fs.String("method", "exact", "influence method validated: "+eval.MethodKeys())
	damping := fs.String("damping", eval.DefaultMethodConfig().Damping, "damping of diagonal, K-FAC, EK-FAC and LoGra: l2 (the model's λ), heuristic or a number")
	asJSON := fs.Bool("json", false, "print one JSON object instead of a table")
	plotPath := fs.String("plot", "", "write a scatter plot of predicted vs actual to this PNG file")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *tf.model != "lr" {
		return fmt.Errorf("%w: validate loo retrains to the optimum and needs --model lr", errUsage)
	}
	if _, err := eval.LookupMethod(*method); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if err := checkOutputs("validate loo", paths("--plot", *plotPath), nil); err != nil {
		return err
	}
	progress := newProgress(stderr)
	spec, err := tf.spec(progress)
	if err != nil {
		return err
	}
	var retrained func(done, total int)
	res, err := eval.RunLOO(ctx, eval.LOORun{
		Task: spec, TestPoints: *tests, Remove: *remove, Method: *method, Damping: *damping, Plot: *plotPath,
		Retrained: func(done, total int) {
			if retrained == nil {
				retrained = progress.counter("retraining without each removed point")
			}
			retrained(done, total)
		},
	})
	progress.done()
	switch {
	case err != nil:
		return err
	case *asJSON:
		return json.NewEncoder(stdout).Encode(res)
	}
	return res.WriteText(stdout)
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
