package attribution

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/big"
	"os"
	"runtime/debug"
	"strconv"

	"github.com/goinfluence/goinfluence/attribution/merkle"
	"github.com/goinfluence/goinfluence/internal/atomicfile"
)

// ReceiptFormat is the value of a receipt's "format" field.
const ReceiptFormat = "goinfluence.receipt/v1"

// RunManifest records everything a receipt's numbers depend on, so that
// anyone holding the same inputs can recompute them (DESIGN §12). Its
// SHA-256, over its JSON encoding (ID), is the run id.
type RunManifest struct {
	Checkpoint string   `json:"checkpoint_sha256"`        // the model checkpoint the gradients came from
	Stores     []string `json:"store_manifest_sha256"`    // each store's manifest.json, which lists every shard's sha256
	Factors    string   `json:"factors_sha256,omitempty"` // the factors file, for StoreFactors
	Registry   string   `json:"registry_sha256"`          // the registry file
	Projection string   `json:"projection"`               // the stores' projection spec
	Method     string   `json:"method"`                   // the preconditioner, as StoreScorer.Method
	Damping    string   `json:"damping"`
	// Quantisation is quant.Version ("i8/v1") for exact scores of i8
	// stores, "none" for float scores, which no one can recompute bit for
	// bit: such a receipt is for analysis, not payment.
	Quantisation string     `json:"quantisation"`
	Attribution  ConfigJSON `json:"attribution"`
	Version      string     `json:"library_version"`
}

// ConfigJSON is a Config as a run manifest records it: amounts as decimal
// strings.
type ConfigJSON struct {
	TopK        int    `json:"topk"`
	Threshold   string `json:"threshold"`
	Contributor uint32 `json:"contributors_bps"`
	Owner       uint32 `json:"owner_bps"`
	Stakers     uint32 `json:"stakers_bps"`
	Platform    uint32 `json:"platform_bps"`
	Cap         string `json:"cap"`
	MinPayout   string `json:"min_payout"`
	NoInfluence string `json:"no_influence"`
	Duplicates  string `json:"duplicates"`
	// NearDuplicate is the cosine of stored rows at or above which
	// candidates share one credit; "0": off.
	NearDuplicate string `json:"near_duplicate_cosine"`
}

// ID returns the run id: the SHA-256 of m's JSON encoding.
func (m *RunManifest) ID() ([32]byte, error) {
	b, err := json.Marshal(m)
	if err != nil {
		return [32]byte{}, err
	}
	return sha256.Sum256(b), nil
}

// Verifiable reports whether the receipt's scores are exact (an i8 store),
// so that a recomputation anywhere gives the same bytes.
func (m *RunManifest) Verifiable() bool { return m.Quantisation != "none" }

// Receipt is the published record of a batch of attributed inferences
// (DESIGN §12).
type Receipt struct {
	Format string `json:"format"`
	// Batch is keccak256(run id ‖ keccak256(id₁) ‖ … ‖ keccak256(idₙ)) over
	// the batch's inference ids, in order.
	Batch      merkle.Hash       `json:"batch"`
	RunID      string            `json:"run_id"` // hex SHA-256 of the manifest
	Manifest   RunManifest       `json:"manifest"`
	Inferences []InferenceRecord `json:"inferences"`
	// Payouts sums each contributor's amounts over the batch, ascending by
	// contributor; the payout tree commits to them.
	Payouts []PayoutJSON `json:"payouts"`
	// Owner, Stakers and Platform are their totals over the batch.
	Owner      string      `json:"owner"`
	Stakers    string      `json:"stakers"`
	Platform   string      `json:"platform"`
	PayoutRoot merkle.Hash `json:"payout_root"`
	RecordRoot merkle.Hash `json:"record_root"`
}

// PayoutJSON is one contributor's amount, a decimal string.
type PayoutJSON struct {
	Contributor string `json:"contributor"`
	Amount      string `json:"amount"`
}

