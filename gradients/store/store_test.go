package store

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/goinfluence/goinfluence/gradients"
	"github.com/goinfluence/goinfluence/linalg"
)

var testLayers = []LayerInfo{{Name: "enc.fc1", Dim: 5}, {Name: "head", Dim: 8}}

const testDim = 13

// randRows returns n rows of testDim normal values and ids n0, n0+1, ….
func randRows(n, n0 int, seed uint64) ([]int64, []float32) {
	rnd := rand.New(rand.NewPCG(seed, 1))
	ids := make([]int64, n)
	rows := make([]float32, n*testDim)
	for i := range ids {
		ids[i] = int64(n0 + i)
	}
	for i := range rows {
		rows[i] = float32(rnd.NormFloat64() * 3)
	}
	return ids, rows
}

// rounded returns v as stored in dtype d: rounded to nearest even.
func rounded(d gradients.DType, v []float32) []float32 {
	out := make([]float32, len(v))
	for i, x := range v {
		switch d {
		case gradients.F16:
			out[i] = linalg.F16Float32(linalg.F16Bits(x))
		case gradients.BF16:
			out[i] = linalg.BF16Float32(linalg.BF16Bits(x))
		default:
			out[i] = x
		}
	}
	return out
}

func build(t testing.TB, dir string, opt Options, ids []int64, rows []float32) {
	t.Helper()
	b, err := Create(dir, opt)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Add(context.Background(), ids, rows); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
}

// readAll reads a store in chunks of the given size, checking offsets and
// that only the last chunk is short.
func readAll(t testing.TB, s *Store, chunk int) ([]int64, []float32) {
	t.Helper()
	var ids []int64
	var rows []float32
	it := s.Chunks(chunk)
	for it.Next(context.Background()) {
		c := it.Chunk()
		if c.Offset != len(ids) {
			t.Fatalf("chunk offset %d after %d rows", c.Offset, len(ids))
		}
		if r, d := c.Rows.Dims(); r != len(c.IDs) || d != s.Dim() {
			t.Fatalf("chunk of %d ids has %d×%d rows", len(c.IDs), r, d)
		}
		if len(c.IDs) != chunk && c.Offset+len(c.IDs) != s.Count() {
			t.Fatalf("short chunk of %d rows at offset %d of %d", len(c.IDs), c.Offset, s.Count())
		}
		ids = append(ids, c.IDs...)
		rows = append(rows, c.Rows.Data...)
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	if len(ids) != s.Count() {
		t.Fatalf("read %d rows, store has %d", len(ids), s.Count())
	}
	return ids, rows
}

func open(t testing.TB, dir string) *Store {
	t.Helper()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func sameBits(t testing.TB, got, want []float32) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d values, want %d", len(got), len(want))
	}
	for i := range got {
		if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
			t.Fatalf("value %d (row %d, column %d) = %v, want %v", i, i/testDim, i%testDim, got[i], want[i])
		}
	}
}

func TestRoundTrip(t *testing.T) {
	const n = 40
	ids, rows := randRows(n, 100, 1)
	for _, dt := range []gradients.DType{gradients.F32, gradients.F16, gradients.BF16} {
		want := rounded(dt, rows)
		for _, shardRows := range []int{1, 7, 1000} {
			dir := filepath.Join(t.TempDir(), "s")
			build(t, dir, Options{DType: dt, ShardRows: shardRows, Layers: testLayers}, ids, rows)
			s := open(t, dir)
			if s.Count() != n || s.Dim() != testDim || s.DType() != dt {
				t.Fatalf("%s/%d: count %d dim %d dtype %s", dt, shardRows, s.Count(), s.Dim(), s.DType())
			}
			if got, want := len(s.Manifest().Shards), (n+shardRows-1)/shardRows; got != want {
				t.Errorf("%s/%d: %d shards, want %d", dt, shardRows, got, want)
			}
			for _, chunk := range []int{1, 5, 64} {
				gotIDs, got := readAll(t, s, chunk)
				if !slices.Equal(gotIDs, ids) {
					t.Fatalf("%s/%d/%d: ids %v, want %v", dt, shardRows, chunk, gotIDs, ids)
				}
				sameBits(t, got, want)
			}
		}
	}
}

