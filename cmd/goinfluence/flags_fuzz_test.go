package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/goinfluence/goinfluence/gradients/store"
)

// fuzzCommands are the commands FuzzCLIFlags runs; the others (validate,
// bench, demo) train and time models whatever their flags.
var fuzzCommands = map[string]bool{"fit": true, "score": true, "project": true, "store": true, "train": true, "grads": true}

// fuzzSeeds are the README's and usage's command lines, over the fixtures
// under in/ (g: gradients, q: queries, f: factors, s: a store, m: a
// checkpoint, p: probabilities), and a few invalid combinations.
var fuzzSeeds = []string{
	"train --dataset digits --model mlp --hidden 32 --out mlp.safetensors",
	"train --dataset breast-cancer --model logistic --split-seed 3 --out bc.safetensors",
	"train --dataset digits --model softmax --checkpoint-every 2 --out x",
	"train --dataset digits --model mlp --hidden 8 --epochs 2 --checkpoint-every 1 --out cp.safetensors",
	"grads --checkpoint in/m --dataset digits --split train --labels sampled --out fit.safetensors",
	"grads --checkpoint in/m --dataset digits --split test --first 20 --out query.safetensors",
	"grads --checkpoint in/m --dataset digits --split all --probs-out pr --out g2 --dtype bf16",
	"grads --checkpoint in/m --dataset digits --split train --split-seed 4 --out g3",
	"grads --checkpoint in/m --dataset digits --split test --out in/m",
	"fit --grads in/g --method ekfac --out factors.safetensors",
	"fit --grads in/g,in/g --method kfac --chunk 1 --out f2 --mem-limit 1MiB",
	"fit --grads in/g --method diagonal --out in/g",
	"fit --grads in/g --method ekfac --mem-limit 0 --backend cpu --out f3",
	"score --factors in/f --train in/g --query in/q --damping heuristic --self --topk 2 --out scores.safetensors",
	"score --factors in/f --train in/g --query in/q --rank 1 --per-layer --out s2 --mem-limit 1KiB",
	"score --factors in/f --train in/g --self --out in/f",
	"score --factors in/f --train in/g --query in/q --topk 1 --out in/q",
	"score --factors in/f --train in/g --query in/q --self --topk 2 --per-layer --dtype f64 --out s64",
	"score --factors in/f --train in/g --self --dtype f16 --out s3",
	"project --grads in/g --kind rademacher --k 4 --seed 1 --out p.safetensors",
	"project --grads in/g --kind kronecker --k-in 2 --k-out 1 --seed 3 --out p2",
	"project --grads in/g --kind sjlt --k 8 --out in/g",
	"store build --grads in/g --kind rademacher --k 4 --seed 1 --dtype f16 --out st",
	"store build --grads in/g --out st2 --shard-rows 1 --chunk 1 --dtype i8",
	"store build --grads in/g --out in/s --resume",
	"store score --store in/s --query in/q --topk 50 --out top.safetensors",
	"store score --store in/s --query in/q --hessian raw --damping heuristic --topk 2 --out top2 --scores-out all",
	"store score --store in/s,in/s --query in/q,in/q --lr 0.01,0.01 --topk 5 --out tracin.safetensors",
	"store score --store in/s,in/s --query in/q,in/q --hessian trak --trak-probs in/p,in/p --out trak.safetensors",
	"store score --store in/s --query in/q --factors in/f --out in/q",
	"store score --store in/s --query in/q --out top3 --scores-out top3",
	"store score --store in/s --query in/q --dtype f32 --scores-out all2 --out top4",
	"store score --store in/s --query in/q --dtype f64 --out top5",
}

// FuzzCLIFlags runs the commands that take files on argument vectors made
// by the fuzzer from the usage examples, with a cancelled context so that a
// valid vector stops at the first long step: parsing and validation must
// return errors, never panic, and no command may write over one of its
// inputs. Vectors are space-separated words; paths must be relative and
// are resolved in a temporary directory.
func FuzzCLIFlags(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add(s)
	}
	dir := f.TempDir()
	f.Chdir(dir)
	in := filepath.Join(dir, "in")
	if err := os.Mkdir(in, 0o755); err != nil {
		f.Fatal(err)
	}
	wideGrads(f, filepath.Join(in, "g"), 5, 6)
	wideGrads(f, filepath.Join(in, "q"), 2, 6)
	for _, args := range [][]string{
		{"fit", "--grads", "in/g", "--method", "ekfac", "--out", "in/f"},
		{"store", "build", "--grads", "in/g", "--kind", "rademacher", "--k", "4", "--seed", "1", "--out", "in/s"},
		{"train", "--dataset", "digits", "--model", "softmax", "--out", "in/m"},
		{"grads", "--checkpoint", "in/m", "--dataset", "digits", "--split", "train", "--first", "5", "--probs-out", "in/p", "--out", "in/unused"},
	} {
		var out, errOut bytes.Buffer
		if err := run(context.Background(), args, &out, &errOut); err != nil {
			f.Fatalf("fixture %q: %v", args, err)
		}
	}
	sums := hashTree(f, in)
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()

	f.Fuzz(func(t *testing.T, line string) {
		args := strings.Fields(line)
		if len(args) == 0 || !fuzzCommands[args[0]] || len(args) > 40 {
			return
		}
		for _, a := range args {
			// Keep every write inside the temporary directory.
			if strings.HasPrefix(a, "/") || strings.Contains(a, "..") || strings.Contains(a, `\`) || strings.HasPrefix(a, "~") {
				return
			}
			for _, w := range strings.FieldsFunc(a, func(r rune) bool { return r == '=' || r == ',' }) {
				if strings.HasPrefix(w, "/") {
					return
				}
			}
		}
		var out, errOut bytes.Buffer
		err := run(cancelled, args, &out, &errOut)
		if after := hashTree(t, in); !sameSums(sums, after) {
			t.Fatalf("goinfluence %s (err %v) changed its inputs under in/", line, err)
		}
	})
}

// hashTree returns the SHA-256 of every file under root but a store's build
// lock, which names the build that last held it.
func hashTree(tb testing.TB, root string) map[string][32]byte {
	tb.Helper()
	m := map[string][32]byte{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() == store.LockName {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		m[path] = sha256.Sum256(b)
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	return m
}

// sameSums reports whether every file of want is unchanged in got; new
// files (outputs written under in/) are allowed.
func sameSums(want, got map[string][32]byte) bool {
	for k, v := range want {
		if got[k] != v {
			return false
		}
	}
	return true
}
