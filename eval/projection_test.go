package eval

import (
	"context"
	"testing"
)

// TestProjectionAccuracy checks that EK-FAC in Kronecker-projected spaces
// tracks full EK-FAC better as k grows, on a reduced digits MLP.
func TestProjectionAccuracy(t *testing.T) {
	opt := CurvatureOptions{Hidden: []int{16}, Epochs: 60, TestPoints: 6, Seed: 3}
	r, err := ProjectionAccuracy(context.Background(), opt, []int{8, 64}, 5)
	if err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + r.Markdown())
	lo, hi := r.Rows[0], r.Rows[1]
	if !(hi.Pearson > lo.Pearson) || hi.Pearson < 0.9 {
		t.Errorf("Pearson k=8 %.3f, k=64 %.3f: want growth with k and ≥ 0.9 at k=64", lo.Pearson, hi.Pearson)
	}
}
