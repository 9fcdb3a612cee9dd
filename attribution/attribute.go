package attribution

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"math"
	"math/big"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/goinfluence/goinfluence/gradients"
	"github.com/goinfluence/goinfluence/gradients/store"
	"github.com/goinfluence/goinfluence/influence"
	"github.com/goinfluence/goinfluence/linalg"
	"github.com/goinfluence/goinfluence/quant"
)

// DefaultTopK is the number of distinct helpful examples credited per
// inference when Config.TopK is zero.
const DefaultTopK = 10

// maxGroupFetch bounds the rows fetched per credited example to find TopK
// distinct content groups among duplicates.
const maxGroupFetch = 64

// Config configures attribution.
type Config struct {
	// TopK is the number of distinct helpful examples credited per
	// inference (default DefaultTopK): the examples with the highest
	// positive scores, exact duplicates counting once.
	TopK int
	// Threshold is the least score credited: only scores > 0 and ≥
	// Threshold count.
	Threshold float64
	// Split is how each inference's fee is shared.
	Split SplitConfig
	// NearDuplicate, in (0, 1], joins into one duplicate group the
	// candidate examples whose stored rows (i8) have a cosine of at least
	// this, so that near copies share one credit as exact ones do; 0
	// turns it off. It reads each inference's candidate rows from the
	// store.
	NearDuplicate float64
	// AllowFloat allows float stores, whose scores no one can recompute
	// bit for bit: the receipt records quantisation "none". For analysis,
	// not payment.
	AllowFloat bool
}

// Inputs names what a run manifest hashes besides the stores, which the
// Attributor hashes itself.
type Inputs struct {
	Checkpoint string // path of the model checkpoint the gradients come from
	Registry   string // path of the registry file
	Factors    string // path of the factors file, for StoreFactors; "" otherwise
}

// Attributor attributes batches of inferences to the contributors and
// DataNets of a store's examples. Opening it checks that every stored id is
// registered and hashes the inputs; Attribute then scores, aggregates,
// splits each fee and builds the receipt. It is safe for concurrent use.
type Attributor struct {
	scorer   *influence.StoreScorer
	store    *store.Store
	reg      *Registry
	cfg      Config
	manifest RunManifest
	runID    [32]byte
}

// NewAttributor opens the StoreScorer of opt (whose TopK it sets) on the
// backend be and prepares the run: every id of the stores must be in the
// registry, and the stores must be i8 unless cfg.AllowFloat.
func NewAttributor(ctx context.Context, be linalg.Backend, opt influence.StoreScorerOptions, reg *Registry, cfg Config, in Inputs) (*Attributor, error) {
	a, err := newAttributor(ctx, be, opt, reg, cfg, in)
	if err != nil {
		return nil, fmt.Errorf("attribution: %w", err)
	}
	return a, nil
}

