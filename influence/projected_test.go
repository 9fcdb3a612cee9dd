package influence

import (
	"context"
	"math"
	"testing"

	"github.com/goinfluence/goinfluence/gradients"
)

// TestProjectedHessian holds (1/N) ΦᵀΦ to a float64 loop over the rows read
// back on every backend, and checks each backend's result is bit-identical
// across shard and chunk sizes.
func TestProjectedHessian(t *testing.T) {
	ctx := context.Background()
	const n, dim = 2600, 9
	first := map[string][]float64{}
	for _, tc := range []struct{ shard, chunk int }{{1000, 257}, {7777, 8192}, {300, 1}} {
		s := testStore(t, gradients.F16, tc.shard, n, dim, 3, normal)
		want := make([]float64, dim*dim)
		it := s.Chunks(100)
		for it.Next(ctx) {
			c := it.Chunk()
			for r := 0; r < c.Rows.Rows; r++ {
				row := c.Rows.Row(r)
				for i := range row {
					for j := range row {
						want[i*dim+j] += float64(row[i]) * float64(row[j]) / n
					}
				}
			}
		}
		it.Close()
		for _, be := range streamBackends(t) {
			h, err := ProjectedHessian(ctx, be, s, tc.chunk)
			if err != nil {
				t.Fatal(err)
			}
			for i, w := range want {
				if math.Abs(h.Data[i]-w) > 1e-12*(1+math.Abs(w)) {
					t.Fatalf("%s: H[%d] = %v, want %v", be.Name(), i, h.Data[i], w)
				}
			}
			ref, ok := first[be.Name()]
			if !ok {
				first[be.Name()] = h.Data
				continue
			}
			for i := range ref {
				if h.Data[i] != ref[i] {
					t.Fatalf("%s, shard %d chunk %d: H differs at %d (%v vs %v)", be.Name(), tc.shard, tc.chunk, i, h.Data[i], ref[i])
				}
			}
		}
	}
}
