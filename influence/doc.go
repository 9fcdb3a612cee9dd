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
// # Entry points, and when to use which
//
// Training gradients in memory (up to a few hundred thousand examples of a
// modest model):
//
//   - Analyzer pairs a Method with a linalg.Backend and returns pairwise
//     scores (Scores, LayerScores), self-influence (SelfInfluence) and, with
//     TopK, the most helpful and most harmful examples of each query.
//   - Methods: Exact (a dense Hessian, factorised once), Identity (plain
//     gradient dot products), EKFAC, KFAC and Diagonal (factors fitted by
//     package ekfac: the scalable choice for large layers), and the
//     Hessian-free CG, LiSSA, Arnoldi, Nystrom and DataInf (package hessian)
//     for models whose Hessian-vector products are all there is.
//   - TracInCP and TRAK score over several checkpoints of a training run.
//
// Training gradients in a store (package gradients/store: projected, on
// disk, any number of rows):
//
//   - StoreScorer is the one to use in a service or an attribution node:
//     opened once over one store (or one per checkpoint) with an explicit
//     StoreMethod (StoreIdentity, StoreFactors, StoreRawHessian, StoreTRAK,
//     StoreTracIn), it does the work that does not depend on the queries
//     once, and each Score call projects the queries the way the store was
//     built, preconditions them, streams the store and ranks.
//   - StreamScores and StreamCheckpoints are the layer below: they stream
//     already projected and preconditioned queries against stores, for
//     callers that precondition their own way.
//
// Exact scores. On stores of dtype i8 (DESIGN §11) the same calls score
// exactly: the queries, projected and preconditioned, are quantised as the
// rows were (QuantizeQueries, package quant), each pair's integer sum is
// computed exactly by an int8 kernel chosen at run time (or a backend's
// int8 GEMM, accel.Int8Gemmer, for batches of queries), and the score is a
// fixed formula of the sum and the two scales. Rankings then order by
// score and ties by example id (HelpfulByID, HarmfulByID), and every
// Entry carries its integer sum: scores and rankings are the same, bit for
// bit, on every machine, kernel, thread count, chunking and sharding, so
// that anyone can recompute what was paid. One query reads the mapped rows
// once; batches reuse each chunk of rows for all of their queries.
//
// Outputs: WriteScores and ReadScores hold the scores file format
// (ScoresFile; float32 by default, float64 with DType ScoresF64, which
// keeps the float64 scores of FactorScores to the bit), WriteProbs and ReadProbs the probabilities TRAK weighs
// training examples by.
//
// # Concurrency
//
// A Method and the factors, Hessians and operators it holds are read-only
// once built and may be shared. An Analyzer holds no state between calls:
// its methods may be called from several goroutines when its Method and
// Backend allow it; the backends of package linalg (pure Go, OpenBLAS) and
// package cuda do. A StoreScorer is safe for concurrent use: Score may be
// called from any number of goroutines, each call streaming the stores on
// its own. Stores, once open, may be read by any number of StoreScorers and
// iterators at once.
//
// # Errors
//
// Inputs whose layers do not match (query against training gradients,
// queries against a store, gradients against factors) are errors naming the
// layer and both shapes; ekfac.ErrIncompatible marks those against factors.
// A damping that is negative, not finite, or leaves Λ + δ not positive is
// an error matching hessian.ErrDamping, for every
// methods).
//
// Non-finite scores. Inputs are checked for NaN and Inf when read, but
// finite gradients can still overflow in the products (an entry of 1e300
// squares past the float64 range, 1e20 past float32 in a store), and a NaN
// compares false with everything: ranked, it would push real examples out
// of a top-k, and anything paid from the scores would skip an example
// without a word. So every scoring function here (Analyzer.Scores,
// LayerScores, SelfInfluence, TracInCP, TRAK, StreamScores,
// StreamCheckpoints, StoreScorer.Score) returns a *NonFiniteError naming the
// query, the training example's index and id (and the layer, for
// LayerScores) instead of a NaN or ±Inf score. TopK, which may be handed
// scores computed elsewhere, never ranks a NaN; CheckFinite and
// CheckFiniteSelf check such scores first.
package influence