func TestRoundTripWithinRounding(t *testing.T) {
	// Independently of the bit-exact comparison: half precision keeps 11
	// (f16) or 8 (bf16) significant bits.
	ids, rows := randRows(30, 0, 2)
	for _, c := range []struct {
		dt  gradients.DType
		eps float64
	}{{gradients.F16, 0x1p-11}, {gradients.BF16, 0x1p-8}} {
		dir := filepath.Join(t.TempDir(), "s")
		build(t, dir, Options{DType: c.dt, ShardRows: 8, Layers: testLayers}, ids, rows)
		_, got := readAll(t, open(t, dir), 9)
		for i, x := range rows {
			if d := math.Abs(float64(got[i] - x)); d > c.eps*math.Abs(float64(x))+1e-7 {
				t.Fatalf("%s: value %d = %v, want %v within relative %g", c.dt, i, got[i], x, c.eps)
			}
		}
	}
}

func TestManifestFields(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "s")
	ids, rows := randRows(10, 0, 3)
	opt := Options{DType: gradients.F16, ShardRows: 4, Layers: testLayers,
		Projection: gradients.Projection{Kind: gradients.Kronecker, KIn: 2, KOut: 3, Seed: 42}}
	build(t, dir, opt, ids, rows)
	buf, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(buf, &m); err != nil {
		t.Fatal(err)
	}
	keys := func(v any) []string {
		k := make([]string, 0)
		for name := range v.(map[string]any) {
			k = append(k, name)
		}
		slices.Sort(k)
		return k
	}
	checks := []struct {
		name string
		got  any
		want any
	}{
		{"keys", keys(m), []string{"count", "dim", "dtype", "format", "layers", "projection", "seed", "shards"}},
		{"format", m["format"], "goinfluence.store/v1"},
		{"dtype", m["dtype"], "f16"},
		{"dim", m["dim"], 13.0},
		{"seed", m["seed"], 42.0},
		{"count", m["count"], 10.0},
		{"layers", m["layers"], []any{
			map[string]any{"name": "enc.fc1", "offset": 0.0, "dim": 5.0},
			map[string]any{"name": "head", "offset": 5.0, "dim": 8.0},
		}},
		{"projection", m["projection"], map[string]any{"kind": "kronecker", "k_in": 2.0, "k_out": 3.0}},
		{"shards", len(m["shards"].([]any)), 3},
	}
	for _, c := range checks {
		if fmt.Sprint(c.got) != fmt.Sprint(c.want) {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	for i, sh := range m["shards"].([]any) {
		sm := sh.(map[string]any)
		if k := keys(sm); !slices.Equal(k, []string{"file", "rows", "sha256"}) {
			t.Errorf("shard %d keys %v", i, k)
		}
		name := fmt.Sprintf("shard-%06d.safetensors", i)
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]any{"file": name, "rows": float64([]int{4, 4, 2}[i]), "sha256": fmt.Sprintf("%x", sha256.Sum256(data))}
		if fmt.Sprint(sm) != fmt.Sprint(want) {
			t.Errorf("shard %d = %v, want %v", i, sm, want)
		}
	}
	// Without a projection the kind is "none".
	dir2 := filepath.Join(t.TempDir(), "s")
	build(t, dir2, Options{DType: gradients.F32, Layers: testLayers}, nil, nil)
	if p := open(t, dir2).Manifest().Projection; p != (gradients.Projection{}) {
		t.Errorf("default projection %+v", p)
	}
}

func TestVerify(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "s")
	ids, rows := randRows(12, 0, 4)
	build(t, dir, Options{DType: gradients.BF16, ShardRows: 5, Layers: testLayers}, ids, rows)
	ctx := context.Background()
	if err := open(t, dir).Verify(ctx); err != nil {
		t.Fatalf("clean store: %v", err)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if err := open(t, dir).Verify(cancelled); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled Verify: %v", err)
	}

	// Flip one value bit: the header stays valid, so Open still succeeds.
	path := filepath.Join(dir, "shard-000001.safetensors")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)-8*5-3] ^= 0x10
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	err = open(t, dir).Verify(ctx)
	if !errors.Is(err, ErrChecksum) || !strings.Contains(err.Error(), "shard-000001.safetensors") {
		t.Fatalf("Verify of a flipped byte: %v", err)
	}
}

