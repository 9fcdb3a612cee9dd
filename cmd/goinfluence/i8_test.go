package main

import (
	"bytes"
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/goinfluence/goinfluence/ekfac"
	"github.com/goinfluence/goinfluence/hessian"
	"github.com/goinfluence/goinfluence/influence"
	"github.com/goinfluence/goinfluence/internal/safetensors"
	"github.com/goinfluence/goinfluence/linalg"
	"github.com/goinfluence/goinfluence/quant"
)

// TestStoreScoreI8 builds an i8 store and scores it with and without
// factors: the scores are the float scores within the quantisation's
// error, the rankings are consistent with the full scores and carry the
// integer sums, and every int8 kernel writes the same bytes.
func TestStoreScoreI8(t *testing.T) {
	sf := newStoreFiles(t)
	_, dir, ptrain, pquery := sf.kroneckerStore(23, "i8", "4")
	sf.run("fit", "--grads", sf.p("fitproj"), "--method", "ekfac", "--out", sf.p("factors"))
	f, err := ekfac.Load(sf.p("factors"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		args   []string
		method influence.Method
	}{
		{"identity", nil, influence.Identity()},
		{"ekfac", []string{"--factors", sf.p("factors"), "--damping", "0.01"}, influence.Factors(f, ekfac.ScoreOptions{Damping: hessian.Damping{Value: 0.01}})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sf.t = t
			tmp := t.TempDir()
			an := &influence.Analyzer{Method: tc.method, Backend: linalg.CPU()}
			want, err := an.Scores(sf.ctx, pquery, ptrain)
			if err != nil {
				t.Fatal(err)
			}
			var outs [][]byte
			for _, kern := range quant.Kernels() {
				t.Setenv(quant.EnvKernel, kern.Name())
				out, full := filepath.Join(tmp, kern.Name()), filepath.Join(tmp, kern.Name()+".full")
				sf.run(append([]string{"store", "score", "--store", dir, "--query", sf.q, "--topk", "3", "--chunk", "5",
					"--scores-out", full, "--out", out}, tc.args...)...)
				// Quantising both sides to 8 bits moves a score by about 1%
				// of the largest; the rankings must agree with the full
				// scores exactly.
				checkScoresFile(t, out, full, want, sf.trainIDs, 3, 0.03)
				st, err := safetensors.Open(out)
				if err != nil {
					t.Fatal(err)
				}
				md := st.Metadata
				st.Close()
				if md["quantisation"] != quant.Version || md["kernel"] != kern.Name() || md["store_dtype"] != "i8" {
					t.Errorf("%s: metadata quantisation %q, kernel %q, store_dtype %q", kern.Name(), md["quantisation"], md["kernel"], md["store_dtype"])
				}
				sums, scores := readTensor(t, out, "topk.isums"), readTensor(t, out, "topk.scores")
				for i, v := range sums {
					if v == 0 || math.Signbit(v) != math.Signbit(scores[i]) {
						t.Fatalf("%s: top-k entry %d: isum %v for score %v", kern.Name(), i, v, scores[i])
					}
				}
				got, err := influence.ReadScores(out)
				if err != nil || !got.RankingISums || got.Rankings[0].Helpful[0].ISum != int64(sums[0]) {
					t.Fatalf("%s: ReadScores: %v", kern.Name(), err)
				}
				b, err := os.ReadFile(full)
				if err != nil {
					t.Fatal(err)
				}
				outs = append(outs, b)
			}
			for i := 1; i < len(outs); i++ {
				// The files differ only in the kernel's name in the
				// metadata: the tensors are the same bytes.
				if !bytes.Equal(tensorBytes(t, outs[i]), tensorBytes(t, outs[0])) {
					t.Errorf("kernel %s: full scores differ from %s's", quant.Kernels()[i].Name(), quant.Kernels()[0].Name())
				}
			}
		})
	}
}

// tensorBytes returns the data section of a safetensors file's bytes.
func tensorBytes(t *testing.T, b []byte) []byte {
	t.Helper()
	if len(b) < 8 {
		t.Fatalf("file of %d bytes", len(b))
	}
	n := int(uint64(b[0]) | uint64(b[1])<<8 | uint64(b[2])<<16 | uint64(b[3])<<24)
	return slices.Clone(b[8+n:])
}
