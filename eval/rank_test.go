package eval

import (
	"context"
	"strings"
	"testing"

	"github.com/goinfluence/goinfluence/ekfac"
)

// TestRankAccuracy runs RankAccuracy on the quick digits MLP (64-16-10:
// layers of 16 × 65 and 10 × 17): rank 16 keeps every layer whole and must
// reproduce the full-rank scores, ranks 2 and 4 must not.
func TestRankAccuracy(t *testing.T) {
	ctx := context.Background()
	task, err := NewTask(ctx, quick(t, "digits", "mlp"), TaskOptions{CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	for _, prec := range []ekfac.Precision{ekfac.F64, ekfac.F32} {
		t.Run(prec.String(), func(t *testing.T) {
			res, err := RankAccuracy(ctx, task, RankOptions{Ranks: []int{2, 4, 16}, Precision: prec})
			if err != nil {
				t.Fatal(err)
			}
			if res.NTrain != 300 || res.NTest != 40 || res.Precision != prec.String() || res.Damping != "l2" || len(res.Rows) != 4 {
				t.Fatalf("result %+v", res)
			}
			if r := res.Rows[0]; r.Rank != 0 || r.Pearson != 1 || !r.Exact || !(r.Seconds > 0) {
				t.Errorf("reference row %+v", r)
			}
			for _, r := range res.Rows[1:] {
				if r.Exact != (r.Rank == 16) || !(r.Seconds > 0) || !(r.MinPearson <= r.Pearson) {
					t.Errorf("row %+v", r)
				}
				if r.Exact && (r.MinPearson < 1-1e-6 || r.Spearman < 1-1e-3) {
					t.Errorf("rank %d keeps every layer whole, yet differs from full rank: %+v", r.Rank, r)
				}
				if !r.Exact && !(r.Pearson > 0 && r.Pearson < 1-1e-6) {
					t.Errorf("rank %d truncates, yet Pearson %g", r.Rank, r.Pearson)
				}
			}
			md := res.Markdown()
			t.Log("\n" + md)
			for _, s := range []string{"| full |", "| 4 |", "| 16 (≥ every layer's rank) |", "mlp 64-16-10"} {
				if !strings.Contains(md, s) {
					t.Errorf("Markdown lacks %q:\n%s", s, md)
				}
			}
		})
	}
	if _, err := RankAccuracy(ctx, task, RankOptions{Ranks: []int{0}}); err == nil || !strings.Contains(err.Error(), "rank 0") {
		t.Errorf("rank 0: %v", err)
	}
}
