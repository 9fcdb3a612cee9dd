package influence

import (
	"encoding/binary"
	"fmt"
	"maps"
	"math"
	"strings"

	"github.com/goinfluence/goinfluence/internal/safetensors"
	"github.com/goinfluence/goinfluence/linalg"
)

// ScoresFormat is the metadata "format" of a scores file.
const ScoresFormat = "goinfluence.scores/v1"

// ProbsFormat is the metadata "format" of a probabilities file: p(y) of
// each training example's true label, TRAK's weights.
const ProbsFormat = "goinfluence.probs/v1"

// ScoresFile is the content of a scores file (safetensors), every part
// optional. Written, its tensors come in this order, each only when set:
//
//	scores.<layer>  F32 [n_query, n_train]  per-layer scores, Layers order
//	scores          F32 [n_query, n_train]
//	topk.indices    I64 [n_query, K]        most helpful first
//	topk.ids        I64 [n_query, K]        with RankingIDs
//	topk.isums      I64 [n_query, K]        with RankingISums
//	topk.scores     F32 [n_query, K]
//	bottomk.*       likewise                most harmful first
//	self            F32 [n_train]           self-influence
//	ids             I64 [n_train]           the training examples' ids
//
// The float tensors (scores, scores.<layer>, topk.scores, bottomk.scores,
// self) are F32, or F64 with DType ScoresF64; an F64 file's metadata has
// "dtype": "f64".
//
// The order is part of the format: equal contents give equal bytes.
type ScoresFile struct {
	// Metadata is written as the header's __metadata__; its "format" is
	// always ScoresFormat, its "dtype" "f64" for an F64 file and absent
	// for an F32 one (the format's default; a reader also takes "f32").
	Metadata map[string]string

	// DType is the element type of the float tensors written: ScoresF32,
	// the zero value, or ScoresF64. The values are converted as they are
	// written, whichever fields hold them: float32 ones widen exactly,
	// float64 ones narrow to the nearest float32 (a finite value beyond
	// the float32 range is an error). ReadScores sets ScoresF64 when the
	// file's metadata says "f64" or a float tensor is F64.
	DType ScoresDType

	Layers []LayerScores // per-layer breakdown
	// Scores holds the summed scores, n_query × n_train, as float32;
	// Scores64 holds them as float64. Set at most one: FactorScores and
	// ReadScores fill Scores64 for ScoresF64 and Scores otherwise, and
	// Float64Scores gives either as float64.
	Scores   *linalg.Dense32
	Scores64 *linalg.Dense64

	// Rankings, one per query, each list of length K; written when not
	// nil.
	Rankings []Ranking
	K        int
	// RankingIDs also writes the entries' ids (topk.ids, bottomk.ids),
	// for rankings of store rows whose ids are not their positions.
	RankingIDs bool
	// RankingISums also writes the entries' exact integer sums
	// (topk.isums, bottomk.isums, I64), for rankings of i8 stores
	// (DESIGN §11), so that a reader can recompute the scores.
	RankingISums bool

	Self []float64 // self-influence, one per training example
	IDs  []int64   // the training examples' ids, one per column
}

// LayerScores is one layer's part of the scores: Scores (float32) or
// Scores64 (float64), as for ScoresFile.
type LayerScores struct {
	Name     string
	Scores   *linalg.Dense32
	Scores64 *linalg.Dense64
}

// ScoresDType is the element type of the float tensors of a scores file.
type ScoresDType uint8

const (
	// ScoresF32 is float32, the zero value and the format's default: half
	// the bytes, scores to about 6e-8 relative.
	ScoresF32 ScoresDType = iota
	// ScoresF64 is float64: the scores exactly as computed in float64.
	ScoresF64
)

// ParseScoresDType parses "f32" or "f64" (any case).
func ParseScoresDType(s string) (ScoresDType, error) {
	switch strings.ToLower(s) {
	case "f32":
		return ScoresF32, nil
	case "f64":
		return ScoresF64, nil
	}
	return 0, fmt.Errorf("scores dtype %q: want f32 or f64", s)
}

// String returns "f32" or "f64", as the metadata and the CLI spell it.
func (d ScoresDType) String() string {
	switch d {
	case ScoresF32:
		return "f32"
	case ScoresF64:
		return "f64"
	}
	return fmt.Sprintf("ScoresDType(%d)", uint8(d))
}

