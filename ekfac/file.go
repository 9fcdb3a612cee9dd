package ekfac

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"gonum.org/v1/gonum/floats"

	"github.com/goinfluence/goinfluence/internal/safetensors"
	"github.com/goinfluence/goinfluence/linalg"
)

// Format is the metadata "format" of a factors file.
const Format = "goinfluence.factors/v1"

// Save writes the factors as safetensors, atomically: per layer
// `<layer>.lambda` (DOut×DIn, or [D] for a dense layer), and for K-FAC and
// EK-FAC `<layer>.qa`, `<layer>.qs`, `<layer>.lambda_a`, `<layer>.lambda_s`,
// `<layer>.a_cov`, `<layer>.s_cov`, all F64. Metadata: format, method, layers,
// n, per-layer shapes and token counts, and the caller's Meta (fit arguments).
func (f *Factors) Save(path string) error {
	meta := map[string]string{}
	for k, v := range f.Meta {
		meta[k] = v
	}
	meta["format"] = Format
	meta["method"] = string(f.Method)
	meta["n"] = strconv.Itoa(f.N)
	var names, shapes []string
	var ts []safetensors.Tensor
	add := func(name string, shape []int, v []float64) error {
		data, err := safetensors.EncodeFloat64s(safetensors.F64, v)
		if err != nil {
			return fmt.Errorf("ekfac: saving %s: %w", name, err)
		}
		ts = append(ts, safetensors.Tensor{Name: name, DType: safetensors.F64, Shape: shape, Data: data})
		return nil
	}
	for _, lf := range f.Layers {
		if strings.ContainsAny(lf.Name, ",;") || lf.Name == "" {
			return fmt.Errorf("ekfac: layer name %q cannot be saved", lf.Name)
		}
		names = append(names, lf.Name)
		if lf.D > 0 {
			shapes = append(shapes, fmt.Sprintf("%s:dense:%d", lf.Name, lf.D))
		} else {
			shapes = append(shapes, fmt.Sprintf("%s:%dx%d:%d", lf.Name, lf.DOut, lf.DIn, lf.M))
		}
		if lf.Lambda != nil {
			shape := []int{lf.DOut, lf.DIn}
			if lf.D > 0 {
				shape = []int{lf.D}
			}
			if err := add(lf.Name+".lambda", shape, lf.Lambda.Data); err != nil {
				return err
			}
		}
		if lf.QA == nil {
			continue
		}
		for _, t := range []struct {
			suffix string
			m      *linalg.Dense64
		}{{".qa", lf.QA}, {".qs", lf.QS}, {".a_cov", lf.ACov}, {".s_cov", lf.SCov}} {
			if err := add(lf.Name+t.suffix, []int{t.m.Rows, t.m.Cols}, t.m.Data); err != nil {
				return err
			}
		}
		if err := add(lf.Name+".lambda_a", []int{lf.DIn}, lf.LambdaA); err != nil {
			return err
		}
		if err := add(lf.Name+".lambda_s", []int{lf.DOut}, lf.LambdaS); err != nil {
			return err
		}
	}
	meta["layers"] = strings.Join(names, ",")
	meta["shapes"] = strings.Join(shapes, ";")
	return safetensors.WriteFile(path, ts, meta)
}

// Load reads factors written by Save, checking every tensor's presence and
// shape, that values are finite, that covariances are symmetric and Λ is
// non-negative up to rounding, and, for K-FAC and EK-FAC, that the
// eigenvectors are orthonormal and diagonalise the stored covariances into
// the stored eigenvalues (see EigenTol): a file whose eigenvectors were
// replaced would otherwise load and score wrongly by orders of magnitude.
// The eigenvector checks cost three n×n matrix products per factor, O(n³)
// as is the eigendecomposition that produced it, far less than the fit.
// Errors name the file, the layer and the tensor.
func Load(path string) (*Factors, error) {
	sf, err := safetensors.Open(path)
	if err != nil {
		return nil, fmt.Errorf("ekfac: %w", err)
	}
	defer sf.Close()
	f, err := decode(sf)
	if err != nil {
		return nil, fmt.Errorf("ekfac: %s: %w", path, err)
	}
	return f, nil
}