// rewriteManifest applies edit to the manifest decoded as generic JSON.
func rewriteManifest(t *testing.T, dir string, edit func(m map[string]any)) {
	t.Helper()
	path := filepath.Join(dir, "manifest.json")
	buf, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(buf, &m); err != nil {
		t.Fatal(err)
	}
	edit(m)
	if buf, err = json.Marshal(m); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestOpenErrors(t *testing.T) {
	shard1 := "shard-000001.safetensors"
	shard := func(m map[string]any, i int) map[string]any { return m["shards"].([]any)[i].(map[string]any) }
	cases := []struct {
		name   string
		mutate func(t *testing.T, dir string)
		is     error
		names  string // in the message
	}{
		{"missing manifest", func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, "manifest.json"))
		}, fs.ErrNotExist, "manifest.json"},
		{"not JSON", func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, "manifest.json"), []byte("{"), 0o644)
		}, ErrFormat, "manifest.json"},
		{"bad format", func(t *testing.T, dir string) {
			rewriteManifest(t, dir, func(m map[string]any) { m["format"] = "goinfluence.store/v2" })
		}, ErrFormat, "format"},
		{"bad dtype", func(t *testing.T, dir string) {
			rewriteManifest(t, dir, func(m map[string]any) { m["dtype"] = "f64" })
		}, ErrDType, "dtype"},
		{"unknown field", func(t *testing.T, dir string) {
			rewriteManifest(t, dir, func(m map[string]any) { m["extra"] = 1 })
		}, ErrFormat, "extra"},
		{"count mismatch", func(t *testing.T, dir string) {
			rewriteManifest(t, dir, func(m map[string]any) { m["count"] = 11 })
		}, ErrFormat, "count"},
		{"layer offsets", func(t *testing.T, dir string) {
			rewriteManifest(t, dir, func(m map[string]any) { m["layers"].([]any)[1].(map[string]any)["offset"] = 4 })
		}, ErrFormat, "layers[1].offset"},
		{"shard outside the store", func(t *testing.T, dir string) {
			rewriteManifest(t, dir, func(m map[string]any) { shard(m, 1)["file"] = "../" + shard1 })
		}, ErrFormat, "shards[1].file"},
		{"bad sha256", func(t *testing.T, dir string) {
			rewriteManifest(t, dir, func(m map[string]any) { shard(m, 0)["sha256"] = "xyz" })
		}, ErrFormat, "shards[0].sha256"},
		{"missing shard", func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, shard1))
		}, fs.ErrNotExist, shard1},
		{"truncated shard", func(t *testing.T, dir string) {
			path := filepath.Join(dir, shard1)
			st, _ := os.Stat(path)
			os.Truncate(path, st.Size()-1)
		}, ErrFormat, shard1},
		{"shard rows mismatch", func(t *testing.T, dir string) {
			rewriteManifest(t, dir, func(m map[string]any) {
				shard(m, 0)["rows"] = 3
				shard(m, 1)["rows"] = 7
			})
		}, ErrShape, "shard-000000.safetensors: grads"},
		{"dim mismatch", func(t *testing.T, dir string) {
			rewriteManifest(t, dir, func(m map[string]any) {
				m["dim"] = testDim + 1
				m["layers"].([]any)[1].(map[string]any)["dim"] = 9
			})
		}, ErrShape, "shard-000000.safetensors: grads"},
		{"dtype mismatch", func(t *testing.T, dir string) {
			rewriteManifest(t, dir, func(m map[string]any) { m["dtype"] = "bf16" })
		}, ErrDType, "shard-000000.safetensors: grads"},
	}
	ids, rows := randRows(10, 0, 5)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "s")
			build(t, dir, Options{DType: gradients.F16, ShardRows: 5, Layers: testLayers}, ids, rows)
			c.mutate(t, dir)
			s, err := Open(dir)
			if err == nil {
				s.Close()
				t.Fatal("Open succeeded")
			}
			var e *Error
			if !errors.As(err, &e) || !errors.Is(err, c.is) || !strings.Contains(err.Error(), c.names) {
				t.Fatalf("error %q: want an *Error wrapping %v and naming %q", err, c.is, c.names)
			}
			if _, err := Resume(dir); err == nil {
				t.Fatal("Resume succeeded")
			}
		})
	}
}

