package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/goinfluence/goinfluence/ekfac"
	"github.com/goinfluence/goinfluence/gradients"
	"github.com/goinfluence/goinfluence/gradients/store"
	"github.com/goinfluence/goinfluence/hessian"
	"github.com/goinfluence/goinfluence/influence"
	"github.com/goinfluence/goinfluence/internal/progress"
	"github.com/goinfluence/goinfluence/linalg"
)

// runStore dispatches goinfluence store build|info|score: a sharded on-disk
// store of (projected) training gradients, scored against queries by
// streaming it chunk by chunk.
func runStore(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: store needs a subcommand: build, info or score", errUsage)
	}
	switch args[0] {
	case "help", "-h", "-help", "--help":
		return groupHelp(stdout, storeUsage)
	case "build":
		return runStoreBuild(ctx, args[1:], stdout, stderr)
	case "info":
		return runStoreInfo(ctx, args[1:], stdout, stderr)
	case "score":
		return runStoreScore(ctx, args[1:], stdout, stderr)
	}
	return fmt.Errorf("%w: unknown store subcommand %q (have build, info, score)", errUsage, args[0])
}

// runStoreBuild reads gradient files chunk by chunk, projects each chunk and
// appends its flattened rows to a store. With --resume it continues a killed
// build: the rows the store already holds are the first rows of the inputs
// and are skipped.
func runStoreBuild(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("store build", stderr)
	var grads pathList
	fs.Var(&grads, "grads", "gradient file(s) to store, in order (repeat the flag or separate with commas); a file without ids gets the examples' positions in the inputs as ids")
	out := fs.String("out", "", "store directory to create, or to continue with --resume (required)")
	pf := addProjectionFlags(fs, "none (the full flattened gradients)")
	dtype := fs.String("dtype", "f16", "element type of the stored rows: f16, bf16, f32, or i8 (int8 with a scale per row: exact integer scoring, DESIGN §11)")
	shardRows := fs.Int("shard-rows", store.DefaultShardRows, "rows per shard file (a resumed build keeps the store's)")
	chunk := fs.Int("chunk", 4096, "examples read and projected at a time (bounds memory; the store does not depend on it)")
	resume := fs.Bool("resume", false, "continue an interrupted build of the same --grads: skip the rows the store already holds")
	mem := addMemLimit(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	switch {
	case len(grads) == 0 || *out == "":
		return fmt.Errorf("%w: store build needs --grads and --out", errUsage)
	case *chunk < 1:
		return fmt.Errorf("%w: store build: --chunk must be at least 1", errUsage)
	case *shardRows < 1:
		return fmt.Errorf("%w: store build: --shard-rows must be at least 1", errUsage)
	}
	if fi, err := os.Stat(*out); err == nil && fi.IsDir() {
		// Shards and manifest are replaced or added in --out.
		if err := checkOutputs("store build", storeDirFiles("--out", *out), paths("--grads", grads...)); err != nil {
			return err
		}
	}
	dt := gradients.DType(strings.ToUpper(*dtype))
	if dt != gradients.F16 && dt != gradients.BF16 && dt != gradients.F32 && dt != gradients.I8 {
		return fmt.Errorf("%w: store build: --dtype %q: want f16, bf16, f32 or i8", errUsage, *dtype)
	}
	spec, err := pf.spec("store build")
	if err != nil {
		return err
	}
	src, err := store.OpenSource(grads...)
	var same *store.SameFileError
	switch {
	case errors.As(err, &same):
		return fmt.Errorf("%w: store build: --grads %v", errUsage, err)
	case err != nil:
		return fmt.Errorf("store build: %w", err)
	}
	defer src.Close()
	// The projections run on the GPU when one answers (bit for bit as on
	// the host).
	opt := store.BuildOptions{DType: dt, ShardRows: *shardRows, Chunk: *chunk, Resume: *resume, CheckProjection: pf.given(),
		MemoryLimit: mem.bytes(), Backend: linalg.Default()}
	cmd := "store build"
	if *resume {
		cmd = "store build --resume"
		if !isSet(fs, "dtype") {
			opt.DType = "" // the store's
		}
	}
	start := time.Now()
	prog := progress.New(stderr)
	tick := func(done, total int) {}
	opt.Start = func(m store.Manifest, resumed int) {
		if resumed > 0 {
			prog.Stage(fmt.Sprintf("store build: resuming %s after its %d committed rows", *out, resumed))
		}
		tick = prog.Counter(fmt.Sprintf("store build: %d examples of %d file(s) into %s, %s, %s projection", src.Len(), len(grads), *out, strings.ToLower(string(m.DType)), m.Projection))
	}
	opt.Progress = func(committed string, done, total int) {
		if prog.TTY() {
			tick(done, total)
		} else {
			fmt.Fprintf(stderr, "store build: %d/%d examples, %s\n", done, total, committed)
		}
	}
	sum, err := store.Build(ctx, *out, src, spec, opt)
	prog.Done()
	var mismatch *store.MismatchError
	switch {
	case errors.As(err, &mismatch) && mismatch.Field == "projection":
		return fmt.Errorf("%s: %s: the flags give projection %s, the store holds %s", cmd, mismatch.Path, mismatch.Asked, mismatch.Have)
	case errors.As(err, &mismatch):
		return fmt.Errorf("%s: %s: --%s %s, the store holds %s", cmd, mismatch.Path, mismatch.Field, mismatch.Asked, mismatch.Have)
	case errors.Is(err, linalg.ErrMemoryLimit):
		return withMemFlag(cmd, err)
	case errors.Is(err, store.ErrExists) && !*resume:
		return fmt.Errorf("store build: %w (use --resume to continue it, or another --out)", err)
	case err != nil:
		return fmt.Errorf("%s: %w", cmd, err)
	}
	m := sum.Manifest
	fmt.Fprintf(stdout, "store build: wrote %s: %d rows (%d added) in %.1f s\n", *out, m.Count, sum.Added, time.Since(start).Seconds())
	return store.Summarize(*out, m).WriteText(stdout)
}

// runStoreInfo prints a store's manifest summary, after checking every
// shard's sha256 with --verify.
func runStoreInfo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("store info", stderr)
	dir := fs.String("store", "", "store directory (required)")
	verify := fs.Bool("verify", false, "also check the sha256 of every shard against the manifest")
	asJSON := fs.Bool("json", false, "print the manifest, bytes on disk and verification as one JSON object")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *dir == "" {
		return fmt.Errorf("%w: store info needs --store", errUsage)
	}
	prog := progress.New(stderr)
	sum, err := store.Info(ctx, *dir, store.InfoOptions{Verify: *verify, Progress: func(stage string, _, _ int) { prog.Stage("store info: " + stage) }})
	var verr *store.VerifyError
	switch {
	case errors.As(err, &verr):
		return fmt.Errorf("store info --verify: %w", verr.Err)
	case err != nil:
		return err
	case *asJSON:
		return sum.WriteJSON(stdout)
	}
	return sum.WriteText(stdout)
}

