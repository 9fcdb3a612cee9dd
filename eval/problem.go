package eval

import (
	"context"
	"fmt"

	"github.com/goinfluence/goinfluence/datasets"
	"github.com/goinfluence/goinfluence/models"
)

// Problem is a data set split into training and test examples with a convex
// model trained to its optimum on the training part: the setting in which
// influence functions are exact to first order and leave-one-out retraining
// can check them.
type Problem struct {
	Name        string
	Train, Test *datasets.Dataset
	Model       models.Model
	// Fit is how training ended (gradient norm at the optimum).
	Fit models.NewtonResult
}

// Default L2 strengths (λ on the mean loss, biases included).
const (
	// BreastCancerL2 keeps the logistic-regression Hessian on standardised
	// features well conditioned; the data are nearly separable, so without
	// it the optimum runs off to infinity.
	BreastCancerL2 = 1e-2
	// DigitsL2 is the strength at which published independent
	// implementations report their LOO correlations for softmax regression.
	DigitsL2 = 1e-2
)

// NewProblem loads a built-in data set ("breast-cancer" or "digits"), splits
// it 80/20 with a seeded shuffle, prepares the features (breast cancer
// standardised with training statistics, digit pixels scaled to [0, 1]) and
// trains the model by Newton's method: logistic regression for breast cancer,
// softmax regression for digits. l2 ≤ 0 selects the default for the data set.
func NewProblem(ctx context.Context, name string, l2 float64, seed uint64) (*Problem, error) {
	d, err := datasets.ByName(name)
	if err != nil {
		return nil, err
	}
	nTrain := d.Len() * 4 / 5
	var m models.Model
	switch d.Name {
	case "breast-cancer":
		if l2 <= 0 {
			l2 = BreastCancerL2
		}
		m = models.NewLogistic(d.X.Cols, l2)
	case "digits":
		if l2 <= 0 {
			l2 = DigitsL2
		}
		d = d.Scaled(1.0 / 16)
		m = models.NewSoftmax(d.X.Cols, d.Classes, l2)
	default:
		return nil, fmt.Errorf("eval: no problem defined for data set %q", d.Name)
	}
	train, test, err := d.Split(nTrain, seed)
	if err != nil {
		return nil, err
	}
	if d.Name == "breast-cancer" {
		sc := datasets.FitScaler(train.X)
		train.X, test.X = sc.Transform(train.X), sc.Transform(test.X)
	}
	res, err := models.FitNewton(ctx, m, train.X, train.Y, nil, models.NewtonOptions{})
	if err != nil {
		return nil, fmt.Errorf("eval: training %s on %s: %w", m.Kind(), d.Name, err)
	}
	return &Problem{Name: d.Name, Train: train, Test: test, Model: m, Fit: res}, nil
}
