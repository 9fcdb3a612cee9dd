package influence

import (
	"container/heap"
	"fmt"

	"github.com/goinfluence/goinfluence/linalg"
)

// Entry is one training example in a ranking.
type Entry struct {
	Index int     // row of the training set
	ID    int64   // the example's id: Index for in-memory scores, the store's id when streamed
	Score float64 // score(q, t); positive = helpful
	// ISum is the exact integer sum behind the score of an i8 store
	// (DESIGN §11), summed over the stores when there are several; 0 for
	// float scores.
	ISum int64
}

// Ranking holds, for one query, the most helpful training examples (highest
// scores first) and the most harmful ones (lowest scores first).
type Ranking struct {
	Helpful []Entry
	Harmful []Entry
}

// TopK returns, for every row of scores, the k highest and k lowest entries.
// Ties are broken by the lower training index, so results do not depend on
// how the scores were computed or chunked.
//
// TopK never ranks a NaN: NaN entries are left out of both lists (a row with
// fewer than k other entries gives shorter lists), because a NaN compares
// false with everything and, admitted into a heap, would stay there and push
// real examples out. ±Inf are ordered as numbers. The scoring functions of
// this package return a *NonFiniteError rather than hand NaN or ±Inf to a
// caller, so that TopK only meets them in scores computed elsewhere; callers
// that must not drop an example silently check those with CheckFinite first.
func TopK(scores *linalg.Dense64, k int) []Ranking {
	k = min(max(k, 0), scores.Cols)
	out := make([]Ranking, scores.Rows)
	for q := range out {
		row := scores.Row(q)
		out[q] = Ranking{
			Helpful: selectK(row, k, HelpfulFirst),
			Harmful: selectK(row, k, HarmfulFirst),
		}
	}
	return out
}

// HelpfulFirst reports whether a ranks before b among the most helpful
// examples: the higher score first, ties to the lower index. It is the one
// order of every ranking of this package, in memory (TopK) and streamed
// (StreamScores), so that both give the same lists whatever the chunking.
func HelpfulFirst(a, b Entry) bool {
	return a.Score > b.Score || (a.Score == b.Score && a.Index < b.Index)
}

// HarmfulFirst reports whether a ranks before b among the most harmful
// examples: the lower score first, ties to the lower index.
func HarmfulFirst(a, b Entry) bool {
	return a.Score < b.Score || (a.Score == b.Score && a.Index < b.Index)
}

// selectK keeps the k best entries of row by better in a min-heap of the
// worst kept, O(n log k), and returns them best first.
func selectK(row []float64, k int, better func(a, b Entry) bool) []Entry {
	if k == 0 {
		return nil
	}
	h := &entryHeap{worse: func(a, b Entry) bool { return better(b, a) }}
	for i, s := range row {
		if s != s {
			continue // NaN: never ranked (see TopK)
		}
		e := Entry{Index: i, ID: int64(i), Score: s}
		if h.Len() < k {
			heap.Push(h, e)
		} else if better(e, h.e[0]) {
			h.e[0] = e
			heap.Fix(h, 0)
		}
	}
	res := make([]Entry, h.Len())
	for i := len(res) - 1; i >= 0; i-- {
		res[i] = heap.Pop(h).(Entry)
	}
	return res
}

type entryHeap struct {
	e     []Entry
	worse func(a, b Entry) bool
}

func (h *entryHeap) Len() int           { return len(h.e) }
func (h *entryHeap) Less(i, j int) bool { return h.worse(h.e[i], h.e[j]) }
func (h *entryHeap) Swap(i, j int)      { h.e[i], h.e[j] = h.e[j], h.e[i] }
func (h *entryHeap) Push(x any)         { h.e = append(h.e, x.(Entry)) }
func (h *entryHeap) Pop() any {
	x := h.e[len(h.e)-1]
	h.e = h.e[:len(h.e)-1]
	return x
}

// NonFiniteError reports a score that is NaN or ±Inf. Scores overflow when
// gradients are finite but huge (a gradient entry of 1e300 squares past the
// float64 range): the inputs pass their NaN/Inf checks and only the scores
// show it, so every scoring function checks what it returns and names the
// pair rather than let a ranking or a payout silently skip the example.
type NonFiniteError struct {
	Query int    // query row; −1 for self-influence
	Index int    // training example row
	ID    int64  // the example's id (Index when the batch has none)
	Layer string // the layer whose scores these are; "" for the sum over layers
	Score float64
}

func (e *NonFiniteError) Error() string {
	what := "score"
	if e.Layer != "" {
		what = fmt.Sprintf("layer %q score", e.Layer)
	}
	if e.Query < 0 {
		return fmt.Sprintf("influence: self-influence %v for training example %d (id %d); gradients too large or not finite", e.Score, e.Index, e.ID)
	}
	return fmt.Sprintf("influence: %s %v for query %d, training example %d (id %d); gradients too large or not finite", what, e.Score, e.Query, e.Index, e.ID)
}

// Unwrap returns linalg.ErrNotFinite, so that errors.Is finds every
// non-finite value, in inputs or in scores, the same way.
func (e *NonFiniteError) Unwrap() error { return linalg.ErrNotFinite }

// CheckFinite returns a *NonFiniteError for the first NaN or ±Inf of scores
// (n_query × n_train), in row-major order, or nil. ids, when not nil, holds
// the training examples' ids (one per column).
func CheckFinite(scores *linalg.Dense64, ids []int64) error {
	for q := range scores.Rows {
		if err := checkRow(scores.Row(q), q, ids); err != nil {
			return err
		}
	}
	return nil
}

// CheckFiniteSelf is CheckFinite for self-influence scores, one per training
// example; the error's Query is −1.
func CheckFiniteSelf(self []float64, ids []int64) error {
	return checkRow(self, -1, ids)
}

func checkRow(row []float64, q int, ids []int64) error {
	for i, v := range row {
		if v-v == 0 {
			continue // finite: NaN and ±Inf give NaN
		}
		id := int64(i)
		if ids != nil {
			id = ids[i]
		}
		return &NonFiniteError{Query: q, Index: i, ID: id, Score: v}
	}
	return nil
}
