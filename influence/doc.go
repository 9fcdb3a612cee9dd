// Package influence scores training examples by their influence on a model's
// output on query examples:
//
//	score(q, t) = Σ_layers ⟨P(∇L(q)), ∇L(t)⟩,   P ≈ (H + δI)⁻¹
//
// Sign convention: positive = helpful. A positive score means that
// up-weighting training example t lowers the loss on query q; removing t from
// a training set of N examples raises the query loss by about score/N. There
// is no 1/N and no minus sign in the score itself. Negative scores mark
// harmful examples.
//
// An Analyzer pairs a Method (how P is formed: Exact, Identity, the
// Kronecker-factored methods, CG, LiSSA, Arnoldi and Nystrom on
// Hessian-vector products from the hessian package, or DataInf on the
// training gradients) with a linalg.Backend, and computes pairwise scores,
// self-influence ⟨P(∇L(t)), ∇L(t)⟩ and per-query top-k lists of the
// most helpful and most harmful training examples.
//
// Non-finite scores. Inputs are checked for NaN and Inf when read, but
// finite gradients can still overflow in the products (an entry of 1e300
// squares past the float64 range, 1e20 past float32 in a store), and a NaN
// compares false with everything: ranked, it would push real examples out
// of a top-k, and anything paid from the scores would skip an example
// without a word. So every scoring function here (Analyzer.Scores,
// LayerScores, SelfInfluence, TracInCP, TRAK, StreamScores,
// StreamCheckpoints) returns a *NonFiniteError naming the query, the
// training example's index and id (and the layer, for LayerScores) instead
// of a NaN or ±Inf score. TopK, which may be handed scores computed
// elsewhere, never ranks a NaN; CheckFinite and CheckFiniteSelf check such
// scores first.
//
// Stores. StreamScores and StreamCheckpoints score preconditioned queries
// against the rows of gradient stores (package store). StoreScorer is the
// whole of 'goinfluence store score' as a library: opened once on one or
// more stores with an explicit StoreMethod (StoreIdentity, StoreFactors,
// StoreRawHessian, StoreTRAK, StoreTracIn; there is no default, so that no
// caller gets plain dot products by forgetting a preconditioner), it
// projects each request's queries as the stores' rows were built,
// preconditions, streams and ranks, and is safe for concurrent use.
//
// Files. WriteScores and ReadScores hold scores, rankings and
// self-influence in the scores file of DESIGN §5; WriteProbs and ReadProbs
// the probabilities TRAK weighs rows by. Rankings, in memory (TopK) or
// streamed, share one order: HelpfulFirst and HarmfulFirst.
package influence
