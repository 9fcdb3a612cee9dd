package attribution

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/goinfluence/goinfluence/linalg"
)

// TestReceiptProofsOpenZeppelin attributes a batch and has OpenZeppelin's
// StandardMerkleTree.verify (scripts/oz-merkle/verify.mjs, under node)
// check the proof of every contributor paid, as 'goinfluence proof --json'
// prints it, and refuse one with an altered amount. It runs only with
// GOINFLUENCE_OZ=1 and the npm packages installed: make test-oz.
func TestReceiptProofsOpenZeppelin(t *testing.T) {
	dir := filepath.Join("..", "scripts", "oz-merkle")
	if os.Getenv("GOINFLUENCE_OZ") != "1" {
		t.Skip("OpenZeppelin cross-check off: run `make test-oz` (needs node and npm)")
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules")); err != nil {
		t.Skipf("OpenZeppelin cross-check: %s/node_modules missing, run `npm ci` there (or `make test-oz`)", dir)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("GOINFLUENCE_OZ=1 but node is not on PATH: %v", err)
	}
	w := newWorld(t, 60, 8)
	r, err := w.attributor(t, filepath.Join(w.dir, "store"), linalg.CPU(), 0, testConfig).Attribute(context.Background(), inferences(8, 123_456_789), w.queries)
	if err != nil {
		t.Fatal(err)
	}
	var proofs []*Proof
	for _, p := range r.Payouts {
		pr, err := ProofOf(r, p.Contributor)
		if err != nil {
			t.Fatal(err)
		}
		proofs = append(proofs, pr)
	}
	bad := *proofs[0]
	bad.Value[2] += "0"
	proofs = append(proofs, &bad)
	in, _ := json.Marshal(proofs)
	cmd := exec.Command(node, "verify.mjs")
	cmd.Dir = dir
	cmd.Stdin = bytes.NewReader(in)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node verify.mjs: %v", err)
	}
	var ok []bool
	if err := json.Unmarshal(out, &ok); err != nil || len(ok) != len(proofs) {
		t.Fatalf("verify.mjs printed %s (%v)", out, err)
	}
	for i, v := range ok[:len(ok)-1] {
		if !v {
			t.Errorf("OpenZeppelin refuses the proof of %s", r.Payouts[i].Contributor)
		}
	}
	if ok[len(ok)-1] {
		t.Error("OpenZeppelin accepts a proof with an altered amount")
	}
	t.Logf("OpenZeppelin StandardMerkleTree.verify accepts the %d payout proofs of a receipt and refuses an altered one", len(ok)-1)
}
