package attribution

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"reflect"
	"slices"
	"strings"

	"github.com/goinfluence/goinfluence/attribution/merkle"
	"github.com/goinfluence/goinfluence/gradients"
)

// ErrMismatch is wrapped by the errors of Check and Verify that report a
// receipt that does not match itself or its inputs.
var ErrMismatch = errors.New("receipt does not verify")

// Check verifies a receipt on its own, without its inputs: the run id is
// the SHA-256 of the manifest, the batch hash is that of the run id and the
// inference ids, every inference's split adds up to its fee, the payouts
// are the sums of the inferences' contributor amounts and the totals of
// owner, stakers and platform theirs, and both Merkle roots are those of the
// payouts and records. The error names the first thing that differs.
func Check(r *Receipt) error {
	if _, err := check(r); err != nil {
		return fmt.Errorf("attribution: %w: %w", ErrMismatch, err)
	}
	return nil
}

// check is Check without the wrapping; it also returns the payout tree it
// built (nil when the receipt pays no contributor), for ProofOf.
func check(r *Receipt) (*merkle.Tree, error) {
	if r.Format != ReceiptFormat {
		return nil, fmt.Errorf("format %q, want %q", r.Format, ReceiptFormat)
	}
	id, err := r.Manifest.ID()
	if err != nil {
		return nil, err
	}
	if got := hex.EncodeToString(id[:]); got != r.RunID {
		return nil, fmt.Errorf("run_id is %s, the manifest hashes to %s", r.RunID, got)
	}
	if b := BatchHash(id, r.inferenceIDs()); b != r.Batch {
		return nil, fmt.Errorf("batch is %s, the run id and inference ids hash to %s", r.Batch.Hex(), b.Hex())
	}
	t, err := tallyRecords(r.Inferences)
	if err != nil {
		return nil, err
	}
	totals := t.payouts
	if len(totals) != len(r.Payouts) {
		return nil, fmt.Errorf("%d payouts for the %d contributors paid by the inferences", len(r.Payouts), len(totals))
	}
	for _, p := range r.Payouts {
		t := totals[p.Contributor]
		v, err := decimal(p.Amount)
		if err != nil {
			return nil, fmt.Errorf("payout of %q: %w", p.Contributor, err)
		}
		if t == nil || t.Cmp(v) != 0 {
			return nil, fmt.Errorf("payout of %q is %s, the inferences pay it %v", p.Contributor, v, t)
		}
	}
	for _, f := range []struct {
		name, v string
		total   *big.Int
	}{{"owner", r.Owner, t.owner}, {"stakers", r.Stakers, t.stakers}, {"platform", r.Platform, t.platform}} {
		if v, err := decimal(f.v); err != nil || v.Cmp(f.total) != 0 {
			return nil, fmt.Errorf("%s total is %q, the inferences add up to %s", f.name, f.v, f.total)
		}
	}
	pt, rt, err := r.roots()
	if err != nil {
		return nil, err
	}
	if got := rootOf(pt); got != r.PayoutRoot {
		return nil, fmt.Errorf("payout_root is %s, the payouts give %s", r.PayoutRoot.Hex(), got.Hex())
	}
	if got := rootOf(rt); got != r.RecordRoot {
		return nil, fmt.Errorf("record_root is %s, the records give %s", r.RecordRoot.Hex(), got.Hex())
	}
	return pt, nil
}

// tally is what a batch's records add up to: each contributor's amount and
// the owner's, stakers' and platform's totals.
type tally struct {
	payouts                  map[string]*big.Int
	owner, stakers, platform *big.Int
}

