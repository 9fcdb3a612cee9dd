package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"

	"github.com/goinfluence/goinfluence/eval"
	"github.com/goinfluence/goinfluence/internal/progress"
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
	prog := progress.New(stderr)
	spec, err := tf.spec(prog)
	if err != nil {
		return err
	}
	var retrained func(done, total int)
	res, err := eval.RunLOO(ctx, eval.LOORun{
		Task: spec, TestPoints: *tests, Remove: *remove, Method: *method, Damping: *damping, Plot: *plotPath,
		Retrained: func(_ string, done, total int) {
			if retrained == nil {
				retrained = prog.Counter("retraining without each removed point")
			}
			retrained(done, total)
		},
	})
	prog.Done()
	switch {
	case err != nil:
		return err
	case *asJSON:
		return json.NewEncoder(stdout).Encode(res)
	}
	return res.WriteText(stdout)
}