func newAttributor(ctx context.Context, be linalg.Backend, opt influence.StoreScorerOptions, reg *Registry, cfg Config, in Inputs) (*Attributor, error) {
	if reg == nil {
		return nil, errors.New("no registry")
	}
	cfg.TopK = cmp.Or(cfg.TopK, DefaultTopK)
	switch {
	case cfg.TopK < 0:
		return nil, fmt.Errorf("TopK %d < 0", cfg.TopK)
	case cfg.Threshold < 0 || math.IsNaN(cfg.Threshold) || math.IsInf(cfg.Threshold, 0):
		return nil, fmt.Errorf("threshold %v: want a finite number ≥ 0", cfg.Threshold)
	case !(cfg.NearDuplicate >= 0 && cfg.NearDuplicate <= 1):
		return nil, fmt.Errorf("near-duplicate cosine %v: want 0 (off) or a number in (0, 1]", cfg.NearDuplicate)
	}
	if err := cfg.Split.Check(); err != nil {
		return nil, err
	}
	if len(opt.Stores) == 0 {
		return nil, errors.New("no stores")
	}
	exact := true
	for _, s := range opt.Stores {
		if s.DType() != gradients.I8 {
			exact = false
		}
	}
	if !exact && cfg.NearDuplicate > 0 {
		return nil, fmt.Errorf("near duplicates are found on i8 stores; %s is %s", opt.Stores[0].Dir(), opt.Stores[0].DType())
	}
	if !exact && !cfg.AllowFloat {
		return nil, fmt.Errorf("the store %s is %s, not i8: its float scores cannot be recomputed bit for bit by a verifier; build it with --dtype i8, or allow float scores for analysis", opt.Stores[0].Dir(), opt.Stores[0].DType())
	}
	// Every stored id is registered, and the rows fetched per inference
	// cover TopK distinct content groups: the registry's largest group
	// bounds the store's.
	ids, err := opt.Stores[0].IDs(ctx)
	if err != nil {
		return nil, err
	}
	if err := reg.CheckIDs(ids); err != nil {
		return nil, fmt.Errorf("the store %s: %w", opt.Stores[0].Dir(), err)
	}
	opt.TopK = cfg.TopK * min(reg.largestContentGroup(), maxGroupFetch)
	scorer, err := influence.OpenStoreScorer(ctx, be, opt)
	if err != nil {
		return nil, err
	}
	m := RunManifest{
		Method:       scorer.Method(),
		Quantisation: "none",
		Version:      Version(),
		Attribution:  cfg.json(),
	}
	if exact {
		m.Quantisation = quant.Version
	}
	meta := scorer.Metadata()
	m.Projection, m.Damping = meta["projection"], meta["damping"]
	for _, s := range opt.Stores {
		h, err := fileSHA256(filepath.Join(s.Dir(), store.ManifestName))
		if err != nil {
			return nil, err
		}
		m.Stores = append(m.Stores, h)
	}
	if m.Registry, err = fileSHA256(in.Registry); err != nil {
		return nil, fmt.Errorf("registry: %w", err)
	}
	if m.Checkpoint, err = fileSHA256(in.Checkpoint); err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	if in.Factors != "" {
		if m.Factors, err = fileSHA256(in.Factors); err != nil {
			return nil, fmt.Errorf("factors: %w", err)
		}
	}
	id, err := m.ID()
	if err != nil {
		return nil, err
	}
	return &Attributor{scorer: scorer, store: opt.Stores[0], reg: reg, cfg: cfg, manifest: m, runID: id}, nil
}

// json returns c as a run manifest records it.
func (c Config) json() ConfigJSON {
	str := func(x *big.Int) string {
		if x == nil {
			return "0"
		}
		return x.String()
	}
	return ConfigJSON{
		TopK: c.TopK, Threshold: strconv.FormatFloat(c.Threshold, 'g', -1, 64),
		Contributor: c.Split.Shares.Contributors, Owner: c.Split.Shares.Owner, Stakers: c.Split.Shares.Stakers, Platform: c.Split.Shares.Platform,
		Cap: str(c.Split.Cap), MinPayout: str(c.Split.MinPayout), NoInfluence: string(cmp.Or(c.Split.NoInfluence, "platform")),
		Duplicates:    "exact duplicates (same content_sha256) count once and share one credit equally",
		NearDuplicate: strconv.FormatFloat(c.NearDuplicate, 'g', -1, 64),
	}
}

// Manifest returns the run manifest.
func (a *Attributor) Manifest() RunManifest { return a.manifest }

// Inference is one inference to attribute: its id (unique in the batch)
// and the fee it paid.
type Inference struct {
	ID  string
	Fee *big.Int
}

// Attribute attributes a batch of inferences: queries[c] holds their query
// gradients at store c's checkpoint, example i for infs[i]. It returns the
// receipt, with both Merkle roots.
func (a *Attributor) Attribute(ctx context.Context, infs []Inference, queries ...*gradients.Batch) (*Receipt, error) {
	r, _, err := a.attribute(ctx, infs, queries, nil)
	if err != nil {
		return nil, fmt.Errorf("attribution: Attribute: %w", err)
	}
	return r, nil
}