func TestResume(t *testing.T) {
	ctx := context.Background()
	ids, rows := randRows(45, 7, 6)
	opt := Options{DType: gradients.F16, ShardRows: 7, Layers: testLayers, Projection: gradients.Projection{Seed: 3}}
	single := filepath.Join(t.TempDir(), "single")
	build(t, single, opt, ids, rows)

	dir := filepath.Join(t.TempDir(), "resumed")
	build(t, dir, opt, ids[:20], rows[:20*testDim])
	b, err := Resume(dir)
	if err != nil {
		t.Fatal(err)
	}
	if b.Committed() != 20 || b.Buffered() != 0 {
		t.Fatalf("resumed with %d committed, %d buffered rows", b.Committed(), b.Buffered())
	}
	if err := b.Add(ctx, ids[20:], rows[20*testDim:]); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	s1, s2 := open(t, single), open(t, dir)
	if err := s2.Verify(ctx); err != nil {
		t.Fatal(err)
	}
	ids1, rows1 := readAll(t, s1, 64)
	ids2, rows2 := readAll(t, s2, 64)
	if !slices.Equal(ids1, ids2) {
		t.Fatalf("ids %v, want %v", ids2, ids1)
	}
	sameBits(t, rows2, rows1)
	m1, m2 := s1.Manifest(), s2.Manifest()
	if m1.Count != m2.Count || m1.Projection != m2.Projection || !slices.Equal(m1.Layers, m2.Layers) {
		t.Errorf("manifests differ:\n%+v\n%+v", m1, m2)
	}
}

func TestResumeRemovesLeftovers(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "s")
	ids, rows := randRows(6, 0, 7)
	build(t, dir, Options{DType: gradients.F32, ShardRows: 3, Layers: testLayers}, ids, rows)
	// What a build killed at various points leaves behind, and a file that
	// is none of the store's business.
	stray := map[string]bool{
		".shard-000002.safetensors.tmp123": false,
		".manifest.json.tmp456":            false,
		"shard-000002.safetensors":         false, // written, never committed
		"shard-000007.safetensors":         false,
		"notes.txt":                        true,
	}
	committed, _ := os.ReadFile(filepath.Join(dir, "shard-000001.safetensors"))
	for name := range stray {
		if err := os.WriteFile(filepath.Join(dir, name), committed, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if s := open(t, dir); s.Count() != 6 || len(s.Manifest().Shards) != 2 {
		t.Fatalf("Open sees %d rows in %d shards", s.Count(), len(s.Manifest().Shards))
	}
	b, err := Resume(dir)
	if err != nil {
		t.Fatal(err)
	}
	for name, kept := range stray {
		_, err := os.Stat(filepath.Join(dir, name))
		if kept != (err == nil) {
			t.Errorf("%s: kept %v, want %v", name, err == nil, kept)
		}
	}
	more, moreRows := randRows(4, 6, 8)
	if err := b.Add(context.Background(), more, moreRows); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	s := open(t, dir)
	if err := s.Verify(context.Background()); err != nil {
		t.Fatal(err)
	}
	gotIDs, got := readAll(t, s, 4)
	if !slices.Equal(gotIDs, append(ids, more...)) {
		t.Fatalf("ids %v", gotIDs)
	}
	sameBits(t, got, append(rows, moreRows...))
}

func TestCreateErrors(t *testing.T) {
	existing := filepath.Join(t.TempDir(), "s")
	build(t, existing, Options{DType: gradients.F32, Layers: testLayers}, nil, nil)
	shardOnly := t.TempDir()
	os.WriteFile(filepath.Join(shardOnly, "shard-000000.safetensors"), nil, 0o644)
	cases := []struct {
		name string
		dir  string
		opt  Options
		is   error
	}{
		{"existing store", existing, Options{DType: gradients.F32, Layers: testLayers}, ErrExists},
		{"stray shard", shardOnly, Options{DType: gradients.F32, Layers: testLayers}, ErrExists},
		{"bad dtype", "", Options{DType: gradients.F64, Layers: testLayers}, ErrDType},
		{"no layers", "", Options{DType: gradients.F16}, ErrFormat},
		{"repeated layer", "", Options{DType: gradients.F16, Layers: []LayerInfo{{Name: "a", Dim: 1}, {Name: "a", Dim: 2}}}, ErrFormat},
		{"empty layer", "", Options{DType: gradients.F16, Layers: []LayerInfo{{Name: "a"}}}, ErrFormat},
		{"negative shard rows", "", Options{DType: gradients.F16, ShardRows: -1, Layers: testLayers}, ErrShape},
		{"negative projection", "", Options{DType: gradients.F16, Layers: testLayers, Projection: gradients.Projection{Kind: gradients.SJLT, K: -1}}, ErrFormat},
		{"seed above 2⁶³", "", Options{DType: gradients.F16, Layers: testLayers, Projection: gradients.Projection{Kind: gradients.SJLT, K: 2, Seed: 1 << 63}}, ErrFormat},
	}
	for _, c := range cases {
		dir := c.dir
		if dir == "" {
			dir = filepath.Join(t.TempDir(), "s")
		}
		if _, err := Create(dir, c.opt); !errors.Is(err, c.is) {
			t.Errorf("%s: %v, want %v", c.name, err, c.is)
		}
	}
}

func TestAddErrors(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "s")
	b, err := Create(dir, Options{DType: gradients.F16, ShardRows: 2, Layers: testLayers})
	if err != nil {
		t.Fatal(err)
	}
	row := func(v float32) []float32 {
		r := make([]float32, testDim)
		r[3] = v
		return r
	}
	good := slices.Concat(row(1), row(2))
	cases := []struct {
		name  string
		ids   []int64
		rows  []float32
		is    error
		names string
	}{
		{"NaN", []int64{1, 2}, slices.Concat(row(1), row(float32(math.NaN()))), ErrNonFinite, "id 2"},
		{"Inf", []int64{5, 6}, slices.Concat(row(float32(math.Inf(-1))), row(1)), ErrNonFinite, "id 5"},
		{"f16 overflow", []int64{8, 9}, slices.Concat(row(1), row(70000)), ErrRange, "id 9: 70000 at column 3"},
		{"duplicate id", []int64{4, 4}, good, ErrDuplicate, "id 4"},
		{"short rows", []int64{1, 2}, good[:testDim+1], ErrShape, "values"},
	}
	for _, c := range cases {
		if err := b.Add(ctx, c.ids, c.rows); !errors.Is(err, c.is) || !strings.Contains(err.Error(), c.names) {
			t.Errorf("%s: %v, want %v naming %q", c.name, err, c.is, c.names)
		}
	}
	// A rejected call leaves nothing behind: the builder goes on.
	if err := b.Add(ctx, []int64{1, 2, 3}, slices.Concat(good, row(65504))); err != nil {
		t.Fatal(err)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if err := b.Add(cancelled, []int64{9}, row(0)); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled Add: %v", err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Add(ctx, []int64{9}, row(0)); !errors.Is(err, fs.ErrClosed) {
		t.Errorf("Add after Close: %v", err)
	}
	ids, rows := readAll(t, open(t, dir), 10)
	if !slices.Equal(ids, []int64{1, 2, 3}) || rows[2*testDim+3] != 65504 {
		t.Errorf("store holds ids %v", ids)
	}
}

