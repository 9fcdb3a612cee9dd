package progress

import (
	"bytes"
	"testing"
)

// TestPlain checks the lines written where there is no terminal: one per
// stage, and for a counter its message and a line when it is done.
func TestPlain(t *testing.T) {
	var b bytes.Buffer
	p := New(&b)
	if p.TTY() {
		t.Fatal("a buffer taken for a terminal")
	}
	p.Stage("reading")
	tick := p.Counter("scoring")
	tick(1, 3)
	tick(3, 3)
	p.Done()
	p.Stage("wrote x")
	want := "reading\nscoring\nscoring: 3/3 done\nwrote x\n"
	if b.String() != want {
		t.Errorf("wrote %q, want %q", b.String(), want)
	}
}