// AttributeWithQuality is Attribute and then Quality of the same queries,
// scoring them once: Quality's harmful rankings are those of the scoring
// the receipt was made from.
func (a *Attributor) AttributeWithQuality(ctx context.Context, infs []Inference, opt QualityOptions, queries ...*gradients.Batch) (*Receipt, *QualityReport, error) {
	share, err := opt.share()
	if err != nil {
		return nil, nil, fmt.Errorf("attribution: Quality: %w", err)
	}
	r, res, err := a.attribute(ctx, infs, queries, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("attribution: Attribute: %w", err)
	}
	rep, err := a.report(ctx, share, res)
	if err != nil {
		return nil, nil, fmt.Errorf("attribution: Quality: %w", err)
	}
	return r, rep, nil
}

// Timing is where the wall time of one AttributeTimed call went.
type Timing struct {
	// Scoring is the StoreScorer's Score call: the queries projected,
	// preconditioned and quantised, the store streamed and ranked.
	Scoring time.Duration
	// Total is the whole call. Total − Scoring is attribution's own work:
	// the checks, the query digests, credits, splits, the receipt and its
	// Merkle trees.
	Total time.Duration
}

// AttributeTimed is Attribute, also reporting where the time went, for
// benchmarks ('goinfluence bench attribute'). Timings are not part of the
// receipt, which must be the same bytes on every run.
func (a *Attributor) AttributeTimed(ctx context.Context, infs []Inference, queries ...*gradients.Batch) (*Receipt, Timing, error) {
	var t Timing
	start := time.Now()
	r, _, err := a.attribute(ctx, infs, queries, &t)
	t.Total = time.Since(start)
	if err != nil {
		return nil, Timing{}, fmt.Errorf("attribution: Attribute: %w", err)
	}
	return r, t, nil
}

// attribute attributes a batch and returns the scoring it was made from; t,
// when not nil, is told the scoring time.
func (a *Attributor) attribute(ctx context.Context, infs []Inference, queries []*gradients.Batch, t *Timing) (*Receipt, *influence.StoreResult, error) {
	if len(infs) == 0 {
		return nil, nil, errNoInferences
	}
	seen := make(map[string]int, len(infs))
	for i, inf := range infs {
		if j, ok := seen[inf.ID]; ok {
			return nil, nil, fmt.Errorf("inference id %q repeated (inferences %d and %d)", inf.ID, j, i)
		}
		seen[inf.ID] = i
		if inf.Fee == nil || inf.Fee.Sign() < 0 || inf.Fee.BitLen() > 256 {
			return nil, nil, fmt.Errorf("inference %q: fee %v: want an integer in [0, 2²⁵⁶)", inf.ID, inf.Fee)
		}
	}
	for c, q := range queries {
		switch {
		case q == nil:
			return nil, nil, fmt.Errorf("no queries for store %d", c)
		case q.N != len(infs):
			return nil, nil, fmt.Errorf("queries for store %d hold %d examples for %d inferences", c, q.N, len(infs))
		}
	}
	start := time.Now()
	res, err := a.scorer.Score(ctx, queries...)
	if err != nil {
		return nil, nil, err
	}
	if t != nil {
		t.Scoring = time.Since(start)
	}
	r := &Receipt{Format: ReceiptFormat, Manifest: a.manifest, RunID: hex.EncodeToString(a.runID[:])}
	for i, inf := range infs {
		rec, err := a.record(ctx, i, inf, queries, res)
		if err != nil {
			return nil, nil, fmt.Errorf("inference %q: %w", inf.ID, err)
		}
		r.Inferences = append(r.Inferences, *rec)
	}
	r.Batch = BatchHash(a.runID, r.inferenceIDs())
	tl, err := tallyRecords(r.Inferences)
	if err != nil {
		return nil, nil, err
	}
	for _, c := range slices.Sorted(maps.Keys(tl.payouts)) {
		r.Payouts = append(r.Payouts, PayoutJSON{Contributor: c, Amount: tl.payouts[c].String()})
	}
	r.Owner, r.Stakers, r.Platform = tl.owner.String(), tl.stakers.String(), tl.platform.String()
	pt, rt, err := r.roots()
	if err != nil {
		return nil, nil, err
	}
	r.PayoutRoot, r.RecordRoot = rootOf(pt), rootOf(rt)
	return r, res, nil
}

