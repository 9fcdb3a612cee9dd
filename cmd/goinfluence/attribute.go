package main

import (
	"cmp"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/big"
	"strconv"
	"strings"

	"github.com/goinfluence/goinfluence/attribution"
	"github.com/goinfluence/goinfluence/ekfac"
	"github.com/goinfluence/goinfluence/gradients"
	"github.com/goinfluence/goinfluence/gradients/store"
	"github.com/goinfluence/goinfluence/hessian"
	"github.com/goinfluence/goinfluence/influence"
	"github.com/goinfluence/goinfluence/internal/atomicfile"
)

// attributeInputs are the flags that name a run's inputs, shared by
// 'goinfluence attribute' and 'goinfluence verify'.
type attributeInputs struct {
	store, registry, query, checkpoint, factors, damping, hessian, backend *string
	noVerify                                                               *bool
}

func addAttributeInputs(fs *flag.FlagSet) *attributeInputs {
	return &attributeInputs{
		store:      fs.String("store", "", "the i8 store of the training examples' gradients"),
		registry:   fs.String("registry", "", "registry of example id → contributor, DataNet (CSV id,contributor,datanet[,content_sha256] or JSON Lines)"),
		query:      fs.String("query", "", "gradient file of the inferences' query gradients, one example per inference"),
		checkpoint: fs.String("checkpoint", "", "the model checkpoint the gradients were computed at (hashed into the run manifest)"),
		factors:    fs.String("factors", "", "factors file to precondition the queries with (fitted on gradients projected as the store's rows)"),
		damping:    fs.String("damping", "", "damping of --factors or --hessian raw: a number or heuristic (verify: the receipt's)"),
		hessian:    fs.String("hessian", "none", "none, or raw: (H + δI)⁻¹ of the stored rows"),
		backend:    fs.String("backend", "auto", "linear-algebra backend: auto, cpu, openblas or cuda"),
		noVerify:   fs.Bool("no-verify", false, "skip the check of every shard's sha256 before use"),
	}
}

func (in *attributeInputs) given() bool {
	return *in.store != "" || *in.query != "" || *in.registry != ""
}

// files returns the inputs as paths, for checkOutputs.
func (in *attributeInputs) files() []atomicfile.Path {
	p := append(paths("--registry", *in.registry), paths("--query", *in.query)...)
	p = append(p, paths("--checkpoint", *in.checkpoint)...)
	p = append(p, paths("--factors", *in.factors)...)
	return append(p, storeDirFiles("--store", *in.store)...)
}

// open opens the store, the registry and the queries and the Attributor.
func (in *attributeInputs) open(ctx context.Context, cmd string, cfg attribution.Config, damping string) (*attribution.Attributor, *gradients.Batch, func(), error) {
	switch {
	case *in.store == "" || *in.registry == "" || *in.query == "" || *in.checkpoint == "":
		return nil, nil, nil, fmt.Errorf("%w: %s needs --store, --registry, --query and --checkpoint", errUsage, cmd)
	case *in.hessian != "none" && *in.hessian != "raw":
		return nil, nil, nil, fmt.Errorf("%w: %s: --hessian %q: want none or raw", errUsage, cmd, *in.hessian)
	case *in.hessian == "raw" && *in.factors != "":
		return nil, nil, nil, fmt.Errorf("%w: %s: --hessian raw and --factors are two preconditioners; choose one", errUsage, cmd)
	}
	var d hessian.Damping
	if *in.factors != "" || *in.hessian == "raw" {
		// The receipt's damping, when verifying: "none" is an identity
		// receipt's, and means the default here.
		if damping == "none" {
			damping = ""
		}
		var err error
		if d, err = hessian.ParseDamping(cmp.Or(*in.damping, damping, "heuristic")); err != nil {
			return nil, nil, nil, fmt.Errorf("%w: %s: --damping: %v", errUsage, cmd, err)
		}
	} else if *in.damping != "" {
		return nil, nil, nil, fmt.Errorf("%w: %s: --damping needs --factors or --hessian raw", errUsage, cmd)
	}
	reg, err := attribution.ReadRegistry(*in.registry)
	if err != nil {
		return nil, nil, nil, err
	}
	be, err := openBackend(*in.backend)
	if err != nil {
		return nil, nil, nil, err
	}
	s, err := store.OpenWith(*in.store, store.OpenOptions{NoVerify: *in.noVerify})
	if err != nil {
		return nil, nil, nil, err
	}
	var method influence.StoreMethod = influence.StoreIdentity{}
	switch {
	case *in.factors != "":
		f, err := ekfac.Load(*in.factors)
		if err != nil {
			s.Close()
			return nil, nil, nil, err
		}
		method = influence.StoreFactors{Factors: f, Damping: d}
	case *in.hessian == "raw":
		method = influence.StoreRawHessian{Damping: d}
	}
	q, err := readStoreQuery(*in.query, *in.store, s.Manifest(), 0)
	if err != nil {
		s.Close()
		return nil, nil, nil, err
	}
	a, err := attribution.NewAttributor(ctx, be, influence.StoreScorerOptions{Stores: []*store.Store{s}, Method: method}, reg, cfg,
		attribution.Inputs{Checkpoint: *in.checkpoint, Registry: *in.registry, Factors: *in.factors})
	if err != nil {
		s.Close()
		return nil, nil, nil, fmt.Errorf("%s: %w", cmd, err)
	}
	return a, q, func() { s.Close() }, nil
}

