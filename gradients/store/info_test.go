package store

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/goinfluence/goinfluence/gradients"
)

// infoStore builds a store of 5 examples of writeGrads, projected by
// Rademacher to 3 per layer, in shards of 2 rows.
func infoStore(t testing.TB, dir string) {
	t.Helper()
	in := filepath.Join(t.TempDir(), "g.safetensors")
	writeGrads(t, in, 5, nil, 7)
	src, err := OpenSource(in)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	spec := gradients.Projection{Kind: gradients.Rademacher, K: 3, Seed: 11}
	if _, err := Build(context.Background(), dir, src, spec, BuildOptions{ShardRows: 2}); err != nil {
		t.Fatal(err)
	}
}

// TestInfo holds Info to the text and JSON that 'goinfluence store info'
// printed before it moved into the library (testdata/info*, recorded from
// the command on the store of infoStore), and to naming the shard that
// fails verification.
func TestInfo(t *testing.T) {
	t.Chdir(t.TempDir())
	infoStore(t, "infostore")
	for _, tc := range []struct {
		name   string
		verify bool
		json   bool
		want   string
	}{
		{"text", false, false, "info.txt"},
		{"text verify", true, false, "info-verify.txt"},
		{"json", false, true, "info.json"},
		{"json verify", true, true, "info-verify.json"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stages []string
			sum, err := Info(context.Background(), "infostore", InfoOptions{Verify: tc.verify, Progress: func(s string, _, _ int) { stages = append(stages, s) }})
			if err != nil {
				t.Fatal(err)
			}
			if want := map[bool]int{false: 0, true: 1}[tc.verify]; len(stages) != want {
				t.Errorf("progress stages %q, want %d", stages, want)
			}
			var got bytes.Buffer
			if tc.json {
				err = sum.WriteJSON(&got)
			} else {
				err = sum.WriteText(&got)
			}
			if err != nil {
				t.Fatal(err)
			}
			want, err := os.ReadFile(filepath.Join(testdata, tc.want))
			if err != nil {
				t.Fatal(err)
			}
			if got.String() != string(want) {
				t.Errorf("got\n%s\nwant (%s)\n%s", got.String(), tc.want, want)
			}
		})
	}
	t.Run("summarize", func(t *testing.T) {
		s := open(t, "infostore")
		defer s.Close()
		if got := Summarize("infostore", s.Manifest()); got.Bytes != 1422 || got.Verified {
			t.Errorf("Summarize: %d bytes, verified %v; want 1422, false", got.Bytes, got.Verified)
		}
	})
	t.Run("corrupt shard", func(t *testing.T) {
		shard := filepath.Join("infostore", "shard-000001.safetensors")
		buf, err := os.ReadFile(shard)
		if err != nil {
			t.Fatal(err)
		}
		buf[len(buf)-1] ^= 1
		if err := os.WriteFile(shard, buf, 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := Info(context.Background(), "infostore", InfoOptions{}); err != nil {
			t.Fatalf("Info without Verify: %v", err)
		}
		_, err = Info(context.Background(), "infostore", InfoOptions{Verify: true})
		var ve *VerifyError
		if !errors.As(err, &ve) || !errors.Is(err, ErrChecksum) || !strings.Contains(err.Error(), "shard-000001.safetensors") {
			t.Fatalf("Info with Verify on a corrupt shard: %v, want a *VerifyError matching ErrChecksum naming shard-000001.safetensors", err)
		}
	})
	t.Run("no store", func(t *testing.T) {
		if _, err := Info(context.Background(), "missing", InfoOptions{}); err == nil {
			t.Fatal("Info of a missing directory succeeded")
		} else if !errors.Is(err, os.ErrNotExist) && !strings.Contains(err.Error(), "missing") {
			t.Errorf("error %v names neither the directory nor ErrNotExist", err)
		}
	})
}

// testdata is the fixture directory, absolute because TestInfo changes
// directory.
var testdata = func() string {
	d, err := filepath.Abs("testdata")
	if err != nil {
		panic(err)
	}
	return d
}()

// TestHelperInfoStore builds the store of TestInfo in
// $GOINFLUENCE_INFO_STORE, to record testdata/info* with the command.
func TestHelperInfoStore(t *testing.T) {
	dir := os.Getenv("GOINFLUENCE_INFO_STORE")
	if dir == "" {
		t.Skip()
	}
	infoStore(t, dir)
}