// runStoreScore scores query gradients against every row of a store,
// streaming the store in chunks, and writes the top and bottom K rows per
// query (and, on request, the full score matrix).
func runStoreScore(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("store score", stderr)
	var dirs, queryPaths, probPaths pathList
	fs.Var(&dirs, "store", "store directory from 'goinfluence store build' (required); several (repeat the flag or separate with commas): one store per checkpoint, holding the same ids, scored as TracIn-CP (--hessian none) or TRAK (--hessian trak)")
	fs.Var(&queryPaths, "query", "gradient file of the query examples, unprojected: they are projected as the store's rows (required); with several stores, one file per store (the queries' gradients at that checkpoint)")
	factorsPath := fs.String("factors", "", "factors from 'goinfluence fit' on gradients projected as the store's (for kronecker: 'goinfluence project --kind kronecker' with the store's sizes and seed); identity when absent; one store only")
	dampingFlag := fs.String("damping", "heuristic", "with --factors: damping δ added to Λ, a number ≥ 0 or heuristic (0.1 × mean Λ per layer); with --hessian raw: δ added to H, a number or heuristic (0.1 × trace(H)/k); with --hessian trak: δ added to ΦᵀΦ, a number or heuristic (0.1 × trace(ΦᵀΦ)/k)")
	hessianFlag := fs.String("hessian", "none", "none; raw: precondition queries with (H + δI)⁻¹, H = (1/N) ΦᵀΦ over each store's rows; trak: TRAK, queries times (ΦᵀΦ + δI)⁻¹ per store, scores averaged over the stores and weighted by the mean of 1 − p(y_t) (--trak-probs); raw and trak take one extra pass over each store")
	lrFlag := fs.String("lr", "", "with several stores and --hessian none: comma-separated learning rates η_c of the checkpoints (TracIn-CP weights; default 1 each)")
	fs.Var(&probPaths, "trak-probs", "with --hessian trak: one file per store from 'goinfluence grads --probs-out' on the training examples at that checkpoint, for TRAK's weights 1 − p(y_t) (default: no weighting)")
	pf := addProjectionFlags(fs, "the store's; when given, must match it")
	topk := fs.Int("topk", 50, "write the K most helpful (topk.*) and K most harmful (bottomk.*) store rows per query")
	chunk := fs.Int("chunk", influence.DefaultChunkRows, "store rows scored at a time (bounds memory; results do not depend on it)")
	scoresOut := fs.String("scores-out", "", "also write the full score matrix (scores F32 [n_query, count], ids I64 [count]) to this file; it is held in memory: 4 × n_query × count bytes")
	out := fs.String("out", "", "scores file to write (safetensors; required)")
	dtypeFlag := fs.String("dtype", "f32", "element type of the scores written: f32 (f64 is refused: a store's scores are computed in float32, so it would only widen them; 'goinfluence score --dtype f64' keeps float64 scores)")
	precisionFlag := fs.String("precision", "f64", "with --factors: the queries' rotations into and out of the eigenbasis in f64 or f32 (float32 GEMMs; the store's rows are scored as their dtype asks either way)")
	backend := fs.String("backend", "auto", "linear-algebra backend: auto, cpu, openblas or cuda")
	noVerify := fs.Bool("no-verify", false, "skip the check of every shard's sha256 against the manifest before its rows are first read (one extra sequential pass over each shard); a corrupt shard is then scored without complaint")
	mem := addMemLimit(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	nc := len(dirs)
	switch {
	case nc == 0 || len(queryPaths) == 0 || *out == "":
		return fmt.Errorf("%w: store score needs --store, --query and --out", errUsage)
	case len(queryPaths) != nc:
		return fmt.Errorf("%w: store score: %d --query files for %d stores: give one per store", errUsage, len(queryPaths), nc)
	case *topk < 1:
		return fmt.Errorf("%w: store score: --topk must be at least 1", errUsage)
	case *chunk < 1:
		return fmt.Errorf("%w: store score: --chunk must be at least 1", errUsage)
	case *hessianFlag != "none" && *hessianFlag != "raw" && *hessianFlag != "trak":
		return fmt.Errorf("%w: store score: --hessian %q: want none, raw or trak", errUsage, *hessianFlag)
	case *hessianFlag != "none" && *factorsPath != "":
		return fmt.Errorf("%w: store score: --hessian %s and --factors are two preconditioners; choose one", errUsage, *hessianFlag)
	case *factorsPath != "" && nc > 1:
		return fmt.Errorf("%w: store score: --factors takes one store, not %d", errUsage, nc)
	case *factorsPath == "" && isSet(fs, "precision"):
		return fmt.Errorf("%w: store score: --precision applies to the queries' preconditioning with --factors", errUsage)
	case *factorsPath == "" && *hessianFlag == "none" && isSet(fs, "damping"):
		return fmt.Errorf("%w: store score: --damping needs --factors or --hessian raw|trak", errUsage)
	case *lrFlag != "" && (*hessianFlag != "none" || *factorsPath != ""):
		return fmt.Errorf("%w: store score: --lr weighs checkpoints for TracIn-CP: it needs --hessian none and no --factors", errUsage)
	case len(probPaths) > 0 && *hessianFlag != "trak":
		return fmt.Errorf("%w: store score: --trak-probs needs --hessian trak", errUsage)
	case len(probPaths) > 0 && len(probPaths) != nc:
		return fmt.Errorf("%w: store score: %d --trak-probs files for %d stores: give one per store", errUsage, len(probPaths), nc)
	}
	switch dtype, err := influence.ParseScoresDType(*dtypeFlag); {
	case err != nil:
		return fmt.Errorf("%w: store score: --dtype: %v", errUsage, err)
	case dtype != influence.ScoresF32:
		return fmt.Errorf("%w: store score: --dtype %s: a store's scores are computed in float32, so float64 would only widen them; use 'goinfluence score --dtype f64' for float64 scores", errUsage, dtype)
	}
	inputs := append(paths("--query", queryPaths...), append(paths("--factors", *factorsPath), paths("--trak-probs", probPaths...)...)...)
	for _, dir := range dirs {
		inputs = append(inputs, storeDirFiles("--store", dir)...)
	}
	if err := checkOutputs("store score", append(paths("--out", *out), paths("--scores-out", *scoresOut)...), inputs); err != nil {
		return err
	}
	damping, err := hessian.ParseDamping(*dampingFlag)
	if err != nil {
		return fmt.Errorf("%w: store score: --damping: %v", errUsage, err)
	}
	lrs := make([]float64, nc)
	for c := range lrs {
		lrs[c] = 1
	}
	if *lrFlag != "" {
		f := strings.Split(*lrFlag, ",")
		if len(f) != nc {
			return fmt.Errorf("%w: store score: --lr has %d values for %d stores", errUsage, len(f), nc)
		}
		for c, v := range f {
			x, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil || !(x >= 0) || math.IsInf(x, 0) {
				return fmt.Errorf("%w: store score: --lr value %q is not a finite number ≥ 0", errUsage, v)
			}
			lrs[c] = x
		}
	}
	spec, err := pf.spec("store score")
	if err != nil {
		return err
	}
	precision, err := ekfac.ParsePrecision(*precisionFlag)
	if err != nil {
		return fmt.Errorf("%w: store score: %v", errUsage, err)
	}
	be, err := openBackend(*backend)
	if err != nil {
		return err
	}
	start := time.Now()
	prog := progress.New(stderr)

	var method influence.StoreMethod
	var factors *ekfac.Factors
	switch {
	case *factorsPath != "":
		if factors, err = ekfac.Load(*factorsPath); err != nil {
			return err
		}
		method = influence.StoreFactors{Factors: factors, Damping: damping, MemoryLimit: mem.bytes(), Precision: precision}
	case *hessianFlag == "raw":
		method = influence.StoreRawHessian{Damping: damping}
	case *hessianFlag == "trak":
		if !damping.Heuristic && damping.Value == 0 {
			return fmt.Errorf("%w: store score: --hessian trak needs --damping > 0 or heuristic", errUsage)
		}
		m := influence.StoreTRAK{Damping: damping}
		for _, path := range probPaths {
			byID, err := influence.ReadProbs(path)
			if err != nil {
				return fmt.Errorf("store score: %w", err)
			}
			m.Probs = append(m.Probs, byID)
		}
		method = m
	case nc > 1:
		method = influence.StoreTracIn{LR: lrs}
	default:
		method = influence.StoreIdentity{}
	}
	stores := make([]*store.Store, nc)
	for c, dir := range dirs {
		s, err := store.OpenWith(dir, store.OpenOptions{NoVerify: *noVerify})
		if err != nil {
			return err
		}
		defer s.Close()
		stores[c] = s
		if m := s.Manifest(); pf.given() && !spec.Equal(m.Projection) {
			return fmt.Errorf("store score: the flags give projection %s, %s holds %s",
				spec, filepath.Join(dir, store.ManifestName), m.Projection)
		}
	}
	// The queries are read, and checked against the stores, before the
	// passes over the stores that opening the scorer may take.
	queries := make([]*gradients.Batch, nc)
	for c, path := range queryPaths {
		if queries[c], err = readStoreQuery(path, dirs[c], stores[c].Manifest(), mem.bytes()); err != nil {
			return err
		}
		if c > 0 && queries[c].N != queries[0].N {
			return fmt.Errorf("store score: %s has %d queries, %s %d: the query files must hold the same examples", path, queries[c].N, queryPaths[0], queries[0].N)
		}
	}
	nq, count := queries[0].N, stores[0].Count()
	scorer, err := influence.OpenStoreScorer(ctx, be, influence.StoreScorerOptions{Stores: stores, Method: method, TopK: *topk, ChunkRows: *chunk,
		FullScores: *scoresOut != "", MemoryLimit: mem.bytes(), Progress: func(stage string, _, _ int) { prog.Stage("store score: " + stage) }})
	if err != nil {
		return fmt.Errorf("store score: %w", err)
	}
	m := stores[0].Manifest()
	what := fmt.Sprintf("%s (%s, dim %d, %s projection)", dirs[0], strings.ToLower(string(m.DType)), m.Dim, m.Projection)
	if nc > 1 {
		what = fmt.Sprintf("%d checkpoint stores %s", nc, strings.Join(dirs, ","))
	}
	stageMethod := scorer.Method()
	if factors != nil {
		stageMethod += ", δ = " + damping.String()
	}
	prog.Stage(fmt.Sprintf("store score: %d queries × %d rows of %s, %s", nq, count, what, stageMethod))
	res, err := scorer.Score(ctx, queries...)
	if err != nil {
		err = fmt.Errorf("store score: %s: %w", strings.Join(dirs, ","), err)
		if errors.Is(err, linalg.ErrMemoryLimit) {
			return fmt.Errorf("%w (--mem-limit)", err)
		}
		return err
	}

	meta := scorer.Metadata()
	meta["query"] = strings.Join(queryPaths, ",")
	meta["factors"] = *factorsPath
	if precision != ekfac.F64 {
		meta["precision"] = precision.String()
	}
	if len(probPaths) > 0 {
		meta["trak_probs"] = strings.Join(probPaths, ",")
	}
	k := min(*topk, count)
	exact := m.DType == gradients.I8
	if exact {
		meta["kernel"] = res.Kernel
	}
	if err := influence.WriteScores(*out, &influence.ScoresFile{Metadata: meta, Rankings: res.Rankings, K: k, RankingIDs: true, RankingISums: exact}); err != nil {
		return err
	}
	wrote := *out
	if *scoresOut != "" {
		if err := influence.WriteScores(*scoresOut, &influence.ScoresFile{Metadata: meta, Scores: res.Scores, IDs: res.IDs}); err != nil {
			return err
		}
		wrote += " and " + *scoresOut
	}
	on := be.Name()
	if exact {
		on = fmt.Sprintf("exact int8 sums (%s kernel)", res.Kernel)
	}
	prog.Stage(fmt.Sprintf("store score: %d queries × %d rows in %.1f s (streaming %.2f s) on %s; wrote %s",
		nq, count, time.Since(start).Seconds(), res.Seconds, on, wrote))
	return nil
}

// readStoreQuery reads a query gradient file after checking, from its
// header, that its layers are those the store was built from.
func readStoreQuery(path, dir string, m store.Manifest, memLimit int64) (*gradients.Batch, error) {
	qf, err := gradients.Open(path)
	if err != nil {
		return nil, err
	}
	defer qf.Close()
	if err := m.CheckInput(qf.Layers()); err != nil {
		return nil, fmt.Errorf("store score: %s against %s: %w", path, filepath.Join(dir, store.ManifestName), err)
	}
	b, err := qf.ReadLimit(0, qf.N(), memLimit)
	return b, withMemFlag("store score", err)
}

// projectionFlags are the flags naming a projection, shared by store build
// and store score. They parse as goinfluence project's do, with kind none
// for the full gradients.
type projectionFlags struct {
	fs           *flag.FlagSet
	kind         *string
	k, kIn, kOut *int
	seed         *uint64
}

func addProjectionFlags(fs *flag.FlagSet, kindDefault string) *projectionFlags {
	return &projectionFlags{
		fs:   fs,
		kind: fs.String("kind", "", "projection: none, rademacher, sjlt, gaussian or kronecker; default "+kindDefault),
		k:    fs.Int("k", 0, "output dimension per layer; for kronecker the default of --k-in and --k-out"),
		kIn:  fs.Int("k-in", 0, "kronecker: projected activation dimension per layer"),
		kOut: fs.Int("k-out", 0, "kronecker: projected output-gradient dimension per layer"),
		seed: fs.Uint64("seed", 0, "seed of the projection matrices (below 2⁶³)"),
	}
}

// given reports whether any projection flag was set.
func (pf *projectionFlags) given() bool {
	for _, name := range []string{"kind", "k", "k-in", "k-out", "seed"} {
		if isSet(pf.fs, name) {
			return true
		}
	}
	return false
}

// spec returns the projection the flags name, as a store records it. No
// --kind means none.
func (pf *projectionFlags) spec(cmd string) (gradients.Projection, error) {
	sized := isSet(pf.fs, "k") || isSet(pf.fs, "k-in") || isSet(pf.fs, "k-out") || isSet(pf.fs, "seed")
	if *pf.kind == "" || strings.EqualFold(*pf.kind, "none") {
		if sized {
			return gradients.Projection{}, fmt.Errorf("%w: %s: --k, --k-in, --k-out and --seed need a projection --kind", errUsage, cmd)
		}
		return gradients.Projection{}, nil
	}
	kind, err := gradients.ParseProjectionKind(*pf.kind)
	if err != nil {
		return gradients.Projection{}, fmt.Errorf("%w: %s: --kind: %v (or none)", errUsage, cmd, err)
	}
	p := gradients.Projection{Kind: kind, Seed: *pf.seed}
	if kind == gradients.Kronecker {
		p.KIn, p.KOut = *pf.k, *pf.k
		if isSet(pf.fs, "k-in") {
			p.KIn = *pf.kIn
		}
		if isSet(pf.fs, "k-out") {
			p.KOut = *pf.kOut
		}
		if p.KIn < 1 || p.KOut < 1 {
			return gradients.Projection{}, fmt.Errorf("%w: %s: kronecker needs --k-in and --k-out (or --k for both) of at least 1, have %d and %d", errUsage, cmd, p.KIn, p.KOut)
		}
	} else {
		if isSet(pf.fs, "k-in") || isSet(pf.fs, "k-out") {
			return gradients.Projection{}, fmt.Errorf("%w: %s: --k-in and --k-out are for kronecker; %s takes --k", errUsage, cmd, kind)
		}
		if *pf.k < 1 {
			return gradients.Projection{}, fmt.Errorf("%w: %s: %s needs --k of at least 1", errUsage, cmd, kind)
		}
		p.K = *pf.k
	}
	if max(p.K, p.KIn, p.KOut) > gradients.MaxProjectionDim {
		return gradients.Projection{}, fmt.Errorf("%w: %s: output dimension above %d", errUsage, cmd, gradients.MaxProjectionDim)
	}
	if *pf.seed > math.MaxInt64 {
		return gradients.Projection{}, fmt.Errorf("%w: %s: --seed %d: a store records seeds below 2⁶³", errUsage, cmd, *pf.seed)
	}
	return p, nil
}