// runAttribute is 'goinfluence attribute': see attribution.Attributor.
func runAttribute(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("attribute", stderr)
	in := addAttributeInputs(fs)
	fee := fs.String("fee", "", "fee of each inference, a non-negative integer (smallest unit, up to 2²⁵⁶−1; required)")
	ids := fs.String("inference-ids", "", "comma-separated ids of the inferences, one per query (default: the query file's ids, else q0, q1, …)")
	topk := fs.Int("topk", attribution.DefaultTopK, "distinct helpful examples credited per inference (exact duplicates count once)")
	threshold := fs.Float64("threshold", 0, "least score credited (scores ≤ 0 never are)")
	nearDup := fs.Float64("near-duplicate", 0, "cosine of stored rows at or above which candidate examples share one credit, as exact duplicates do (0: off)")
	shares := fs.String("shares", "7000,1000,1000,1000", "basis points of the fee for contributors, model owner, stakers and platform (sum 10000)")
	capFlag := fs.String("cap", "0", "per-contributor cap on one inference's payout (0: none); the excess goes to the others")
	minPayout := fs.String("min-payout", "0", "contributor payouts below this are not made and go to the others (0: none)")
	noInfluence := fs.String("no-influence", "platform", "where the contributors' pool goes when no example helped: platform, owner or stakers")
	allowFloat := fs.Bool("allow-float", false, "allow a float store: scores no one can recompute bit for bit; the receipt says so (quantisation none)")
	out := fs.String("out", "", "receipt to write (JSON; required)")
	qualityOut := fs.String("quality-out", "", "also write the per-contributor data-quality report (negative-influence and self-influence outlier examples) as JSON, and print its table")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *out == "" || *fee == "" {
		return fmt.Errorf("%w: attribute needs --fee and --out", errUsage)
	}
	if err := checkOutputs("attribute", append(paths("--out", *out), paths("--quality-out", *qualityOut)...), in.files()); err != nil {
		return err
	}
	f, ok := new(big.Int).SetString(*fee, 10)
	if !ok || f.Sign() < 0 || f.BitLen() > 256 {
		return fmt.Errorf("%w: attribute: --fee %q: want an integer in [0, 2²⁵⁶)", errUsage, *fee)
	}
	split, err := parseSplit(*shares, *capFlag, *minPayout, *noInfluence)
	if err != nil {
		return fmt.Errorf("%w: attribute: %v", errUsage, err)
	}
	cfg := attribution.Config{TopK: *topk, Threshold: *threshold, NearDuplicate: *nearDup, Split: split, AllowFloat: *allowFloat}
	a, q, done, err := in.open(ctx, "attribute", cfg, "")
	if err != nil {
		return err
	}
	defer done()
	infs := make([]attribution.Inference, q.N)
	var names []string
	if *ids != "" {
		names = strings.Split(*ids, ",")
		if len(names) != q.N {
			return fmt.Errorf("%w: attribute: --inference-ids has %d ids for %d queries", errUsage, len(names), q.N)
		}
	}
	for i := range infs {
		switch {
		case names != nil:
			infs[i].ID = strings.TrimSpace(names[i])
		case q.IDs != nil:
			infs[i].ID = strconv.FormatInt(q.IDs[i], 10)
		default:
			infs[i].ID = "q" + strconv.Itoa(i)
		}
		infs[i].Fee = f
	}
	var r *attribution.Receipt
	var rep *attribution.QualityReport
	if *qualityOut == "" {
		r, err = a.Attribute(ctx, infs, q)
	} else {
		r, rep, err = a.AttributeWithQuality(ctx, infs, attribution.QualityOptions{}, q)
	}
	if err != nil {
		return fmt.Errorf("attribute: %w", err)
	}
	if err := attribution.WriteReceipt(*out, r); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "attribute: %d inferences, %d contributors paid; payout_root %s, record_root %s; wrote %s\n",
		len(r.Inferences), len(r.Payouts), r.PayoutRoot.Hex(), r.RecordRoot.Hex(), *out)
	if rep == nil {
		return nil
	}
	if err := atomicfile.WriteFile(*qualityOut, func(w io.Writer) error {
		e := json.NewEncoder(w)
		e.SetIndent("", "  ")
		return e.Encode(rep)
	}); err != nil {
		return err
	}
	return rep.WriteTable(stdout)
}

