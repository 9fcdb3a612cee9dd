// Package eval measures how well influence scores predict what retraining
// does. LOO (leave-one-out, Koh & Liang 2017) trains a convex model to its
// optimum, removes the training points of largest |score| for a few test
// points one at a time, retrains each to convergence and correlates the
// measured change of the test loss with the predicted +score/N. Results
// carry Pearson and Spearman correlations and can be plotted (PlotLOO).
package eval
