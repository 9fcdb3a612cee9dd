// Package models holds small native Go classifiers that produce the
// per-example gradients influence functions need: binary logistic regression,
// softmax regression and a multi-layer perceptron, all trained with
// cross-entropy and an L2 penalty.
//
// Every model is a list of weight matrices ("layers") acting on activations
// with a bias column of ones appended, so its per-example gradient is exactly
// the factored form G_n = s_n a_nᵀ of gradients.Layer: a_n the layer's input
// with the bias column, s_n the gradient of the example's loss with respect
// to the layer's output. Gradients can be taken at the true labels (for
// training and query gradients) or at labels drawn from the model with
// SampleLabels (the true Fisher, for curvature).
//
// The regressions are convex and come with their exact Hessian; FitNewton
// trains them to a gradient norm of 1e-10, which leave-one-out validation
// needs. The MLP provides the exact Gauss–Newton matrix instead and trains
// with seeded Adam or SGD. Checkpoints are safetensors files (Save, Load).
//
// Train is 'goinfluence train' as one call: it builds the model TrainOptions
// describe and fits it (Newton for the regressions, Adam with optional
// per-epoch checkpoints for the MLP). ExampleGradients is 'goinfluence
// grads': the per-example gradients of a split at true or sampled labels,
// with p(y) for TRAK if asked.
package models
