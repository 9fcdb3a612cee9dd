package eval

import (
	"fmt"
	"io"
	"strings"
)

// Text renderings of the results: plain tables for a terminal, beside the
// Markdown of the reports and the JSON of the struct tags. Each writes
// to w in one go and returns the first write error.

// Protocol names one column of the quality table.
type Protocol string

const (
	ProtocolLOO Protocol = "loo" // leave-one-out correlation
	ProtocolLDS Protocol = "lds" // linear datamodeling score
	ProtocolAUC Protocol = "auc" // noisy-label AUC
)

// protocolTitles head the text tables of WriteText.
var protocolTitles = map[Protocol]string{ProtocolLOO: "LOO", ProtocolLDS: "LDS", ProtocolAUC: "noisy-label AUC"}

// WriteText writes one column of the table, p's, a line per method with
// its scoring time, under a line naming the setup and above one on the
// ground truth's cost. A skipped or failed method gets its reason instead.
func (r *QualityResult) WriteText(w io.Writer, p Protocol) error {
	title, ok := protocolTitles[p]
	if !ok {
		return fmt.Errorf("eval: unknown protocol %q (have loo, lds, auc)", p)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s on %s, %s (N = %d, %d test points, output %s, backend %s)\n",
		title, r.Setup.Dataset, r.Model, r.NTrain, r.NTest, r.Options.Output, r.Backend)
	for _, row := range r.Rows {
		v := row.LDS
		switch p {
		case ProtocolAUC:
			v = row.AUC
		case ProtocolLOO:
			v = row.LOO
		}
		switch {
		case row.Skipped != "":
			fmt.Fprintf(&b, "%-40s skipped: %s\n", row.Method, row.Skipped)
		case row.Failed != "":
			fmt.Fprintf(&b, "%-40s failed: %s\n", row.Method, row.Failed)
		default:
			fmt.Fprintf(&b, "%-40s %s   (%.2f s)\n", row.Method, fmtValue(v), row.Seconds+row.SelfSeconds)
		}
	}
	if p == ProtocolLDS {
		for _, c := range r.StoreComparisons {
			fmt.Fprintf(&b, "%s, i8 vs f16 store: LDS %s vs %s, top-%d overlap mean %.3f (min %.2f)\n",
				c.Method, fmtValue(c.LDSI8), fmtValue(c.LDSF16), c.K, c.Overlap, c.OverlapMin)
		}
	}
	fmt.Fprintf(&b, "ground truth: %d models trained this run (0 = all from the cache), %.1f s\n", r.Retrained, r.TruthSeconds)
	_, err := io.WriteString(w, b.String())
	return err
}

// Failed returns the keys of the methods that stopped with an error, so
// that a caller can fail after printing the table that explains them.
func (r *QualityResult) Failed() []string {
	var keys []string
	for _, row := range r.Rows {
		if row.Failed != "" {
			keys = append(keys, row.Key)
		}
	}
	return keys
}

// fmtValue formats a correlation in a fixed width, a dash where none was
// measured, so that the columns of WriteText line up.
func fmtValue(v *float64) string {
	if v == nil {
		return "     –"
	}
	return fmt.Sprintf("%6.4f", *v)
}

// WriteText writes the correlations per test point and over all removals
// under a line naming the method, data and model.
func (r *LOOResult) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "LOO validation of %s influence, %s %s (λ = %g, N = %d, backend %s)\n",
		r.Method, r.Dataset, r.Model, r.L2, r.NTrain, r.Backend)
	fmt.Fprintf(&b, "%-10s %10s %10s\n", "test", "Pearson", "Spearman")
	for _, t := range r.PerTest {
		fmt.Fprintf(&b, "%-10d %10.4f %10.4f\n", t.Test, t.Pearson, t.Spearman)
	}
	fmt.Fprintf(&b, "%-10s %10.4f %10.4f   (%d points, %d retrainings, max ‖∇R‖ %.1g, %.1f s)\n",
		"all", r.Pearson, r.Spearman, len(r.Points), r.Retrained, r.GradNorm, r.Seconds)
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteText writes a row per method, damping and reference curvature under
// two lines naming the model, data, seeds and the Fisher fitted on; the
// Markdown form pivots the same rows into a column per damping.
func (r *CurvatureResult) WriteText(w io.Writer) error {
	var b strings.Builder
	fitted := "true Fisher in expectation"
	if r.Fisher == "sampled" {
		fitted = fmt.Sprintf("true Fisher, %d sampled label(s) per example", r.Samples)
	}
	fmt.Fprintf(&b, "%s (%d parameters, λ = %g) on %s: %d train, %d test, seed %d; train accuracy %.2f%%, test accuracy %.2f%%\n",
		r.Model, r.Params, r.L2, r.Dataset, r.NTrain, r.NTest, r.Seed, 100*r.TrainAccuracy, 100*r.TestAccuracy)
	fmt.Fprintf(&b, "approximations fitted on the %s; correlations with exact influence, mean over %d test points (backend %s, %.1f s)\n",
		fitted, len(r.TestIndex), r.Backend, r.Seconds)
	fmt.Fprintf(&b, "%-9s %8s %-6s %9s %9s %9s %9s %9s\n",
		"method", "δ", "GGN", "Pearson", "Spearman", "min P", "pooled P", "pooled S")
	for _, x := range r.Rows {
		fmt.Fprintf(&b, "%-9s %8g %-6s %9.4f %9.4f %9.4f %9.4f %9.4f\n",
			x.Method, x.Damping, x.Reference, x.Pearson, x.Spearman, x.MinPearson, x.PooledPearson, x.PooledSpearman)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteText writes the Markdown table, which reads as well in a terminal.
func (r *ProjectionResult) WriteText(w io.Writer) error {
	_, err := io.WriteString(w, r.Markdown())
	return err
}

// MethodKeys returns the registry keys of Methods, comma-separated, for
// help texts and error messages.
func MethodKeys() string {
	var keys []string
	for _, m := range Methods() {
		keys = append(keys, m.Key)
	}
	return strings.Join(keys, ", ")
}

// ParseMethods splits a comma-separated list of method keys, as a command
// line gives it; "" and "all" mean the default table (nil: every method but
// the store-backed variants, see QualityOptions.Methods). Keys are checked by
// LookupMethod.
func ParseMethods(s string) ([]string, error) {
	if s == "" || s == "all" {
		return nil, nil
	}
	var out []string
	for _, m := range strings.Split(s, ",") {
		if m = strings.TrimSpace(m); m == "" {
			continue
		}
		if _, err := LookupMethod(m); err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, nil
}
