package datasets

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/goinfluence/goinfluence/linalg"
)

func TestCheckProvenance(t *testing.T) {
	want := Provenance{Dataset: "digits", Preparation: Preparation, Params: "pixels scaled by 1/16", Features: 64,
		Classes: 10, SplitSeed: 1, TrainFraction: "4/5", Train: 1437, Test: 360}
	edit := func(f func(m map[string]string)) map[string]string {
		m := want.Metadata()
		f(m)
		return m
	}
	for _, tc := range []struct {
		name    string
		meta    map[string]string
		is      error  // errors.Is target, or nil
		mention string // in the error; "" for none
		have    string // ProvenanceError.Have's data set, "" when not one
	}{
		{"same data", want.Metadata(), nil, "", ""},
		{"no record", map[string]string{"model": "softmax"}, ErrNoProvenance, "no provenance record", ""},
		{"other seed", edit(func(m map[string]string) { m["data.split_seed"] = "2" }), nil,
			"trained on digits (split seed 2, 1437 train / 360 test), not digits (split seed 1, 1437 train / 360 test): split seed 1, not 2", "digits"},
		{"other data set", edit(func(m map[string]string) { m["data.dataset"] = "breast-cancer" }), nil, "data set digits, not breast-cancer", "breast-cancer"},
		{"malformed", edit(func(m map[string]string) { delete(m, "data.test") }), nil, `"data.test" missing`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckProvenance(tc.meta, want)
			if tc.mention == "" {
				if err != nil {
					t.Fatalf("CheckProvenance: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.mention) {
				t.Fatalf("error %v, want one containing %q", err, tc.mention)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("errors.Is(%v, %v) = false", err, tc.is)
			}
			var perr *ProvenanceError
			if got := errors.As(err, &perr); got != (tc.have != "") {
				t.Fatalf("errors.As(*ProvenanceError) = %v, want %v", got, tc.have != "")
			}
			if perr != nil && (perr.Have.Dataset != tc.have || perr.Want != want) {
				t.Errorf("ProvenanceError{Have: %+v, Want: %+v}", perr.Have, perr.Want)
			}
		})
	}
}

// TestCheckProvenanceOfSplit checks the record of a LoadSplit against
// itself and against the split of another seed, as grads does.
func TestCheckProvenanceOfSplit(t *testing.T) {
	train, test, err := LoadSplit(context.Background(), "digits", SplitOptions{Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	p1, err := SplitProvenance(train, test, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckProvenance(p1.Metadata(), p1); err != nil {
		t.Errorf("a split against its own record: %v", err)
	}
	p2, err := SplitProvenance(train, test, 2)
	if err != nil {
		t.Fatal(err)
	}
	var perr *ProvenanceError
	if err := CheckProvenance(p1.Metadata(), p2); !errors.As(err, &perr) {
		t.Errorf("seed 1's record against seed 2: %v, want a *ProvenanceError", err)
	}
}

func TestConcat(t *testing.T) {
	train, test, err := LoadSplit(context.Background(), "breast-cancer", SplitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	all := Concat(train, test)
	if all.Len() != train.Len()+test.Len() || all.Name != train.Name || all.Classes != train.Classes {
		t.Fatalf("Concat: %d examples of %s with %d classes", all.Len(), all.Name, all.Classes)
	}
	for i, part := range []*Dataset{train, test} {
		off := i * train.Len()
		for r := range part.Len() {
			if !slices.Equal(all.X.Row(off+r), part.X.Row(r)) || all.Y[off+r] != part.Y[r] || all.Index[off+r] != part.Index[r] {
				t.Fatalf("row %d of part %d differs in the concatenation", r, i)
			}
		}
	}
	defer func() {
		if recover() == nil {
			t.Error("Concat of data with different features did not panic")
		}
	}()
	Concat(train, &Dataset{Name: "narrow", X: linalg.NewDense64(0, 1, nil)})
}