func decode(sf *safetensors.File) (*Factors, error) {
	md := sf.Metadata
	if md["format"] != Format {
		return nil, fmt.Errorf("metadata format %q, want %q", md["format"], Format)
	}
	method, err := ParseMethod(md["method"])
	if err != nil {
		return nil, err
	}
	n, err := strconv.Atoi(md["n"])
	if err != nil || n < 1 {
		return nil, fmt.Errorf("metadata n %q is not a positive count", md["n"])
	}
	f := &Factors{Method: method, N: n, Meta: map[string]string{}}
	for k, v := range md {
		switch k {
		case "format", "method", "n", "layers", "shapes":
		default:
			f.Meta[k] = v
		}
	}
	specs := strings.Split(md["shapes"], ";")
	if md["shapes"] == "" || len(specs) != len(strings.Split(md["layers"], ",")) {
		return nil, fmt.Errorf("metadata shapes %q does not match layers %q", md["shapes"], md["layers"])
	}
	used := map[string]bool{}
	get := func(layer, suffix string, shape ...int) ([]float64, error) {
		name := layer + suffix
		info, ok := sf.Info(name)
		if !ok {
			return nil, fmt.Errorf("layer %q: tensor %s missing", layer, name)
		}
		if fmt.Sprint(info.Shape) != fmt.Sprint(shape) {
			return nil, fmt.Errorf("layer %q: tensor %s has shape %v, want %v", layer, name, info.Shape, shape)
		}
		v, err := sf.Float64s(name)
		if err != nil {
			return nil, fmt.Errorf("layer %q: %w", layer, err)
		}
		for i, x := range v {
			if math.IsNaN(x) || math.IsInf(x, 0) {
				return nil, fmt.Errorf("layer %q: tensor %s: element %d is %v", layer, name, i, x)
			}
		}
		used[name] = true
		return v, nil
	}
	for _, spec := range specs {
		lf, err := parseSpec(spec)
		if err != nil {
			return nil, err
		}
		if method != Identity {
			shape := []int{lf.DOut, lf.DIn}
			if lf.D > 0 {
				shape = []int{lf.D}
			}
			lam, err := get(lf.Name, ".lambda", shape...)
			if err != nil {
				return nil, err
			}
			lf.Lambda = linalg.NewDense64(max(lf.DOut, 1), len(lam)/max(lf.DOut, 1), lam)
			if lf.D > 0 {
				lf.Lambda = linalg.NewDense64(1, lf.D, lam)
			}
			if err := checkNonNegative(lf.Name, "lambda", lam); err != nil {
				return nil, err
			}
		}
		if method.needsCovariance() {
			if lf.D > 0 {
				return nil, fmt.Errorf("layer %q is dense; %s factors need factored layers", lf.Name, method)
			}
			mats := []struct {
				suffix string
				dst    **linalg.Dense64
				n      int
			}{{".qa", &lf.QA, lf.DIn}, {".qs", &lf.QS, lf.DOut}, {".a_cov", &lf.ACov, lf.DIn}, {".s_cov", &lf.SCov, lf.DOut}}
			for _, m := range mats {
				v, err := get(lf.Name, m.suffix, m.n, m.n)
				if err != nil {
					return nil, err
				}
				*m.dst = linalg.NewDense64(m.n, m.n, v)
			}
			for _, c := range []struct {
				what string
				m    *linalg.Dense64
			}{{"a_cov", lf.ACov}, {"s_cov", lf.SCov}} {
				if err := checkSymmetric(lf.Name, c.what, c.m); err != nil {
					return nil, err
				}
			}
			if lf.LambdaA, err = get(lf.Name, ".lambda_a", lf.DIn); err != nil {
				return nil, err
			}
			if lf.LambdaS, err = get(lf.Name, ".lambda_s", lf.DOut); err != nil {
				return nil, err
			}
			if err := checkEigen(&lf, method); err != nil {
				return nil, err
			}
		}
		f.Layers = append(f.Layers, lf)
	}
	for _, name := range sf.Names() {
		if !used[name] {
			return nil, fmt.Errorf("unexpected tensor %s", name)
		}
	}
	return f, nil
}

// parseSpec parses "name:dense:D" or "name:DOUTxDIN:M".
func parseSpec(spec string) (LayerFactors, error) {
	i := strings.LastIndex(spec, ":")
	j := strings.LastIndex(spec[:max(i, 0)], ":")
	if i < 0 || j < 0 {
		return LayerFactors{}, fmt.Errorf("metadata shapes: bad entry %q", spec)
	}
	lf := LayerFactors{Name: spec[:j]}
	kind, last := spec[j+1:i], spec[i+1:]
	v, err := strconv.Atoi(last)
	if err != nil || v < 0 {
		return lf, fmt.Errorf("metadata shapes: bad entry %q", spec)
	}
	if kind == "dense" {
		if v < 1 {
			return lf, fmt.Errorf("metadata shapes: bad entry %q", spec)
		}
		lf.D = v
		return lf, nil
	}
	// Identity factors store no tensor whose size would bound the shape:
	// refuse layers of 2³¹ or more weights, whose sizes overflow int on 32-bit
	// platforms and whose gradients no file holds.
	if _, err := fmt.Sscanf(kind, "%dx%d", &lf.DOut, &lf.DIn); err != nil || lf.DOut < 1 || lf.DIn < 1 || lf.DIn > math.MaxInt32/lf.DOut {
		return lf, fmt.Errorf("metadata shapes: bad entry %q", spec)
	}
	lf.M = v
	return lf, nil
}

func checkSymmetric(layer, what string, m *linalg.Dense64) error {
	scale := 0.0
	for _, v := range m.Data {
		scale = math.Max(scale, math.Abs(v))
	}
	for i := 0; i < m.Rows; i++ {
		for j := 0; j < i; j++ {
			if math.Abs(m.At(i, j)-m.At(j, i)) > 1e-12*scale {
				return fmt.Errorf("layer %q: %s is not symmetric: (%d,%d) = %v but (%d,%d) = %v", layer, what, i, j, m.At(i, j), j, i, m.At(j, i))
			}
		}
	}
	return nil
}

