package datasets

import (
	"context"
	"errors"
	"math"
	"slices"
	"testing"
)

func TestLoadSplit(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name        string
		train, test int
		lo, hi      float64 // bounds of the prepared training features
		params      string
	}{
		{"digits", 1437, 360, 0, 1, "pixels scaled by 1/16"},
		{"breast-cancer", 455, 114, -20, 20, "features standardised with the training part's mean and standard deviation"},
		{"mnist", MNISTTrain, MNISTTest, 0, 1, "pixels scaled by 1/255"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			train, test, err := LoadSplit(ctx, tc.name, SplitOptions{Seed: 1})
			if errors.Is(err, ErrUnavailable) {
				t.Skipf("%s: %v", tc.name, err)
			}
			if err != nil {
				t.Fatal(err)
			}
			if train.Len() != tc.train || test.Len() != tc.test {
				t.Fatalf("%d train / %d test, want %d / %d", train.Len(), test.Len(), tc.train, tc.test)
			}
			lo, hi := math.Inf(1), math.Inf(-1)
			for _, v := range train.X.Data {
				lo, hi = min(lo, v), max(hi, v)
			}
			if lo < tc.lo || hi > tc.hi || lo == hi {
				t.Errorf("prepared features in [%g, %g], want within [%g, %g]", lo, hi, tc.lo, tc.hi)
			}
			again, _, err := LoadSplit(ctx, tc.name, SplitOptions{Seed: 1})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(again.X.Data, train.X.Data) || !slices.Equal(again.Y, train.Y) {
				t.Error("the same name and seed gave other rows")
			}
			other, _, err := LoadSplit(ctx, tc.name, SplitOptions{Seed: 2})
			if err != nil {
				t.Fatal(err)
			}
			if moved := !slices.Equal(other.Y, train.Y); moved != (tc.name != "mnist") {
				t.Errorf("another seed moved the rows: %v", moved)
			}
			p, err := SplitProvenance(train, test, 7)
			if err != nil {
				t.Fatal(err)
			}
			if p.Dataset != tc.name || p.Params != tc.params || p.Preparation != Preparation || p.Train != tc.train || p.Features != train.X.Cols {
				t.Errorf("provenance %+v", p)
			}
			if wantSeed := uint64(7); tc.name == "mnist" && p.SplitSeed != 0 || tc.name != "mnist" && p.SplitSeed != wantSeed {
				t.Errorf("provenance split seed %d", p.SplitSeed)
			}
		})
	}
	if _, _, err := LoadSplit(ctx, "nosuch", SplitOptions{}); err == nil {
		t.Error("an unknown data set loaded")
	}
}
