package influence

import (
	"context"
	"fmt"

	"github.com/goinfluence/goinfluence/ekfac"
	"github.com/goinfluence/goinfluence/gradients"
	"github.com/goinfluence/goinfluence/linalg"
)

// EKFAC is the method P = EK-FAC inverse of fitted factors (see package
// ekfac), with damping and an optional query rank chosen at score time.
func EKFAC(f *ekfac.Factors, opt ekfac.ScoreOptions) Method { return fitted{ekfac.EKFAC, f, opt} }

// KFAC is the method P = K-FAC inverse of fitted factors.
func KFAC(f *ekfac.Factors, opt ekfac.ScoreOptions) Method { return fitted{ekfac.KFAC, f, opt} }

// Diagonal is the method P = (diag Fisher + δ)⁻¹ of fitted factors.
func Diagonal(f *ekfac.Factors, opt ekfac.ScoreOptions) Method {
	return fitted{ekfac.Diagonal, f, opt}
}

// Factors is the method of whatever kind f was fitted as.
func Factors(f *ekfac.Factors, opt ekfac.ScoreOptions) Method { return fitted{f.Method, f, opt} }

type fitted struct {
	want ekfac.Method
	f    *ekfac.Factors
	opt  ekfac.ScoreOptions
}

func (m fitted) Name() string { return string(m.want) }

func (m fitted) Precondition(ctx context.Context, be linalg.Backend, g *gradients.Batch) (*linalg.Dense64, error) {
	if err := m.check(); err != nil {
		return nil, err
	}
	return m.f.Precondition(ctx, be, g, m.opt)
}

// LayerScores and SelfInfluence let the Analyzer score in the Kronecker
// eigenbasis instead of rotating every preconditioned query back.
func (m fitted) LayerScores(ctx context.Context, be linalg.Backend, q, t *gradients.Batch) ([]*linalg.Dense64, error) {
	if err := m.check(); err != nil {
		return nil, err
	}
	return m.f.LayerScores(ctx, be, q, t, m.opt)
}

func (m fitted) SelfInfluence(ctx context.Context, be linalg.Backend, t *gradients.Batch) ([]float64, error) {
	if err := m.check(); err != nil {
		return nil, err
	}
	return m.f.SelfInfluence(ctx, be, t, m.opt)
}

func (m fitted) check() error {
	if m.f == nil {
		return fmt.Errorf("no factors")
	}
	if m.f.Method != m.want {
		return fmt.Errorf("factors were fitted as %s, not %s", m.f.Method, m.want)
	}
	return nil
}
