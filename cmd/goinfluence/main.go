// Command goinfluence scores training examples by their influence on a
// model's outputs, and validates those scores against retraining.
//
// Sign convention: a positive score means the training example is helpful
// (up-weighting it lowers the query loss; removing it raises the query loss
// by about score/N). Negative scores are harmful.
//
// Usage:
//
//	goinfluence demo [--queries N] [--k K] [--png FILE]
//	goinfluence validate loo --dataset breast-cancer|digits|mnist [--method M] [--test-points N] [--remove K] [--json] [--plot FILE.png]
//	goinfluence validate lds --dataset breast-cancer|digits|mnist [--model lr|mlp] [--method M,…] [--subsets 100] [--alpha 0.5] [--output margin|logit-margin|loss] [--cache DIR] [--json] [--plot FILE.png]
//	goinfluence validate auc --dataset breast-cancer|digits|mnist [--model lr|mlp] [--method M,…] [--noise 0.1] [--json] [--plot FILE.png]
//	goinfluence validate quality --dataset mnist [--model lr|mlp] [--method all] [--markdown] [--out-md F] [--out-json F] [--plot-dir DIR]
//	goinfluence validate curvature [--test-points 20] [--json] [--markdown]
//	goinfluence validate rank [--dataset digits|mnist] [--ranks 8,16,32,64] [--precision f64|f32] [--json]
//	goinfluence train|grads …                         (a checkpoint and its gradient files)
//	goinfluence project --grads F --kind rademacher|sjlt|gaussian|kronecker --k K [--k-in K --k-out K] --seed S --out F
//	goinfluence fit --grads F --method ekfac|kfac|diagonal|identity [--mem-limit auto|SIZE|none] --out FACTORS
//	goinfluence score --factors FACTORS --train F --query F [--damping X|heuristic] [--self] [--topk K] [--dtype f32|f64] [--precision f64|f32] --out SCORES
//	goinfluence store build --grads F [--grads F2 …] --out DIR [--kind K --k K --seed S] [--dtype f16|bf16|f32] [--resume]
//	goinfluence store info --store DIR [--verify] [--json]
//	goinfluence store score --store DIR --query F [--factors FACTORS --damping X|heuristic] [--topk 50] [--scores-out F] [--no-verify] --out SCORES
//	goinfluence bench gemm|ekfac|stream [--json]
//
// Errors go to stderr with a non-zero exit status.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"

	// cuda registers the GPU backend with linalg (as database/sql drivers
	// do), so that --backend cuda and GOINFLUENCE_BACKEND=cuda open it and
	// auto picks it when a GPU answers.
	_ "github.com/goinfluence/goinfluence/cuda"
	"github.com/goinfluence/goinfluence/linalg"
)

const usage = `goinfluence: which training examples made a model produce an output.

Scores follow one sign convention: positive = helpful. Up-weighting a training
example with a positive score lowers the query loss; removing it from N
training examples raises the query loss by about score/N.

Commands:
  demo                 train softmax regression on the embedded digits and show,
                       for a few test digits, the most helpful and harmful
                       training digits
  validate loo         leave-one-out validation of exact influence (or --method M)
                       on breast-cancer, digits or mnist
  validate lds         linear datamodeling score (TRAK's protocol): retrain on
                       --subsets random halves, Spearman of summed scores with
                       the measured output; ground truths cached (--cache)
  validate auc         noisy-label detection: flip 10% of labels, retrain, rank
                       training examples by self-influence, ROC AUC
  validate quality     the full table: every method × LOO, LDS, AUC and wall
                       time (default mnist; --model lr|mlp)
  validate curvature   EK-FAC, K-FAC, diagonal and identity against exact
                       influence with the GGN of a digits MLP
  validate projection  EK-FAC in Kronecker-projected spaces against full EK-FAC
  validate rank        EK-FAC with rank-r query gradients against full rank:
                       correlations and scoring time (digits or mnist MLP)
  fit                  fit curvature (ekfac, kfac, diagonal, identity) on a
                       gradient file: goinfluence fit --grads F --method M --out FACTORS
  score                score query against training gradients with fitted factors:
                       goinfluence score --factors FACTORS --train F --query F
                       [--damping X|heuristic] [--self] [--topk K]
                       [--dtype f32|f64] [--precision f64|f32] --out SCORES
  bench gemm           measure GEMM rates of the linear-algebra backends
  bench ekfac          time EK-FAC fit and score stages on a 2048×2048 layer
  bench stream         time streamed top-k scoring of a store against Sgemm
  bench exact          time exact integer scoring of i8 stores against a pass over
                       the same bytes, the int8 kernel and the f16 stream
  bench attribute      attributed inferences per second against an i8 store, and
                       the share of the time outside scoring
  train                train an mlp, softmax or logistic model and save a checkpoint
  grads                write per-example gradients of a checkpoint on a data split
  project              randomly project a gradient file: goinfluence project --grads F
                       --kind rademacher|sjlt|gaussian|kronecker --k K --seed S --out F
  store build          build a sharded store of (projected) training gradients:
                       goinfluence store build --grads F --out DIR [--kind K --k K
                       --seed S] [--dtype f16|bf16|f32|i8] [--resume]
  store info           summarise a store: goinfluence store info --store DIR [--verify] [--json]
  store score          stream a store against queries, keeping the top K per query:
                       goinfluence store score --store DIR --query F [--factors FACTORS]
                       [--topk 50] [--scores-out F] [--no-verify] --out SCORES
  attribute            attribute a batch of inferences to contributors and DataNets,
                       split their fees and write a receipt with Merkle roots:
                       goinfluence attribute --store DIR --registry F --query F
                       --checkpoint F --fee N --out RECEIPT
  verify               check a receipt: goinfluence verify RECEIPT [--store DIR
                       --registry F --query F --checkpoint F] (with the inputs it
                       recomputes it and names the first difference)
  proof                a contributor's payout and Merkle proof, in OpenZeppelin's form:
                       goinfluence proof --receipt R --contributor C --json

No command writes over one of its inputs (an output that is the same file
as an input is refused before any work) or leaves a partial file. fit, score,
project and store build|score check buffers sized from file headers against
--mem-limit (default: 80% of the machine's or cgroup's memory).

Run 'goinfluence COMMAND -h' for a command's flags. Set GOINFLUENCE_BACKEND=
cpu|openblas|cuda to force a backend.
`