func testBatch(n, n0 int) *gradients.Batch {
	rnd := rand.New(rand.NewPCG(uint64(n0), 9))
	vals := func(k int) []float64 {
		v := make([]float64, k)
		for i := range v {
			v[i] = rnd.NormFloat64()
		}
		return v
	}
	ids := make([]int64, n)
	for i := range ids {
		ids[i] = int64(n0 + i)
	}
	return &gradients.Batch{N: n, IDs: ids, Layers: []gradients.Layer{
		{Name: "enc.fc1", DIn: 5, DOut: 1, Tokens: 3, TokenAxis: true, A: vals(n * 15), S: vals(n * 3)},
		{Name: "head", D: 8, Grad: vals(n * 8)},
	}}
}

func TestAddBatchAndFile(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	b1, b2 := testBatch(6, 0), testBatch(5, 6)
	file := filepath.Join(root, "g.safetensors")
	if err := gradients.WriteFile(file, b2, gradients.F32, nil); err != nil {
		t.Fatal(err)
	}
	// The file holds float32 values: flatten what it holds.
	b2r, err := gradients.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "s")
	b, err := Create(dir, Options{DType: gradients.F32, ShardRows: 4, Layers: testLayers})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.AddBatch(ctx, b1); err != nil {
		t.Fatal(err)
	}
	if err := b.AddFile(ctx, file); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	var want []float32
	for _, v := range append(b1.Flatten().Data, b2r.Flatten().Data...) {
		want = append(want, float32(v))
	}
	ids, got := readAll(t, open(t, dir), 3)
	if !slices.Equal(ids, []int64{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10}) {
		t.Fatalf("ids %v", ids)
	}
	sameBits(t, got, want)
}

