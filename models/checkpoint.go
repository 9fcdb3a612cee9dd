package models

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/goinfluence/goinfluence/internal/safetensors"
)

// CheckpointFormat is the value of the "format" metadata key of checkpoints
// written by Save.
const CheckpointFormat = "goinfluence.checkpoint/v1"

// maxWidth bounds the layer widths Load accepts from metadata, so that
// arithmetic on them cannot overflow before the tensors are checked.
const maxWidth = 1 << 31

// CheckpointError reports a problem with a checkpoint file: Field names the
// metadata key or tensor at fault.
type CheckpointError struct {
	Path  string
	Field string
	Err   error
}

func (e *CheckpointError) Error() string {
	return "models: checkpoint " + e.Path + ": " + e.Field + ": " + e.Err.Error()
}

func (e *CheckpointError) Unwrap() error { return e.Err }

// Save writes m's parameters to path as a safetensors file, atomically: one
// float64 tensor per layer, named after it, of shape [DOut, DIn], with
// metadata
//
//	format      goinfluence.checkpoint/v1
//	kind        logistic, softmax or mlp
//	l2          λ, exactly (shortest round-tripping decimal)
//	sizes       layer widths, e.g. "64,32,10" (inputs, hidden…, classes)
//	activation  relu or tanh (mlp only)
//
// Load reverses it. Non-finite parameters are refused: such a model is of no
// use to influence computations and is better caught here.
func Save(path string, m Model) error { return SaveWithMetadata(path, m, nil) }

// SaveWithMetadata is Save adding extra metadata to the header, such as the
// datasets.Provenance of the training data, so that whoever loads the
// checkpoint can tell which data it belongs with (ReadMetadata). Keys of
// extra may not be those Save writes.
func SaveWithMetadata(path string, m Model, extra map[string]string) error {
	if m == nil {
		return fmt.Errorf("models: save %s: nil model", path)
	}
	meta := map[string]string{
		"format": CheckpointFormat,
		"kind":   m.Kind(),
		"l2":     strconv.FormatFloat(m.L2(), 'g', -1, 64),
	}
	for k, v := range extra {
		switch k {
		case "format", "kind", "l2", "sizes", "activation":
			return fmt.Errorf("models: save %s: extra metadata key %q is the checkpoint's own", path, k)
		}
		meta[k] = v
	}
	var sizes []int
	switch m.Kind() {
	case "logistic", "softmax":
		sizes = []int{m.Layers()[0].DIn - 1, m.Classes()}
	case "mlp":
		mlp, ok := m.(*MLP)
		if !ok {
			return fmt.Errorf("models: save %s: kind mlp from unsupported type %T", path, m)
		}
		sizes = mlp.Sizes()
		meta["activation"] = mlp.Activation().String()
	default:
		return fmt.Errorf("models: save %s: unsupported model kind %q", path, m.Kind())
	}
	meta["sizes"] = joinInts(sizes)

	theta := m.Params()
	if len(theta) != NumParams(m) {
		return fmt.Errorf("models: save %s: %d parameters, layers need %d", path, len(theta), NumParams(m))
	}
	var tensors []safetensors.Tensor
	off := 0
	for _, l := range m.Layers() {
		v := theta[off : off+l.DOut*l.DIn]
		off += len(v)
		for i, x := range v {
			if math.IsNaN(x) || math.IsInf(x, 0) {
				return fmt.Errorf("models: save %s: layer %q: parameter %d is %v", path, l.Name, i, x)
			}
		}
		data, err := safetensors.EncodeFloat64s(safetensors.F64, v)
		if err != nil {
			return fmt.Errorf("models: save %s: layer %q: %w", path, l.Name, err)
		}
		tensors = append(tensors, safetensors.Tensor{Name: l.Name, DType: safetensors.F64, Shape: []int{l.DOut, l.DIn}, Data: data})
	}
	if err := safetensors.WriteFile(path, tensors, meta); err != nil {
		return fmt.Errorf("models: save %s: %w", path, err)
	}
	return nil
}

