package main

import (
	"bytes"
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/goinfluence/goinfluence/gradients"
)

// TestScoreNonFinite: a training example with a finite gradient of 1e300
// passes the NaN/Inf checks on read but overflows its scores; score refuses
// to write the file and names the query and the example, for every method
// and for the scores and the self-influence alike.
func TestScoreNonFinite(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 22))
	dir := t.TempDir()
	p := func(name string) string { return filepath.Join(dir, name) }
	train := randomGrads(rng, 7)
	train.IDs = []int64{50, 51, 52, 53, 54, 55, 56}
	l := &train.Layers[1]
	for i := range l.DIn {
		l.A[3*l.DIn+i] = 1e300
	}
	for i := range l.DOut {
		l.S[3*l.DOut+i] = 1e300
	}
	for name, b := range map[string]*gradients.Batch{"fit": randomGrads(rng, 20), "train": train, "query": randomGrads(rng, 2)} {
		if err := gradients.WriteFile(p(name), b, gradients.F64, nil); err != nil {
			t.Fatal(err)
		}
	}
	ctx := context.Background()
	for _, method := range []string{"ekfac", "kfac", "diagonal", "identity"} {
		var out, errOut bytes.Buffer
		if err := run(ctx, []string{"fit", "--grads", p("fit"), "--method", method, "--out", p(method)}, &out, &errOut); err != nil {
			t.Fatalf("fit %s: %v\n%s", method, err, errOut.String())
		}
		for _, tc := range []struct {
			name string
			args []string
			want string
		}{
			{"scores", []string{"--query", p("query"), "--topk", "2"}, "query 0, training example 3 (id 53)"},
			{"self", []string{"--self"}, "self-influence +Inf for training example 3 (id 53)"},
		} {
			t.Run(method+"/"+tc.name, func(t *testing.T) {
				dst := p(method + "-" + tc.name)
				args := append([]string{"score", "--factors", p(method), "--train", p("train"), "--out", dst}, tc.args...)
				err := run(ctx, args, &out, &errOut)
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("error %v, want one containing %q", err, tc.want)
				}
				if _, err := os.Stat(dst); !os.IsNotExist(err) {
					t.Errorf("%s was written: %v", dst, err)
				}
			})
		}
	}
}
