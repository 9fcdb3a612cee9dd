package datasets

import (
	"context"
	"fmt"
)

// Preparation names LoadSplit's preparation in provenance records. Bump the
// version whenever LoadSplit would give other rows or features for the same
// name and options, so that checkpoints trained before cannot be paired with
// the new data unnoticed. The name predates LoadSplit's move from package
// eval and is kept, so that the checkpoints that record it still match.
const Preparation = "eval.LoadSplit/v1"

// SplitOptions configures LoadSplit.
type SplitOptions struct {
	// Seed seeds the shuffle of the 80/20 split of the embedded data
	// sets. MNIST comes split 5000/500 and does not use it.
	Seed uint64
	// MNISTDir is the directory MNIST reads its files from (see MNIST;
	// empty: $GOINFLUENCE_MNIST_DIR or the module cache).
	MNISTDir string
}

// LoadSplit loads a data set by name ("breast-cancer", "digits" or
// "mnist"), splits it into a training and a test part and prepares the
// features: digit pixels scaled to [0, 1] (by 1/16, MNIST's by 1/255),
// breast-cancer features standardised with the statistics of the training
// part only, so that no test information leaks into training. The embedded
// data sets are split 80/20 with a shuffle seeded by opt.Seed. The same name
// and options always give the same rows. Only MNIST uses ctx, to fetch its
// files.
func LoadSplit(ctx context.Context, name string, opt SplitOptions) (train, test *Dataset, err error) {
	if name == "mnist" {
		train, test, err = MNIST(ctx, opt.MNISTDir)
		if err != nil {
			return nil, nil, err
		}
		return train.Scaled(1.0 / 255), test.Scaled(1.0 / 255), nil
	}
	d, err := ByName(name)
	if err != nil {
		return nil, nil, err
	}
	switch d.Name {
	case "breast-cancer":
	case "digits":
		d = d.Scaled(1.0 / 16)
	default:
		return nil, nil, fmt.Errorf("datasets: no preparation defined for data set %q", d.Name)
	}
	train, test, err = d.Split(d.Len()*4/5, opt.Seed)
	if err != nil {
		return nil, nil, err
	}
	if d.Name == "breast-cancer" {
		sc := FitScaler(train.X)
		train.X, test.X = sc.Transform(train.X), sc.Transform(test.X)
	}
	return train, test, nil
}

// SplitProvenance returns the provenance record of a split made by
// LoadSplit with seed: the data set, Preparation with the parameters of the
// data set's preparation, the split seed, fraction and sizes. MNIST's record
// has seed 0 whatever the seed, since its split does not depend on it.
func SplitProvenance(train, test *Dataset, seed uint64) (Provenance, error) {
	var params string
	fraction := "4/5"
	switch train.Name {
	case "digits":
		params = "pixels scaled by 1/16"
	case "breast-cancer":
		params = "features standardised with the training part's mean and standard deviation"
	case "mnist":
		params = "pixels scaled by 1/255"
		fraction = fmt.Sprintf("%d/%d (the files' own split)", MNISTTrain, MNISTTrain+MNISTTest)
		seed = 0
	default:
		return Provenance{}, fmt.Errorf("datasets: no preparation defined for data set %q", train.Name)
	}
	return Provenance{
		Dataset: train.Name, Preparation: Preparation, Params: params,
		Features: train.X.Cols, Classes: train.Classes,
		SplitSeed: seed, TrainFraction: fraction,
		Train: train.Len(), Test: test.Len(),
	}, nil
}