// tensorDType returns the safetensors dtype of d, or an error for an
// unknown d.
func (d ScoresDType) tensorDType() (safetensors.DType, error) {
	switch d {
	case ScoresF32:
		return safetensors.F32, nil
	case ScoresF64:
		return safetensors.F64, nil
	}
	return "", fmt.Errorf("unknown %v", d)
}

// Float64Scores returns the summed scores as float64: Scores64, or Scores
// widened (exactly) into a new matrix; nil when neither is set.
func (f *ScoresFile) Float64Scores() *linalg.Dense64 { return widen(f.Scores, f.Scores64) }

// Float64Scores returns the layer's scores as float64, as
// ScoresFile.Float64Scores does.
func (l LayerScores) Float64Scores() *linalg.Dense64 { return widen(l.Scores, l.Scores64) }

func widen(m32 *linalg.Dense32, m64 *linalg.Dense64) *linalg.Dense64 {
	if m64 != nil || m32 == nil {
		return m64
	}
	out := linalg.NewDense64(m32.Rows, m32.Cols, nil)
	for i := range m32.Rows {
		dst := out.Row(i)
		for j, v := range m32.Row(i) {
			dst[j] = float64(v)
		}
	}
	return out
}

// ToF32 narrows float64 scores to the float32 a scores file holds. A
// finite score beyond the float32 range is an error naming it, never a
// silent ±Inf.
func ToF32(name string, m *linalg.Dense64) (*linalg.Dense32, error) {
	out := linalg.NewDense32(m.Rows, m.Cols, nil)
	for i := range m.Rows {
		dst := out.Row(i)
		for j, v := range m.Row(i) {
			dst[j] = float32(v)
			if math.IsInf(float64(dst[j]), 0) && !math.IsInf(v, 0) {
				return nil, fmt.Errorf("encoding %s: row %d: %w", name, i, &safetensors.RangeError{Index: j, Value: v, DType: safetensors.F32})
			}
		}
	}
	return out, nil
}

// WriteScores writes f to path atomically: a reader sees the old file or
// the whole new one, never a part.
func WriteScores(path string, f *ScoresFile) error {
	ts, err := f.tensors()
	if err != nil {
		return fmt.Errorf("influence: WriteScores %s: %w", path, err)
	}
	meta := maps.Clone(f.Metadata)
	if meta == nil {
		meta = map[string]string{}
	}
	meta["format"] = ScoresFormat
	delete(meta, "dtype")
	if f.DType == ScoresF64 {
		meta["dtype"] = f.DType.String()
	}
	return safetensors.WriteFile(path, ts, meta)
}

// tensors returns the tensors of f in the order of the format.
func (f *ScoresFile) tensors() ([]safetensors.Tensor, error) {
	dt, err := f.DType.tensorDType()
	if err != nil {
		return nil, err
	}
	var ts []safetensors.Tensor
	for _, l := range f.Layers {
		t, err := matrixTensor("scores."+l.Name, dt, l.Scores, l.Scores64)
		if err != nil {
			return nil, err
		}
		ts = append(ts, t)
	}
	if f.Scores != nil || f.Scores64 != nil {
		t, err := matrixTensor("scores", dt, f.Scores, f.Scores64)
		if err != nil {
			return nil, err
		}
		ts = append(ts, t)
	}
	if f.Rankings != nil {
		rt, err := rankingTensors(f.Rankings, f.K, f.RankingIDs, f.RankingISums, dt)
		if err != nil {
			return nil, err
		}
		ts = append(ts, rt...)
	}
	if f.Self != nil {
		data, err := safetensors.EncodeFloat64s(dt, f.Self)
		if err != nil {
			return nil, fmt.Errorf("encoding self: %w", err)
		}
		ts = append(ts, safetensors.Tensor{Name: "self", DType: dt, Shape: []int{len(f.Self)}, Data: data})
	}
	if f.IDs != nil {
		data, _ := safetensors.EncodeInt64s(safetensors.I64, f.IDs) // I64 holds any int64
		ts = append(ts, safetensors.Tensor{Name: "ids", DType: safetensors.I64, Shape: []int{len(f.IDs)}, Data: data})
	}
	return ts, nil
}

