package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/goinfluence/goinfluence/datasets"
	"github.com/goinfluence/goinfluence/models"
)

// TestGradsProvenance holds grads to refusing a checkpoint trained on other
// data than the flags ask for, naming what it was trained on. Before the
// provenance record, grads --split-seed 2 on a checkpoint trained with
// --split-seed 1 wrote gradients of rows partly from its training set
// without a word.
func TestGradsProvenance(t *testing.T) {
	dir := t.TempDir()
	p := func(name string) string { return filepath.Join(dir, name) }
	ckpt := p("m.safetensors")
	runOK(t, "train", "--dataset", "digits", "--model", "softmax", "--split-seed", "1", "--out", ckpt)
	// TracIn checkpoints carry the record too.
	runOK(t, "train", "--dataset", "digits", "--model", "mlp", "--hidden", "4", "--epochs", "1",
		"--checkpoint-every", "1", "--split-seed", "1", "--out", p("mlp.safetensors"))
	epoch := p("mlp-epoch0001.safetensors")

	m, err := models.Load(ckpt)
	if err != nil {
		t.Fatal(err)
	}
	meta, err := models.ReadMetadata(ckpt)
	if err != nil {
		t.Fatal(err)
	}
	prov, ok, err := datasets.ParseProvenance(meta)
	if err != nil || !ok {
		t.Fatalf("checkpoint provenance: %v, %v (metadata %v)", ok, err, meta)
	}
	if want := "digits (split seed 1, 1437 train / 360 test)"; prov.String() != want || prov.Features != 64 || prov.Classes != 10 {
		t.Errorf("provenance %+v, want %s with 64 features and 10 classes", prov, want)
	}
	save := func(name string, edit func(meta map[string]string)) string {
		meta := prov.Metadata()
		if edit != nil {
			edit(meta)
		}
		if err := models.SaveWithMetadata(p(name), m, meta); err != nil {
			t.Fatal(err)
		}
		return p(name)
	}
	legacy := p("legacy.safetensors")
	if err := models.Save(legacy, m); err != nil {
		t.Fatal(err)
	}
	otherFeatures := save("features.safetensors", func(m map[string]string) { m["data.features"] = "63" })
	otherPrep := save("prep.safetensors", func(m map[string]string) { m["data.preparation"] = "eval.LoadSplit/v0" })
	broken := save("broken.safetensors", func(m map[string]string) { delete(m, "data.test") })

	for _, tc := range []struct {
		name    string
		ckpt    string
		args    []string
		want    string // error; "" for success
		warning bool
	}{
		{"same seed", ckpt, []string{"--split-seed", "1"}, "", false},
		{"other seed", ckpt, []string{"--split-seed", "2"},
			"grads: checkpoint " + ckpt + " was trained on digits (split seed 1, 1437 train / 360 test); --split-seed 2 asks for another split", false},
		{"default seed", ckpt, nil, "--split-seed 0 asks for another split", false},
		{"other dataset", ckpt, []string{"--split-seed", "1", "--dataset", "breast-cancer"},
			"was trained on digits (split seed 1, 1437 train / 360 test); --dataset breast-cancer asks for another data set", false},
		{"tracin epoch, same seed", epoch, []string{"--split-seed", "1"}, "", false},
		{"tracin epoch, other seed", epoch, []string{"--split-seed", "2"},
			"checkpoint " + epoch + " was trained on digits (split seed 1, 1437 train / 360 test); --split-seed 2 asks for another split", false},
		{"no record", legacy, []string{"--split-seed", "2"}, "", true},
		{"other features", otherFeatures, []string{"--split-seed", "1"}, "--dataset digits has 64 features, the checkpoint's data 63", false},
		{"other preparation", otherPrep, []string{"--split-seed", "1"}, `prepares it otherwise: preparation eval.LoadSplit/v1, not eval.LoadSplit/v0`, false},
		{"broken record", broken, []string{"--split-seed", "1"}, `"data.test" missing`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"grads", "--checkpoint", tc.ckpt, "--dataset", "digits", "--split", "test",
				"--first", "3", "--out", p("g-" + strings.ReplaceAll(tc.name, " ", "_"))}, tc.args...)
			var stdout, stderr bytes.Buffer
			err := run(context.Background(), args, &stdout, &stderr)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("run(%q): %v", args, err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("run(%q) = %v, want an error containing %q", args, err, tc.want)
			}
			if got := strings.Contains(stderr.String(), "cannot check"); got != tc.warning {
				t.Errorf("warning on stderr: %v, want %v:\n%s", got, tc.warning, stderr.String())
			}
		})
	}
}
