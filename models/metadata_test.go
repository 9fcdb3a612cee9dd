package models

import (
	"path/filepath"
	"testing"
)

func TestSaveWithMetadata(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "m.safetensors")
	m := NewSoftmax(3, 4, 0.5)
	if err := SaveWithMetadata(path, m, map[string]string{"data.dataset": "digits", "note": "x"}); err != nil {
		t.Fatal(err)
	}
	meta, err := ReadMetadata(path)
	if err != nil {
		t.Fatal(err)
	}
	if meta["data.dataset"] != "digits" || meta["note"] != "x" || meta["format"] != CheckpointFormat {
		t.Errorf("ReadMetadata = %v", meta)
	}
	if _, err := Load(path); err != nil {
		t.Errorf("Load of a checkpoint with extra metadata: %v", err)
	}
	for _, k := range []string{"format", "kind", "l2", "sizes", "activation"} {
		if err := SaveWithMetadata(filepath.Join(dir, k), m, map[string]string{k: "x"}); err == nil {
			t.Errorf("extra key %q was accepted", k)
		}
	}
	if _, err := ReadMetadata(filepath.Join(dir, "absent")); err == nil {
		t.Error("ReadMetadata of a missing file succeeded")
	}
}