// Load reads a checkpoint written by Save and reconstructs the model. Tensors
// of any float dtype are accepted and converted to float64. Every problem is
// reported as a *CheckpointError naming the file and the field, except
// failures to open or parse the file, which come from the safetensors reader.
func Load(path string) (Model, error) {
	f, err := safetensors.Open(path)
	if err != nil {
		return nil, fmt.Errorf("models: load checkpoint: %w", err)
	}
	defer f.Close()
	bad := func(field, format string, args ...any) error {
		return &CheckpointError{Path: path, Field: field, Err: fmt.Errorf(format, args...)}
	}
	meta := f.Metadata
	get := func(key string) (string, error) {
		v, ok := meta[key]
		if !ok {
			return "", bad("metadata "+strconv.Quote(key), "missing")
		}
		return v, nil
	}

	format, err := get("format")
	if err != nil {
		return nil, err
	}
	if format != CheckpointFormat {
		return nil, bad(`metadata "format"`, "%q, want %q", format, CheckpointFormat)
	}
	kind, err := get("kind")
	if err != nil {
		return nil, err
	}
	s, err := get("l2")
	if err != nil {
		return nil, err
	}
	l2, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(l2) || math.IsInf(l2, 0) || l2 < 0 {
		return nil, bad(`metadata "l2"`, "%q is not a finite non-negative number", s)
	}
	s, err = get("sizes")
	if err != nil {
		return nil, err
	}
	sizes, err := parseInts(s)
	if err != nil {
		return nil, bad(`metadata "sizes"`, "%q: %v", s, err)
	}

	var m Model
	switch kind {
	case "logistic", "softmax":
		if len(sizes) != 2 {
			return nil, bad(`metadata "sizes"`, "%q: %s needs inputs,classes", s, kind)
		}
		switch {
		case kind == "logistic" && sizes[1] != 2:
			return nil, bad(`metadata "sizes"`, "%q: logistic regression has 2 classes", s)
		case sizes[1] < 2:
			return nil, bad(`metadata "sizes"`, "%q: need at least 2 classes", s)
		}
		// Check the tensors before allocating, so that metadata cannot
		// ask for more memory than the file backs.
		out := sizes[1]
		if kind == "logistic" {
			out = 1
		}
		if err := checkTensors(f, path, []LayerSpec{{Name: "linear", DIn: sizes[0] + 1, DOut: out}}); err != nil {
			return nil, err
		}
		if kind == "logistic" {
			m = NewLogistic(sizes[0], l2)
		} else {
			m = NewSoftmax(sizes[0], sizes[1], l2)
		}
	case "mlp":
		s, err := get("activation")
		if err != nil {
			return nil, err
		}
		act, err := ParseActivation(s)
		if err != nil {
			return nil, bad(`metadata "activation"`, "%q is not relu or tanh", s)
		}
		if len(sizes) < 2 || slices.Min(sizes) < 1 || sizes[len(sizes)-1] < 2 {
			return nil, bad(`metadata "sizes"`, "%q: need positive widths inputs,hidden…,classes with at least 2 classes", meta["sizes"])
		}
		var specs []LayerSpec
		for l := 0; l+1 < len(sizes); l++ {
			specs = append(specs, LayerSpec{Name: "fc" + strconv.Itoa(l+1), DIn: sizes[l] + 1, DOut: sizes[l+1]})
		}
		if err := checkTensors(f, path, specs); err != nil {
			return nil, err
		}
		mlp, err := NewMLP(sizes, act, l2, 0)
		if err != nil {
			return nil, &CheckpointError{Path: path, Field: `metadata "sizes"`, Err: err}
		}
		m = mlp
	default:
		return nil, bad(`metadata "kind"`, "unknown model kind %q (want logistic, softmax or mlp)", kind)
	}

	theta := m.Params()
	off := 0
	for _, l := range m.Layers() {
		v, err := f.Float64s(l.Name)
		if err != nil {
			return nil, bad("tensor "+strconv.Quote(l.Name), "%w", err)
		}
		if len(v) != l.DOut*l.DIn {
			return nil, bad("tensor "+strconv.Quote(l.Name), "%d values, want %d×%d", len(v), l.DOut, l.DIn)
		}
		for i, x := range v {
			if math.IsNaN(x) || math.IsInf(x, 0) {
				return nil, bad("tensor "+strconv.Quote(l.Name), "value %d is %v", i, x)
			}
		}
		off += copy(theta[off:], v)
	}
	if off != len(theta) {
		return nil, bad("tensors", "%d parameters, model has %d", off, len(theta))
	}
	return m, nil
}

// ReadMetadata returns the header metadata of the checkpoint at path: the
// keys Save writes and any extra ones of SaveWithMetadata. It reads the
// header only; Load checks the rest.
func ReadMetadata(path string) (map[string]string, error) {
	f, err := safetensors.Open(path)
	if err != nil {
		return nil, fmt.Errorf("models: read checkpoint metadata: %w", err)
	}
	defer f.Close()
	meta := make(map[string]string, len(f.Metadata))
	for k, v := range f.Metadata {
		meta[k] = v
	}
	return meta, nil
}

// checkTensors verifies that f holds exactly the given layers, each a float
// tensor of shape [DOut, DIn].
func checkTensors(f *safetensors.File, path string, specs []LayerSpec) error {
	want := map[string]bool{}
	for _, l := range specs {
		want[l.Name] = true
		field := "tensor " + strconv.Quote(l.Name)
		in, ok := f.Info(l.Name)
		if !ok {
			return &CheckpointError{Path: path, Field: field, Err: errors.New("missing")}
		}
		if !in.DType.IsFloat() {
			return &CheckpointError{Path: path, Field: field, Err: fmt.Errorf("dtype %s, want a float dtype", in.DType)}
		}
		if !slices.Equal(in.Shape, []int{l.DOut, l.DIn}) {
			return &CheckpointError{Path: path, Field: field, Err: fmt.Errorf("shape %v, want [%d %d] from the metadata", in.Shape, l.DOut, l.DIn)}
		}
	}
	for _, name := range f.Names() {
		if !want[name] {
			return &CheckpointError{Path: path, Field: "tensor " + strconv.Quote(name), Err: errors.New("not a layer of the model")}
		}
	}
	return nil
}

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = strconv.Itoa(x)
	}
	return strings.Join(s, ",")
}

// parseInts parses comma-separated widths, each in [0, maxWidth].
func parseInts(s string) ([]int, error) {
	parts := strings.Split(s, ",")
	v := make([]int, len(parts))
	for i, p := range parts {
		x, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil || x < 0 || x > maxWidth {
			return nil, fmt.Errorf("entry %d (%q) is not a width in [0, %d]", i, p, maxWidth)
		}
		v[i] = x
	}
	return v, nil
}
