package eval

import (
	"context"
	"errors"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/goinfluence/goinfluence/linalg"
	"github.com/goinfluence/goinfluence/models"
)

// TestStoreMethods scores a small digits MLP (300 training examples, 40
// queries) with TRAK-10 and LoGra in memory and through f16 and i8 stores:
// the f16 store computes the same scores as memory up to f16 rounding of
// the stored rows, the i8 store up to its quantisation (DESIGN §11), and
// the i8 store's top-10 helpful examples are nearly those of the f16 store.
func TestStoreMethods(t *testing.T) {
	ctx := context.Background()
	task, err := NewTask(ctx, quick(t, "digits", "mlp"), TaskOptions{CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	cfg := MethodConfig{TRAKDim: 256, LoGraK: 8}
	scores := map[string]*linalg.Dense64{}
	for _, base := range []string{"trak-10", "logra"} {
		for _, key := range []string{base, base + "-f16", base + "-i8"} {
			s, err := task.Scores(ctx, key, nil, models.Margin, cfg)
			if err != nil {
				t.Fatalf("%s: %v", key, err)
			}
			scores[key] = s
		}
		mem := scores[base]
		for _, tc := range []struct {
			key     string
			minCorr float64
		}{{base + "-f16", 0.99}, {base + "-i8", 0.98}} {
			mean, least := rowPearson(mem, scores[tc.key])
			t.Logf("%s against %s in memory: Pearson per query mean %.5f, min %.5f", tc.key, base, mean, least)
			if mean < tc.minCorr {
				t.Errorf("%s: mean Pearson %.4f with the in-memory scores < %.2f", tc.key, mean, tc.minCorr)
			}
		}
		ov, err := TopOverlap(scores[base+"-i8"], scores[base+"-f16"], OverlapK)
		if err != nil {
			t.Fatal(err)
		}
		mean, least := meanOf(ov), slices.Min(ov)
		t.Logf("%s: top-%d overlap i8/f16 mean %.3f, min %.2f", base, OverlapK, mean, least)
		if mean < 0.9 {
			t.Errorf("%s: top-%d overlap of the i8 and f16 stores %.3f < 0.9", base, OverlapK, mean)
		}
	}
	// Self-influence through a store is skipped, with its reason.
	spec, _ := LookupMethod("logra-i8")
	in := &Inputs{Model: task.Model, Train: task.Train, Config: task.methodConfig(cfg)}
	if _, err := spec.Run(ctx, in, true); !errors.Is(err, ErrSkipped) || !strings.Contains(err.Error(), "in-memory row") {
		t.Errorf("self-influence through a store: %v", err)
	}
}

// TestStoreComparison runs the store-backed variants in the quality table
// beside TRAK-10 in memory: the table compares the i8 and f16 stores (LDS
// side by side, top-10 overlap) and notes why the variants have no AUC.
func TestStoreComparison(t *testing.T) {
	ctx := context.Background()
	task, err := NewTask(ctx, quick(t, "digits", "mlp"), TaskOptions{CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	res, err := task.Quality(ctx, QualityOptions{
		Methods: []string{"trak-10", "trak-10-f16", "trak-10-i8", "logra-i8", "logra-f16"},
		LDS:     LDSOptions{Subsets: 8}, NoLOO: true,
		Config: MethodConfig{TRAKDim: 256, LoGraK: 8},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, row := range res.Rows {
		if row.LDS == nil || row.Failed != "" || row.Skipped != "" {
			t.Fatalf("%s: LDS %s, failed %q, skipped %q", row.Method, fmtOpt(row.LDS), row.Failed, row.Skipped)
		}
		if strings.Contains(row.Key, "-") && row.Key != "trak-10" {
			if row.AUC != nil || !slices.ContainsFunc(row.Notes, func(n string) bool { return strings.HasPrefix(n, "AUC not measured through a store") }) {
				t.Errorf("%s: AUC %s, notes %q", row.Method, fmtOpt(row.AUC), row.Notes)
			}
		}
	}
	cs := res.StoreComparisons
	if len(cs) != 2 || cs[0].Of != "trak-10" || cs[1].Of != "logra" {
		t.Fatalf("comparisons %+v", cs)
	}
	for _, c := range cs {
		t.Logf("%s: LDS memory %s f16 %s i8 %s; top-%d overlap %.3f (min %.2f)", c.Method, fmtOpt(c.LDSMemory), fmtOpt(c.LDSF16), fmtOpt(c.LDSI8), c.K, c.Overlap, c.OverlapMin)
		if c.LDSDiff == nil || math.Abs(*c.LDSDiff) > 0.02 || c.Overlap < 0.9 || c.K != OverlapK {
			t.Errorf("%s: LDS i8 − f16 %s, top-%d overlap %.3f", c.Method, fmtOpt(c.LDSDiff), c.K, c.Overlap)
		}
	}
	if cs[0].MemoryOverlap == nil || *cs[0].MemoryOverlap < 0.99 || cs[1].MemoryOverlap != nil {
		t.Errorf("f16/memory overlap: TRAK-10 %s, LoGra (not run in memory) %s", fmtOpt(cs[0].MemoryOverlap), fmtOpt(cs[1].MemoryOverlap))
	}
	md := res.Markdown()
	if !strings.Contains(md, "**i8 vs f16 store**") || !strings.Contains(md, "| TRAK-10 | ") || !strings.Contains(md, "| LoGra (EK-FAC, Kronecker-projected) | – | ") {
		t.Errorf("Markdown without the comparison:\n%s", md)
	}
	var text strings.Builder
	if err := res.WriteText(&text, ProtocolLDS); err != nil || !strings.Contains(text.String(), "TRAK-10, i8 vs f16 store: LDS") {
		t.Errorf("text: %v\n%s", err, text.String())
	}
}

// rowPearson returns the mean and the minimum over rows of the Pearson
// correlation of a's and b's rows.
func rowPearson(a, b *linalg.Dense64) (mean, least float64) {
	r := make([]float64, a.Rows)
	for i := range r {
		r[i] = Pearson(a.Row(i), b.Row(i))
	}
	return meanOf(r), slices.Min(r)
}

func TestTopOverlap(t *testing.T) {
	a := linalg.NewDense64(2, 5, []float64{
		5, 4, 3, 2, 1,
		1, 1, 1, 1, math.NaN(),
	})
	b := linalg.NewDense64(2, 5, []float64{
		5, 1, 3, 2, 4,
		2, 1, 1, 1, 1,
	})
	tests := []struct {
		name string
		k    int
		want []float64
	}{
		// Row 0: {0, 1} against {0, 4}. Row 1: ties by column, {0, 1}
		// against {0, 1}, the NaN last.
		{"top 2", 2, []float64{0.5, 1}},
		{"top 3", 3, []float64{2.0 / 3, 1}},
		{"k above the columns", 9, []float64{1, 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := TopOverlap(a, b, tc.k)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("TopOverlap = %v, want %v", got, tc.want)
			}
		})
	}
	if _, err := TopOverlap(a, linalg.NewDense64(1, 5, nil), 2); err == nil {
		t.Error("TopOverlap of different shapes: no error")
	}
}

// TestDefaultTableWithoutStores checks that the default table ("all")
// leaves out the store-backed variants, and that each variant names a
// registered method.
func TestDefaultTableWithoutStores(t *testing.T) {
	specs, err := selectMethods(nil)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, m := range Methods() {
		if m.Of == "" {
			n++
			continue
		}
		if _, err := LookupMethod(m.Of); err != nil || m.DType == "" {
			t.Errorf("%s: a variant of %q (%v), dtype %q", m.Key, m.Of, err, m.DType)
		}
	}
	if len(specs) != n || slices.ContainsFunc(specs, func(m MethodSpec) bool { return m.Of != "" }) {
		t.Errorf("default table: %d methods, want the %d without a store", len(specs), n)
	}
}
