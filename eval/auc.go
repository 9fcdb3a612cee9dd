package eval

import (
	"math"
	"sort"
)

// AUC returns the area under the ROC curve of ranking examples by score,
// higher first, to find the positive ones: the probability that a random
// positive outscores a random negative, ties counting one half
// (Mann–Whitney U / (n₊ n₋)). It is NaN when either class is empty or a
// score is NaN.
func AUC(scores []float64, positive []bool) float64 {
	if len(scores) != len(positive) {
		return math.NaN()
	}
	var np, nn int
	for i, p := range positive {
		if math.IsNaN(scores[i]) {
			return math.NaN()
		}
		if p {
			np++
		} else {
			nn++
		}
	}
	if np == 0 || nn == 0 {
		return math.NaN()
	}
	// Sum of the positives' ranks (ascending, ties averaged).
	r := ranks(scores)
	var sum float64
	for i, p := range positive {
		if p {
			sum += r[i]
		}
	}
	u := sum - float64(np)*float64(np+1)/2
	return u / (float64(np) * float64(nn))
}

// ROC returns the ROC curve of ranking by score, higher first: false- and
// true-positive rates from (0, 0) to (1, 1), one point per distinct score
// (tied examples enter together, a diagonal segment).
func ROC(scores []float64, positive []bool) (fpr, tpr []float64) {
	idx := seq(len(scores))
	sort.SliceStable(idx, func(a, b int) bool { return scores[idx[a]] > scores[idx[b]] })
	var np, nn float64
	for _, p := range positive {
		if p {
			np++
		} else {
			nn++
		}
	}
	fpr, tpr = []float64{0}, []float64{0}
	var fp, tp float64
	for i := 0; i < len(idx); {
		j := i
		for j < len(idx) && scores[idx[j]] == scores[idx[i]] {
			if positive[idx[j]] {
				tp++
			} else {
				fp++
			}
			j++
		}
		fpr, tpr = append(fpr, fp/math.Max(nn, 1)), append(tpr, tp/math.Max(np, 1))
		i = j
	}
	return fpr, tpr
}