// tallyRecords sums the records of a batch, checking that every amount is
// a decimal integer and that every record's split adds up to its fee; the
// error names the inference.
func tallyRecords(recs []InferenceRecord) (*tally, error) {
	t := &tally{payouts: map[string]*big.Int{}, owner: new(big.Int), stakers: new(big.Int), platform: new(big.Int)}
	for i, inf := range recs {
		sum := new(big.Int)
		for _, f := range []struct {
			name, v string
			total   *big.Int
		}{{"owner", inf.Owner, t.owner}, {"stakers", inf.Stakers, t.stakers}, {"platform", inf.Platform, t.platform}} {
			v, err := decimal(f.v)
			if err != nil {
				return nil, fmt.Errorf("inference %d (%s): %s: %w", i, inf.ID, f.name, err)
			}
			sum.Add(sum, v)
			f.total.Add(f.total, v)
		}
		for _, p := range inf.Contributors {
			v, err := decimal(p.Amount)
			if err != nil {
				return nil, fmt.Errorf("inference %d (%s): contributor %q: %w", i, inf.ID, p.Contributor, err)
			}
			sum.Add(sum, v)
			addTo(t.payouts, p.Contributor, v)
		}
		fee, err := decimal(inf.Fee)
		if err != nil {
			return nil, fmt.Errorf("inference %d (%s): fee: %w", i, inf.ID, err)
		}
		if sum.Cmp(fee) != 0 {
			return nil, fmt.Errorf("inference %d (%s): the split adds up to %s, the fee is %s", i, inf.ID, sum, fee)
		}
	}
	return t, nil
}

// addTo adds v to m[k].
func addTo(m map[string]*big.Int, k string, v *big.Int) {
	if t := m[k]; t != nil {
		t.Add(t, v)
	} else {
		m[k] = new(big.Int).Set(v)
	}
}

func decimal(s string) (*big.Int, error) {
	v, ok := new(big.Int).SetString(s, 10)
	if !ok || v.Sign() < 0 || v.BitLen() > 256 || v.String() != s {
		return nil, fmt.Errorf("%q is not a decimal integer in [0, 2²⁵⁶)", s)
	}
	return v, nil
}

// Verify checks a receipt against its inputs: it checks the receipt on its
// own (Check), then recomputes it with a, the Attributor opened on the same
// inputs, from the query gradients of its inferences (queries[c], example i
// for the receipt's inference i), with the receipt's inference ids and fees.
// The error, wrapping ErrMismatch, names every field of the run manifest
// that differs (which input changed) and the first inference, and field,
// whose record differs, then the payouts and roots.
func (a *Attributor) Verify(ctx context.Context, r *Receipt, queries ...*gradients.Batch) error {
	if _, err := check(r); err != nil {
		return fmt.Errorf("attribution: %w: %w", ErrMismatch, err)
	}
	if !r.Manifest.Verifiable() {
		return fmt.Errorf("attribution: %w: the receipt records float scores (quantisation %q), which cannot be recomputed bit for bit", ErrMismatch, r.Manifest.Quantisation)
	}
	infs := make([]Inference, len(r.Inferences))
	for i, inf := range r.Inferences {
		fee, _ := decimal(inf.Fee) // checked
		infs[i] = Inference{ID: inf.ID, Fee: fee}
	}
	got, _, err := a.attribute(ctx, infs, queries, nil)
	if err != nil {
		return fmt.Errorf("attribution: Verify: %w", err)
	}
	var diffs []string
	diffs = append(diffs, fieldDiffs("manifest", r.Manifest, got.Manifest)...)
	if got.Batch != r.Batch {
		// The batch hash follows the run manifest, whose differences are
		// named above. The roots are recomputed under the receipt's batch,
		// so that they say whether the records and payouts themselves
		// match (they do when only the layout of an input changed, such as
		// the shard size of a rebuilt store).
		got.Batch = r.Batch
		pt, rt, err := got.roots()
		if err != nil {
			return fmt.Errorf("attribution: Verify: %w", err)
		}
		got.PayoutRoot, got.RecordRoot = rootOf(pt), rootOf(rt)
	}
	for i := range r.Inferences {
		if d := fieldDiffs(fmt.Sprintf("inference %d (%s)", i, r.Inferences[i].ID), r.Inferences[i], got.Inferences[i]); len(d) > 0 {
			diffs = append(diffs, d[0])
			break
		}
	}
	if d := fieldDiffs("payouts", r.Payouts, got.Payouts); len(d) > 0 {
		diffs = append(diffs, d[0])
	}
	if r.PayoutRoot != got.PayoutRoot {
		diffs = append(diffs, fmt.Sprintf("payout_root: the receipt has %s, the inputs give %s", r.PayoutRoot.Hex(), got.PayoutRoot.Hex()))
	}
	if r.RecordRoot != got.RecordRoot {
		diffs = append(diffs, fmt.Sprintf("record_root: the receipt has %s, the inputs give %s", r.RecordRoot.Hex(), got.RecordRoot.Hex()))
	}
	if len(diffs) > 0 {
		return fmt.Errorf("attribution: %w: %s", ErrMismatch, strings.Join(diffs, "; "))
	}
	return nil
}