// InferenceRecord is what a receipt records of one inference.
type InferenceRecord struct {
	ID string `json:"id"`
	// Query is the SHA-256 of the query's gradient (QueryDigest);
	// Quantized that of its quantised, preconditioned form as scored
	// (QuantizedDigest), "" for float scores.
	Query     string `json:"query_sha256"`
	Quantized string `json:"quantized_query_sha256"`
	// TopK lists the credited examples, best first: [example id, isum,
	// score], the score a float32 in its shortest decimal form.
	TopK []TopEntry `json:"topk"`
	Fee  string     `json:"fee"`
	// The split of the fee; Contributors ascending by contributor.
	Owner        string       `json:"owner"`
	Stakers      string       `json:"stakers"`
	Platform     string       `json:"platform"`
	Unpaid       string       `json:"unpaid"` // the part of the contributors' pool no contributor received
	Contributors []PayoutJSON `json:"contributors"`
	// DataNets holds each DataNet's aggregated credit (fixed point,
	// WeightBits fractional bits), ascending by DataNet.
	DataNets []CreditJSON `json:"datanets"`
}

// CreditJSON is an aggregated credit, a decimal string of the fixed-point
// weight.
type CreditJSON struct {
	Name   string `json:"name"`
	Weight string `json:"weight"`
}

// TopEntry is one credited example: [id, isum, score] in JSON.
type TopEntry struct {
	ID    int64
	ISum  int64
	Score float32
}

// MarshalJSON writes [id, isum, score], the score in the shortest decimal
// that reads back as the same float32.
func (e TopEntry) MarshalJSON() ([]byte, error) {
	if math.IsNaN(float64(e.Score)) || math.IsInf(float64(e.Score), 0) {
		return nil, fmt.Errorf("score %v of example %d", e.Score, e.ID)
	}
	return []byte("[" + strconv.FormatInt(e.ID, 10) + "," + strconv.FormatInt(e.ISum, 10) + "," +
		strconv.FormatFloat(float64(e.Score), 'g', -1, 32) + "]"), nil
}

// UnmarshalJSON reads [id, isum, score].
func (e *TopEntry) UnmarshalJSON(b []byte) error {
	var v []json.Number
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	if err := d.Decode(&v); err != nil {
		return err
	}
	if len(v) != 3 {
		return fmt.Errorf("top-k entry %s: want [id, isum, score]", b)
	}
	id, err := strconv.ParseInt(v[0].String(), 10, 64)
	if err != nil {
		return fmt.Errorf("top-k entry %s: id: %w", b, err)
	}
	isum, err := strconv.ParseInt(v[1].String(), 10, 64)
	if err != nil {
		return fmt.Errorf("top-k entry %s: isum: %w", b, err)
	}
	s, err := strconv.ParseFloat(v[2].String(), 32)
	if err != nil {
		return fmt.Errorf("top-k entry %s: score: %w", b, err)
	}
	*e = TopEntry{ID: id, ISum: isum, Score: float32(s)}
	return nil
}

// BatchHash returns keccak256(run id ‖ keccak256(utf8(id₁)) ‖ …), the
// batch of inferences with the given ids under the run.
func BatchHash(runID [32]byte, ids []string) merkle.Hash {
	parts := [][]byte{runID[:]}
	for _, id := range ids {
		h := merkle.Keccak256([]byte(id))
		parts = append(parts, h[:])
	}
	return merkle.Keccak256(parts...)
}

// inferenceIDs returns the ids of the receipt's inferences, in order.
func (r *Receipt) inferenceIDs() []string {
	ids := make([]string, len(r.Inferences))
	for i, inf := range r.Inferences {
		ids[i] = inf.ID
	}
	return ids
}

// RecordLeaf is the record tree's leaf of inference i of a batch: the
// StandardMerkleTree leaf of the values [batch, i, keccak256(record)] with
// the encoding ["bytes32", "uint256", "bytes32"], where record is the
// inference record's JSON as the receipt holds it (compact, fields in the
// order of InferenceRecord).
func RecordLeaf(batch merkle.Hash, i int, rec *InferenceRecord) (merkle.Hash, error) {
	b, err := json.Marshal(rec)
	if err != nil {
		return merkle.Hash{}, err
	}
	idx, err := merkle.Uint256(big.NewInt(int64(i)))
	if err != nil {
		return merkle.Hash{}, err
	}
	return merkle.Leaf(merkle.Bytes32(batch), idx, merkle.Bytes32(merkle.Keccak256(b))), nil
}

