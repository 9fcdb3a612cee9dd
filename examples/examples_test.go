package examples_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// cases lists, for each example, the arguments that keep its run small and
// substrings its output must contain; "$TMP" in an argument stands for a
// temporary directory of the test. Every example directory needs a case,
// except those that are modules of their own.
var cases = map[string]struct {
	args []string
	want []string
}{
	"datanets": {
		args: []string{"-batches", "2", "-batch", "10", "-plot", "$TMP/earnings.png"},
		want: []string{"2 receipts written, checked and verified", "earnings per contributor", "copier earns", "label-flipper earns", "plot: "},
	},
	// lora-lm trains a transformer in PyTorch for minutes: here only its
	// skip path runs (no interpreter), fast and without torch; its Go side
	// runs on planted gradients in lora-lm/main_test.go, and in full with
	// `make lora-lm`.
	"lora-lm": {
		args: []string{"-python", "$TMP/no-python", "-work", "$TMP"},
		want: []string{"lora-lm: skipped:", "cannot import torch"},
	},
	"quickstart": {
		args: []string{"-queries", "2", "-k", "2"},
		want: []string{"accurate on", "Score > 0: helpful", "test digit #", "helpful  train digit", "harmful  train digit", "label "},
	},
	"store": {
		args: []string{"-queries", "2", "-k", "2"},
		want: []string{"1437 training digits in a 256-dimensional f16 store", "test digit #", "helpful  train digit", "harmful  train digit"},
	},
	"service": {
		args: []string{"-selftest", "6"},
		want: []string{"request  0: most helpful id", "request  5: most helpful id", "most harmful id"},
	},
}

// TestExamples builds every example with the go command (one build, the
// usual build cache) and runs each with the arguments of its case.
func TestExamples(t *testing.T) {
	goCmd, err := exec.LookPath("go")
	if err != nil {
		t.Skip("the go command is not on PATH; cannot build the examples")
	}
	dirs, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d.Name(), "main.go")); !d.IsDir() || err != nil {
			continue
		}
		// An example with a go.mod of its own (gorgonia) is another
		// module: this one cannot build it, and its own tests check it
		// (make test-gorgonia).
		if _, err := os.Stat(filepath.Join(d.Name(), "go.mod")); err == nil {
			continue
		}
		names = append(names, d.Name())
	}
	if len(names) == 0 {
		t.Fatal("no example directories found")
	}

	bin := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	build := exec.CommandContext(ctx, goCmd, "build", "-o", bin+string(filepath.Separator))
	for _, name := range names {
		build.Args = append(build.Args, "./"+name)
	}
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(build.Args, " "), err, out)
	}

	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			c, ok := cases[name]
			if !ok {
				t.Fatalf("no test case for examples/%s: add one to cases in examples_test.go", name)
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			args := slices.Clone(c.args)
			for i, a := range args {
				args[i] = strings.ReplaceAll(a, "$TMP", t.TempDir())
			}
			cmd := exec.CommandContext(ctx, filepath.Join(bin, name), args...)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("examples/%s %s: %v\n%s", name, strings.Join(c.args, " "), err, out)
			}
			for _, w := range c.want {
				if !strings.Contains(string(out), w) {
					t.Errorf("examples/%s: output lacks %q:\n%s", name, w, out)
				}
			}
		})
	}
}
