package models

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/goinfluence/goinfluence/gradients"
	"github.com/goinfluence/goinfluence/linalg"
)

// LayerSpec describes one weight matrix of a model. DIn counts the bias
// column: the layer computes W·[x; 1] with W of shape DOut × DIn.
type LayerSpec struct {
	Name      string
	DIn, DOut int
}

// Model is a classifier trained with cross-entropy and an L2 penalty. Its
// training objective on examples (X, y) with per-example weights w is
//
//	R(θ) = (1/N) Σ_n w_n ℓ_n(θ) + (λ/2)‖θ‖²
//
// where N is the number of rows of X (not Σw, so that a weight of 0 removes an
// example exactly as influence functions assume) and λ = L2(). The penalty
// covers every parameter, biases included, which keeps the Hessian of the
// convex models positive definite.
//
// Parameters are the layers' weight matrices, each row-major DOut × DIn,
// concatenated in layer order: the same order as the flattened gradients of a
// gradients.Batch from Gradients.
type Model interface {
	// Kind names the model family ("logistic", "softmax", "mlp").
	Kind() string
	// Layers lists the weight matrices in parameter order.
	Layers() []LayerSpec
	// Classes is the number of classes (2 for binary logistic regression).
	Classes() int
	// Params returns the parameter vector. It aliases the model: writes
	// change the model.
	Params() []float64
	// L2 returns λ.
	L2() float64

	// Probs returns the n × Classes matrix of predicted class probabilities.
	Probs(x *linalg.Dense64) *linalg.Dense64
	// Losses returns the per-example cross-entropy ℓ_n (no penalty).
	Losses(x *linalg.Dense64, y []int) []float64
	// Objective returns R(θ) and writes ∇R(θ) into grad when grad is not nil.
	// w may be nil for unit weights.
	Objective(x *linalg.Dense64, y []int, w []float64, grad []float64) float64
	// Gradients returns the per-example gradients of ℓ_n (no penalty) in
	// factored form, one token row per example: the activations of each layer
	// with the bias column appended, and the output gradients of the summed
	// loss. labels may be the true labels or labels sampled from the model.
	Gradients(x *linalg.Dense64, labels []int) *gradients.Batch
	// Curvature returns the P × P Hessian of R (exact for the regressions) or,
	// for models that are not convex, the Gauss–Newton matrix of R, both
	// including λI.
	Curvature(x *linalg.Dense64, y []int, w []float64) *linalg.Dense64
}

// SetBackend makes the dense linear algebra of m's methods (Probs,
// Objective, Curvature, Gradients, and the HVP and FitNewton built on them)
// run on be, so that the backend a program opened governs its models too;
// nil, the default, means linalg.Default() at each call. Model is an
// interface that other packages may implement, so the backend is set here
// rather than through a method of Model; SetBackend returns an error for a
// model that is not a *Logistic, *Softmax or *MLP.
func SetBackend(m Model, be linalg.Backend) error {
	switch m := m.(type) {
	case *Logistic:
		m.be = be
	case *Softmax:
		m.be = be
	case *MLP:
		m.be = be
	default:
		return fmt.Errorf("models: SetBackend: %T has no backend to set", m)
	}
	return nil
}

// backendOf returns the backend set on m, or Auto's choice: what functions
// that return an error (NewHVP, FitNewton) resolve once, at their entry.
func backendOf(m Model) (linalg.Backend, error) {
	var be linalg.Backend
	switch m := m.(type) {
	case *Logistic:
		be = m.be
	case *Softmax:
		be = m.be
	case *MLP:
		be = m.be
	}
	return linalg.OrAuto(be)
}

// NumParams returns the number of parameters of m.
func NumParams(m Model) int {
	p := 0
	for _, l := range m.Layers() {
		p += l.DIn * l.DOut
	}
	return p
}

// SampleLabels draws one label per row of x from the model's predictive
// distribution, with a seeded generator so that the draw is reproducible.
// Gradients at sampled labels give the true Fisher, which is what curvature
// estimates should normally use.
func SampleLabels(m Model, x *linalg.Dense64, seed uint64) []int {
	p := m.Probs(x)
	rng := rand.New(rand.NewPCG(seed, 0x676f696e666c75)) // "goinflu"
	y := make([]int, p.Rows)
	for i := range y {
		u := rng.Float64()
		row := p.Row(i)
		c := len(row) - 1
		for j, pj := range row {
			if u < pj {
				c = j
				break
			}
			u -= pj
		}
		y[i] = c
	}
	return y
}

// Accuracy returns the fraction of rows of x whose most probable class is y.
func Accuracy(m Model, x *linalg.Dense64, y []int) float64 {
	p := m.Probs(x)
	ok := 0
	for i := 0; i < p.Rows; i++ {
		best := 0
		row := p.Row(i)
		for j := range row {
			if row[j] > row[best] {
				best = j
			}
		}
		if best == y[i] {
			ok++
		}
	}
	return float64(ok) / float64(p.Rows)
}

// CheckData validates examples against a model: feature count, label range,
// finite features, finite non-negative weights (w may be nil). Errors name
// the example. The trainers call it; Model methods do not, so call it on
// data from outside before Gradients, Losses or Curvature.
func CheckData(m Model, x *linalg.Dense64, y []int, w []float64) error {
	ls := m.Layers()
	if want := ls[0].DIn - 1; x.Cols != want {
		return fmt.Errorf("models: %s: %d features, model expects %d", m.Kind(), x.Cols, want)
	}
	if len(y) != x.Rows {
		return fmt.Errorf("models: %d labels for %d examples", len(y), x.Rows)
	}
	if w != nil && len(w) != x.Rows {
		return fmt.Errorf("models: %d weights for %d examples", len(w), x.Rows)
	}
	for i := 0; i < x.Rows; i++ {
		if y[i] < 0 || y[i] >= m.Classes() {
			return fmt.Errorf("models: example %d: label %d outside [0, %d)", i, y[i], m.Classes())
		}
		for j, v := range x.Row(i) {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				return fmt.Errorf("models: example %d: feature %d is %v", i, j, v)
			}
		}
		if w != nil && (math.IsNaN(w[i]) || math.IsInf(w[i], 0) || w[i] < 0) {
			return fmt.Errorf("models: example %d: weight %v", i, w[i])
		}
	}
	return nil
}
