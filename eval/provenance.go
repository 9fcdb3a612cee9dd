package eval

import (
	"fmt"

	"github.com/goinfluence/goinfluence/datasets"
)

// Preparation names LoadSplit's preparation in provenance records. Bump the
// version whenever LoadSplit would give other rows or features for the same
// name and seed, so that checkpoints trained before cannot be paired with
// the new data unnoticed.
const Preparation = "eval.LoadSplit/v1"

// SplitProvenance returns the provenance record of a split made by
// LoadSplit(name, seed): the data set, Preparation with the parameters of
// the data set's preparation, the split seed, fraction and sizes.
func SplitProvenance(train, test *datasets.Dataset, seed uint64) (datasets.Provenance, error) {
	var params string
	switch train.Name {
	case "digits":
		params = "pixels scaled by 1/16"
	case "breast-cancer":
		params = "features standardised with the training part's mean and standard deviation"
	default:
		return datasets.Provenance{}, fmt.Errorf("eval: no preparation defined for data set %q", train.Name)
	}
	return datasets.Provenance{
		Dataset: train.Name, Preparation: Preparation, Params: params,
		Features: train.X.Cols, Classes: train.Classes,
		SplitSeed: seed, TrainFraction: "4/5",
		Train: train.Len(), Test: test.Len(),
	}, nil
}
