package attribution

import (
	"context"
	"encoding/json"
	"path/filepath"
	"testing"

	"github.com/goinfluence/goinfluence/linalg"
)

// FuzzParseReceipt feeds arbitrary bytes, seeded with a real receipt, to
// ParseReceipt, Check and ProofOf: none may panic, and a receipt that
// checks must give a proof for each of its payouts.
func FuzzParseReceipt(f *testing.F) {
	f.Add(seedReceipt(f))
	f.Add([]byte(`{"format":"goinfluence.receipt/v1"}`))
	f.Add([]byte(`{"format":"goinfluence.receipt/v1","inferences":[{"id":"a","topk":[[1,2,3.5]],"fee":"10","owner":"1","stakers":"1","platform":"8","unpaid":"0","contributors":[],"datanets":[]}],"payouts":[],"owner":"1","stakers":"1","platform":"8"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseReceipt(b)
		if err != nil {
			return
		}
		if Check(r) != nil {
			return
		}
		for _, p := range r.Payouts {
			if _, err := ProofOf(r, p.Contributor); err != nil {
				t.Fatalf("a receipt that checks gives no proof of %q: %v", p.Contributor, err)
			}
		}
		if _, err := json.Marshal(r); err != nil {
			t.Fatalf("a receipt that checks does not encode: %v", err)
		}
	})
}

// seedReceipt is a receipt of a small run, for the fuzz corpus.
func seedReceipt(t testing.TB) []byte {
	w := newWorld(t, 30, 2)
	r, err := w.attributor(t, filepath.Join(w.dir, "store"), linalg.CPU(), 0, testConfig).Attribute(context.Background(), inferences(2, 1000), w.queries)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(r)
	return b
}

// TestSeedReceiptParses keeps the fuzz target's real seed honest: a real
// receipt parses and checks.
func TestSeedReceiptParses(t *testing.T) {
	r, err := ParseReceipt(seedReceipt(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := Check(r); err != nil {
		t.Fatal(err)
	}
}
