// Package eval measures how well influence scores predict what retraining
// does.
//
// LOO (leave-one-out, Koh & Liang 2017) trains a convex model to its
// optimum, removes the training points of largest |score| for a few test
// points one at a time, retrains each to convergence and correlates the
// measured change of the test loss with the predicted +score/N. Results
// carry Pearson and Spearman correlations and can be plotted (PlotLOO).
//
// The quality harness compares many methods on one Task (a data set, a
// model family and its training: DefaultSetup, NewTask) against three
// retraining ground truths, each computed once and cached on disk under a
// hash of everything that determines it (DefaultCacheDir), so that scoring
// another method, or the same one again, retrains nothing:
//
//   - LDS, the linear datamodeling score (Park et al. 2023, TRAK): m random
//     subsets of α·N training examples (defaults 100 and ½), a model
//     retrained on each, and per test point the Spearman correlation over
//     the subsets between Σ_{i∈S} score(q, i) and the measured output f
//     (Output: TRAK's margin by default, or the hard logit margin, or
//     −loss), averaged over test points (Task.LDSTruth, LDS).
//   - LOO over random single removals, the same for every method
//     (Task.LOOTruth, LOOCorrelation).
//   - Noisy-label detection: 10% of training labels flipped, the model
//     retrained, training examples ranked by self-influence, ROC AUC of
//     finding the flipped ones (FlipLabels, AUC, ROC).
//
// Methods (the registry of Methods) all score with query gradients of −f,
// so that the package's sign convention holds: positive means helpful,
// raising f. Task.Quality runs them and renders the table (Markdown, JSON)
// and plots (PlotLDS, PlotROC). The projected methods also have
// store-backed variants (trak-10-f16, trak-10-i8, logra-f16, logra-i8):
// the same method with its projected training gradients in a gradient
// store of that dtype, scored by influence.StoreScorer, so that the table
// measures what the exact integer scoring of i8 stores (DESIGN §11) costs
// against f16; when both variants of a method run, the result compares
// them (StoreComparison: LDS side by side, top-10 overlap, TopOverlap). Retraining runs on parallel goroutines;
// results do not depend on their number.
//
// Each protocol is one call from parameters to result, for command lines
// and services alike: RunQuality (LDS, AUC and the whole table, from a
// TaskSpec), RunLOO, CurvatureAccuracy and ProjectionAccuracy. Their
// results print themselves: WriteText for a terminal, Markdown for
// reports, encoding/json through their struct tags.
package eval
