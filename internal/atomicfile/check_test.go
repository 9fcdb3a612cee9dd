package atomicfile

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "in.st")
	other := filepath.Join(dir, "other.st")
	for _, p := range []string{in, other} {
		if err := os.WriteFile(p, []byte(p), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	sym := filepath.Join(dir, "sym.st")
	if err := os.Symlink(in, sym); err != nil {
		t.Fatal(err)
	}
	hard := filepath.Join(dir, "hard.st")
	if err := os.Link(in, hard); err != nil {
		t.Fatal(err)
	}
	sub := filepath.Join(dir, "sub")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	subLink := filepath.Join(dir, "sublink")
	if err := os.Symlink(sub, subLink); err != nil {
		t.Fatal(err)
	}
	inputs := []Path{{"--train", in}, {"--query", ""}, {"--factors", filepath.Join(dir, "missing.st")}}

	for _, tc := range []struct {
		name    string
		outputs []Path
		same    bool   // want a *SameFileError
		notDir  bool   // want an *OutputError
		text    string // in the error
	}{
		{name: "new file", outputs: []Path{{"--out", filepath.Join(dir, "new.st")}}},
		{name: "existing other file", outputs: []Path{{"--out", other}}},
		{name: "unset", outputs: []Path{{"--out", ""}, {"--scores-out", ""}}},
		{name: "same path", outputs: []Path{{"--out", in}}, same: true, text: "--out " + in + " is the same file as --train " + in},
		{name: "symlink to input", outputs: []Path{{"--out", sym}}, same: true, text: "--out " + sym + " is the same file as --train " + in},
		{name: "hard link to input", outputs: []Path{{"--out", hard}}, same: true, text: "--train"},
		{name: "unclean path", outputs: []Path{{"--out", dir + "/./sub/../in.st"}}, same: true, text: "--train"},
		{name: "two outputs, existing", outputs: []Path{{"--out", other}, {"--scores-out", other}}, same: true, text: "--scores-out " + other + " is the same file as --out " + other},
		{name: "two outputs, new", outputs: []Path{{"--out", filepath.Join(sub, "x.st")}, {"--scores-out", filepath.Join(subLink, "x.st")}}, same: true, text: "--scores-out"},
		{name: "two outputs, different new", outputs: []Path{{"--out", filepath.Join(sub, "x.st")}, {"--scores-out", filepath.Join(subLink, "y.st")}}},
		{name: "missing directory", outputs: []Path{{"--out", filepath.Join(dir, "no", "x.st")}}, notDir: true, text: "--out " + filepath.Join(dir, "no", "x.st")},
		{name: "directory", outputs: []Path{{"--out", sub}}, notDir: true, text: "is a directory"},
		{name: "under a file", outputs: []Path{{"--out", filepath.Join(other, "x.st")}}, notDir: true, text: "not a directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Check(tc.outputs, inputs)
			var se *SameFileError
			var oe *OutputError
			switch {
			case errors.As(err, &se) != tc.same, errors.As(err, &oe) != tc.notDir:
				t.Fatalf("Check: %v (%T), want same file: %t, output error: %t", err, err, tc.same, tc.notDir)
			case err != nil && !strings.Contains(err.Error(), tc.text):
				t.Errorf("Check: %q, want it to contain %q", err, tc.text)
			}
		})
	}
}
