package models

import (
	"context"
	"fmt"

	"github.com/goinfluence/goinfluence/gradients"
	"github.com/goinfluence/goinfluence/linalg"
)

// Labels chooses the labels at which ExampleGradients takes the loss.
type Labels int

const (
	// TrueLabels takes the loss at the data's own labels: the gradients
	// that influence scores are made of.
	TrueLabels Labels = iota
	// SampledLabels draws each label from the model's predictive
	// distribution (SampleLabels), which gives the true Fisher that
	// curvature fits should use.
	SampledLabels
)

// String returns "true" or "sampled", the words of the gradient files'
// "labels" metadata.
func (l Labels) String() string {
	switch l {
	case TrueLabels:
		return "true"
	case SampledLabels:
		return "sampled"
	}
	return fmt.Sprintf("Labels(%d)", int(l))
}

// GradOptions configures ExampleGradients.
type GradOptions struct {
	Labels Labels
	Seed   uint64 // seed of SampledLabels
	// First, when positive, keeps only the first First rows. Labels are
	// sampled row by row, so those of the first rows do not depend on it.
	First int
	// IDs, if not nil, names each row (its index in the data set) and
	// becomes the batch's IDs; nil means 0, 1, ….
	IDs []int
	// Probs asks for p(y) of each row's true label as well: TRAK's
	// weights.
	Probs bool
}

// ExampleGradients returns the per-example gradients of m's loss on the
// rows of x, at the labels opt asks for, as a batch whose IDs name the rows;
// with opt.Probs it also returns p(y) of each row's true label y. It checks
// that the data fit the model first, so that a checkpoint of another data
// set shows up as an error naming the feature count or label, not as
// silently wrong gradients.
func ExampleGradients(ctx context.Context, m Model, x *linalg.Dense64, y []int, opt GradOptions) (b *gradients.Batch, probs []float64, err error) {
	if x == nil {
		return nil, nil, fmt.Errorf("models: example gradients: nil data")
	}
	n := x.Rows
	switch {
	case opt.Labels != TrueLabels && opt.Labels != SampledLabels:
		return nil, nil, fmt.Errorf("models: example gradients: Labels %v: want TrueLabels or SampledLabels", opt.Labels)
	case opt.IDs != nil && len(opt.IDs) != n:
		return nil, nil, fmt.Errorf("models: example gradients: %d IDs for %d rows", len(opt.IDs), n)
	case opt.First < 0 || opt.First > n:
		return nil, nil, fmt.Errorf("models: example gradients: First %d, but the data have %d rows", opt.First, n)
	}
	if opt.First > 0 {
		n = opt.First
		head := linalg.NewDense64(n, x.Cols, nil)
		for r := range n {
			copy(head.Row(r), x.Row(r))
		}
		x, y = head, y[:min(n, len(y))]
	}
	if err := CheckData(m, x, y, nil); err != nil {
		return nil, nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	labels := y
	if opt.Labels == SampledLabels {
		labels = SampleLabels(m, x, opt.Seed)
	}
	b = m.Gradients(x, labels)
	b.IDs = make([]int64, n)
	for i := range b.IDs {
		b.IDs[i] = int64(i)
		if opt.IDs != nil {
			b.IDs[i] = int64(opt.IDs[i])
		}
	}
	if opt.Probs {
		p := m.Probs(x)
		probs = make([]float64, n)
		for i, label := range y {
			probs[i] = p.At(i, label)
		}
	}
	return b, probs, nil
}