// checkNonNegative allows rounding-level negatives (eigenvalue products of
// a PSD matrix) but rejects factors that are not curvature at all.
func checkNonNegative(layer, what string, v []float64) error {
	if len(v) == 0 {
		return nil
	}
	mx, lo := 0.0, math.Inf(1)
	for _, x := range v {
		mx, lo = math.Max(mx, math.Abs(x)), math.Min(lo, x)
	}
	if lo < -1e-8*mx {
		return fmt.Errorf("layer %q: %s has a negative entry %v (largest magnitude %v)", layer, what, lo, mx)
	}
	return nil
}

// EigenTol bounds, relative to the factor's scale, how far the eigenvectors
// of a loaded factor may be from orthonormal and from diagonalising its
// covariance:
//
//	‖QᵀQ − I‖_max ≤ EigenTol,   ‖QᵀCQ − diag(λ)‖_max ≤ EigenTol · max(‖C‖_max, max|λ|).
//
// A float64 symmetric eigensolver is backward stable: both residuals are
// O(n·ε), ε = 2.2e-16; 1e-6 leaves orders of magnitude for larger layers
// and for factors written elsewhere in float64, while eigenvectors replaced
// by random numbers are off by O(1), and a rotation that does not diagonalise C by O(‖C‖). The products run on
// linalg.Auto()'s backend: the check is O(n³), as the fit was.
const EigenTol = 1e-6

// checkEigen checks that QA and QS are orthonormal eigenbases of ACov and
// SCov with eigenvalues LambdaA and LambdaS, that those are non-negative up
// to rounding, and, for K-FAC, that Λ is their outer product λ_S λ_Aᵀ.
func checkEigen(lf *LayerFactors, method Method) error {
	be, err := linalg.Auto()
	if err != nil {
		return err
	}
	for _, e := range []struct {
		q, cov       *linalg.Dense64
		lambda       []float64
		qName, cName string
		lName        string
	}{
		{lf.QA, lf.ACov, lf.LambdaA, "qa", "a_cov", "lambda_a"},
		{lf.QS, lf.SCov, lf.LambdaS, "qs", "s_cov", "lambda_s"},
	} {
		if err := checkNonNegative(lf.Name, e.lName, e.lambda); err != nil {
			return err
		}
		n := e.q.Rows
		prod := linalg.NewDense64(n, n, nil)
		be.Dgemm(linalg.Trans, linalg.NoTrans, 1, e.q, e.q, 0, prod)
		if dev, i, j := maxDeviation(prod, nil); dev > EigenTol {
			return fmt.Errorf("layer %q: tensor %s is not orthonormal: (QᵀQ − I)[%d,%d] = %.3g, tolerance %g", lf.Name, lf.Name+"."+e.qName, i, j, dev, EigenTol)
		}
		cq := linalg.NewDense64(n, n, nil)
		be.Dgemm(linalg.NoTrans, linalg.NoTrans, 1, e.cov, e.q, 0, cq)
		be.Dgemm(linalg.Trans, linalg.NoTrans, 1, e.q, cq, 0, prod)
		scale := max(floats.Norm(e.cov.Data, math.Inf(1)), floats.Norm(e.lambda, math.Inf(1)))
		if dev, i, j := maxDeviation(prod, e.lambda); dev > EigenTol*scale {
			return fmt.Errorf("layer %q: tensor %s does not diagonalise %s into %s: (QᵀCQ − diag(λ))[%d,%d] = %.3g, tolerance %.3g",
				lf.Name, lf.Name+"."+e.qName, lf.Name+"."+e.cName, lf.Name+"."+e.lName, i, j, dev, EigenTol*scale)
		}
	}
	if method == KFAC {
		scale := floats.Norm(lf.Lambda.Data, math.Inf(1))
		for i, ls := range lf.LambdaS {
			for j, la := range lf.LambdaA {
				if d := math.Abs(lf.Lambda.At(i, j) - ls*la); d > EigenTol*scale {
					return fmt.Errorf("layer %q: tensor %s: K-FAC Λ[%d,%d] = %v, but lambda_s[%d]·lambda_a[%d] = %v",
						lf.Name, lf.Name+".lambda", i, j, lf.Lambda.At(i, j), i, j, ls*la)
				}
			}
		}
	}
	return nil
}

// maxDeviation returns the largest |m − diag(d)| entry and where it is; d
// nil means the identity.
func maxDeviation(m *linalg.Dense64, d []float64) (dev float64, at0, at1 int) {
	for i := range m.Rows {
		for j, v := range m.Row(i) {
			if i == j {
				if d == nil {
					v--
				} else {
					v -= d[i]
				}
			}
			if a := math.Abs(v); a > dev || a != a {
				dev, at0, at1 = a, i, j
				if a != a {
					return math.Inf(1), i, j
				}
			}
		}
	}
	return dev, at0, at1
}
