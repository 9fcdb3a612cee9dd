package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"os"
	"strings"
	"testing"

	"github.com/goinfluence/goinfluence/attribution"
	"github.com/goinfluence/goinfluence/attribution/merkle"
)

// TestAttributeCLI runs attribute, verify and proof on a small i8 store:
// the receipt checks on its own and against its inputs, every paid
// contributor's proof verifies against the payout root, and a receipt
// altered in one amount is refused, naming it.
func TestAttributeCLI(t *testing.T) {
	sf := newStoreFiles(t)
	dir := sf.p("store")
	sf.run("store", "build", "--grads", sf.train1, "--grads", sf.train2, "--out", dir, "--dtype", "i8", "--shard-rows", "4")
	var reg strings.Builder
	reg.WriteString("id,contributor,datanet\n")
	for i, id := range sf.trainIDs {
		fmt.Fprintf(&reg, "%d,c%d,net%d\n", id, i%4, i%2)
	}
	if err := os.WriteFile(sf.p("reg.csv"), []byte(reg.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(sf.p("ckpt"), []byte("model"), 0o644); err != nil {
		t.Fatal(err)
	}
	inputs := []string{"--store", dir, "--registry", sf.p("reg.csv"), "--query", sf.q, "--checkpoint", sf.p("ckpt")}
	out := sf.run(append([]string{"attribute", "--fee", "1000000000000000000000", "--topk", "3", "--out", sf.p("receipt.json"), "--quality-out", sf.p("quality.json")}, inputs...)...)
	if !strings.Contains(out, "payout_root 0x") || !strings.Contains(out, "data quality over 3 queries") {
		t.Fatalf("attribute printed %q", out)
	}
	if out := sf.run("verify", sf.p("receipt.json")); !strings.Contains(out, "consistent") {
		t.Errorf("verify alone: %q", out)
	}
	if out := sf.run(append([]string{"verify", sf.p("receipt.json"), "--backend", "cpu"}, inputs...)...); !strings.Contains(out, "match") {
		t.Errorf("verify with inputs: %q", out)
	}
	r, err := attribution.ReadReceipt(sf.p("receipt.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Payouts) == 0 {
		t.Fatal("no contributor paid")
	}
	for _, p := range r.Payouts {
		var proof attribution.Proof
		if err := json.Unmarshal([]byte(sf.run("proof", "--receipt", sf.p("receipt.json"), "--contributor", p.Contributor, "--json")), &proof); err != nil {
			t.Fatal(err)
		}
		amount, _ := new(big.Int).SetString(proof.Value[2], 10)
		batch, _ := merkle.ParseHash(proof.Value[0])
		leaf, err := merkle.PayoutLeaf(batch, p.Contributor, amount)
		if err != nil {
			t.Fatal(err)
		}
		root, _ := merkle.ParseHash(proof.Root)
		var sib []merkle.Hash
		for _, s := range proof.Proof {
			h, _ := merkle.ParseHash(s)
			sib = append(sib, h)
		}
		if proof.Value[2] != p.Amount || root != r.PayoutRoot || !merkle.Verify(root, leaf, sib) {
			t.Errorf("proof of %s: %+v does not verify", p.Contributor, proof)
		}
	}
	// One amount altered: verify fails, naming the payout.
	r.Payouts[0].Amount += "1"
	if err := attribution.WriteReceipt(sf.p("bad.json"), r); err != nil {
		t.Fatal(err)
	}
	err = run(context.Background(), []string{"verify", sf.p("bad.json")}, &sf.stdout, &sf.stderr)
	if !errors.Is(err, attribution.ErrMismatch) || !strings.Contains(err.Error(), "payout of \""+r.Payouts[0].Contributor+"\"") {
		t.Errorf("altered receipt: %v", err)
	}
	// A float store is refused without --allow-float.
	f16 := sf.p("f16")
	sf.run("store", "build", "--grads", sf.train1, "--grads", sf.train2, "--out", f16, "--dtype", "f16")
	err = run(context.Background(), []string{"attribute", "--store", f16, "--registry", sf.p("reg.csv"), "--query", sf.q, "--checkpoint", sf.p("ckpt"),
		"--fee", "10", "--out", sf.p("r2.json")}, &sf.stdout, &sf.stderr)
	if err == nil || !strings.Contains(err.Error(), "not i8") {
		t.Errorf("f16 store: %v", err)
	}
	// An unregistered store id is named.
	if err := os.WriteFile(sf.p("short.csv"), []byte("id,contributor,datanet\n100,a,n\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"attribute", "--fee", "10", "--out", sf.p("r3.json"), "--store", dir, "--registry", sf.p("short.csv"), "--query", sf.q, "--checkpoint", sf.p("ckpt")}
	err = run(context.Background(), args, &sf.stdout, &sf.stderr)
	if !errors.Is(err, attribution.ErrNotRegistered) || !strings.Contains(err.Error(), "103") {
		t.Errorf("unregistered id: %v", err)
	}
}
