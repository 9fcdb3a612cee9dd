package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/goinfluence/goinfluence/ekfac"
	"github.com/goinfluence/goinfluence/gradients"
	"github.com/goinfluence/goinfluence/influence"
	"github.com/goinfluence/goinfluence/linalg"
)

func runScore(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("score", stderr)
	factorsPath := fs.String("factors", "", "factors file from 'goinfluence fit'")
	trainPath := fs.String("train", "", "gradient file of the training examples (true labels)")
	queryPath := fs.String("query", "", "gradient file of the query examples (true labels)")
	dampingFlag := fs.String("damping", "heuristic", "damping δ added to Λ: a number ≥ 0, or heuristic (0.1 × mean Λ per layer)")
	self := fs.Bool("self", false, "also write self-influence of the training examples (tensor self)")
	topk := fs.Int("topk", 0, "also write the K most helpful training examples per query (topk.indices, topk.scores) and the K most harmful (bottomk.*)")
	rank := fs.Int("rank", 0, "replace each query's preconditioned gradient by its rank-R SVD per layer (0: exact)")
	perLayer := fs.Bool("per-layer", false, "also write the per-layer breakdown (scores.<layer>)")
	out := fs.String("out", "", "scores file to write (safetensors)")
	backend := fs.String("backend", "auto", "linear-algebra backend: auto, cpu, openblas or cuda")
	mem := addMemLimit(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	if *factorsPath == "" || *trainPath == "" || *out == "" {
		return fmt.Errorf("%w: score needs --factors, --train and --out", errUsage)
	}
	if *queryPath == "" && !*self {
		return fmt.Errorf("%w: score needs --query, or --self for self-influence only", errUsage)
	}
	if *topk < 0 || *rank < 0 {
		return fmt.Errorf("%w: score: --topk and --rank must be ≥ 0", errUsage)
	}
	if *topk > 0 && *queryPath == "" {
		return fmt.Errorf("%w: score: --topk needs --query", errUsage)
	}
	inputs := append(paths("--factors", *factorsPath), append(paths("--train", *trainPath), paths("--query", *queryPath)...)...)
	if err := checkOutputs("score", paths("--out", *out), inputs); err != nil {
		return err
	}
	damping, err := ekfac.ParseDamping(*dampingFlag)
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	be, err := openBackend(*backend)
	if err != nil {
		return err
	}
	start := time.Now()
	progress := newProgress(stderr)
	factors, err := ekfac.Load(*factorsPath)
	if err != nil {
		return err
	}
	progress.stage("score: reading " + *trainPath)
	train, err := gradients.ReadFileLimit(*trainPath, mem.bytes())
	if err != nil {
		return withMemFlag("score", err)
	}
	if err := factors.Compatible(train); err != nil {
		return fmt.Errorf("%s: %w", *trainPath, err)
	}

	meta := map[string]string{
		"method":  string(factors.Method),
		"damping": damping.String(),
		"factors": *factorsPath,
		"train":   *trainPath,
		"query":   *queryPath,
		"backend": be.Name(),
		"sign":    "positive = helpful: removing a training example raises the query loss by about score/N",
		"rank":    strconv.Itoa(*rank),
	}
	file := &influence.ScoresFile{Metadata: meta}

	var query *gradients.Batch
	if *queryPath != "" {
		if query, err = gradients.ReadFileLimit(*queryPath, mem.bytes()); err != nil {
			return withMemFlag("score", err)
		}
		if err := checkScoreMemory("score", query.N, train.N, len(train.Layers), *topk, mem.bytes()); err != nil {
			return err
		}
		if err := factors.Compatible(query); err != nil {
			return fmt.Errorf("%s: %w", *queryPath, err)
		}
		progress.stage(fmt.Sprintf("score: %d queries × %d training examples, %s, δ = %s", query.N, train.N, factors.Method, damping))
	}
	if *self {
		progress.stage(fmt.Sprintf("score: self-influence of %d training examples", train.N))
	}
	// One pass over the training examples serves the scores and the
	// self-influence: rotating them into the eigenbasis is most of the work.
	layers, selfInf, err := factors.LayerScoresAndSelf(ctx, be, query, train, ekfac.ScoreOptions{Damping: damping, Rank: *rank, MemoryLimit: mem.bytes()}, *self)
	if err != nil {
		return withMemFlag("score", err)
	}
	if query != nil {
		total := linalg.NewDense64(query.N, train.N, nil)
		for li, l := range layers {
			for i, v := range l.Data {
				total.Data[i] += v
			}
			if *perLayer {
				name := "scores." + train.Layers[li].Name
				m, err := influence.ToF32(name, l)
				if err != nil {
					return err
				}
				file.Layers = append(file.Layers, influence.LayerScores{Name: train.Layers[li].Name, Scores: m})
			}
		}
		// Scores, top-k and whatever is paid from them must not skip an
		// example whose score overflowed: refuse to write NaN or ±Inf.
		if err := influence.CheckFinite(total, train.IDs); err != nil {
			return fmt.Errorf("score: not writing %s: %w", *out, err)
		}
		if file.Scores, err = influence.ToF32("scores", total); err != nil {
			return err
		}
		if *topk > 0 {
			file.K = min(*topk, train.N)
			file.Rankings = influence.TopK(total, file.K)
		}
	}
	if *self {
		if err := influence.CheckFiniteSelf(selfInf, train.IDs); err != nil {
			return fmt.Errorf("score: not writing %s: %w", *out, err)
		}
		file.Self = selfInf
	}
	if err := influence.WriteScores(*out, file); err != nil {
		return err
	}
	progress.stage(fmt.Sprintf("score: wrote %s in %.1f s on %s", *out, time.Since(start).Seconds(), be.Name()))
	return nil
}
