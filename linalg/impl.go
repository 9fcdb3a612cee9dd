package linalg

// Helpers for Backend implementations in other packages (the cuda backend),
// so that every backend checks its arguments and handles the degenerate
// cases exactly as the built-in ones do, with the same panic messages.

// GemmStart validates the operands of an Sgemm or Dgemm (op names the method
// in panic messages) and handles the cases with no product to form: when m
// or n is 0 there is nothing to do, and when k or alpha is 0, C is scaled by
// beta (beta = 0 clears it, NaNs included). It returns the product's m, n
// and k and whether a product remains to be computed. It panics, with a
// message starting "linalg: ", on a shape mismatch or a malformed matrix.
func GemmStart[T Float](op string, tA, tB Transpose, alpha T, a, b *Dense[T], beta T, c *Dense[T]) (m, n, k int, ok bool) {
	return gemmStart(op, tA, tB, alpha, a, b, beta, c)
}

// CovStart validates the operands of a CovAccumulate or CovAccumulate32: c
// must be n×n for an m×n x. It returns n and whether there is anything to
// add (n > 0 and m > 0), and panics as GemmStart does.
func CovStart[T Float](op string, c *Dense64, x *Dense[T]) (n int, ok bool) {
	checkDense(op, "C", c)
	checkDense(op, "X", x)
	n = covDims(op, c.Rows, c.Cols, x.Rows, x.Cols)
	return n, n > 0 && x.Rows > 0
}