// record attributes inference i.
func (a *Attributor) record(ctx context.Context, i int, inf Inference, queries []*gradients.Batch, res *influence.StoreResult) (*InferenceRecord, error) {
	rec := &InferenceRecord{ID: inf.ID, Fee: inf.Fee.String()}
	h := sha256.New()
	for _, q := range queries {
		h.Write(float64Bytes(nil, q.Slice(i, i+1).Flatten().Data))
	}
	rec.Query = hex.EncodeToString(h.Sum(nil))
	if res.Quantized != nil {
		h := sha256.New()
		for _, q := range res.Quantized {
			h.Write(int8Bytes(q.Row(i)))
			h.Write(binary.LittleEndian.AppendUint32(nil, math.Float32bits(q.Scales[i])))
		}
		rec.Quantized = hex.EncodeToString(h.Sum(nil))
	}
	credits, datanets, top, err := a.credit(ctx, res.Rankings[i].Helpful)
	if err != nil {
		return nil, err
	}
	rec.TopK = top
	split, err := SplitFee(inf.Fee, credits, a.cfg.Split)
	if err != nil {
		return nil, err
	}
	rec.Owner, rec.Stakers, rec.Platform = split.Owner.String(), split.Stakers.String(), split.Platform.String()
	rec.Unpaid = "0"
	if split.Unpaid != nil {
		rec.Unpaid = split.Unpaid.String()
	}
	rec.Contributors = []PayoutJSON{}
	for _, p := range split.Contributors {
		rec.Contributors = append(rec.Contributors, PayoutJSON{Contributor: p.Contributor, Amount: p.Amount.String()})
	}
	rec.DataNets = []CreditJSON{}
	for _, d := range slices.Sorted(maps.Keys(datanets)) {
		rec.DataNets = append(rec.DataNets, CreditJSON{Name: d, Weight: datanets[d].String()})
	}
	return rec, nil
}

// credit selects the credited examples among an inference's most helpful
// rows (best first) and aggregates their weights per contributor and per
// DataNet. Scores ≤ 0 or below the threshold earn nothing. Duplicates form
// groups: rows with the same content hash (exact duplicates) and, with
// Config.NearDuplicate, candidate rows whose stored gradients have a cosine
// of at least that (near duplicates, joined transitively). A group is
// credited once, for its best score, counts once toward TopK, and its
// weight is shared equally among its members, every registered example of
// its contents (the remainder of the division going one unit each to the
// lowest ids), so that copying data multiplies neither its credit nor its
// place in the top-k.
func (a *Attributor) credit(ctx context.Context, helpful []influence.Entry) ([]Credit, map[string]*big.Int, []TopEntry, error) {
	var cands []influence.Entry
	for _, e := range helpful {
		if !(e.Score > 0) || e.Score < a.cfg.Threshold {
			break // the list is best first
		}
		cands = append(cands, e)
	}
	group, err := a.groups(ctx, cands)
	if err != nil {
		return nil, nil, nil, err
	}
	byContrib, byNet := map[string]*big.Int{}, map[string]*big.Int{}
	top := []TopEntry{}
	done := map[int]bool{}
	for k, e := range cands {
		if len(top) == a.cfg.TopK {
			break
		}
		g := group[k]
		if done[g] {
			continue // a duplicate of an example credited already
		}
		done[g] = true
		top = append(top, TopEntry{ID: e.ID, ISum: e.ISum, Score: float32(e.Score)})
		w, err := Weight(e.Score)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("example id %d: %w", e.ID, err)
		}
		var members []int64
		for j, f := range cands {
			if group[j] != g {
				continue
			}
			if same := a.reg.SameContent(f.ID); same != nil {
				members = append(members, same...)
			} else {
				members = append(members, f.ID)
			}
		}
		slices.Sort(members)
		members = slices.Compact(members)
		n := big.NewInt(int64(len(members)))
		share, rem := new(big.Int).QuoRem(w, n, new(big.Int))
		extra := int(rem.Int64()) // < len(members)
		for i, id := range members {
			m, ok := a.reg.Lookup(id)
			if !ok {
				return nil, nil, nil, fmt.Errorf("example id %d is not in the registry", id)
			}
			v := share
			if i < extra {
				v = new(big.Int).Add(share, big.NewInt(1))
			}
			addTo(byContrib, m.Contributor, v)
			addTo(byNet, m.DataNet, v)
		}
	}
	credits := make([]Credit, 0, len(byContrib))
	for _, c := range slices.Sorted(maps.Keys(byContrib)) {
		credits = append(credits, Credit{Contributor: c, Weight: byContrib[c]})
	}
	return credits, byNet, top, nil
}

