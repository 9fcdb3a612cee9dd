// Package datasets embeds the small real data sets that goinfluence's demo,
// tests and validation run on, so that nothing is read from disk or the
// network: the UCI handwritten digits (1797 × 64, 10 classes) and the
// Wisconsin Diagnostic Breast Cancer data (569 × 30, 2 classes), both
// CC BY 4.0 (see data/LICENSE.md). It also has the seeded split, subset and
// standardisation helpers those programs share.
package datasets