// matrixTensor returns the values of m32 or m64 (exactly one set), row by
// row, as a little-endian tensor of dtype dt (F32 or F64): float64 values
// narrowed as ToF32 narrows them, float32 ones widened exactly.
func matrixTensor(name string, dt safetensors.DType, m32 *linalg.Dense32, m64 *linalg.Dense64) (safetensors.Tensor, error) {
	switch {
	case m32 != nil && m64 != nil:
		return safetensors.Tensor{}, fmt.Errorf("%s: both float32 and float64 scores set", name)
	case m32 == nil && m64 == nil:
		return safetensors.Tensor{}, fmt.Errorf("%s: no scores", name)
	}
	if dt == safetensors.F32 {
		if m32 == nil {
			var err error
			if m32, err = ToF32(name, m64); err != nil {
				return safetensors.Tensor{}, err
			}
		}
		data := make([]byte, 0, 4*m32.Rows*m32.Cols)
		for i := range m32.Rows {
			data = appendF32(data, m32.Row(i))
		}
		return safetensors.Tensor{Name: name, DType: dt, Shape: []int{m32.Rows, m32.Cols}, Data: data}, nil
	}
	if m64 != nil {
		return f64Tensor(name, m64), nil
	}
	return f64Tensor(name, m32), nil
}

// f64Tensor returns m's values, row by row, as a little-endian F64 tensor.
func f64Tensor[T linalg.Float](name string, m *linalg.Dense[T]) safetensors.Tensor {
	data := make([]byte, 0, 8*m.Rows*m.Cols)
	for i := range m.Rows {
		for _, x := range m.Row(i) {
			data = binary.LittleEndian.AppendUint64(data, math.Float64bits(float64(x)))
		}
	}
	return safetensors.Tensor{Name: name, DType: safetensors.F64, Shape: []int{m.Rows, m.Cols}, Data: data}
}

func appendF32(b []byte, v []float32) []byte {
	for _, x := range v {
		u := math.Float32bits(x)
		b = append(b, byte(u), byte(u>>8), byte(u>>16), byte(u>>24))
	}
	return b
}

// rankingTensors returns the tensors of per-query rankings, each
// [n_query, K]: topk.indices, topk.ids (with ids), topk.isums (with
// isums), topk.scores (of dtype dt), then bottomk.* likewise.
func rankingTensors(rankings []Ranking, k int, ids, isums bool, dt safetensors.DType) ([]safetensors.Tensor, error) {
	nq := len(rankings)
	var ts []safetensors.Tensor
	for _, side := range []string{"topk", "bottomk"} {
		idx := make([]int64, 0, nq*k)
		sid := make([]int64, 0, nq*k)
		isum := make([]int64, 0, nq*k)
		val := make([]float64, 0, nq*k)
		for q, r := range rankings {
			list := r.Helpful
			if side == "bottomk" {
				list = r.Harmful
			}
			if len(list) != k {
				return nil, fmt.Errorf("query %d: %d %s entries, want %d", q, len(list), side, k)
			}
			for _, e := range list {
				idx = append(idx, int64(e.Index))
				sid = append(sid, e.ID)
				isum = append(isum, e.ISum)
				val = append(val, e.Score)
			}
		}
		shape := []int{nq, k}
		data, _ := safetensors.EncodeInt64s(safetensors.I64, idx)
		ts = append(ts, safetensors.Tensor{Name: side + ".indices", DType: safetensors.I64, Shape: shape, Data: data})
		if ids {
			data, _ := safetensors.EncodeInt64s(safetensors.I64, sid)
			ts = append(ts, safetensors.Tensor{Name: side + ".ids", DType: safetensors.I64, Shape: shape, Data: data})
		}
		if isums {
			data, _ := safetensors.EncodeInt64s(safetensors.I64, isum)
			ts = append(ts, safetensors.Tensor{Name: side + ".isums", DType: safetensors.I64, Shape: shape, Data: data})
		}
		data, err := safetensors.EncodeFloat64s(dt, val)
		if err != nil {
			return nil, fmt.Errorf("encoding %s.scores: %w", side, err)
		}
		ts = append(ts, safetensors.Tensor{Name: side + ".scores", DType: dt, Shape: shape, Data: data})
	}
	return ts, nil
}

