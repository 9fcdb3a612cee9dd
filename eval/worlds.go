package eval

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"

	"github.com/goinfluence/goinfluence/datasets"
	"github.com/goinfluence/goinfluence/models"
)

// ensembleSeed offsets the seeds of TRAK's ensemble members from those of
// LDS's repeated trainings (Setup.Seed + r for small r).
const ensembleSeed = 1 << 20

// DefaultNoise is the fraction of training labels AUCOptions flips by
// default.
const DefaultNoise = 0.1

// AUCOptions configures noisy-label detection. Zero values take the
// defaults.
type AUCOptions struct {
	Fraction float64 `json:"fraction"` // share of training labels flipped (default 0.1)
	Seed     uint64  `json:"seed"`     // picks the examples and their wrong labels
}

func (o *AUCOptions) defaults() error {
	if o.Fraction == 0 {
		o.Fraction = DefaultNoise
	}
	if !(o.Fraction > 0 && o.Fraction < 1) {
		return fmt.Errorf("eval: noisy fraction %v outside (0, 1)", o.Fraction)
	}
	return nil
}

// FlipLabels returns a copy of d with round(fraction·n) labels, chosen with
// a generator seeded by seed, replaced by a different class drawn uniformly,
// and which examples were flipped.
func FlipLabels(d *datasets.Dataset, fraction float64, seed uint64) (*datasets.Dataset, []bool) {
	rng := rand.New(rand.NewPCG(seed, 0x6e6f697379)) // "noisy"
	n := d.Len()
	k := int(fraction*float64(n) + 0.5)
	out := d.Subset(seq(n))
	flipped := make([]bool, n)
	for _, i := range rng.Perm(n)[:k] {
		out.Y[i] = (out.Y[i] + 1 + rng.IntN(d.Classes-1)) % d.Classes
		flipped[i] = true
	}
	return out, flipped
}

// noisy returns the world whose training labels opt flipped, training its
// model on first use (a convex model from the clean optimum, an MLP from
// the setup's initialisation), and which examples were flipped.
func (t *Task) noisy(ctx context.Context, opt AUCOptions) (*world, []bool, error) {
	if err := opt.defaults(); err != nil {
		return nil, nil, err
	}
	train, flipped := FlipLabels(t.Train, opt.Fraction, opt.Seed)
	name := fmt.Sprintf("noisy-%g-%d", opt.Fraction, opt.Seed)
	t.mu.Lock()
	w := t.worlds[name]
	t.mu.Unlock()
	if w != nil {
		return w, flipped, nil
	}
	w = &world{name: name, key: cacheKey("noisy", opt), train: train}
	if err := t.ensureModel(ctx, w, t.Model); err != nil {
		return nil, nil, err
	}
	t.mu.Lock()
	t.worlds[name] = w
	t.mu.Unlock()
	return w, flipped, nil
}

// snapshots returns the TracIn-CP checkpoints of w: Setup.Checkpoints
// models saved at evenly spaced epochs of an Adam run on w's training set
// (the MLP's own training run; for the convex model a run from zero with the
// setup's Adam schedule, since Newton's iterates are not a gradient-descent
// trajectory), each with the Adam step size as η.
func (t *Task) snapshots(ctx context.Context, w *world) ([]Snapshot, error) {
	if w.snaps != nil {
		return w.snaps, nil
	}
	s := t.Setup
	epochs := make([]int, s.Checkpoints)
	for k := range epochs {
		epochs[k] = ((k + 1) * s.Epochs) / s.Checkpoints
	}
	keys := make([]string, len(epochs))
	snaps := make([]Snapshot, len(epochs))
	missing := false
	for k, e := range epochs {
		keys[k] = t.key("snapshot", w.key, e)
	}
	for k := range epochs {
		m := t.cache.loadModel("snapshot", keys[k])
		if m == nil || !compatibleModel(m, t) {
			missing = true
			break
		}
		snaps[k] = Snapshot{Model: m, LR: s.LR}
	}
	if missing {
		t.stage(fmt.Sprintf("TracIn-CP: Adam run saving %d checkpoints (%s labels)", len(epochs), w.name))
		capture := func(epoch int, m models.Model) {
			if k := slices.Index(epochs, epoch); k >= 0 {
				snaps[k] = Snapshot{Model: cloneModel(m), LR: s.LR}
			}
		}
		if _, err := t.trainAdam(ctx, w.train.X, w.train.Y, nil, 0, capture); err != nil {
			return nil, fmt.Errorf("eval: TracIn-CP checkpoints: %w", err)
		}
		t.trained.Add(1)
		for k := range snaps {
			if err := t.cache.storeModel("snapshot", keys[k], snaps[k].Model); err != nil {
				return nil, err
			}
		}
	}
	w.snaps = snaps
	return snaps, nil
}

// ensemble returns k models trained independently on w's training set, the
// first being w's model: MLPs from seeds Setup.Seed + 2²⁰·i. A convex
// model has a single optimum, so its "independent" models coincide and the
// ensemble is w's model k times (TRAK then averages over projection seeds
// only).
func (t *Task) ensemble(ctx context.Context, w *world, k int) ([]models.Model, error) {
	out := make([]models.Model, k)
	out[0] = w.model
	if t.Setup.Model == "lr" {
		for i := range out {
			out[i] = w.model
		}
		return out, nil
	}
	var todo []int
	for i := 1; i < k; i++ {
		if i < len(w.ensemble) && w.ensemble[i] != nil {
			out[i] = w.ensemble[i]
			continue
		}
		if m := t.cache.loadModel("member", t.key("member", w.key, i)); m != nil && compatibleModel(m, t) {
			out[i] = m
			continue
		}
		todo = append(todo, i)
	}
	if len(todo) > 0 {
		t.stage(fmt.Sprintf("TRAK: training %d more models on the %s labels", len(todo), w.name))
		err := forEach(ctx, len(todo), t.workers(), func(j int) error {
			i := todo[j]
			m, err := t.trainAdam(ctx, w.train.X, w.train.Y, nil, uint64(ensembleSeed*i), nil)
			if err != nil {
				return fmt.Errorf("eval: ensemble member %d: %w", i, err)
			}
			t.trained.Add(1)
			out[i] = m
			return t.cache.storeModel("member", t.key("member", w.key, i), m)
		})
		if err != nil {
			return nil, err
		}
	}
	w.ensemble = out
	return out, nil
}