// parseSplit reads the fee-split flags.
func parseSplit(shares, capFlag, minPayout, dest string) (attribution.SplitConfig, error) {
	var c attribution.SplitConfig
	f := strings.Split(shares, ",")
	if len(f) != 4 {
		return c, fmt.Errorf("--shares %q: want four basis points: contributors,owner,stakers,platform", shares)
	}
	var bp [4]uint32
	for i, v := range f {
		x, err := strconv.ParseUint(strings.TrimSpace(v), 10, 32)
		if err != nil {
			return c, fmt.Errorf("--shares %q: %q is not a whole number of basis points", shares, v)
		}
		bp[i] = uint32(x)
	}
	c.Shares = attribution.Shares{Contributors: bp[0], Owner: bp[1], Stakers: bp[2], Platform: bp[3]}
	var ok bool
	if c.Cap, ok = new(big.Int).SetString(capFlag, 10); !ok || c.Cap.Sign() < 0 {
		return c, fmt.Errorf("--cap %q: want an integer ≥ 0", capFlag)
	}
	if c.MinPayout, ok = new(big.Int).SetString(minPayout, 10); !ok || c.MinPayout.Sign() < 0 {
		return c, fmt.Errorf("--min-payout %q: want an integer ≥ 0", minPayout)
	}
	c.NoInfluence = attribution.Destination(dest)
	return c, c.Check()
}

// runVerify is 'goinfluence verify RECEIPT [inputs…]': see
// attribution.Check and Attributor.Verify.
func runVerify(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		return fmt.Errorf("%w: verify needs a receipt: goinfluence verify RECEIPT [--store … --registry … --query … --checkpoint …]", errUsage)
	}
	path := args[0]
	fs := newFlags("verify", stderr)
	in := addAttributeInputs(fs)
	if err := parse(fs, args[1:]); err != nil {
		return err
	}
	r, err := attribution.ReadReceipt(path)
	if err != nil {
		return err
	}
	if !in.given() {
		if err := attribution.Check(r); err != nil {
			return fmt.Errorf("verify %s: %w", path, err)
		}
		fmt.Fprintf(stdout, "verify: %s is consistent (run id, batch, splits, payouts, both roots); give its inputs to recompute it\n", path)
		return nil
	}
	cfg, err := r.Manifest.Attribution.Config()
	if err != nil {
		return fmt.Errorf("verify %s: %w", path, err)
	}
	a, q, done, err := in.open(ctx, "verify", cfg, r.Manifest.Damping)
	if err != nil {
		return err
	}
	defer done()
	if err := a.Verify(ctx, r, q); err != nil {
		return fmt.Errorf("verify %s: %w", path, err)
	}
	fmt.Fprintf(stdout, "verify: %s recomputed from its inputs: %d inferences, payout_root %s and record_root %s match\n",
		path, len(r.Inferences), r.PayoutRoot.Hex(), r.RecordRoot.Hex())
	return nil
}

// runProof is 'goinfluence proof --receipt R --contributor C --json'.
func runProof(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("proof", stderr)
	path := fs.String("receipt", "", "receipt (JSON; required)")
	contributor := fs.String("contributor", "", "contributor id (required)")
	fs.Bool("json", false, "print JSON (the only output form; accepted for the DESIGN's command line)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *path == "" || *contributor == "" {
		return fmt.Errorf("%w: proof needs --receipt and --contributor", errUsage)
	}
	r, err := attribution.ReadReceipt(*path)
	if err != nil {
		return err
	}
	p, err := attribution.ProofOf(r, *contributor)
	if err != nil {
		return fmt.Errorf("proof: %w", err)
	}
	if err := json.NewEncoder(stdout).Encode(p); err != nil {
		return fmt.Errorf("proof: %w", err)
	}
	return nil
}