// groups returns the duplicate group of each candidate: the smallest
// candidate position it is joined to by the same content hash or, with
// Config.NearDuplicate, by a chain of stored rows whose cosine is at least
// that.
func (a *Attributor) groups(ctx context.Context, cands []influence.Entry) ([]int, error) {
	parent := make([]int, len(cands))
	for k := range parent {
		parent[k] = k
	}
	var find func(int) int
	find = func(k int) int {
		for parent[k] != k {
			k = parent[k]
		}
		return k
	}
	union := func(i, j int) {
		ri, rj := find(i), find(j)
		if ri != rj {
			parent[max(ri, rj)] = min(ri, rj)
		}
	}
	first := map[string]int{}
	for k, e := range cands {
		reg, ok := a.reg.Lookup(e.ID)
		if !ok {
			return nil, fmt.Errorf("example id %d is not in the registry", e.ID)
		}
		if reg.ContentSHA256 == "" {
			continue
		}
		if j, ok := first[reg.ContentSHA256]; ok {
			union(j, k)
		} else {
			first[reg.ContentSHA256] = k
		}
	}
	if a.cfg.NearDuplicate > 0 && len(cands) > 1 {
		idx := make([]int, len(cands))
		for k, e := range cands {
			idx[k] = e.Index
		}
		rows, err := a.store.RowsAt(ctx, idx)
		if err != nil {
			return nil, err
		}
		norms := make([]int64, len(rows))
		for k, r := range rows {
			norms[k] = dot8(r.Raw, r.Raw)
		}
		for i := range rows {
			for j := i + 1; j < len(rows); j++ {
				if cosine(dot8(rows[i].Raw, rows[j].Raw), norms[i], norms[j]) >= a.cfg.NearDuplicate {
					union(i, j)
				}
			}
		}
	}
	out := make([]int, len(cands))
	for k := range out {
		out[k] = find(k)
	}
	return out, nil
}

// dot8 returns the exact sum of products of two rows of int8 values.
func dot8(a, b []byte) int64 {
	var s int64
	for j := range a {
		s += int64(int8(a[j])) * int64(int8(b[j]))
	}
	return s
}

// cosine returns ab/√(aa·bb) in float64 (0 for a zero row): correctly
// rounded operations on exact integers, the same on every machine.
func cosine(ab, aa, bb int64) float64 {
	if aa == 0 || bb == 0 {
		return 0
	}
	return float64(ab) / math.Sqrt(float64(aa)*float64(bb))
}

func int8Bytes(v []int8) []byte {
	b := make([]byte, len(v))
	for i, x := range v {
		b[i] = byte(x)
	}
	return b
}