// roots computes the payout and record trees of r from its batch, payouts
// and records.
func (r *Receipt) roots() (payout, record *merkle.Tree, err error) {
	leaves := make([]merkle.Hash, 0, len(r.Payouts))
	for _, p := range r.Payouts {
		amount, ok := new(big.Int).SetString(p.Amount, 10)
		if !ok {
			return nil, nil, fmt.Errorf("payout of %q: amount %q is not a decimal integer", p.Contributor, p.Amount)
		}
		l, err := merkle.PayoutLeaf(r.Batch, p.Contributor, amount)
		if err != nil {
			return nil, nil, fmt.Errorf("payout of %q: %w", p.Contributor, err)
		}
		leaves = append(leaves, l)
	}
	if len(leaves) > 0 {
		if payout, err = merkle.New(leaves); err != nil {
			return nil, nil, err
		}
	}
	recs := make([]merkle.Hash, len(r.Inferences))
	for i := range r.Inferences {
		if recs[i], err = RecordLeaf(r.Batch, i, &r.Inferences[i]); err != nil {
			return nil, nil, fmt.Errorf("inference %d (%s): %w", i, r.Inferences[i].ID, err)
		}
	}
	if len(recs) > 0 {
		if record, err = merkle.New(recs); err != nil {
			return nil, nil, err
		}
	}
	return payout, record, nil
}

// rootOf returns t's root, or the zero hash for a tree with no leaves (a
// batch that paid no contributor).
func rootOf(t *merkle.Tree) merkle.Hash {
	if t == nil {
		return merkle.Hash{}
	}
	return t.Root()
}

// WriteReceipt writes r as indented JSON to path, atomically.
func WriteReceipt(path string, r *Receipt) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("attribution: receipt %s: %w", path, err)
	}
	return atomicfile.WriteFile(path, func(w io.Writer) error {
		_, err := w.Write(append(b, '\n'))
		return err
	})
}

// ReadReceipt reads a receipt file (ParseReceipt).
func ReadReceipt(path string) (*Receipt, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("attribution: %w", err)
	}
	r, err := ParseReceipt(b)
	if err != nil {
		return nil, fmt.Errorf("attribution: receipt %s: %w", path, err)
	}
	return r, nil
}

// ParseReceipt decodes a receipt's JSON, refusing unknown fields, trailing
// data and another format. It does not check the receipt (Check does).
func ParseReceipt(b []byte) (*Receipt, error) {
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	var r Receipt
	if err := d.Decode(&r); err != nil {
		return nil, err
	}
	if d.More() {
		return nil, errors.New("data after the receipt")
	}
	if r.Format != ReceiptFormat {
		return nil, fmt.Errorf("format %q, want %q", r.Format, ReceiptFormat)
	}
	return &r, nil
}

// Version returns the version of this library as the run manifest records
// it: the module's version in the build, "(devel)" when built from a
// working tree.
func Version() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		const path = "github.com/goinfluence/goinfluence"
		if bi.Main.Path == path {
			return bi.Main.Version
		}
		for _, d := range bi.Deps {
			if d.Path == path {
				return d.Version
			}
		}
	}
	return "(devel)"
}

// fileSHA256 returns the hex SHA-256 of the file at path, read as a
// stream: a checkpoint may be larger than memory.
func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// float64Bytes appends v as little-endian float64 values.
func float64Bytes(b []byte, v []float64) []byte {
	for _, x := range v {
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(x))
	}
	return b
}

var errNoInferences = errors.New("no inferences")

// keccakHex returns keccak256(utf8(s)) in 0x-hex.
func keccakHex(s string) string { return merkle.Keccak256([]byte(s)).Hex() }

// Config returns the configuration c records, for recomputing a receipt.
func (c ConfigJSON) Config() (Config, error) {
	th, err := strconv.ParseFloat(c.Threshold, 64)
	if err != nil {
		return Config{}, fmt.Errorf("manifest: attribution.threshold %q: %w", c.Threshold, err)
	}
	capv, err := decimal(c.Cap)
	if err != nil {
		return Config{}, fmt.Errorf("manifest: attribution.cap: %w", err)
	}
	minv, err := decimal(c.MinPayout)
	if err != nil {
		return Config{}, fmt.Errorf("manifest: attribution.min_payout: %w", err)
	}
	nd, err := strconv.ParseFloat(c.NearDuplicate, 64)
	if err != nil {
		return Config{}, fmt.Errorf("manifest: attribution.near_duplicate_cosine %q: %w", c.NearDuplicate, err)
	}
	return Config{TopK: c.TopK, Threshold: th, NearDuplicate: nd, Split: SplitConfig{
		Shares: Shares{Contributors: c.Contributor, Owner: c.Owner, Stakers: c.Stakers, Platform: c.Platform},
		Cap:    capv, MinPayout: minv, NoInfluence: Destination(c.NoInfluence),
	}}, nil
}
