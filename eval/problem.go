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

// NewProblem loads and splits a built-in data set as datasets.LoadSplit does and
// trains the model by Newton's method: logistic regression for breast
// cancer, softmax regression for digits. l2 ≤ 0 selects the default for the
// data set.
func NewProblem(ctx context.Context, name string, l2 float64, seed uint64) (*Problem, error) {
	train, test, err := datasets.LoadSplit(ctx, name, datasets.SplitOptions{Seed: seed})
	if err != nil {
		return nil, err
	}
	var m models.Model
	switch train.Name {
	case "breast-cancer":
		if l2 <= 0 {
			l2 = BreastCancerL2
		}
		m = models.NewLogistic(train.X.Cols, l2)
	case "digits":
		if l2 <= 0 {
			l2 = DigitsL2
		}
		m = models.NewSoftmax(train.X.Cols, train.Classes, l2)
	default:
		return nil, fmt.Errorf("eval: no problem defined for data set %q", train.Name)
	}
	res, err := models.FitNewton(ctx, m, train.X, train.Y, nil, models.NewtonOptions{})
	if err != nil {
		return nil, fmt.Errorf("eval: training %s on %s: %w", m.Kind(), train.Name, err)
	}
	return &Problem{Name: train.Name, Train: train, Test: test, Model: m, Fit: res}, nil
}