// ReadScores reads a scores file written by WriteScores (or by any writer
// of the format). Tensors it does not know are an error, so that a file of
// another kind is not taken for an empty one. Float tensors may be of any
// float dtype; F64 score matrices are read into the float64 fields
// (Scores64, LayerScores.Scores64), losslessly, and the others into the
// float32 ones. A "dtype" in the metadata must be "f32" or "f64" and
// match every float tensor.
func ReadScores(path string) (*ScoresFile, error) {
	sf, err := safetensors.Open(path)
	if err != nil {
		return nil, err
	}
	defer sf.Close()
	bad := func(format string, args ...any) error {
		return fmt.Errorf("influence: scores file %s: "+format, append([]any{path}, args...)...)
	}
	out := &ScoresFile{Metadata: sf.Metadata}
	if out.Metadata["format"] != ScoresFormat {
		return nil, bad("format %q, want %q", out.Metadata["format"], ScoresFormat)
	}
	if err := out.readDType(sf); err != nil {
		return nil, bad("%w", err)
	}
	// matrix returns tensor name as float32 or, when F64, float64.
	matrix := func(name string) (*linalg.Dense32, *linalg.Dense64, error) {
		info, _ := sf.Info(name)
		if len(info.Shape) != 2 {
			return nil, nil, bad("%s has shape %v, want [n_query, n]", name, info.Shape)
		}
		v, err := sf.Float64s(name)
		if err != nil {
			return nil, nil, bad("%s: %w", name, err)
		}
		if info.DType == safetensors.F64 {
			return nil, linalg.NewDense64(info.Shape[0], info.Shape[1], v), nil
		}
		m := linalg.NewDense32(info.Shape[0], info.Shape[1], nil)
		for i, x := range v {
			m.Data[i] = float32(x)
		}
		return m, nil, nil
	}
	var sides [2]rankingSide // topk, bottomk
	var k int
	for _, name := range sf.Names() {
		switch side, part, _ := strings.Cut(name, "."); {
		case name == "scores":
			if out.Scores, out.Scores64, err = matrix(name); err != nil {
				return nil, err
			}
		case side == "scores":
			m32, m64, err := matrix(name)
			if err != nil {
				return nil, err
			}
			out.Layers = append(out.Layers, LayerScores{Name: part, Scores: m32, Scores64: m64})
		case name == "self" || name == "ids":
			info, _ := sf.Info(name)
			if len(info.Shape) != 1 {
				return nil, bad("%s has shape %v, want [n]", name, info.Shape)
			}
			if name == "self" {
				out.Self, err = sf.Float64s(name)
			} else {
				out.IDs, err = sf.Int64s(name)
			}
			if err != nil {
				return nil, bad("%s: %w", name, err)
			}
		case (side == "topk" || side == "bottomk") && (part == "indices" || part == "ids" || part == "isums" || part == "scores"):
			info, _ := sf.Info(name)
			if len(info.Shape) != 2 {
				return nil, bad("%s has shape %v, want [n_query, K]", name, info.Shape)
			}
			k = info.Shape[1]
			sd := &sides[0]
			if side == "bottomk" {
				sd = &sides[1]
			}
			switch part {
			case "scores":
				sd.scores, err = sf.Float64s(name)
			case "indices":
				sd.indices, err = sf.Int64s(name)
			case "isums":
				sd.isums, err = sf.Int64s(name)
			default:
				sd.ids, err = sf.Int64s(name)
			}
			if err != nil {
				return nil, bad("%s: %w", name, err)
			}
		default:
			return nil, bad("unknown tensor %q", name)
		}
	}
	if sides[0].present() || sides[1].present() {
		out.K = k
		if out.Rankings, out.RankingIDs, out.RankingISums, err = readRankings(sides, k); err != nil {
			return nil, bad("%w", err)
		}
	}
	return out, nil
}

// readDType sets f.DType from the metadata's "dtype", checking that the
// float tensors of sf agree with it, or without one from the tensors: F64
// when one is F64.
func (f *ScoresFile) readDType(sf *safetensors.File) error {
	meta, given := f.Metadata["dtype"]
	var want safetensors.DType
	if given {
		d, err := ParseScoresDType(meta)
		if err != nil {
			return fmt.Errorf("metadata: %w", err)
		}
		f.DType = d
		want, _ = d.tensorDType()
	}
	for _, name := range sf.Names() {
		info, _ := sf.Info(name)
		switch {
		case !info.DType.IsFloat():
		case given && info.DType != want:
			return fmt.Errorf("%s is %s, the metadata says dtype %s", name, info.DType, meta)
		case info.DType == safetensors.F64:
			f.DType = ScoresF64
		}
	}
	return nil
}

// rankingSide holds the decoded topk.* or bottomk.* tensors.
type rankingSide struct {
	indices, ids, isums []int64
	scores              []float64
}

