package ekfac

import (
	"errors"
	"fmt"

	"github.com/goinfluence/goinfluence/linalg"
)

// Method selects the curvature approximation.
type Method string

const (
	Identity Method = "identity" // P(G) = G
	Diagonal Method = "diagonal" // Q = I, Λ = (1/N) Σ_n G_n∘G_n
	KFAC     Method = "kfac"     // Λ_ij = λ_S[i]·λ_A[j]
	EKFAC    Method = "ekfac"    // Λ = (1/N) Σ_n (Q_Sᵀ G_n Q_A)∘(Q_Sᵀ G_n Q_A)
)

// ParseMethod parses "ekfac", "kfac", "diagonal" or "identity".
func ParseMethod(s string) (Method, error) {
	switch m := Method(s); m {
	case Identity, Diagonal, KFAC, EKFAC:
		return m, nil
	}
	return "", fmt.Errorf("ekfac: unknown method %q (have ekfac, kfac, diagonal, identity)", s)
}

// needsCovariance reports whether the method eigendecomposes A and S.
func (m Method) needsCovariance() bool { return m == KFAC || m == EKFAC }

// needsLambda reports whether the method makes a second pass for Λ.
func (m Method) needsLambda() bool { return m == EKFAC || m == Diagonal }

// Factors is a fitted curvature approximation for an ordered list of layers.
type Factors struct {
	Method Method
	Layers []LayerFactors
	// N is the number of fit examples, M the number of token rows.
	N, M int
	// Meta holds the fit arguments, saved with the factors.
	Meta map[string]string
}

// LayerFactors holds one layer's factors. For a factored layer (DIn, DOut >
// 0), QA (DIn×DIn) and QS (DOut×DOut) hold eigenvectors as columns with
// eigenvalues LambdaA and LambdaS (KFAC, EKFAC), and Lambda is DOut×DIn
// (KFAC: λ_S λ_Aᵀ; EKFAC and Diagonal: fitted). A dense layer (D > 0) allows
// only Diagonal (Lambda 1×D) and Identity.
type LayerFactors struct {
	Name      string
	DIn, DOut int
	D         int // dense layers only
	M         int // token rows the covariances were averaged over
	QA, QS    *linalg.Dense64
	LambdaA   []float64
	LambdaS   []float64
	Lambda    *linalg.Dense64
	// ACov and SCov are the normalised covariances A and S (KFAC, EKFAC).
	ACov, SCov *linalg.Dense64
}

// Sentinel errors, for errors.Is: a bad damping is the caller's choice of
// δ; incompatible gradients are the wrong input for the factors.
var (
	// ErrDamping marks a damping that is not a finite number ≥ 0 or
	// "heuristic", or that leaves an entry of Λ + δ not positive.
	ErrDamping = errors.New("ekfac: bad damping")
	// ErrIncompatible marks gradients whose layers, order or shapes are
	// not those of the factors.
	ErrIncompatible = errors.New("ekfac: gradients do not match the factors")
)

// Damping is the δ added to Λ at score time: an absolute value, or the
// heuristic 0.1 × mean(Λ) per layer.
type Damping struct {
	Heuristic bool
	Value     float64
}

// ParseDamping parses a number ≥ 0 or "heuristic".
func ParseDamping(s string) (Damping, error) {
	if s == "heuristic" {
		return Damping{Heuristic: true}, nil
	}
	var v float64
	if _, err := fmt.Sscan(s, &v); err != nil || v < 0 || v != v || v > 1e300 {
		return Damping{}, fmt.Errorf("%w: %q: want a finite number ≥ 0 or \"heuristic\"", ErrDamping, s)
	}
	return Damping{Value: v}, nil
}

func (d Damping) String() string {
	if d.Heuristic {
		return "heuristic"
	}
	return fmt.Sprint(d.Value)
}
