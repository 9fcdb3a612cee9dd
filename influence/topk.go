package influence

import (
	"container/heap"

	"github.com/goinfluence/goinfluence/linalg"
)

// Entry is one training example in a ranking.
type Entry struct {
	Index int     // row of the training set
	ID    int64   // the example's id: Index for in-memory scores, the store's id when streamed
	Score float64 // score(q, t); positive = helpful
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
func TopK(scores *linalg.Dense64, k int) []Ranking {
	k = min(max(k, 0), scores.Cols)
	out := make([]Ranking, scores.Rows)
	for q := range out {
		row := scores.Row(q)
		out[q] = Ranking{
			Helpful: selectK(row, k, func(a, b Entry) bool { return a.Score > b.Score || (a.Score == b.Score && a.Index < b.Index) }),
			Harmful: selectK(row, k, func(a, b Entry) bool { return a.Score < b.Score || (a.Score == b.Score && a.Index < b.Index) }),
		}
	}
	return out
}

// selectK keeps the k best entries of row by better in a min-heap of the
// worst kept, O(n log k), and returns them best first.
func selectK(row []float64, k int, better func(a, b Entry) bool) []Entry {
	if k == 0 {
		return nil
	}
	h := &entryHeap{worse: func(a, b Entry) bool { return better(b, a) }}
	for i, s := range row {
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