func TestAddBatchErrors(t *testing.T) {
	ctx := context.Background()
	b, err := Create(filepath.Join(t.TempDir(), "s"), Options{DType: gradients.BF16, Layers: testLayers})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	noIDs := testBatch(2, 0)
	noIDs.IDs = nil
	renamed := testBatch(2, 0)
	renamed.Layers[1].Name = "tail"
	nan := testBatch(3, 10)
	nan.Layers[1].Grad[8+2] = math.NaN() // example 1, id 11
	noIDFile := filepath.Join(t.TempDir(), "g.safetensors")
	if err := gradients.WriteFile(noIDFile, noIDs, gradients.F32, nil); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name  string
		add   func() error
		is    error
		names string
	}{
		{"nil", func() error { return b.AddBatch(ctx, nil) }, ErrShape, "nil batch"},
		{"no ids", func() error { return b.AddBatch(ctx, noIDs) }, ErrShape, "ids"},
		{"layer name", func() error { return b.AddBatch(ctx, renamed) }, ErrShape, `layers[1]: shape mismatch: layer "tail"`},
		{"NaN", func() error { return b.AddBatch(ctx, nan) }, ErrNonFinite, "id 11"},
		{"file without ids", func() error { return b.AddFile(ctx, noIDFile) }, ErrShape, "g.safetensors: ids"},
		{"missing file", func() error { return b.AddFile(ctx, noIDFile+".missing") }, fs.ErrNotExist, "missing"},
	}
	for _, c := range cases {
		if err := c.add(); !errors.Is(err, c.is) || !strings.Contains(err.Error(), c.names) {
			t.Errorf("%s: %v, want %v naming %q", c.name, err, c.is, c.names)
		}
	}
	if b.Buffered() != 0 {
		t.Errorf("%d rows buffered after rejected calls", b.Buffered())
	}
}

func TestIterator(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "s")
	build(t, dir, Options{DType: gradients.F32, Layers: testLayers}, nil, nil)
	s := open(t, dir)
	if ids, _ := readAll(t, s, 3); len(ids) != 0 {
		t.Fatalf("empty store gave %d rows", len(ids))
	}

	dir = filepath.Join(t.TempDir(), "s")
	ids, rows := randRows(9, 0, 10)
	build(t, dir, Options{DType: gradients.F32, ShardRows: 4, Layers: testLayers}, ids, rows)
	s = open(t, dir)
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	it := s.Chunks(2)
	if it.Next(cancelled) || !errors.Is(it.Err(), context.Canceled) {
		t.Errorf("cancelled Next: %v", it.Err())
	}
	// Stopping early and closing releases the shard.
	it = s.Chunks(5)
	if !it.Next(context.Background()) {
		t.Fatal(it.Err())
	}
	if err := it.Close(); err != nil || it.Next(context.Background()) {
		t.Errorf("Next after Close")
	}
	// A shard removed after Open is an error naming it.
	os.Remove(filepath.Join(dir, "shard-000001.safetensors"))
	it = s.Chunks(3)
	for it.Next(context.Background()) {
	}
	if err := it.Err(); !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "shard-000001") {
		t.Errorf("missing shard: %v", err)
	}
	s.Close()
	it = s.Chunks(3)
	if it.Next(context.Background()) || !errors.Is(it.Err(), fs.ErrClosed) {
		t.Errorf("Next on a closed store: %v", it.Err())
	}
}

