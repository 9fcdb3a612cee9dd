package attribution

import (
	"context"
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"sort"

	"github.com/goinfluence/goinfluence/gradients"
	"github.com/goinfluence/goinfluence/influence"
)

// DefaultOutlierShare is QualityOptions.OutlierShare's default.
const DefaultOutlierShare = 0.01

// QualityOptions configure Attributor.Quality.
type QualityOptions struct {
	// OutlierShare marks as outliers the examples with the highest
	// self-influence, this share of the store (default
	// DefaultOutlierShare): the examples a model fits worst, where
	// mislabelled and adversarial data rank first (the noisy-label
	// protocol of package eval). Gradient norms are heavy-tailed, so a
	// share says more than a multiple of the median.
	OutlierShare float64
}

// ContributorQuality is what Quality reports of one contributor's data.
type ContributorQuality struct {
	Contributor string  `json:"contributor"`
	Examples    int     `json:"examples"` // registered examples in the store
	Negative    int     `json:"negative_examples"`
	NegativeSum float64 `json:"negative_score_sum"` // sum of their most negative scores
	Outliers    int     `json:"outlier_examples"`
	MeanSelf    float64 `json:"mean_self_influence"`
}

// QualityReport describes the data of every contributor of a store.
type QualityReport struct {
	Queries      int     `json:"queries"`
	MedianSelf   float64 `json:"median_self_influence"`
	OutlierShare float64 `json:"outlier_share"`
	// OutlierSelf is the self-influence above which an example is an
	// outlier.
	OutlierSelf  float64              `json:"outlier_self_influence"`
	Contributors []ContributorQuality `json:"contributors"` // ascending by contributor
}

// Quality reports, per contributor, the examples whose influence on the
// queries is negative (among each query's most harmful rows, as many as
// Attribute fetches) and the outliers by self-influence, the squared norm
// of the stored row (what the identity method gives an example against
// itself: for an i8 store the exact integer sum times the scale squared).
// Examples that hurt the queries or stand far from the rest are what
// duplicated, mislabelled or adversarial data look like; they earn
// nothing, and the report says where they come from.
func (a *Attributor) Quality(ctx context.Context, opt QualityOptions, queries ...*gradients.Batch) (*QualityReport, error) {
	rep, err := a.quality(ctx, opt, queries)
	if err != nil {
		return nil, fmt.Errorf("attribution: Quality: %w", err)
	}
	return rep, nil
}

func (a *Attributor) quality(ctx context.Context, opt QualityOptions, queries []*gradients.Batch) (*QualityReport, error) {
	share, err := opt.share()
	if err != nil {
		return nil, err
	}
	res, err := a.scorer.Score(ctx, queries...)
	if err != nil {
		return nil, err
	}
	return a.report(ctx, share, res)
}

// share returns the outlier share asked for, or the default.
func (opt QualityOptions) share() (float64, error) {
	share := opt.OutlierShare
	if share == 0 {
		share = DefaultOutlierShare
	}
	if !(share > 0 && share < 1) {
		return 0, fmt.Errorf("outlier share %v: want a number in (0, 1)", share)
	}
	return share, nil
}

// report is Quality from the queries' scoring res: its harmful rankings,
// then one pass over the store for the self-influences.
func (a *Attributor) report(ctx context.Context, share float64, res *influence.StoreResult) (*QualityReport, error) {
	by := map[string]*ContributorQuality{}
	get := func(id int64) (*ContributorQuality, error) {
		reg, ok := a.reg.Lookup(id)
		if !ok {
			return nil, fmt.Errorf("example id %d is not in the registry", id)
		}
		c := by[reg.Contributor]
		if c == nil {
			c = &ContributorQuality{Contributor: reg.Contributor}
			by[reg.Contributor] = c
		}
		return c, nil
	}
	worst := map[int64]float64{}
	for _, r := range res.Rankings {
		for _, e := range r.Harmful {
			if e.Score < 0 {
				worst[e.ID] = min(worst[e.ID], e.Score)
			}
		}
	}
	for _, id := range slices.Sorted(maps.Keys(worst)) {
		c, err := get(id)
		if err != nil {
			return nil, err
		}
		c.Negative++
		c.NegativeSum += worst[id]
	}
	// One pass over the store for the self-influences: an i8 store's
	// from its exact integer sums, a float store's from its rows widened.
	var ids []int64
	var self []float64
	exact := a.store.DType() == gradients.I8
	it := a.store.Chunks(4096)
	defer it.Close()
	next := it.Next
	if exact {
		next = it.NextRaw
	}
	dim := a.store.Dim()
	for next(ctx) {
		ch := it.Chunk()
		ids = append(ids, ch.IDs...)
		for r := range ch.IDs {
			if exact {
				row := ch.Raw[r*dim : (r+1)*dim]
				s := float64(ch.Scales[r])
				self = append(self, float64(dot8(row, row))*s*s)
				continue
			}
			var s float64
			for _, v := range ch.Rows.Row(r) {
				s += float64(float64(v) * float64(v))
			}
			self = append(self, s)
		}
	}
	if err := it.Err(); err != nil {
		return nil, err
	}
	sorted := slices.Clone(self)
	sort.Float64s(sorted)
	median, cut := 0.0, math.Inf(1)
	if n := len(sorted); n > 0 {
		median = sorted[n/2]
		if n%2 == 0 {
			median = (sorted[n/2-1] + sorted[n/2]) / 2
		}
		// The ⌈share·n⌉ highest are outliers; ties at the cut are too.
		k := int(math.Ceil(share * float64(n)))
		cut = sorted[n-k]
	}
	sums := map[string]float64{}
	for k, id := range ids {
		c, err := get(id)
		if err != nil {
			return nil, err
		}
		c.Examples++
		sums[c.Contributor] += self[k]
		if self[k] >= cut {
			c.Outliers++
		}
	}
	rep := &QualityReport{Queries: len(res.Rankings), MedianSelf: median, OutlierShare: share, OutlierSelf: cut}
	for _, name := range slices.Sorted(maps.Keys(by)) {
		c := by[name]
		if c.Examples > 0 {
			c.MeanSelf = sums[name] / float64(c.Examples)
		}
		rep.Contributors = append(rep.Contributors, *c)
	}
	return rep, nil
}

// WriteTable writes the report as a table.
func (r *QualityReport) WriteTable(w io.Writer) error {
	_, err := fmt.Fprintf(w, "data quality over %d queries (outliers: the %g%% most self-influential examples, self-influence ≥ %.4g; median %.4g)\n%-20s %9s %9s %12s %9s %12s\n",
		r.Queries, 100*r.OutlierShare, r.OutlierSelf, r.MedianSelf, "contributor", "examples", "negative", "neg. sum", "outliers", "mean self")
	for _, c := range r.Contributors {
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(w, "%-20s %9d %9d %12.4g %9d %12.4g\n", c.Contributor, c.Examples, c.Negative, c.NegativeSum, c.Outliers, c.MeanSelf)
	}
	return err
}
