// Package hessian solves with the curvature of a model without forming its
// inverse: it takes a Hessian or Gauss–Newton matrix H, dense or known only
// through Hessian-vector products, and applies P ≈ (H + δI)⁻¹ to blocks of
// vectors (query gradients, one a row).
//
// An Operator is v ↦ Hv on R^Dim; Dense wraps a P × P matrix, and
// models.HVP gives the exact matrix-free product of the native models.
// Operators that implement BlockOperator apply to many vectors in one pass
// (GEMMs instead of matrix-vector products); the solvers always hand them a
// block of right-hand sides.
//
// The estimators, all on H + δI with δ ≥ 0 the damping:
//
//   - CG: conjugate gradient, each right-hand side to a relative residual
//     ‖b − (H+δI)x‖/‖b‖ ≤ Tol. Exact up to the tolerance; stops with an error
//     on non-positive curvature pᵀ(H+δI)p ≤ 0.
//   - LiSSA (Agarwal et al. 2017; Koh & Liang 2017): the Neumann series
//     x_{j+1} = b + (I − (H+δI)/s)x_j, x_0 = b, returning x_J/s after J = Depth
//     steps, averaged over Repeats when the steps use sampled mini-batch
//     operators. It converges when every eigenvalue of H + δI lies in
//     (0, 2s); divergence is detected and reported.
//   - Arnoldi (Schioppa et al. 2022): a Krylov basis from a seeded start
//     vector, its top-k Ritz pairs (λ_i, u_i) by magnitude, and the projected
//     inverse P(g) = Σ_i (g·u_i) u_i / (λ_i + δ), which ignores g outside the
//     top eigenspace.
//   - Nyström: the randomised rank-r Nyström approximation Ĥ = U diag(λ) Uᵀ
//     (Tropp et al. 2017, with the shift of Frangella et al. 2023) from r
//     seeded Hessian-vector products, and (Ĥ + δI)⁻¹ exactly, 1/δ outside
//     the sketch.
//   - DataInf (Kwon et al. 2023): per layer, the closed form
//     (1/(nλ)) Σ_i (I − g_i g_iᵀ/(λ + ‖g_i‖²)) from the training gradients
//     g_i of the layer, which swaps the inverse of an average of rank-one
//     terms for the average of their inverses. It is exact for one example
//     (Sherman–Morrison), not in general.
//
// Every solve returns a Report (iterations, residuals, eigenvalues) and fails
// with an *Error that names the method, the right-hand side and the step, and
// wraps one of ErrIndefinite, ErrDiverged, ErrNotConverged, ErrNotFinite, so
// that a bad problem never comes back as silent garbage. Randomised methods
// take a seed and are bit-identical from run to run on one backend, whatever
// GOMAXPROCS. Loops check their context between Hessian-vector products.
//
// Damping: HeuristicDamping gives 0.1 × trace(H)/P, the mean eigenvalue
// heuristic of the design, exactly for Dense and by Hutchinson's estimator
// otherwise; DataInf's heuristic is its own paper's 0.1 × mean_i ‖g_i‖²/D_l
// per layer, the same heuristic applied to the layer's G_lᵀG_l/n.
package hessian
