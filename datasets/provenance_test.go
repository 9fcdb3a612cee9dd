package datasets

import (
	"reflect"
	"strings"
	"testing"
)

func TestProvenanceRoundTrip(t *testing.T) {
	p := Provenance{Dataset: "digits", Preparation: "eval.LoadSplit/v1", Params: "pixels/16", Features: 64,
		Classes: 10, SplitSeed: 1 << 63, TrainFraction: "4/5", Train: 1437, Test: 360}
	got, ok, err := ParseProvenance(p.Metadata())
	if err != nil || !ok || !reflect.DeepEqual(got, p) {
		t.Fatalf("ParseProvenance(Metadata()) = %+v, %v, %v; want %+v", got, ok, err, p)
	}
	if d := p.Differences(got); d != nil {
		t.Errorf("Differences of equal records: %q", d)
	}
	q := p
	q.SplitSeed, q.Train = 2, 1438
	if d := p.Differences(q); len(d) != 2 || !strings.Contains(d[0], "split seed 2, not 9223372036854775808") {
		t.Errorf("Differences = %q", d)
	}
	if s := p.String(); s != "digits (split seed 9223372036854775808, 1437 train / 360 test)" {
		t.Errorf("String() = %q", s)
	}
}

func TestParseProvenance(t *testing.T) {
	full := Provenance{Dataset: "breast-cancer", Features: 30, Classes: 2, Train: 455, Test: 114}.Metadata()
	with := func(k, v string) map[string]string {
		m := map[string]string{}
		for kk, vv := range full {
			m[kk] = vv
		}
		if v == "" {
			delete(m, k)
		} else {
			m[k] = v
		}
		return m
	}
	for _, tc := range []struct {
		name   string
		meta   map[string]string
		ok     bool
		errSub string
	}{
		{"absent", map[string]string{"format": "x"}, false, ""},
		{"nil", nil, false, ""},
		{"complete", full, true, ""},
		{"missing seed", with("data.split_seed", ""), false, `"data.split_seed" missing`},
		{"bad seed", with("data.split_seed", "-1"), false, "not a seed"},
		{"bad count", with("data.features", "many"), false, `"data.features" = "many" is not a count`},
		{"negative count", with("data.train", "-3"), false, "not a count"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, ok, err := ParseProvenance(tc.meta)
			if ok != tc.ok || (err == nil) != (tc.errSub == "") || (err != nil && !strings.Contains(err.Error(), tc.errSub)) {
				t.Fatalf("ParseProvenance: ok %v, err %v; want ok %v, error containing %q", ok, err, tc.ok, tc.errSub)
			}
		})
	}
}
