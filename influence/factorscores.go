package influence

import (
	"context"
	"errors"
	"fmt"

	"github.com/goinfluence/goinfluence/ekfac"
	"github.com/goinfluence/goinfluence/gradients"
	"github.com/goinfluence/goinfluence/linalg"
)

// FactorScoresOptions configure FactorScores.
type FactorScoresOptions struct {
	// Damping, Rank, MemoryLimit and Precision are as for
	// ekfac.ScoreOptions; Precision F32 applies only without Self.
	// MemoryLimit also bounds the summed scores, their float32 copy (for
	// ScoresF32) and the rankings: 0 means linalg.DefaultMemoryLimit(), a
	// negative value no limit.
	ekfac.ScoreOptions
	// TopK > 0 also ranks the TopK most helpful and most harmful training
	// examples of each query.
	TopK int
	// PerLayer also keeps each layer's scores (ScoresFile.Layers).
	PerLayer bool
	// Self also computes the self-influence of the training examples.
	Self bool
	// DType is the file's DType. With ScoresF64 the scores are kept as
	// computed, in ScoresFile.Scores64 and LayerScores.Scores64; with
	// ScoresF32 they are narrowed into Scores.
	DType ScoresDType
}

// FactorScores scores query against train with fitted factors and returns
// the content of a scores file (without its metadata): the summed scores,
// and on request the per-layer scores, the rankings and the
// self-influence of train. query may be nil for self-influence alone. One
// pass over the training examples serves the scores and the
// self-influence: rotating them into the eigenbasis is most of the work.
//
// Allocations sized from the batches are checked against
// opt.MemoryLimit before any is made (a *linalg.MemoryError). A score that
// is NaN or infinite is a *NonFiniteError naming the example: a file
// holding one would skip that example in every ranking and payment made
// from it.
func FactorScores(ctx context.Context, be linalg.Backend, f *ekfac.Factors, query, train *gradients.Batch, opt FactorScoresOptions) (*ScoresFile, error) {
	switch {
	case f == nil || train == nil:
		return nil, errors.New("influence: FactorScores: nil factors or training batch")
	case query == nil && !opt.Self:
		return nil, errors.New("influence: FactorScores: no queries and no self-influence asked for")
	case opt.TopK < 0:
		return nil, fmt.Errorf("influence: FactorScores: top-k %d < 0", opt.TopK)
	case opt.DType != ScoresF32 && opt.DType != ScoresF64:
		return nil, fmt.Errorf("influence: FactorScores: unknown %v", opt.DType)
	}
	if query != nil {
		if err := checkScoresMemory(query.N, train.N, len(train.Layers), opt.TopK, opt.DType, opt.MemoryLimit); err != nil {
			return nil, err
		}
	}
	layers, self, err := f.LayerScoresAndSelf(ctx, be, query, train, opt.ScoreOptions, opt.Self)
	if err != nil {
		return nil, err
	}
	file := &ScoresFile{DType: opt.DType}
	if query != nil {
		total := linalg.NewDense64(query.N, train.N, nil)
		for li, l := range layers {
			for i, v := range l.Data {
				total.Data[i] += v
			}
			if opt.PerLayer {
				ls := LayerScores{Name: train.Layers[li].Name, Scores64: l}
				if opt.DType == ScoresF32 {
					if ls.Scores, err = ToF32("scores."+ls.Name, l); err != nil {
						return nil, err
					}
					ls.Scores64 = nil
				}
				file.Layers = append(file.Layers, ls)
			}
		}
		if err := CheckFinite(total, train.IDs); err != nil {
			return nil, err
		}
		if opt.DType == ScoresF64 {
			file.Scores64 = total
		} else if file.Scores, err = ToF32("scores", total); err != nil {
			return nil, err
		}
		if opt.TopK > 0 {
			file.K = min(opt.TopK, train.N)
			file.Rankings = TopK(total, file.K)
		}
	}
	if opt.Self {
		if err := CheckFiniteSelf(self, train.IDs); err != nil {
			return nil, err
		}
		file.Self = self
	}
	return file, nil
}

// checkScoresMemory refuses the outputs of FactorScores that would not fit
// in limit, from the batches' sizes alone: the summed n_query × n_train
// float64 scores and, for ScoresF32, their float32 copy, the per-layer
// scores, and with top-k the rankings (indices and scores, both sides).
func checkScoresMemory(nq, nt, layers, topk int, dt ScoresDType, limit int64) error {
	var narrowed int64
	if dt == ScoresF32 {
		narrowed = linalg.Float64Bytes(nq, nt) / 2
	}
	need := linalg.AddBytes(linalg.Float64Bytes(nq, nt), narrowed,
		linalg.Float64Bytes(layers, nq, nt), linalg.Float64Bytes(4, nq, min(topk, nt)))
	return linalg.CheckMemory("scores", fmt.Sprintf("%d queries × %d training examples, %d layers", nq, nt, layers), need, limit)
}
