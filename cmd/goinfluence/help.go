package main

import (
	"flag"
	"fmt"
	"io"
)

const storeUsage = `goinfluence store: a sharded store of (projected) training gradients.

Subcommands:
  build   goinfluence store build --grads F [--grads F2 …] --out DIR [--kind K --k K --seed S]
          [--dtype f16|bf16|f32] [--shard-rows N] [--resume]
          project and store the gradient files' examples; --resume continues a killed build
  info    goinfluence store info --store DIR [--verify] [--json]
          summarise a store; --verify checks every shard's sha256 now
  score   goinfluence store score --store DIR --query F [--factors F | --hessian raw|trak]
          [--topk 50] [--scores-out F] [--no-verify] --out SCORES
          stream the store against the queries, projected and preconditioned as the
          store was built, keeping the top K per query (positive = helpful)

Run 'goinfluence store SUBCOMMAND -h' for its flags.
`

const validateUsage = `goinfluence validate: influence scores held to retraining.

Protocols:
  loo         leave-one-out: exact (or --method M) influence against retraining without each example
  lds         linear datamodeling score (TRAK's protocol) over random halves of the training set
  auc         noisy-label detection: ROC AUC of self-influence on flipped labels
  quality     every method × LOO, LDS, AUC and wall time (default mnist; --model lr|mlp)
  curvature   EK-FAC, K-FAC, diagonal and identity against exact influence with the GGN
  projection  EK-FAC in Kronecker-projected spaces against full EK-FAC
  rank        EK-FAC with rank-r query gradients against full rank (digits or mnist MLP)

Data sets: breast-cancer, digits (embedded) and mnist (fetched through the Go
module proxy the first time). Run 'goinfluence validate PROTOCOL -h' for its flags.
`

// groupHelp prints the usage of a command group and returns flag.ErrHelp,
// which main turns into exit status 0, as for a command's own -h.
func groupHelp(w io.Writer, text string) error {
	fmt.Fprint(w, text)
	return flag.ErrHelp
}
