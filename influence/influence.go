package influence

import (
	"context"
	"fmt"

	"github.com/goinfluence/goinfluence/gradients"
	"github.com/goinfluence/goinfluence/linalg"
)

// Method turns query gradients into preconditioned gradients P(∇L(q)).
type Method interface {
	// Name identifies the method ("exact", "identity", …).
	Name() string
	// Precondition returns P(G) for every example of g, flattened: an
	// N × Dim matrix with layers concatenated in the batch's order.
	Precondition(ctx context.Context, be linalg.Backend, g *gradients.Batch) (*linalg.Dense64, error)
}

// LayerScorer is implemented by methods that score faster than
// preconditioning queries and taking dot products (the Kronecker methods
// score in their eigenbasis). The Analyzer uses it when present and leaves
// validating the gradients to it.
type LayerScorer interface {
	LayerScores(ctx context.Context, be linalg.Backend, query, train *gradients.Batch) ([]*linalg.Dense64, error)
	SelfInfluence(ctx context.Context, be linalg.Backend, train *gradients.Batch) ([]float64, error)
}

// Analyzer computes influence scores with a Method on a Backend.
// The zero Backend means the one linalg.Auto picks, looked up by each call
// (Scores, SelfInfluence, …), which returns Auto's error when a forced
// backend cannot open.
type Analyzer struct {
	Method  Method
	Backend linalg.Backend
}

// NewAnalyzer returns an Analyzer for m on the best available backend: its
// Backend is left zero, so each call resolves it with linalg.Auto and a
// forced backend that cannot open is that call's error, not a panic here.
func NewAnalyzer(m Method) *Analyzer {
	return &Analyzer{Method: m}
}

// backend returns the Analyzer's backend, or Auto's choice.
func (a *Analyzer) backend() (linalg.Backend, error) {
	be, err := linalg.OrAuto(a.Backend)
	if err != nil {
		return nil, fmt.Errorf("influence: %w", err)
	}
	return be, nil
}

// Scores returns the n_query × n_train matrix of score(q, t). Positive means
// helpful (see the package documentation for the sign convention). A score
// that is NaN or ±Inf is a *NonFiniteError naming the query and the training
// example.
func (a *Analyzer) Scores(ctx context.Context, query, train *gradients.Batch) (*linalg.Dense64, error) {
	layers, err := a.LayerScores(ctx, query, train)
	if err != nil {
		return nil, err
	}
	if len(layers) == 0 {
		return linalg.NewDense64(query.N, train.N, nil), nil
	}
	total := layers[0]
	for _, l := range layers[1:] {
		for i, v := range l.Data {
			total.Data[i] += v
		}
	}
	if err := CheckFinite(total, train.IDs); err != nil {
		return nil, err
	}
	return total, nil
}

// LayerScores returns the scores broken down by layer, one n_query × n_train
// matrix per layer in batch order; they sum to Scores. A score that is NaN or
// ±Inf is a *NonFiniteError naming the layer, the query and the example.
func (a *Analyzer) LayerScores(ctx context.Context, query, train *gradients.Batch) ([]*linalg.Dense64, error) {
	out, err := a.layerScores(ctx, query, train)
	if err != nil {
		return nil, err
	}
	for li, l := range out {
		if err := CheckFinite(l, train.IDs); err != nil {
			err.(*NonFiniteError).Layer = train.Layers[li].Name
			return nil, err
		}
	}
	return out, nil
}

