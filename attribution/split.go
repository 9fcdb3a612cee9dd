package attribution

import (
	"cmp"
	"errors"
	"fmt"
	"math/big"
	"slices"
)

// Shares are the parts of an inference's fee, in basis points (1/10000), that
// go to the contributors' pool, the model owner, the stakers and the
// platform. They sum to 10000.
type Shares struct {
	Contributors, Owner, Stakers, Platform uint32
}

// Destination says who receives the part of the contributors' pool that no
// contributor is paid.
type Destination string

// The destinations of an unpaid pool.
const (
	DestinationOwner    Destination = "owner"
	DestinationStakers  Destination = "stakers"
	DestinationPlatform Destination = "platform"
)

// SplitConfig is the fee configuration of SplitFee.
type SplitConfig struct {
	Shares      Shares
	Cap         *big.Int    // per-contributor cap on one inference's pool payout; nil or 0: none
	MinPayout   *big.Int    // contributor payouts below it are not made; nil or 0: none
	NoInfluence Destination // where the unpaid pool goes; "" means DestinationPlatform
}

// Credit is a contributor's aggregated positive influence on one inference, a
// fixed-point integer ≥ 0 (see Weight).
type Credit struct {
	Contributor string
	Weight      *big.Int
}

// Payout is an amount paid to a contributor.
type Payout struct {
	Contributor string
	Amount      *big.Int
}

// Split is the division of one inference's fee. Owner + Stakers + Platform +
// the sum of the contributors' amounts is the fee.
type Split struct {
	Owner, Stakers, Platform *big.Int

	// Contributors are the contributors paid, ascending by Contributor
	// (byte order), each with an amount > 0.
	Contributors []Payout

	// Unpaid is the part of the contributors' pool paid to no contributor,
	// for the record: it is already included in Owner, Stakers or Platform,
	// as SplitConfig.NoInfluence says.
	Unpaid *big.Int
}

// maxFee is 2^256, the bound (excluded) of fees.
var maxFee = new(big.Int).Lsh(big.NewInt(1), 256)

// Check returns an error when the shares do not sum to 10000 basis points,
// the destination is not one of "", "owner", "stakers" and "platform", or the
// cap or the minimum payout is negative.
func (c SplitConfig) Check() error {
	s := c.Shares
	if sum := uint64(s.Contributors) + uint64(s.Owner) + uint64(s.Stakers) + uint64(s.Platform); sum != 10000 {
		return fmt.Errorf("attribution: shares sum to %d basis points, want 10000", sum)
	}
	switch c.NoInfluence {
	case "", DestinationOwner, DestinationStakers, DestinationPlatform:
	default:
		return fmt.Errorf("attribution: unknown destination %q, want owner, stakers or platform", c.NoInfluence)
	}
	if c.Cap != nil && c.Cap.Sign() < 0 {
		return fmt.Errorf("attribution: negative cap %v", c.Cap)
	}
	if c.MinPayout != nil && c.MinPayout.Sign() < 0 {
		return fmt.Errorf("attribution: negative minimum payout %v", c.MinPayout)
	}
	return nil
}

// SplitFee divides fee, the fee of one inference, between the model owner,
// the stakers, the platform and the contributors credited with influence on
// the inference. Every amount is an integer and together they are fee
// exactly. The rules, which a verifier reproduces to the unit:
//
//  1. Shares. owner = ⌊fee·Owner/10000⌋, stakers = ⌊fee·Stakers/10000⌋,
//     pool = ⌊fee·Contributors/10000⌋ and platform = fee − owner − stakers −
//     pool: the platform takes the rounding dust.
//  2. Credits with weight 0 are dropped; the others are the active
//     contributors.
//  3. Apportionment, the largest-remainder (Hamilton) rule: an amount T is
//     shared among contributors of weights wᵢ with total W > 0 by giving each
//     ⌊T·wᵢ/W⌋, then one unit each to the L = T − Σ⌊T·wᵢ/W⌋ contributors
//     (L is less than their number) with the largest remainders T·wᵢ mod W,
//     compared as integers, ties going to the smaller contributor id (byte
//     order).
//  4. Cap, when Cap > 0. The capped set starts empty. The pool less Cap for
//     each capped contributor is apportioned (rule 3) among the active
//     contributors not capped; those given more than Cap join the capped set
//     and are paid Cap, and the apportionment is done again, until nobody is
//     given more than Cap. When every active contributor is capped, the pool
//     less their Caps is left unpaid. Without a cap, the active contributors
//     are paid the pool apportioned among them.
//  5. Minimum payout, when MinPayout > 0. All active contributors paid less
//     than MinPayout by rule 4 (0 included) leave the active set together,
//     and rule 4 is applied afresh (nobody capped) to those who remain, over
//     the whole pool and their own weights; this repeats until nobody is paid
//     less than MinPayout or nobody remains.
//  6. Whatever of the pool no contributor is paid (all of it when no credit
//     has a positive weight or when rule 5 leaves nobody) is Unpaid, and is
//     added to the owner's, the stakers' or the platform's amount as
//     NoInfluence says.
//
// Only contributors paid more than 0 are listed. fee must be in [0, 2^256);
// contributor ids must be non-empty and unique, weights non-nil and ≥ 0. The
// order of credits does not matter. SplitFee checks cfg (see Check) and, as
// a last defence, that the amounts sum to fee.
func SplitFee(fee *big.Int, credits []Credit, cfg SplitConfig) (*Split, error) {
	if err := cfg.Check(); err != nil {
		return nil, err
	}
	if fee == nil || fee.Sign() < 0 || fee.Cmp(maxFee) >= 0 {
		return nil, fmt.Errorf("attribution: fee %v outside [0, 2^256)", fee)
	}
	active, err := activeCredits(credits)
	if err != nil {
		return nil, err
	}

	share := func(bp uint32) *big.Int {
		x := new(big.Int).Mul(fee, big.NewInt(int64(bp)))
		return x.Quo(x, big.NewInt(10000))
	}
	s := &Split{
		Owner:   share(cfg.Shares.Owner),
		Stakers: share(cfg.Shares.Stakers),
	}
	pool := share(cfg.Shares.Contributors)
	s.Platform = new(big.Int).Sub(fee, s.Owner)
	s.Platform.Sub(s.Platform, s.Stakers)
	s.Platform.Sub(s.Platform, pool)

	capAmount, minPayout := positive(cfg.Cap), positive(cfg.MinPayout)
	for len(active) > 0 {
		allocate(pool, active, capAmount)
		if minPayout == nil {
			break
		}
		keep := slices.DeleteFunc(slices.Clone(active), func(c *credit) bool { return c.amount.Cmp(minPayout) < 0 })
		if len(keep) == len(active) {
			break
		}
		active = keep
	}

	s.Unpaid = new(big.Int).Set(pool)
	for _, c := range active {
		if c.amount.Sign() > 0 {
			s.Contributors = append(s.Contributors, Payout{Contributor: c.contributor, Amount: c.amount})
			s.Unpaid.Sub(s.Unpaid, c.amount)
		}
	}
	switch cfg.NoInfluence {
	case DestinationOwner:
		s.Owner.Add(s.Owner, s.Unpaid)
	case DestinationStakers:
		s.Stakers.Add(s.Stakers, s.Unpaid)
	default:
		s.Platform.Add(s.Platform, s.Unpaid)
	}
	if err := s.check(fee); err != nil {
		return nil, err
	}
	return s, nil
}

