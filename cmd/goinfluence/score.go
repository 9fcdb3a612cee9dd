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
	"github.com/goinfluence/goinfluence/internal/safetensors"
	"github.com/goinfluence/goinfluence/linalg"
)

// ScoresFormat is the metadata "format" of a scores file.
const ScoresFormat = "goinfluence.scores/v1"

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
		"format":  ScoresFormat,
		"method":  string(factors.Method),
		"damping": damping.String(),
		"factors": *factorsPath,
		"train":   *trainPath,
		"query":   *queryPath,
		"backend": be.Name(),
		"sign":    "positive = helpful: removing a training example raises the query loss by about score/N",
		"rank":    strconv.Itoa(*rank),
	}
	var ts []safetensors.Tensor
	add := func(name string, shape []int, v []float64, dt safetensors.DType) error {
		data, err := safetensors.EncodeFloat64s(dt, v)
		if err != nil {
			return fmt.Errorf("encoding %s: %w", name, err)
		}
		ts = append(ts, safetensors.Tensor{Name: name, DType: dt, Shape: shape, Data: data})
		return nil
	}

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
				if err := add("scores."+train.Layers[li].Name, []int{query.N, train.N}, l.Data, safetensors.F32); err != nil {
					return err
				}
			}
		}
		// Scores, top-k and whatever is paid from them must not skip an
		// example whose score overflowed: refuse to write NaN or ±Inf.
		if err := influence.CheckFinite(total, train.IDs); err != nil {
			return fmt.Errorf("score: not writing %s: %w", *out, err)
		}
		if err := add("scores", []int{query.N, train.N}, total.Data, safetensors.F32); err != nil {
			return err
		}
		if *topk > 0 {
			rt, err := rankingTensors(influence.TopK(total, min(*topk, train.N)), min(*topk, train.N), false)
			if err != nil {
				return err
			}
			ts = append(ts, rt...)
		}
	}
	if *self {
		if err := influence.CheckFiniteSelf(selfInf, train.IDs); err != nil {
			return fmt.Errorf("score: not writing %s: %w", *out, err)
		}
		if err := add("self", []int{train.N}, selfInf, safetensors.F32); err != nil {
			return err
		}
	}
	if err := safetensors.WriteFile(*out, ts, meta); err != nil {
		return err
	}
	progress.stage(fmt.Sprintf("score: wrote %s in %.1f s on %s", *out, time.Since(start).Seconds(), be.Name()))
	return nil
}

// rankingTensors returns the tensors of per-query rankings, each [n_query, k]:
// topk.indices (I64) and topk.scores (F32), most helpful first, and
// bottomk.* likewise, most harmful first; with ids also topk.ids and
// bottomk.ids, the examples' stored ids.
func rankingTensors(rankings []influence.Ranking, k int, ids bool) ([]safetensors.Tensor, error) {
	nq := len(rankings)
	var ts []safetensors.Tensor
	for _, side := range []string{"topk", "bottomk"} {
		idx := make([]int64, 0, nq*k)
		sid := make([]int64, 0, nq*k)
		val := make([]float64, 0, nq*k)
		for q, r := range rankings {
			list := r.Helpful
			if side == "bottomk" {
				list = r.Harmful
			}
			if len(list) != k {
				return nil, fmt.Errorf("query %d: %d %s entries, want %d", q, len(list), side, k)
			}
			for _, e := range list {
				idx = append(idx, int64(e.Index))
				sid = append(sid, e.ID)
				val = append(val, e.Score)
			}
		}
		if err := appendI64(&ts, side+".indices", []int{nq, k}, idx); err != nil {
			return nil, err
		}
		if ids {
			if err := appendI64(&ts, side+".ids", []int{nq, k}, sid); err != nil {
				return nil, err
			}
		}
		data, err := safetensors.EncodeFloat64s(safetensors.F32, val)
		if err != nil {
			return nil, fmt.Errorf("encoding %s.scores: %w", side, err)
		}
		ts = append(ts, safetensors.Tensor{Name: side + ".scores", DType: safetensors.F32, Shape: []int{nq, k}, Data: data})
	}
	return ts, nil
}

func appendI64(ts *[]safetensors.Tensor, name string, shape []int, v []int64) error {
	data, err := safetensors.EncodeInt64s(safetensors.I64, v)
	if err != nil {
		return fmt.Errorf("encoding %s: %w", name, err)
	}
	*ts = append(*ts, safetensors.Tensor{Name: name, DType: safetensors.I64, Shape: shape, Data: data})
	return nil
}
