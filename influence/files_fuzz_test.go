package influence

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/goinfluence/goinfluence/linalg"
)

// FuzzReadScores feeds ReadScores arbitrary files, seeded with an F32 and
// an F64 scores file: it must return an error naming the file, never
// panic, and a file it accepts must be written back and read again to the
// same bytes.
func FuzzReadScores(f *testing.F) {
	dir := f.TempDir()
	scores := linalg.NewDense64(2, 3, []float64{3, -1, 0.25, 2, 0, -4})
	s32, _ := ToF32("scores", scores)
	for i, sf := range []*ScoresFile{
		{Metadata: map[string]string{"method": "ekfac"}, Scores: s32, Layers: []LayerScores{{Name: "fc.1", Scores: s32}},
			Rankings: TopK(scores, 2), K: 2, Self: []float64{1, 2, 3}, IDs: []int64{4, 5, 6}},
		f64File(),
	} {
		path := filepath.Join(dir, "seed"+string(rune('0'+i)))
		if err := WriteScores(path, sf); err != nil {
			f.Fatal(err)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		dir := t.TempDir()
		in := filepath.Join(dir, "in")
		if err := os.WriteFile(in, b, 0o644); err != nil {
			t.Fatal(err)
		}
		sf, err := ReadScores(in)
		if err != nil {
			if !strings.Contains(err.Error(), in) {
				t.Fatalf("error %v does not name the file", err)
			}
			return
		}
		// Written, read and written again: a fixed point.
		once, twice := filepath.Join(dir, "once"), filepath.Join(dir, "twice")
		if err := WriteScores(once, sf); err != nil {
			t.Fatalf("writing back an accepted file: %v", err)
		}
		again, err := ReadScores(once)
		if err != nil {
			t.Fatalf("reading back: %v", err)
		}
		if again.DType != sf.DType {
			t.Fatalf("dtype %v read back as %v", sf.DType, again.DType)
		}
		if err := WriteScores(twice, again); err != nil {
			t.Fatalf("writing back again: %v", err)
		}
		a, _ := os.ReadFile(once)
		c, _ := os.ReadFile(twice)
		if !bytes.Equal(a, c) {
			t.Fatal("write(read(write(read(file)))) differs from write(read(file))")
		}
	})
}