// credit is a contributor being apportioned an amount.
type credit struct {
	contributor string
	weight      *big.Int
	amount      *big.Int
	rem         *big.Int // remainder of the last apportionment
}

// activeCredits checks credits and returns those of positive weight, in
// ascending order of contributor id.
func activeCredits(credits []Credit) ([]*credit, error) {
	active := make([]*credit, 0, len(credits))
	seen := make(map[string]bool, len(credits))
	for _, c := range credits {
		switch {
		case c.Contributor == "":
			return nil, errors.New("attribution: credit with an empty contributor id")
		case seen[c.Contributor]:
			return nil, fmt.Errorf("attribution: contributor %q credited twice", c.Contributor)
		case c.Weight == nil || c.Weight.Sign() < 0:
			return nil, fmt.Errorf("attribution: contributor %q: weight %v, want ≥ 0", c.Contributor, c.Weight)
		}
		seen[c.Contributor] = true
		if c.Weight.Sign() > 0 {
			active = append(active, &credit{contributor: c.Contributor, weight: c.Weight, amount: new(big.Int), rem: new(big.Int)})
		}
	}
	slices.SortFunc(active, func(a, b *credit) int { return cmp.Compare(a.contributor, b.contributor) })
	return active, nil
}

// positive returns x when it is > 0, and nil otherwise.
func positive(x *big.Int) *big.Int {
	if x == nil || x.Sign() <= 0 {
		return nil
	}
	return x
}

// allocate pays pool to the credits cs (rule 4 of SplitFee), capping each at
// capAmount unless it is nil.
func allocate(pool *big.Int, cs []*credit, capAmount *big.Int) {
	free := slices.Clone(cs)
	rest := new(big.Int).Set(pool)
	for len(free) > 0 {
		apportion(rest, free)
		if capAmount == nil {
			return
		}
		n := len(free)
		free = slices.DeleteFunc(free, func(c *credit) bool {
			if c.amount.Cmp(capAmount) <= 0 {
				return false
			}
			c.amount.Set(capAmount)
			rest.Sub(rest, capAmount)
			return true
		})
		if len(free) == n {
			return
		}
	}
}

// apportion shares total among cs by the largest-remainder rule (rule 3 of
// SplitFee). cs is in ascending order of contributor id, and their weights
// are positive.
func apportion(total *big.Int, cs []*credit) {
	w := new(big.Int)
	for _, c := range cs {
		w.Add(w, c.weight)
	}
	left := new(big.Int).Set(total)
	for _, c := range cs {
		c.amount.Mul(total, c.weight)
		c.amount.QuoRem(c.amount, w, c.rem)
		left.Sub(left, c.amount)
	}
	// left < len(cs): Σ⌊T·wᵢ/W⌋ > Σ(T·wᵢ/W − 1) = T − len(cs).
	order := slices.Clone(cs)
	slices.SortStableFunc(order, func(a, b *credit) int { return b.rem.Cmp(a.rem) })
	for _, c := range order[:left.Int64()] {
		c.amount.Add(c.amount, big.NewInt(1))
	}
}

// check returns an error unless the amounts of s are ≥ 0 and sum to fee.
func (s *Split) check(fee *big.Int) error {
	sum := new(big.Int)
	for _, x := range []*big.Int{s.Owner, s.Stakers, s.Platform} {
		if x.Sign() < 0 {
			return fmt.Errorf("attribution: internal error: negative amount %v", x)
		}
		sum.Add(sum, x)
	}
	for _, p := range s.Contributors {
		if p.Amount.Sign() <= 0 {
			return fmt.Errorf("attribution: internal error: amount %v to %q", p.Amount, p.Contributor)
		}
		sum.Add(sum, p.Amount)
	}
	if s.Unpaid.Sign() < 0 || sum.Cmp(fee) != 0 {
		return fmt.Errorf("attribution: internal error: amounts sum to %v, fee is %v (unpaid %v)", sum, fee, s.Unpaid)
	}
	return nil
}