// TestNextInto reads the same rows as Next into a caller's padded buffer,
// leaving the padding alone, for chunks that span shards.
func TestNextInto(t *testing.T) {
	ids, rows := randRows(23, 5, 11)
	for _, dt := range []gradients.DType{gradients.F32, gradients.F16, gradients.BF16} {
		dir := filepath.Join(t.TempDir(), "s")
		build(t, dir, Options{DType: dt, ShardRows: 4, Layers: testLayers}, ids, rows)
		s := open(t, dir)
		for _, tc := range []struct{ chunk, stride int }{{1, testDim}, {5, testDim}, {5, testDim + 3}, {6, 32}, {100, 16}} {
			wantIDs, want := readAll(t, s, tc.chunk)
			buf := make([]float32, tc.chunk*tc.stride)
			var gotIDs []int64
			var got []float32
			it := s.Chunks(tc.chunk)
			for i := range buf {
				buf[i] = -7
			}
			for it.NextInto(context.Background(), buf, tc.stride) {
				c := it.Chunk()
				if c.Rows.Stride != tc.stride || &c.Rows.Data[0] != &buf[0] {
					t.Fatalf("%s %+v: chunk does not alias the buffer with its stride", dt, tc)
				}
				for i := range len(c.IDs) {
					got = append(got, c.Rows.Row(i)...)
					for _, v := range buf[i*tc.stride+testDim : (i+1)*tc.stride] {
						if v != -7 {
							t.Fatalf("%s %+v: padding of row %d overwritten", dt, tc, i)
						}
					}
				}
				gotIDs = append(gotIDs, c.IDs...)
			}
			if err := it.Err(); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(gotIDs, wantIDs) {
				t.Fatalf("%s %+v: ids %v, want %v", dt, tc, gotIDs, wantIDs)
			}
			if all, err := s.IDs(context.Background()); err != nil || !slices.Equal(all, ids) {
				t.Fatalf("%s: IDs() = %v, %v, want %v", dt, all, err, ids)
			}
			sameBits(t, got, want)
		}
		it := s.Chunks(5)
		if it.NextInto(context.Background(), make([]float32, 5*testDim-1), testDim) || it.Err() == nil {
			t.Errorf("%s: short buffer accepted", dt)
		}
		it = s.Chunks(5)
		if it.NextInto(context.Background(), make([]float32, 5*testDim), testDim-1) || it.Err() == nil {
			t.Errorf("%s: stride below the dimension accepted", dt)
		}
	}
}

// Kill test: a subprocess builds a store and is killed with SIGKILL part way;
// the store must reopen with every committed row and resume.

const (
	killEnv   = "GOINFLUENCE_STORE_KILL_DIR"
	killDim   = 16
	killShard = 4
)

// killRow is the row of an id, exact in f16.
func killRow(id int64) []float32 {
	r := make([]float32, killDim)
	for j := range r {
		r[j] = float32((id*31+int64(j)*7)%1024 - 512)
	}
	return r
}

// TestHelperKillBuild is the subprocess of TestKillBuild: it builds a store
// one row at a time until it is killed.
func TestHelperKillBuild(t *testing.T) {
	dir := os.Getenv(killEnv)
	if dir == "" {
		t.Skip("subprocess of TestKillBuild")
	}
	b, err := Create(dir, Options{DType: gradients.F16, ShardRows: killShard, Layers: []LayerInfo{{Name: "w", Dim: killDim}}})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second) // should the parent not kill us
	for id := int64(0); time.Now().Before(deadline); id++ {
		if err := b.Add(context.Background(), []int64{id}, killRow(id)); err != nil {
			t.Fatal(err)
		}
	}
	b.Close()
}

