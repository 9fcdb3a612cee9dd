package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/goinfluence/goinfluence/gradients"
	"github.com/goinfluence/goinfluence/gradients/store"
)

// TestOutputIsInput runs every command whose output can name one of its
// inputs, and holds it to §6: the command fails, before any work, with an
// error naming both flags, and the input keeps its bytes.
func TestOutputIsInput(t *testing.T) {
	base := t.TempDir()
	p := func(name string) string { return filepath.Join(base, name) }
	rng := rand.New(rand.NewPCG(21, 22))
	for name, b := range map[string]*gradients.Batch{"fit": randomGrads(rng, 12), "train": randomGrads(rng, 7), "query": randomGrads(rng, 2)} {
		if err := gradients.WriteFile(p(name), b, gradients.F32, nil); err != nil {
			t.Fatal(err)
		}
	}
	runOK(t, "fit", "--grads", p("fit"), "--method", "ekfac", "--out", p("factors"))
	runOK(t, "train", "--dataset", "breast-cancer", "--model", "logistic", "--out", p("ckpt"))
	runOK(t, "store", "build", "--grads", p("train"), "--out", p("store"))
	shard := filepath.Join(p("store"), "shard-000000.safetensors")
	if _, err := os.Stat(shard); err != nil {
		t.Fatal(err)
	}

	// Each case names its victim, an input file of the fixture that the
	// command is given through a fresh copy v; args builds the command line
	// from v and from out, a path in the case's own directory.
	tests := []struct {
		name   string
		victim string
		link   string // "symlink" or "hard": the output is a link to v
		args   func(v, out string) []string
		want   []string // in the error
	}{
		{"score --train x --out x", p("train"), "", func(v, _ string) []string {
			return []string{"score", "--factors", p("factors"), "--train", v, "--query", p("query"), "--out", v}
		}, []string{"score: --out ", " is the same file as --train "}},
		{"score --factors x --out x", p("factors"), "", func(v, _ string) []string {
			return []string{"score", "--factors", v, "--train", p("train"), "--query", p("query"), "--out", v}
		}, []string{"--out", "--factors"}},
		{"score --query x --out x", p("query"), "", func(v, _ string) []string {
			return []string{"score", "--factors", p("factors"), "--train", p("train"), "--query", v, "--out", v}
		}, []string{"--out", "--query"}},
		{"score --out symlink to --train", p("train"), "symlink", func(v, out string) []string {
			return []string{"score", "--factors", p("factors"), "--train", v, "--query", p("query"), "--out", out}
		}, []string{"--out", "--train"}},
		{"score --out hard link to --train", p("train"), "hard", func(v, out string) []string {
			return []string{"score", "--factors", p("factors"), "--train", v, "--query", p("query"), "--self", "--out", out}
		}, []string{"--out", "--train"}},
		{"fit --grads x --out x", p("fit"), "", func(v, _ string) []string {
			return []string{"fit", "--grads", v, "--method", "kfac", "--out", v}
		}, []string{"fit: --out", "--grads"}},
		{"fit second --grads", p("fit"), "", func(v, _ string) []string {
			return []string{"fit", "--grads", p("fit") + "," + v, "--out", v}
		}, []string{"--out", "--grads"}},
		{"grads --checkpoint x --out x", p("ckpt"), "", func(v, _ string) []string {
			return []string{"grads", "--checkpoint", v, "--dataset", "breast-cancer", "--split", "train", "--out", v}
		}, []string{"grads: --out", "--checkpoint"}},
		{"grads --checkpoint x --probs-out x", p("ckpt"), "", func(v, out string) []string {
			return []string{"grads", "--checkpoint", v, "--dataset", "breast-cancer", "--split", "train", "--out", out, "--probs-out", v}
		}, []string{"--probs-out", "--checkpoint"}},
		{"project --grads x --out symlink", p("train"), "symlink", func(v, out string) []string {
			return []string{"project", "--grads", v, "--kind", "sjlt", "--k", "4", "--out", out}
		}, []string{"project: --out", "--grads"}},
		{"store score --query x --out x", p("query"), "", func(v, _ string) []string {
			return []string{"store", "score", "--store", p("store"), "--query", v, "--out", v}
		}, []string{"store score: --out", "--query"}},
		{"store score --query x --scores-out x", p("query"), "", func(v, out string) []string {
			return []string{"store", "score", "--store", p("store"), "--query", v, "--out", out, "--scores-out", v}
		}, []string{"--scores-out", "--query"}},
		{"store score --factors x --scores-out x", p("factors"), "", func(v, out string) []string {
			return []string{"store", "score", "--store", p("store"), "--query", p("query"), "--factors", v, "--out", out, "--scores-out", v}
		}, []string{"--scores-out", "--factors"}},
		{"store score --out a shard of --store", shard, "hard", func(v, out string) []string {
			return []string{"store", "score", "--store", p("store"), "--query", p("query"), "--out", out}
		}, []string{"--out", "--store " + shard}},
		{"store score --scores-out the manifest", filepath.Join(p("store"), store.ManifestName), "symlink", func(v, out string) []string {
			return []string{"store", "score", "--store", p("store"), "--query", p("query"), "--out", filepath.Join(filepath.Dir(out), "top"), "--scores-out", out}
		}, []string{"--scores-out", "--store " + filepath.Join(p("store"), store.ManifestName)}},
		{"store build --grads the manifest of --out", filepath.Join(p("store"), store.ManifestName), "", func(v, _ string) []string {
			return []string{"store", "build", "--resume", "--grads", v, "--out", p("store")}
		}, []string{"store build: --out " + filepath.Join(p("store"), store.ManifestName), "--grads"}},
		{"store build --grads a shard of --out", shard, "", func(v, _ string) []string {
			return []string{"store", "build", "--resume", "--grads", p("train") + "," + v, "--out", p("store")}
		}, []string{"--out " + shard, "--grads"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			v := tc.victim
			if !strings.HasPrefix(v, p("store")) {
				v = filepath.Join(dir, "input")
				copyFile(t, tc.victim, v)
			}
			out := filepath.Join(dir, "out")
			switch tc.link {
			case "symlink":
				if err := os.Symlink(v, out); err != nil {
					t.Fatal(err)
				}
			case "hard":
				if err := os.Link(v, out); err != nil {
					t.Fatal(err)
				}
			}
			before := fileSum(t, v)
			var stdout, stderr bytes.Buffer
			err := run(context.Background(), tc.args(v, out), &stdout, &stderr)
			if err == nil {
				t.Fatalf("succeeded, want an error naming %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if fileSum(t, v) != before {
				t.Errorf("%s changed", v)
			}
			if tc.link != "" && fileSum(t, out) != before {
				t.Errorf("%s no longer links to %s", out, v)
			}
			for _, d := range []string{dir, p("store")} {
				ents, _ := os.ReadDir(d)
				for _, e := range ents {
					if strings.HasPrefix(e.Name(), ".") {
						t.Errorf("temporary file %s left in %s", e.Name(), d)
					}
				}
			}
		})
	}
}

// TestOutputDir checks that an output in a directory that does not exist
// fails before any work, naming the flag.
func TestOutputDir(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "no", "such", "out")
	for _, args := range [][]string{
		{"train", "--dataset", "digits", "--model", "mlp", "--out", missing},
		{"demo", "--png", missing},
		{"validate", "loo", "--plot", missing},
		{"validate", "quality", "--out-md", missing},
		{"fit", "--grads", filepath.Join(dir, "g"), "--out", missing},
		{"grads", "--checkpoint", filepath.Join(dir, "c"), "--dataset", "digits", "--split", "train", "--out", filepath.Join(dir, "g"), "--probs-out", missing},
	} {
		t.Run(strings.Join(args[:2], " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := run(context.Background(), args, &stdout, &stderr)
			if err == nil || !strings.Contains(err.Error(), missing) || !strings.Contains(err.Error(), "no such file") {
				t.Fatalf("error %v, want one naming %s as missing", err, missing)
			}
		})
	}
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func fileSum(t *testing.T, path string) [sha256.Size]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}
