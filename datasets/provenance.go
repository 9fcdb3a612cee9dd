package datasets

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Provenance records the data a model was trained on: the data set, how it
// was prepared, and which split of it. Saved with a checkpoint, it lets a
// later step (computing gradients, say) refuse data other than the training
// data: another split seed gives other training rows, and gradients of the
// wrong rows are silently wrong influence scores.
type Provenance struct {
	Dataset string // data set name, e.g. "digits"
	// Preparation names the preparation and its version, e.g.
	// "eval.LoadSplit/v1", and Params its parameters, e.g.
	// "pixels/16" or "standardised with the training part's mean and sd".
	Preparation string
	Params      string
	Features    int // columns of X after preparation
	Classes     int
	SplitSeed   uint64
	// TrainFraction is the fraction of examples in the training part, as
	// the preparation defines it, e.g. "4/5".
	TrainFraction string
	Train, Test   int // examples in each part
}

// provenanceKeys are the metadata keys of a Provenance, in the order
// written; each is prefixed with "data.".
var provenanceKeys = []string{"dataset", "preparation", "params", "features", "classes",
	"split_seed", "train_fraction", "train", "test"}

// ProvenancePrefix starts every metadata key of a Provenance.
const ProvenancePrefix = "data."

// Metadata returns p as string metadata for a safetensors header, under keys
// data.dataset, data.preparation, data.params, data.features, data.classes,
// data.split_seed, data.train_fraction, data.train and data.test.
func (p Provenance) Metadata() map[string]string {
	v := []string{p.Dataset, p.Preparation, p.Params, strconv.Itoa(p.Features), strconv.Itoa(p.Classes),
		strconv.FormatUint(p.SplitSeed, 10), p.TrainFraction, strconv.Itoa(p.Train), strconv.Itoa(p.Test)}
	m := make(map[string]string, len(v))
	for i, k := range provenanceKeys {
		m[ProvenancePrefix+k] = v[i]
	}
	return m
}

// ParseProvenance reads a Provenance from metadata written by Metadata. ok is
// false, with a nil error, when meta holds no data.dataset key: files from
// before the record, or saved by code that does not write it. A record
// that is present but incomplete or malformed is an error naming the key.
func ParseProvenance(meta map[string]string) (p Provenance, ok bool, err error) {
	if _, ok := meta[ProvenancePrefix+"dataset"]; !ok {
		return Provenance{}, false, nil
	}
	get := func(k string) (string, error) {
		v, ok := meta[ProvenancePrefix+k]
		if !ok {
			return "", fmt.Errorf("datasets: provenance: metadata %q missing", ProvenancePrefix+k)
		}
		return v, nil
	}
	count := func(k string) (int, error) {
		s, err := get(k)
		if err != nil {
			return 0, err
		}
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("datasets: provenance: metadata %q = %q is not a count", ProvenancePrefix+k, s)
		}
		return n, nil
	}
	if p.Dataset, err = get("dataset"); err != nil {
		return Provenance{}, false, err
	}
	if p.Preparation, err = get("preparation"); err != nil {
		return Provenance{}, false, err
	}
	if p.Params, err = get("params"); err != nil {
		return Provenance{}, false, err
	}
	if p.TrainFraction, err = get("train_fraction"); err != nil {
		return Provenance{}, false, err
	}
	for _, f := range []struct {
		k string
		v *int
	}{{"features", &p.Features}, {"classes", &p.Classes}, {"train", &p.Train}, {"test", &p.Test}} {
		if *f.v, err = count(f.k); err != nil {
			return Provenance{}, false, err
		}
	}
	s, err := get("split_seed")
	if err != nil {
		return Provenance{}, false, err
	}
	if p.SplitSeed, err = strconv.ParseUint(s, 10, 64); err != nil {
		return Provenance{}, false, fmt.Errorf("datasets: provenance: metadata %q = %q is not a seed", ProvenancePrefix+"split_seed", s)
	}
	return p, true, nil
}

// String describes the record as "digits (split seed 1, 1437 train / 360
// test)".
func (p Provenance) String() string {
	return fmt.Sprintf("%s (split seed %d, %d train / %d test)", p.Dataset, p.SplitSeed, p.Train, p.Test)
}

// Differences lists, in words, how the data described by q differ from p's:
// nil when they are the same data. Each entry names a field and both
// values, e.g. "split seed 2, not 1".
func (p Provenance) Differences(q Provenance) []string {
	var d []string
	add := func(what string, got, want any) {
		if got != want {
			d = append(d, fmt.Sprintf("%s %v, not %v", what, got, want))
		}
	}
	add("data set", q.Dataset, p.Dataset)
	add("preparation", q.Preparation, p.Preparation)
	add("preparation parameters", strconv.Quote(q.Params), strconv.Quote(p.Params))
	add("features", q.Features, p.Features)
	add("classes", q.Classes, p.Classes)
	add("split seed", q.SplitSeed, p.SplitSeed)
	add("train fraction", q.TrainFraction, p.TrainFraction)
	add("train/test sizes", fmt.Sprintf("%d/%d", q.Train, q.Test), fmt.Sprintf("%d/%d", p.Train, p.Test))
	return d
}

// ErrNoProvenance is returned by CheckProvenance for metadata without a
// record: files saved before records existed, or by code that writes none.
// Callers usually accept such a checkpoint with a warning, since nothing
// can be checked.
var ErrNoProvenance = errors.New("datasets: no provenance record")

// ProvenanceError says that a model was trained on other data than those
// asked for: Have is what its record says, Want what the caller prepared.
type ProvenanceError struct {
	Have, Want Provenance
}

// Error names the training data and how the data asked for differ.
func (e *ProvenanceError) Error() string {
	return fmt.Sprintf("trained on %s, not %s: %s", e.Have, e.Want, strings.Join(e.Have.Differences(e.Want), ", "))
}

// CheckProvenance compares the provenance record in meta (a checkpoint's
// metadata, as written by Provenance.Metadata) with want, the record of the
// data about to be used with it. Gradients of other rows than the training
// rows give silently wrong influence scores, so a mismatch is a
// *ProvenanceError; a record that is malformed is an error naming the key,
// and metadata without one give ErrNoProvenance.
func CheckProvenance(meta map[string]string, want Provenance) error {
	have, ok, err := ParseProvenance(meta)
	switch {
	case err != nil:
		return err
	case !ok:
		return ErrNoProvenance
	case have.Differences(want) != nil:
		return &ProvenanceError{Have: have, Want: want}
	}
	return nil
}
