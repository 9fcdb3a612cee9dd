package influence

import (
	"math"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/goinfluence/goinfluence/linalg"
)

func TestScoresFileRoundTrip(t *testing.T) {
	scores := linalg.NewDense64(2, 5, []float64{3, -1, 2, 2, 0.5, -4, 1, 1, 7, 0})
	s32, err := ToF32("scores", scores)
	if err != nil {
		t.Fatal(err)
	}
	layer, _ := ToF32("scores.fc1", scores)
	rankings := TopK(scores, 3)
	for q := range rankings {
		for i := range rankings[q].Helpful {
			rankings[q].Helpful[i].ID += 100
			rankings[q].Harmful[i].ID += 100
		}
	}
	tests := []struct {
		name string
		f    *ScoresFile
	}{
		{"scores and layers", &ScoresFile{Metadata: map[string]string{"method": "ekfac"}, Scores: s32,
			Layers: []LayerScores{{Name: "fc1", Scores: layer}}}},
		{"rankings", &ScoresFile{Rankings: TopK(scores, 3), K: 3}},
		{"rankings with ids", &ScoresFile{Rankings: rankings, K: 3, RankingIDs: true}},
		{"self and ids", &ScoresFile{Self: []float64{1, 0.5, 2}, IDs: []int64{7, 1 << 60, -3}}},
		{"everything", &ScoresFile{Scores: s32, Rankings: TopK(scores, 2), K: 2, Self: []float64{1, 2, 3, 4, 5}, IDs: []int64{0, 1, 2, 3, 4}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "scores.st")
			if err := WriteScores(path, tc.f); err != nil {
				t.Fatal(err)
			}
			got, err := ReadScores(path)
			if err != nil {
				t.Fatal(err)
			}
			want := *tc.f
			want.Metadata = map[string]string{"format": ScoresFormat}
			for k, v := range tc.f.Metadata {
				want.Metadata[k] = v
			}
			if !reflect.DeepEqual(got, &want) {
				t.Errorf("read back\n%+v\nwant\n%+v", got, &want)
			}
		})
	}
}

func TestToF32Overflow(t *testing.T) {
	_, err := ToF32("scores", linalg.NewDense64(1, 2, []float64{1, math.MaxFloat64}))
	if err == nil || !strings.Contains(err.Error(), "encoding scores: row 0") {
		t.Fatalf("ToF32 of a score beyond float32: %v", err)
	}
}

func TestProbsRoundTrip(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "probs.st")
	if err := WriteProbs(path, []int64{4, 9}, []float64{0.25, 1}, map[string]string{"dataset": "digits"}); err != nil {
		t.Fatal(err)
	}
	got, err := ReadProbs(path)
	if err != nil || !reflect.DeepEqual(got, map[int64]float64{4: 0.25, 9: 1}) {
		t.Fatalf("ReadProbs = %v, %v", got, err)
	}
	tests := []struct {
		name string
		ids  []int64
		p    []float64
		want string
	}{
		{"not a probability", []int64{1}, []float64{1.5}, "is not a probability"},
		{"duplicate id", []int64{1, 1}, []float64{0, 0}, "id 1 appears twice"},
	}
	for _, tc := range tests {
		path := filepath.Join(dir, tc.name)
		if err := WriteProbs(path, tc.ids, tc.p, nil); err != nil {
			t.Fatal(err)
		}
		if _, err := ReadProbs(path); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error containing %q", tc.name, err, tc.want)
		}
	}
}
