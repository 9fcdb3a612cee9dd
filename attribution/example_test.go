package attribution_test

import (
	"fmt"
	"log"
	"math/big"

	"github.com/goinfluence/goinfluence/attribution"
)

// An inference's fee of 1 000 000 units: 40% to the contributors credited
// with influence on it, 30% to the model owner, 20% to the stakers and 10% to
// the platform, at most 250 000 units to any one contributor (alice would
// have 266 666 without the cap; bob and carol share the excess).
func ExampleSplitFee() {
	var credits []attribution.Credit
	for _, c := range []struct {
		contributor string
		score       float64 // the sum of the contributor's positive scores
	}{
		{"alice", 3},
		{"bob", 0.75},
		{"carol", 0.75},
		{"dave", 0}, // no positive influence: not paid
	} {
		w, err := attribution.Weight(c.score)
		if err != nil {
			log.Fatal(err)
		}
		credits = append(credits, attribution.Credit{Contributor: c.contributor, Weight: w})
	}
	cfg := attribution.SplitConfig{
		Shares: attribution.Shares{Contributors: 4000, Owner: 3000, Stakers: 2000, Platform: 1000},
		Cap:    big.NewInt(250_000),
	}
	s, err := attribution.SplitFee(big.NewInt(1_000_000), credits, cfg)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("owner   ", s.Owner)
	fmt.Println("stakers ", s.Stakers)
	fmt.Println("platform", s.Platform)
	for _, p := range s.Contributors {
		fmt.Printf("%-8s %v\n", p.Contributor, p.Amount)
	}
	// Output:
	// owner    300000
	// stakers  200000
	// platform 100000
	// alice    250000
	// bob      75000
	// carol    75000
}
