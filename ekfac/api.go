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

// ErrIncompatible marks gradients whose layers, order or shapes are not
// those of the factors (errors.Is). A bad damping is hessian.ErrDamping.
var ErrIncompatible = errors.New("ekfac: gradients do not match the factors")