// fieldDiffs names the JSON fields of two values of the same type that
// differ, with both values, recursing into structs and lists.
func fieldDiffs(path string, want, got any) []string {
	if reflect.DeepEqual(want, got) {
		return nil
	}
	var w, g any
	wb, _ := json.Marshal(want)
	gb, _ := json.Marshal(got)
	json.Unmarshal(wb, &w)
	json.Unmarshal(gb, &g)
	return jsonDiffs(path, w, g)
}

func jsonDiffs(path string, w, g any) []string {
	switch wv := w.(type) {
	case map[string]any:
		gv, ok := g.(map[string]any)
		if !ok {
			break
		}
		var out []string
		for _, k := range sortedKeys(wv, gv) {
			out = append(out, jsonDiffs(path+"."+k, wv[k], gv[k])...)
		}
		return out
	case []any:
		gv, ok := g.([]any)
		if !ok || len(gv) != len(wv) {
			break
		}
		var out []string
		for i := range wv {
			out = append(out, jsonDiffs(fmt.Sprintf("%s[%d]", path, i), wv[i], gv[i])...)
		}
		return out
	}
	if reflect.DeepEqual(w, g) {
		return nil
	}
	wb, _ := json.Marshal(w)
	gb, _ := json.Marshal(g)
	return []string{fmt.Sprintf("%s: the receipt has %s, the inputs give %s", path, wb, gb)}
}

func sortedKeys(a, b map[string]any) []string {
	seen := map[string]bool{}
	var keys []string
	for _, m := range []map[string]any{a, b} {
		for k := range m {
			if !seen[k] {
				seen[k] = true
				keys = append(keys, k)
			}
		}
	}
	// JSON object keys in sorted order, so that the first difference is
	// the same on every run.
	slices.Sort(keys)
	return keys
}

// Proof is what 'goinfluence proof' prints: a contributor's payout leaf in
// the payout tree and its proof, in the form of OpenZeppelin's
// StandardMerkleTree.
type Proof struct {
	Root         string    `json:"root"`
	LeafEncoding []string  `json:"leafEncoding"`
	Value        [3]string `json:"value"`
	Proof        []string  `json:"proof"`
}

// ProofOf returns the payout proof of a contributor of the receipt, after
// checking the receipt (Check).
func ProofOf(r *Receipt, contributor string) (*Proof, error) {
	pt, err := check(r)
	if err != nil {
		return nil, fmt.Errorf("attribution: %w: %w", ErrMismatch, err)
	}
	var amount *big.Int
	for _, p := range r.Payouts {
		if p.Contributor == contributor {
			amount, _ = decimal(p.Amount)
		}
	}
	if amount == nil {
		return nil, fmt.Errorf("attribution: the receipt pays no contributor %q", contributor)
	}
	leaf, err := merkle.PayoutLeaf(r.Batch, contributor, amount)
	if err != nil {
		return nil, err
	}
	sib, err := pt.Proof(leaf)
	if err != nil {
		return nil, err
	}
	p := &Proof{Root: pt.Root().Hex(), LeafEncoding: []string{"bytes32", "bytes32", "uint256"},
		Value: [3]string{r.Batch.Hex(), keccakHex(contributor), amount.String()}, Proof: []string{}}
	for _, h := range sib {
		p.Proof = append(p.Proof, h.Hex())
	}
	return p, nil
}
