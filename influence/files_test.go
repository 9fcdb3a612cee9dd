package influence

import (
	"bytes"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/goinfluence/goinfluence/internal/safetensors"
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

// f64Values are float64 scores that float32 cannot hold: fractions it
// rounds, magnitudes beyond its range, a subnormal, -0 and NaN.
var f64Values = []float64{0.1, -1.0 / 3, 1e300, -math.MaxFloat64, 5e-324, math.Copysign(0, -1), math.NaN(), math.Pi}

// f64File returns a scores file of every tensor, each float one holding
// f64Values, to be written as F64.
func f64File() *ScoresFile {
	v := func(i int) float64 { return f64Values[i%len(f64Values)] }
	scores := linalg.NewDense64(2, 4, nil)
	layer := linalg.NewDense64(2, 4, nil)
	for i := range scores.Data {
		scores.Data[i], layer.Data[i] = v(i), v(i+3)
	}
	rankings := make([]Ranking, 2)
	for q := range rankings {
		for j := range 2 {
			rankings[q].Helpful = append(rankings[q].Helpful, Entry{Index: j, ID: int64(10 + j), Score: v(q*2 + j), ISum: int64(q - j)})
			rankings[q].Harmful = append(rankings[q].Harmful, Entry{Index: 3 - j, ID: int64(13 - j), Score: v(q*2 + j + 5), ISum: int64(j)})
		}
	}
	return &ScoresFile{Metadata: map[string]string{"method": "ekfac"}, DType: ScoresF64,
		Layers: []LayerScores{{Name: "fc.1", Scores64: layer}}, Scores64: scores,
		Rankings: rankings, K: 2, RankingIDs: true, RankingISums: true,
		Self: f64Values[:4], IDs: []int64{10, 11, 12, 13}}
}

// sameBits64 reports whether a and b hold the same float64 bit patterns.
func sameBits64(a, b []float64) bool {
	return slices.EqualFunc(a, b, func(x, y float64) bool { return math.Float64bits(x) == math.Float64bits(y) })
}

// TestScoresFileF64RoundTrip holds an F64 scores file to giving back every
// float value to the bit, in the float64 fields, with its dtype recorded.
func TestScoresFileF64RoundTrip(t *testing.T) {
	want := f64File()
	path := filepath.Join(t.TempDir(), "scores.st")
	if err := WriteScores(path, want); err != nil {
		t.Fatal(err)
	}
	sf, err := safetensors.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"scores", "scores.fc.1", "topk.scores", "bottomk.scores", "self"} {
		if info, _ := sf.Info(name); info.DType != safetensors.F64 {
			t.Errorf("%s is %s, want F64", name, info.DType)
		}
	}
	sf.Close()
	got, err := ReadScores(path)
	if err != nil {
		t.Fatal(err)
	}
	if got.DType != ScoresF64 || got.Metadata["dtype"] != "f64" || got.Metadata["method"] != "ekfac" {
		t.Errorf("DType %v, metadata %v: want f64 recorded", got.DType, got.Metadata)
	}
	if got.Scores != nil || got.Scores64 == nil || !sameBits64(got.Scores64.Data, want.Scores64.Data) {
		t.Errorf("scores %v, want %v in Scores64", got.Scores64, want.Scores64)
	}
	if len(got.Layers) != 1 || got.Layers[0].Name != "fc.1" || got.Layers[0].Scores != nil || !sameBits64(got.Layers[0].Scores64.Data, want.Layers[0].Scores64.Data) {
		t.Errorf("layers %+v, want %+v", got.Layers, want.Layers)
	}
	if !sameBits64(got.Self, want.Self) || !slices.Equal(got.IDs, want.IDs) {
		t.Errorf("self %v ids %v, want %v %v", got.Self, got.IDs, want.Self, want.IDs)
	}
	if got.K != 2 || !got.RankingIDs || !got.RankingISums || len(got.Rankings) != 2 {
		t.Fatalf("rankings K %d ids %v isums %v, %d queries", got.K, got.RankingIDs, got.RankingISums, len(got.Rankings))
	}
	for q, r := range got.Rankings {
		for _, side := range [][2][]Entry{{r.Helpful, want.Rankings[q].Helpful}, {r.Harmful, want.Rankings[q].Harmful}} {
			same := slices.EqualFunc(side[0], side[1], func(a, b Entry) bool {
				return a.Index == b.Index && a.ID == b.ID && a.ISum == b.ISum && math.Float64bits(a.Score) == math.Float64bits(b.Score)
			})
			if !same {
				t.Errorf("query %d: entries %v, want %v", q, side[0], side[1])
			}
		}
	}
	// Written again, the file read gives the same bytes.
	again := filepath.Join(t.TempDir(), "again.st")
	if err := WriteScores(again, got); err != nil {
		t.Fatal(err)
	}
	if a, b := readBytes(t, path), readBytes(t, again); !bytes.Equal(a, b) {
		t.Error("rewriting the F64 file read changes its bytes")
	}
}

