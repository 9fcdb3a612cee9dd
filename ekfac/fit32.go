package ekfac

import (
	"fmt"

	"github.com/goinfluence/goinfluence/gradients"
	"github.com/goinfluence/goinfluence/linalg"
)

// The F32 fit (Covariance, Lambda and FitOptions with Precision F32): every
// product over token rows or examples is a float32 GEMM, and each batch's
// product is added into the float64 sums, so that precision does not decay
// with the number of batches. Eigendecompositions, the sums and the factors
// stay float64.

// checkPrecision refuses a Precision other than F64 and F32.
func checkPrecision(p Precision) error {
	if p != F64 && p != F32 {
		return fmt.Errorf("ekfac: unknown precision %v", p)
	}
	return nil
}

// lamFlush is how many examples' squared float32 gradients are summed in
// float32 before being added to the float64 sum when a layer has a token
// axis: it bounds the float32 rounding of a sum of positive terms.
const lamFlush = 64

// add32 accumulates Λ's sum of one factored layer's batch with float32
// products. The rotated token rows are S̃ = S·Q_S and Ã = A·Q_A (Q = I for
// Diagonal). Without a token axis (one token an example) each example's
// rotated gradient is the outer product s̃ ãᵀ, so
//
//	Σ_n G̃_n∘G̃_n = (S̃∘S̃)ᵀ (Ã∘Ã)
//
// one GEMM for the whole batch. With up to pairMaxTokens tokens the same
// holds over pairs of tokens (pairLambda); with more, G̃_n = S̃_nᵀ Ã_n is
// formed per example (a GEMM with k = Tokens) and squared. a and s are the
// layer's narrowed token rows, scratch (squared in place for Diagonal);
// the rotated rows and the product take work slots from slot on.
func (l *Lambda) add32(bl *gradients.Layer, ll *lamLayer, i, n int, a, s *linalg.Dense32, slot int) {
	if l.eig != nil {
		if ll.qa32 == nil {
			lf := &l.eig.Layers[i]
			ll.qa32, ll.qs32 = lf.QA.To32(), lf.QS.To32()
		}
		ah, sh := l.work.get(slot, a.Rows, bl.DIn), l.work.get(slot+1, s.Rows, bl.DOut)
		l.be.Sgemm(linalg.NoTrans, linalg.NoTrans, 1, a, ll.qa32, 0, ah)
		l.be.Sgemm(linalg.NoTrans, linalg.NoTrans, 1, s, ll.qs32, 0, sh)
		a, s = ah, sh
	}
	g := l.work.get(slot+2, bl.DOut, bl.DIn)
	if bl.Tokens == 1 {
		square32(a.Data)
		square32(s.Data)
		l.be.Sgemm(linalg.Trans, linalg.NoTrans, 1, s, a, 0, g)
		addTo64(ll.sum.Data, g.Data)
		return
	}
	if usePairs(bl.Tokens) {
		pairLambda(l.be, s, a, bl.Tokens, n, g, ll.sum.Data)
		return
	}
	acc := make([]float32, len(g.Data))
	for e := 0; e < n; e++ {
		lo, hi := e*bl.Tokens, (e+1)*bl.Tokens
		l.be.Sgemm(linalg.Trans, linalg.NoTrans, 1, s.Slice(lo, hi, 0, bl.DOut), a.Slice(lo, hi, 0, bl.DIn), 0, g)
		for j, v := range g.Data {
			acc[j] += v * v
		}
		if (e+1)%lamFlush == 0 || e == n-1 {
			addTo64(ll.sum.Data, acc)
			clear(acc)
		}
	}
}

// lamWork32 is the float32 workspace of add32 for a layer of rows token
// rows: the narrowed and rotated token rows, the narrowed eigenvectors, one
// gradient with its float32 partial sum, and the token pairs of a block.
func lamWork32(bl *gradients.Layer, rows int) int64 {
	pairs := int64(0)
	if bl.Tokens > 1 && usePairs(bl.Tokens) {
		pairs = linalg.Float64Bytes(max(pairBlockRows, bl.Tokens*(bl.Tokens+1)/2), bl.DIn+bl.DOut) / 2
	}
	return linalg.AddBytes(
		linalg.Float64Bytes(rows, bl.DIn), linalg.Float64Bytes(rows, bl.DOut), // 2 × float32
		linalg.Float64Bytes(bl.DIn, bl.DIn)/2, linalg.Float64Bytes(bl.DOut, bl.DOut)/2,
		linalg.Float64Bytes(bl.DOut, bl.DIn), pairs)
}

func square32(v []float32) {
	for i, x := range v {
		v[i] = x * x
	}
}

func addTo64(dst []float64, src []float32) {
	dst = dst[:len(src)]
	for i, v := range src {
		dst[i] += float64(v)
	}
}

// pairMaxTokens is the most tokens an example for which Λ is summed by
// pairs of tokens: T(T+1)/2 GEMM rows an example instead of a k = T GEMM
// and a pass over d_out × d_in values, which pays while T is small
// (bench/results/ekfac-mlp-2026-12-02.md, "Tuning").
// pairBlockRows bounds the rows of one pair GEMM (tests lower it).
var (
	pairMaxTokens = 8
	pairBlockRows = 4096
)

func usePairs(tokens int) bool { return tokens <= pairMaxTokens }

// pairLambda adds Σ_n G̃_n∘G̃_n to sum, with G̃_n = Σ_t s̃_t ã_tᵀ, by
//
//	G̃_n∘G̃_n = Σ_{t≤t'} w (s̃_t∘s̃_t')(ã_t∘ã_t')ᵀ,  w = 1 if t = t', else 2:
//
// GEMMs over n·T(T+1)/2 rows, pairBlockRows at most each, into g and then
// added to sum in float64.
func pairLambda(be linalg.Backend, s, a *linalg.Dense32, tokens, n int, g *linalg.Dense32, sum []float64) {
	p := tokens * (tokens + 1) / 2
	block := max(1, pairBlockRows/p)
	din, dout := a.Cols, s.Cols
	sp := linalg.NewDense32(min(block, n)*p, dout, nil)
	ap := linalg.NewDense32(min(block, n)*p, din, nil)
	for lo := 0; lo < n; lo += block {
		hi := min(lo+block, n)
		r := 0
		for e := lo; e < hi; e++ {
			for t := 0; t < tokens; t++ {
				st, at := s.Row(e*tokens+t), a.Row(e*tokens+t)
				for u := t; u < tokens; u++ {
					su, au := s.Row(e*tokens+u), a.Row(e*tokens+u)
					w := float32(2)
					if u == t {
						w = 1
					}
					ds, da := sp.Row(r), ap.Row(r)
					for j, v := range st {
						ds[j] = w * v * su[j]
					}
					for j, v := range at {
						da[j] = v * au[j]
					}
					r++
				}
			}
		}
		be.Sgemm(linalg.Trans, linalg.NoTrans, 1, sp.Slice(0, r, 0, dout), ap.Slice(0, r, 0, din), 0, g)
		addTo64(sum, g.Data)
	}
}
