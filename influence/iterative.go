package influence

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/goinfluence/goinfluence/gradients"
	"github.com/goinfluence/goinfluence/hessian"
	"github.com/goinfluence/goinfluence/linalg"
)

// Iterative is a Method that applies P ≈ (H + δI)⁻¹ through the hessian
// package, from Hessian-vector products (CG, LiSSA, Arnoldi, Nystrom) or from
// the training gradients themselves (DataInf). The operator's parameter order
// must match the flattened gradients. Report returns what the latest
// Precondition learnt: iterations and residuals per example, eigenvalues,
// damping.
//
// Arnoldi, Nystrom and DataInf build their approximation on the first
// Precondition and reuse it afterwards; CG and LiSSA solve afresh for every
// batch, all examples of a batch in one block.
type Iterative struct {
	name  string
	dim   func() (int, error)
	check func(g *gradients.Batch) error
	// setup, when not nil, runs once successfully before the first solve.
	setup func(ctx context.Context, be linalg.Backend) (*hessian.Report, error)
	solve func(ctx context.Context, be linalg.Backend, g *linalg.Dense64) (*linalg.Dense64, *hessian.Report, error)

	mu     sync.Mutex
	ready  bool
	setupR *hessian.Report
	report *hessian.Report
}

// CG preconditions by solving (H + δI)x = g with conjugate gradients
// (hessian.CG), every query to opts.Tol. Errors: non-positive curvature,
// non-convergence in opts.MaxIter.
func CG(op hessian.Operator, damping float64, opts hessian.CGOptions) *Iterative {
	return &Iterative{name: "cg", dim: opDim(op),
		solve: func(ctx context.Context, _ linalg.Backend, g *linalg.Dense64) (*linalg.Dense64, *hessian.Report, error) {
			return hessian.CG(ctx, op, damping, g, opts)
		}}
}

// LiSSA preconditions with the truncated Neumann series of hessian.LiSSA;
// opts.Scale must exceed λ_max(H+δI)/2 (0: hessian.LiSSAScale's estimate,
// made once, on the first call's backend), and divergence is an error.
func LiSSA(op hessian.Operator, damping float64, opts hessian.LiSSAOptions) *Iterative {
	var (
		mu    sync.Mutex
		scale = opts.Scale // estimated by the first call when 0
	)
	return &Iterative{name: "lissa", dim: opDim(op),
		solve: func(ctx context.Context, be linalg.Backend, g *linalg.Dense64) (*linalg.Dense64, *hessian.Report, error) {
			o := opts
			mu.Lock()
			if scale == 0 {
				if o.Backend == nil {
					o.Backend = be
				}
				s, err := hessian.LiSSAScale(ctx, o.Backend, op, damping, o.Seed)
				if err != nil {
					mu.Unlock() // not remembered: a cancelled estimate is made again
					return nil, nil, err
				}
				scale = s
			}
			o.Scale = scale
			mu.Unlock()
			return hessian.LiSSA(ctx, op, damping, g, o)
		}}
}

// Arnoldi preconditions with Schioppa et al.'s projected inverse
// Σ_i (g·u_i) u_i/(λ_i + δ) over the top-k eigenpairs that hessian.Arnoldi
// finds; the components of g outside that subspace are dropped.
func Arnoldi(op hessian.Operator, damping float64, opts hessian.ArnoldiOptions) *Iterative {
	var lr *hessian.LowRank
	return &Iterative{name: "arnoldi", dim: opDim(op),
		setup: func(ctx context.Context, be linalg.Backend) (rep *hessian.Report, err error) {
			lr, rep, err = hessian.Arnoldi(ctx, be, op, opts)
			return rep, err
		},
		solve: func(_ context.Context, be linalg.Backend, g *linalg.Dense64) (*linalg.Dense64, *hessian.Report, error) {
			p, err := lr.ProjectedInverse(be, g, damping)
			return p, nil, err
		}}
}

// Nystrom preconditions with (Ĥ + δI)⁻¹ for the rank-r randomised Nyström
// approximation Ĥ of hessian.Nystrom: exact along the sketched eigenvectors,
// 1/δ elsewhere, so δ must be > 0 unless r equals the dimension.
func Nystrom(op hessian.Operator, damping float64, opts hessian.NystromOptions) *Iterative {
	var lr *hessian.LowRank
	return &Iterative{name: "nystrom", dim: opDim(op),
		setup: func(ctx context.Context, be linalg.Backend) (rep *hessian.Report, err error) {
			lr, rep, err = hessian.Nystrom(ctx, be, op, opts)
			return rep, err
		},
		solve: func(_ context.Context, be linalg.Backend, g *linalg.Dense64) (*linalg.Dense64, *hessian.Report, error) {
			p, err := lr.ShiftedInverse(be, g, damping)
			return p, nil, err
		}}
}

// DataInf preconditions each layer with the closed form of Kwon et al. (2023)
// built from the training gradients train (see hessian.DataInf): no
// Hessian-vector products, one pass over train per batch of queries. Query
// batches must have train's layers. train is kept, not copied.
func DataInf(train *gradients.Batch, opts hessian.DataInfOptions) *Iterative {
	var di *hessian.DataInf
	return &Iterative{name: "datainf",
		dim: func() (int, error) {
			if train == nil {
				return 0, errors.New("no training gradients")
			}
			return train.Dim(), nil
		},
		check: func(g *gradients.Batch) error { return compatible(g, train) },
		setup: func(ctx context.Context, _ linalg.Backend) (*hessian.Report, error) {
			var err error
			if di, err = hessian.NewDataInf(ctx, train, opts); err != nil {
				return nil, err
			}
			return &hessian.Report{Method: "datainf", Damping: di.Damping()}, nil
		},
		solve: func(ctx context.Context, be linalg.Backend, g *linalg.Dense64) (*linalg.Dense64, *hessian.Report, error) {
			p, err := di.Apply(ctx, be, g)
			return p, nil, err
		}}
}

func opDim(op hessian.Operator) func() (int, error) {
	return func() (int, error) {
		if op == nil {
			return 0, errors.New("no Hessian-vector product operator")
		}
		return op.Dim(), nil
	}
}

// Name returns "cg", "lissa", "arnoldi", "nystrom" or "datainf".
func (m *Iterative) Name() string { return m.name }

// Report returns the report of the latest successful Precondition (for
// Arnoldi, Nystrom and DataInf, that of building the approximation), or nil.
func (m *Iterative) Report() *hessian.Report {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.report
}

// Precondition returns P(G) for every example of g, flattened.
func (m *Iterative) Precondition(ctx context.Context, be linalg.Backend, g *gradients.Batch) (*linalg.Dense64, error) {
	dim, err := m.dim()
	if err != nil {
		return nil, err
	}
	if d := g.Dim(); d != dim {
		return nil, fmt.Errorf("curvature has dimension %d but gradients have %d", dim, d)
	}
	if m.check != nil {
		if err := m.check(g); err != nil {
			return nil, err
		}
	}
	m.mu.Lock()
	if !m.ready && m.setup != nil {
		rep, err := m.setup(ctx, be)
		if err != nil {
			m.mu.Unlock()
			return nil, err
		}
		m.setupR, m.ready = rep, true
	}
	m.mu.Unlock()
	// What setup built is only read from here on, so solves may overlap.
	p, rep, err := m.solve(ctx, be, g.Flatten())
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	if rep == nil {
		rep = m.setupR
	}
	m.report = rep
	m.mu.Unlock()
	return p, nil
}
