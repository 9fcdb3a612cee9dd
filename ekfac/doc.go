// Package ekfac fits Kronecker-factored curvature (K-FAC, EK-FAC), its
// diagonal counterpart and the identity, and preconditions per-example
// gradients with it, following the project's design exactly.
//
// For a layer with weight W (DOut × DIn) and token rows a (activations, bias
// column included) and s (output gradients), the fit set of N examples and M
// token rows gives
//
//	A = (1/M) Σ a aᵀ = Q_A diag(λ_A) Q_Aᵀ,   S = (1/M) Σ s sᵀ = Q_S diag(λ_S) Q_Sᵀ
//
// in float64. K-FAC uses Λ_ij = λ_S[i]·λ_A[j]; EK-FAC refits the eigenvalues
// in the Kronecker eigenbasis over examples, Λ = (1/N) Σ_n (Q_Sᵀ G_n Q_A)∘²;
// the diagonal method uses Λ = (1/N) Σ_n G_n∘² with Q = I. At score time
//
//	P(G) = Q_S [ (Q_Sᵀ G Q_A) ⊘ (Λ + δ) ] Q_Aᵀ
//
// with δ absolute or 0.1 × mean(Λ) per layer ("heuristic").
//
// Fitting streams, as hash.Hash does: Covariance.Add any number of batches
// (unnormalised float64 sums, so batches, files and shards add up in any
// split), Covariance.Eigen, then Lambda.Add the same fit set again and
// Lambda.Factors. Fit runs those stages over a Source. Factors are saved and
// loaded as safetensors with the fit arguments in the metadata.
// FitOptions.Precision F32 forms the products of both passes with float32
// GEMMs, each batch's added into the float64 sums; eigendecompositions and
// factors stay float64.
//
// Pairwise scores (LayerScores) are float64 by default. ScoreOptions.Precision
// F32 keeps the queries' preconditioning in float64 and computes the
// products with the training gradients in float32, choosing per layer by a
// flop count (PairwisePlan) between forming each training gradient in the
// eigenbasis and a bilinear form over its token rows that forms none.
package ekfac
