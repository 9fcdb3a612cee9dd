package models

import (
	"fmt"
	"math"

	"github.com/goinfluence/goinfluence/gradients"
	"github.com/goinfluence/goinfluence/linalg"
)

// Output is a measured model output f(x, y; θ), as LDS and LOO record it: the
// quantity whose value after retraining is recorded, and whose negative,
// −f, plays the part of the query loss when scoring. Every method scores
// with the query gradient ∇(−f), so that the sign convention holds for every
// output: a positive score means up-weighting the training example raises f.
type Output string

const (
	// Margin is TRAK's multi-class margin, the log-odds of the true class:
	// f = log p_y − log Σ_{c≠y} p_c = z_y − log Σ_{c≠y} e^{z_c} for logits z.
	// It is smooth, and for two classes it is the logit difference.
	Margin Output = "margin"
	// LogitMargin is z_y − max_{c≠y} z_c, the hard margin. It is not
	// differentiable where two other classes tie; the gradient is taken at
	// the largest other class.
	LogitMargin Output = "logit-margin"
	// NegLoss is f = −ℓ = log p_y: the change of the test loss, the classical
	// output of leave-one-out studies.
	NegLoss Output = "loss"
)

// Outputs lists the measured outputs; ground truths record all of them so
// that any can be scored without retraining.
var Outputs = []Output{Margin, LogitMargin, NegLoss}

// ParseOutput returns the output named s: margin, logit-margin or loss.
func ParseOutput(s string) (Output, error) {
	for _, o := range Outputs {
		if string(o) == s {
			return o, nil
		}
	}
	return "", fmt.Errorf("models: unknown output %q (have margin, logit-margin, loss)", s)
}

// logProbs returns log p_c(x_n) for every row and class, computed from the
// per-class losses so that no probability underflows to log 0.
func logProbs(m Model, x *linalg.Dense64) [][]float64 {
	n, c := x.Rows, m.Classes()
	lp := make([][]float64, n)
	for i := range lp {
		lp[i] = make([]float64, c)
	}
	labels := make([]int, n)
	for k := 0; k < c; k++ {
		for i := range labels {
			labels[i] = k
		}
		for i, l := range m.Losses(x, labels) {
			lp[i][k] = -l
		}
	}
	return lp
}

// OutputValues returns f(x_n, y_n) of every row for each output in outs.
func OutputValues(m Model, x *linalg.Dense64, y []int, outs []Output) map[Output][]float64 {
	lp := logProbs(m, x)
	res := make(map[Output][]float64, len(outs))
	for _, o := range outs {
		v := make([]float64, len(y))
		for i, row := range lp {
			v[i] = outputOf(o, row, y[i])
		}
		res[o] = v
	}
	return res
}

// outputOf returns f for one row of log-probabilities and the label y.
func outputOf(o Output, lp []float64, y int) float64 {
	switch o {
	case NegLoss:
		return lp[y]
	case LogitMargin:
		best := math.Inf(-1)
		for c, v := range lp {
			if c != y {
				best = max(best, v)
			}
		}
		return lp[y] - best
	default: // Margin
		return lp[y] - logSumExpExcept(lp, y)
	}
}

func logSumExpExcept(v []float64, skip int) float64 {
	mx := math.Inf(-1)
	for c, x := range v {
		if c != skip {
			mx = max(mx, x)
		}
	}
	if math.IsInf(mx, -1) {
		return mx
	}
	s := 0.0
	for c, x := range v {
		if c != skip {
			s += math.Exp(x - mx)
		}
	}
	return mx + math.Log(s)
}

// OutputGradients returns the per-example gradients of −f(x_n, y_n) in the
// model's factored form. For the loss they are the model's own gradients;
// for the margins, whose logit gradient δ = −∂f/∂z sums to zero, they are
// combinations Σ_c w_c g_c of the loss gradients g_c at every label c with
// Σ_c w_c = 1, since Σ_c w_c (p − e_c) = p − w: the activations are the
// same for every label and the output gradients are linear in δ.
func OutputGradients(m Model, x *linalg.Dense64, y []int, o Output) *gradients.Batch {
	if o == NegLoss {
		return m.Gradients(x, y)
	}
	n, nc := x.Rows, m.Classes()
	lp := logProbs(m, x)
	// w[i][c] with p − w = δ, the logit gradient of −f.
	w := make([][]float64, n)
	for i := range w {
		w[i] = make([]float64, nc)
		p := make([]float64, nc)
		for c, v := range lp[i] {
			p[c] = math.Exp(v)
		}
		delta := make([]float64, nc)
		switch o {
		case LogitMargin:
			k, best := -1, math.Inf(-1)
			for c, v := range lp[i] {
				if c != y[i] && v > best {
					k, best = c, v
				}
			}
			delta[k] = 1
		default: // Margin: δ = q − e_y with q the softmax over the other classes.
			lse := logSumExpExcept(lp[i], y[i])
			for c, v := range lp[i] {
				if c != y[i] {
					delta[c] = math.Exp(v - lse)
				}
			}
		}
		delta[y[i]] -= 1
		for c := range w[i] {
			w[i][c] = p[c] - delta[c]
		}
	}
	var out *gradients.Batch
	labels := make([]int, n)
	for c := 0; c < nc; c++ {
		for i := range labels {
			labels[i] = c
		}
		g := m.Gradients(x, labels)
		if out == nil {
			out = g
			for li := range out.Layers {
				scaleRows(&out.Layers[li], func(i int) float64 { return w[i][0] })
			}
			continue
		}
		for li := range out.Layers {
			dst, src := &out.Layers[li], &g.Layers[li]
			rowLen := src.Tokens * src.DOut
			for i := 0; i < n; i++ {
				wc := w[i][c]
				d, s := dst.S[i*rowLen:(i+1)*rowLen], src.S[i*rowLen:(i+1)*rowLen]
				for j, v := range s {
					d[j] += wc * v
				}
			}
		}
	}
	return out
}

// scaleRows multiplies the output gradients of example i by f(i).
func scaleRows(l *gradients.Layer, f func(i int) float64) {
	rowLen := l.Tokens * l.DOut
	for i := 0; i < len(l.S)/max(rowLen, 1); i++ {
		s := f(i)
		for j := range l.S[i*rowLen : (i+1)*rowLen] {
			l.S[i*rowLen+j] *= s
		}
	}
}