func readBytes(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestScoresFileDTypeConversions holds WriteScores to converting whichever
// fields hold the scores to the file's DType: float32 widens exactly,
// float64 narrows to the nearest float32, out of range is an error.
func TestScoresFileDTypeConversions(t *testing.T) {
	m64 := linalg.NewDense64(1, 3, []float64{0.1, -2, 1e-3})
	m32, _ := ToF32("scores", m64)
	dir := t.TempDir()
	roundTrip := func(t *testing.T, f *ScoresFile) *ScoresFile {
		t.Helper()
		path := filepath.Join(dir, strings.ReplaceAll(t.Name(), "/", "_"))
		if err := WriteScores(path, f); err != nil {
			t.Fatal(err)
		}
		got, err := ReadScores(path)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	t.Run("float32 as F64", func(t *testing.T) {
		got := roundTrip(t, &ScoresFile{DType: ScoresF64, Scores: m32, Layers: []LayerScores{{Name: "a", Scores: m32}}})
		want := (&ScoresFile{Scores: m32}).Float64Scores()
		if got.Scores64 == nil || !sameBits64(got.Scores64.Data, want.Data) || !sameBits64(got.Layers[0].Scores64.Data, want.Data) {
			t.Errorf("widened %v, want %v", got.Scores64, want)
		}
	})
	t.Run("float64 as F32", func(t *testing.T) {
		got := roundTrip(t, &ScoresFile{Metadata: map[string]string{"dtype": "f64"}, Scores64: m64, Layers: []LayerScores{{Name: "a", Scores64: m64}}})
		if got.DType != ScoresF32 || got.Metadata["dtype"] != "" || got.Scores == nil || !slices.Equal(got.Scores.Data, m32.Data) || !slices.Equal(got.Layers[0].Scores.Data, m32.Data) {
			t.Errorf("narrowed %+v, want %v and no dtype in the metadata", got, m32)
		}
		if !slices.Equal(got.Float64Scores().Data, got.Layers[0].Float64Scores().Data) {
			t.Error("Float64Scores of the file and of its layer differ")
		}
	})
	for _, tc := range []struct {
		name string
		f    *ScoresFile
		want string
	}{
		{"overflow", &ScoresFile{Scores64: linalg.NewDense64(1, 2, []float64{1, 1e300})}, "encoding scores: row 0"},
		{"layer overflow", &ScoresFile{Layers: []LayerScores{{Name: "a", Scores64: linalg.NewDense64(1, 1, []float64{-1e300})}}}, "encoding scores.a"},
		{"both set", &ScoresFile{DType: ScoresF64, Scores: m32, Scores64: m64}, "scores: both float32 and float64"},
		{"layer of nothing", &ScoresFile{Layers: []LayerScores{{Name: "a"}}}, "scores.a: no scores"},
		{"unknown dtype", &ScoresFile{DType: 7, Self: []float64{1}}, "ScoresDType(7)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, tc.name)
			err := WriteScores(path, tc.f)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("WriteScores: %v, want an error containing %q", err, tc.want)
			}
			if _, err := os.Stat(path); !os.IsNotExist(err) {
				t.Errorf("a failed write left %s", path)
			}
		})
	}
}

// TestReadScoresDType holds ReadScores to taking the dtype from the
// metadata, checked against the tensors, or from the tensors alone.
func TestReadScoresDType(t *testing.T) {
	dir := t.TempDir()
	f64 := func(name string, v ...float64) safetensors.Tensor {
		data, _ := safetensors.EncodeFloat64s(safetensors.F64, v)
		return safetensors.Tensor{Name: name, DType: safetensors.F64, Shape: []int{len(v)}, Data: data}
	}
	f32 := func(name string, v ...float64) safetensors.Tensor {
		data, _ := safetensors.EncodeFloat64s(safetensors.F32, v)
		return safetensors.Tensor{Name: name, DType: safetensors.F32, Shape: []int{len(v)}, Data: data}
	}
	matrix := func(t safetensors.Tensor) safetensors.Tensor { t.Shape = []int{1, t.Shape[0]}; return t }
	tests := []struct {
		name    string
		dtype   string // metadata; "" for none
		tensors []safetensors.Tensor
		want    ScoresDType
		err     string
	}{
		{"f32 by default", "", []safetensors.Tensor{f32("self", 1)}, ScoresF32, ""},
		{"f32 said", "f32", []safetensors.Tensor{f32("self", 1)}, ScoresF32, ""},
		{"f64 said", "F64", []safetensors.Tensor{matrix(f64("scores", 0.1))}, ScoresF64, ""},
		{"f64 tensors unsaid", "", []safetensors.Tensor{matrix(f64("scores", 0.1)), f32("self", 1)}, ScoresF64, ""},
		{"f64 said, f32 tensor", "f64", []safetensors.Tensor{matrix(f64("scores", 0.1)), f32("self", 1)}, 0, "self is F32, the metadata says dtype f64"},
		{"f32 said, f64 tensor", "f32", []safetensors.Tensor{matrix(f64("scores.x", 0.1))}, 0, "scores.x is F64, the metadata says dtype f32"},
		{"unknown", "f16", []safetensors.Tensor{f32("self", 1)}, 0, `metadata: scores dtype "f16": want f32 or f64`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			meta := map[string]string{"format": ScoresFormat}
			if tc.dtype != "" {
				meta["dtype"] = tc.dtype
			}
			path := filepath.Join(dir, tc.name)
			if err := safetensors.WriteFile(path, tc.tensors, meta); err != nil {
				t.Fatal(err)
			}
			got, err := ReadScores(path)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("ReadScores: %v, want an error containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.DType != tc.want {
				t.Errorf("DType %v, want %v", got.DType, tc.want)
			}
			if got.Scores64 != nil && math.Float64bits(got.Scores64.Data[0]) != math.Float64bits(0.1) {
				t.Errorf("F64 scores read as %v, want 0.1 exactly", got.Scores64.Data[0])
			}
		})
	}
}

func TestParseScoresDType(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want ScoresDType
		ok   bool
	}{{"f32", ScoresF32, true}, {"F64", ScoresF64, true}, {"f16", 0, false}, {"", 0, false}, {"float64", 0, false}} {
		got, err := ParseScoresDType(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseScoresDType(%q) = %v, %v", tc.in, got, err)
		}
		if tc.ok && got.String() != strings.ToLower(tc.in) {
			t.Errorf("%v.String() = %q, want %q", got, got.String(), strings.ToLower(tc.in))
		}
	}
}