func (a *Analyzer) layerScores(ctx context.Context, query, train *gradients.Batch) ([]*linalg.Dense64, error) {
	if err := compatible(query, train); err != nil {
		return nil, err
	}
	be, err := a.backend()
	if err != nil {
		return nil, err
	}
	if ls, ok := a.Method.(LayerScorer); ok {
		out, err := ls.LayerScores(ctx, be, query, train)
		if err != nil {
			return nil, fmt.Errorf("influence: %s: %w", a.Method.Name(), err)
		}
		return out, nil
	}
	if err := train.Validate(); err != nil {
		return nil, fmt.Errorf("influence: training gradients: %w", err)
	}
	pq, err := a.precondition(ctx, query, "query")
	if err != nil {
		return nil, err
	}
	out := make([]*linalg.Dense64, len(train.Layers))
	for i := range out {
		out[i] = linalg.NewDense64(query.N, train.N, nil)
	}
	// Training gradients are flattened a chunk of examples at a time so
	// that memory is bounded by the chunk, not the training set.
	dim := train.Dim()
	chunk := max(1, min(train.N, trainChunkFloats/max(dim, 1)))
	for lo := 0; lo < train.N; lo += chunk {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		hi := min(lo+chunk, train.N)
		gt := train.Slice(lo, hi).Flatten()
		off := 0
		for li := range train.Layers {
			d := train.Layers[li].Dim()
			be.Dgemm(linalg.NoTrans, linalg.Trans, 1, pq.Slice(0, query.N, off, off+d), gt.Slice(0, hi-lo, off, off+d),
				0, out[li].Slice(0, query.N, lo, hi))
			off += d
		}
	}
	return out, nil
}

// trainChunkFloats bounds the flattened training gradients held at once.
const trainChunkFloats = 1 << 24

// SelfInfluence returns ⟨P(∇L(t)), ∇L(t)⟩ for every example of train. Large
// values mark examples the model finds hard or mislabelled. A value that is
// NaN or ±Inf is a *NonFiniteError naming the example.
func (a *Analyzer) SelfInfluence(ctx context.Context, train *gradients.Batch) ([]float64, error) {
	s, err := a.selfInfluence(ctx, train)
	if err != nil {
		return nil, err
	}
	if err := CheckFiniteSelf(s, train.IDs); err != nil {
		return nil, err
	}
	return s, nil
}

func (a *Analyzer) selfInfluence(ctx context.Context, train *gradients.Batch) ([]float64, error) {
	if ls, ok := a.Method.(LayerScorer); ok {
		be, err := a.backend()
		if err != nil {
			return nil, err
		}
		s, err := ls.SelfInfluence(ctx, be, train)
		if err != nil {
			return nil, fmt.Errorf("influence: %s: %w", a.Method.Name(), err)
		}
		return s, nil
	}
	pt, err := a.precondition(ctx, train, "training")
	if err != nil {
		return nil, err
	}
	gt := train.Flatten()
	out := make([]float64, train.N)
	for i := range out {
		var s float64
		g := gt.Row(i)
		for j, v := range pt.Row(i) {
			s += v * g[j]
		}
		out[i] = s
	}
	return out, nil
}

func (a *Analyzer) precondition(ctx context.Context, g *gradients.Batch, what string) (*linalg.Dense64, error) {
	if a.Method == nil {
		return nil, fmt.Errorf("influence: Analyzer has no Method")
	}
	if err := g.Validate(); err != nil {
		return nil, fmt.Errorf("influence: %s gradients: %w", what, err)
	}
	be, err := a.backend()
	if err != nil {
		return nil, err
	}
	p, err := a.Method.Precondition(ctx, be, g)
	if err != nil {
		return nil, fmt.Errorf("influence: %s: %w", a.Method.Name(), err)
	}
	return p, nil
}

// compatible checks that two batches have the same layers in the same order
// with the same shapes, so that their flattened gradients line up.
func compatible(q, t *gradients.Batch) error {
	if len(q.Layers) != len(t.Layers) {
		return fmt.Errorf("influence: query has %d layers, training set %d", len(q.Layers), len(t.Layers))
	}
	for i := range q.Layers {
		lq, lt := &q.Layers[i], &t.Layers[i]
		if lq.Name != lt.Name {
			return fmt.Errorf("influence: layer %d is %q in the query, %q in the training set", i, lq.Name, lt.Name)
		}
		if lq.Dim() != lt.Dim() || lq.DIn != lt.DIn || lq.DOut != lt.DOut {
			return fmt.Errorf("influence: layer %q: query gradient is %d×%d (dim %d), training %d×%d (dim %d)",
				lq.Name, lq.DOut, lq.DIn, lq.Dim(), lt.DOut, lt.DIn, lt.Dim())
		}
	}
	return nil
}
