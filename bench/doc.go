// Package bench holds goinfluence's benchmarks as library calls, one per
// benchmark, each taking Options and returning a Result: Gemm, EKFAC and
// Stream. The 'goinfluence bench' subcommands only turn flags into Options
// and print the Result, as a table (WriteTable) or as JSON; bench/run.sh
// runs them and records the output under bench/results/, where every
// measured table of the project lives (benchmarks, quality tables, and the
// plots and JSON of 'make validate').
//
// An absolute rate says little on its own: it moves with the machine, the
// load and the day. So each benchmark measures, in the same run, a
// yardstick the code should approach, and reports the ratio to it next to
// the absolute numbers, with the machine and the date (Machine):
//
//   - Gemm measures Sgemm and Dgemm on square n×n×n products for every
//     registered backend (pure Go, OpenBLAS, CUDA when present). The
//     yardstick is the pure-Go backend on the same shape: Ratio says what a
//     backend buys over gonum.
//   - EKFAC times the stages of EK-FAC (covariance, eigendecomposition, Λ,
//     scoring, self-influence) on one synthetic layer, counting the flops
//     and the time of the GEMM-like calls inside each stage. The yardstick
//     is the same backend's Sgemm and Dgemm on Dim³ products: a stage near
//     1 is bound by its products, one far below spends its time elsewhere.
//   - Stream times influence.StreamScores over a store of random rows
//     against the backend's Sgemm on the same products from memory,
//     measured before and after the stream with the better run kept, so
//     that the ratio does not flatter the stream; 1 is a stream that hides
//     all reading, widening and ranking behind the products. It also
//     reports the cost of checking each shard's SHA-256 and the stream's
//     peak resident memory.
//   - Attribute times attribution's Attribute end to end on batches of
//     inferences against an i8 store. The yardstick is the scoring inside
//     the same calls (Attributor.AttributeTimed): the share of the time
//     outside it is what credits, splits and the receipt add.
//
// Timings belong here, never in unit tests: the tests of this package run
// each benchmark at tiny sizes and check only that the harness reports
// sane numbers.
package bench