// checkKillStore checks that s holds exactly the rows of ids 0, 1, … in order.
func checkKillStore(t *testing.T, s *Store) {
	t.Helper()
	if err := s.Verify(context.Background()); err != nil {
		t.Fatal(err)
	}
	next := int64(0)
	it := s.Chunks(7)
	for it.Next(context.Background()) {
		c := it.Chunk()
		for i, id := range c.IDs {
			if id != next {
				t.Fatalf("row %d has id %d, want %d", c.Offset+i, id, next)
			}
			if got, want := c.Rows.Row(i), killRow(id); !slices.Equal(got, want) {
				t.Fatalf("id %d: row %v, want %v", id, got, want)
			}
			next++
		}
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	if int(next) != s.Count() {
		t.Fatalf("read %d rows of %d", next, s.Count())
	}
}

func TestKillBuild(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("SIGKILL and renames over open files differ on windows")
	}
	if os.Getenv(killEnv) != "" {
		t.Skip("in the subprocess")
	}
	const minRows = 40 // ten shards
	dir := filepath.Join(t.TempDir(), "s")
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperKillBuild$", "-test.count=1")
	cmd.Env = append(os.Environ(), killEnv+"="+dir)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	seen := 0
	deadline := time.Now().Add(20 * time.Second)
	for seen < minRows {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("the build committed only %d rows in 20s", seen)
		}
		time.Sleep(time.Millisecond)
		if m, err := readManifest(dir); err == nil {
			seen = m.Count
		}
	}
	if err := cmd.Process.Kill(); err != nil { // SIGKILL
		t.Fatal(err)
	}
	if err := cmd.Wait(); err == nil {
		t.Fatal("the build finished before it was killed")
	}
	entries, _ := os.ReadDir(dir)
	var leftovers []string
	for _, e := range entries {
		if i, ok := shardIndex(e.Name()); !ok && e.Name() != ManifestName || ok && i*killShard >= seen {
			leftovers = append(leftovers, e.Name())
		}
	}

	s := open(t, dir)
	if s.Count() < seen || s.Count()%killShard != 0 {
		t.Fatalf("reopened with %d rows; %d were committed before the kill", s.Count(), seen)
	}
	t.Logf("killed after %d rows seen committed; reopened with %d rows in %d shards; beyond those, on disk: %q",
		seen, s.Count(), len(s.Manifest().Shards), leftovers)
	checkKillStore(t, s)

	b, err := Resume(dir)
	if err != nil {
		t.Fatal(err)
	}
	if b.Committed() != s.Count() {
		t.Fatalf("Resume has %d committed rows, Open %d", b.Committed(), s.Count())
	}
	total := b.Committed() + 2*killShard + 1
	for id := int64(b.Committed()); id < int64(total); id++ {
		if err := b.Add(context.Background(), []int64{id}, killRow(id)); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, dir)
	if s.Count() != total {
		t.Fatalf("finished store has %d rows, want %d", s.Count(), total)
	}
	checkKillStore(t, s)
	entries, _ = os.ReadDir(dir)
	if want := len(s.Manifest().Shards) + 2; len(entries) != want { // and the lock file
		names := make([]string, len(entries))
		for i, e := range entries {
			names[i] = e.Name()
		}
		t.Errorf("directory holds %q, want the manifest, the lock file and %d shards", names, want-2)
	}
}

func TestShardIndex(t *testing.T) {
	for _, c := range []struct {
		name string
		i    int
		ok   bool
	}{
		{"shard-000000.safetensors", 0, true},
		{"shard-000123.safetensors", 123, true},
		{"shard-1234567.safetensors", 1234567, true},
		{"shard-00001.safetensors", 0, false},
		{"shard-0000001.safetensors", 0, false},
		{"shard--00001.safetensors", 0, false},
		{"shard-+00001.safetensors", 0, false},
		{"shard-000001.safetensors.tmp", 0, false},
		{".shard-000001.safetensors.tmp42", 0, false},
	} {
		i, ok := shardIndex(c.name)
		if i != c.i || ok != c.ok {
			t.Errorf("shardIndex(%q) = %d, %v, want %d, %v", c.name, i, ok, c.i, c.ok)
		}
	}
}

// TestManifestDType checks that manifest.json spells the dtype in lower case
// and refuses any other spelling or a dtype a store cannot hold, naming the
// field.
func TestManifestDType(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "s")
	ids, rows := randRows(3, 0, 1)
	build(t, dir, Options{DType: gradients.BF16, Layers: testLayers}, ids, rows)
	buf, err := os.ReadFile(filepath.Join(dir, ManifestName))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(buf), `"dtype": "bf16"`) {
		t.Fatalf("manifest does not say bf16:\n%s", buf)
	}
	for _, tc := range []struct {
		dtype string
		want  gradients.DType // "" when refused
	}{{"bf16", gradients.BF16}, {"i8", gradients.I8}, {"BF16", ""}, {"f64", ""}, {"F64", ""}, {"I8", ""}, {"u8", ""}, {"", ""}} {
		ok := tc.want != ""
		m, err := parseManifest([]byte(strings.Replace(string(buf), `"dtype": "bf16"`, `"dtype": "`+tc.dtype+`"`, 1)))
		var e *Error
		switch {
		case ok && (err != nil || m.DType != tc.want):
			t.Errorf("%q: %v, dtype %q", tc.dtype, err, m.DType)
		case !ok && (!errors.Is(err, ErrDType) || !errors.As(err, &e) || e.Field != "dtype"):
			t.Errorf("%q: error %v, want ErrDType naming the field", tc.dtype, err)
		}
	}
}