// errUsage marks errors that should print usage and exit with status 2.
var errUsage = errors.New("usage")

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	switch {
	case err == nil:
	case errors.Is(err, flag.ErrHelp):
	case errors.Is(err, errUsage):
		fmt.Fprintln(os.Stderr, "goinfluence:", err)
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "goinfluence:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("%w: no command given", errUsage)
	}
	// A backend forced through the environment that cannot open is an
	// error, not a silent fallback to another backend.
	if _, err := linalg.Auto(); err != nil {
		return err
	}
	switch args[0] {
	case "demo":
		return runDemo(ctx, args[1:], stdout, stderr)
	case "validate":
		if len(args) < 2 {
			return fmt.Errorf("%w: validate needs a protocol: loo, lds, auc, quality, curvature, projection or rank", errUsage)
		}
		switch args[1] {
		case "help", "-h", "-help", "--help":
			return groupHelp(stdout, validateUsage)
		case "loo":
			return runValidateLOO(ctx, args[2:], stdout, stderr)
		case "lds":
			return runValidateLDS(ctx, args[2:], stdout, stderr)
		case "auc":
			return runValidateAUC(ctx, args[2:], stdout, stderr)
		case "quality":
			return runValidateQuality(ctx, args[2:], stdout, stderr)
		case "curvature":
			return runValidateCurvature(ctx, args[2:], stdout, stderr)
		case "projection":
			return runValidateProjection(ctx, args[2:], stdout, stderr)
		case "rank":
			return runValidateRank(ctx, args[2:], stdout, stderr)
		}
		return fmt.Errorf("%w: unknown validation protocol %q (have loo, lds, auc, quality, curvature, projection, rank)", errUsage, args[1])
	case "project":
		return runProject(ctx, args[1:], stdout, stderr)
	case "store":
		return runStore(ctx, args[1:], stdout, stderr)
	case "fit":
		return runFit(ctx, args[1:], stdout, stderr)
	case "score":
		return runScore(ctx, args[1:], stdout, stderr)
	case "bench":
		return runBench(ctx, args[1:], stdout, stderr)
	case "attribute":
		return runAttribute(ctx, args[1:], stdout, stderr)
	case "verify":
		return runVerify(ctx, args[1:], stdout, stderr)
	case "proof":
		return runProof(ctx, args[1:], stdout, stderr)
	case "train":
		return runTrain(ctx, args[1:], stdout, stderr)
	case "grads":
		return runGrads(ctx, args[1:], stdout, stderr)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("%w: unknown command %q", errUsage, args[0])
}

// newFlags returns a flag set that reports errors instead of exiting, so
// that run can be tested.
func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("goinfluence "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// parse parses flags and rejects stray arguments.
func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: %s: unexpected argument %q", errUsage, fs.Name(), fs.Arg(0))
	}
	return nil
}