func (s *rankingSide) present() bool {
	return s.indices != nil || s.ids != nil || s.isums != nil || s.scores != nil
}

// readRankings assembles rankings from the decoded topk.* and bottomk.*
// tensors; without ids an entry's ID is its index, as TopK gives.
func readRankings(sides [2]rankingSide, k int) ([]Ranking, bool, bool, error) {
	withIDs, withISums := sides[0].ids != nil, sides[0].isums != nil
	n := len(sides[0].indices)
	for i, sd := range sides {
		if sd.indices == nil || sd.scores == nil || (sd.ids != nil) != withIDs || (sd.isums != nil) != withISums {
			return nil, false, false, fmt.Errorf("%s: want indices and scores (and ids, isums, on both sides or neither)", [2]string{"topk", "bottomk"}[i])
		}
		if len(sd.indices) != n || len(sd.scores) != n || (withIDs && len(sd.ids) != n) || (withISums && len(sd.isums) != n) {
			return nil, false, false, fmt.Errorf("topk and bottomk tensors of different shapes")
		}
	}
	nq := 0
	if k > 0 {
		nq = n / k
	}
	list := func(sd *rankingSide, q int) []Entry {
		es := make([]Entry, k)
		for j := range es {
			i := q*k + j
			es[j] = Entry{Index: int(sd.indices[i]), ID: sd.indices[i], Score: sd.scores[i]}
			if withIDs {
				es[j].ID = sd.ids[i]
			}
			if withISums {
				es[j].ISum = sd.isums[i]
			}
		}
		return es
	}
	out := make([]Ranking, nq)
	for q := range out {
		out[q] = Ranking{Helpful: list(&sides[0], q), Harmful: list(&sides[1], q)}
	}
	return out, withIDs, withISums, nil
}

// WriteProbs writes a probabilities file: probs F64 [n], p(y) of each
// example's true label, with the examples' ids I64 [n], and the metadata
// given (its "format" is ProbsFormat). The write is atomic.
func WriteProbs(path string, ids []int64, p []float64, meta map[string]string) error {
	if len(ids) != len(p) {
		return fmt.Errorf("influence: WriteProbs %s: %d ids for %d probabilities", path, len(ids), len(p))
	}
	m := maps.Clone(meta)
	if m == nil {
		m = map[string]string{}
	}
	m["format"] = ProbsFormat
	idBytes, err := safetensors.EncodeInt64s(safetensors.I64, ids)
	if err != nil {
		return err
	}
	pBytes, err := safetensors.EncodeFloat64s(safetensors.F64, p)
	if err != nil {
		return err
	}
	return safetensors.WriteFile(path, []safetensors.Tensor{
		{Name: "ids", DType: safetensors.I64, Shape: []int{len(ids)}, Data: idBytes},
		{Name: "probs", DType: safetensors.F64, Shape: []int{len(p)}, Data: pBytes},
	}, m)
}

// ReadProbs reads a probabilities file, returning the probability of each
// id. Probabilities must lie in [0, 1] and ids be distinct.
func ReadProbs(path string) (map[int64]float64, error) {
	f, err := safetensors.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	ids, okIDs := f.Info("ids")
	probs, okProbs := f.Info("probs")
	if !okIDs || !okProbs || len(ids.Shape) != 1 || len(probs.Shape) != 1 || ids.Shape[0] != probs.Shape[0] {
		return nil, fmt.Errorf("%s: want tensors ids I64 [n] and probs F64 or F32 [n] (from 'goinfluence grads --probs-out')", path)
	}
	n := ids.Shape[0]
	idv := make([]int64, n)
	if err := safetensors.DecodeInt64s(idv, ids.DType, f.Bytes("ids")); err != nil {
		return nil, fmt.Errorf("%s: ids: %w", path, err)
	}
	pv := make([]float64, n)
	if err := safetensors.DecodeFloat64s(pv, probs.DType, f.Bytes("probs")); err != nil {
		return nil, fmt.Errorf("%s: probs: %w", path, err)
	}
	out := make(map[int64]float64, n)
	for i, id := range idv {
		if !(pv[i] >= 0 && pv[i] <= 1) {
			return nil, fmt.Errorf("%s: probs[%d] (id %d) = %v is not a probability", path, i, id, pv[i])
		}
		if _, dup := out[id]; dup {
			return nil, fmt.Errorf("%s: id %d appears twice", path, id)
		}
		out[id] = pv[i]
	}
	return out, nil
}
