package attribution

import (
	"fmt"
	"math/big"
	"math/rand/v2"
	"strings"
	"testing"
)

// num parses a decimal or an expression 2^e, 2^e-1 or 2^e+1.
func num(s string) *big.Int {
	if e, ok := strings.CutPrefix(s, "2^"); ok {
		var p, d int64
		if i := strings.IndexAny(e, "+-"); i >= 0 {
			fmt.Sscan(e[i:], &d)
			e = e[:i]
		}
		fmt.Sscan(e, &p)
		x := new(big.Int).Lsh(big.NewInt(1), uint(p))
		return x.Add(x, big.NewInt(d))
	}
	x, ok := new(big.Int).SetString(s, 10)
	if !ok {
		panic("bad number " + s)
	}
	return x
}

// credits builds credits from "name:weight" pairs.
func credits(pairs ...string) []Credit {
	var cs []Credit
	for _, p := range pairs {
		name, w, _ := strings.Cut(p, ":")
		cs = append(cs, Credit{Contributor: name, Weight: num(w)})
	}
	return cs
}

// format writes a split as "owner stakers platform unpaid | a=1 b=2".
func format(s *Split) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%v %v %v %v |", s.Owner, s.Stakers, s.Platform, s.Unpaid)
	for _, p := range s.Contributors {
		fmt.Fprintf(&b, " %s=%v", p.Contributor, p.Amount)
	}
	return b.String()
}

func TestSplitFee(t *testing.T) {
	half := Shares{Contributors: 5000, Owner: 2000, Stakers: 2000, Platform: 1000}
	all := Shares{Contributors: 10000}
	for _, tc := range []struct {
		name    string
		fee     string
		credits []Credit
		cfg     SplitConfig
		want    string
	}{
		{"ties by id", "10000", credits("c:1", "b:1", "a:1"), SplitConfig{Shares: half},
			"2000 2000 1000 0 | a=1667 b=1667 c=1666"},
		{"largest remainders", "10", credits("c:4", "a:1", "b:2"), SplitConfig{Shares: all},
			"0 0 0 0 | a=1 b=3 c=6"},
		{"ties in byte order", "1", credits("a:1", "B:1"), SplitConfig{Shares: all},
			"0 0 0 0 | B=1"},
		{"remainders compared as integers", "7", credits("a:1", "b:1", "c:1", "d:2"), SplitConfig{Shares: all},
			// W 5: a, b, c 7/5 = 1 r2; d 14/5 = 2 r4; left 2: d, then a.
			"0 0 0 0 | a=2 b=1 c=1 d=3"},
		{"dust to the platform", "999", credits("a:1"), SplitConfig{Shares: Shares{Contributors: 3333, Owner: 3333, Stakers: 3334}},
			"332 333 2 0 | a=332"},
		{"one contributor", "12345", credits("solo:7"), SplitConfig{Shares: half},
			"2469 2469 1235 0 | solo=6172"},
		{"zero weight dropped", "100", credits("a:0", "b:5"), SplitConfig{Shares: all},
			"0 0 0 0 | b=100"},
		{"amount 0 not listed", "2", credits("a:10", "b:10", "c:1"), SplitConfig{Shares: all},
			"0 0 0 0 | a=1 b=1"},
		{"no credits to platform", "100", nil, SplitConfig{Shares: half},
			"20 20 60 50 |"},
		{"no influence to owner", "100", credits("a:0"), SplitConfig{Shares: half, NoInfluence: DestinationOwner},
			"70 20 10 50 |"},
		{"no influence to stakers", "100", credits("a:0", "b:0"), SplitConfig{Shares: half, NoInfluence: DestinationStakers},
			"20 70 10 50 |"},
		{"no influence to platform", "100", nil, SplitConfig{Shares: half, NoInfluence: DestinationPlatform},
			"20 20 60 50 |"},
		{"fee 0", "0", credits("a:1", "b:2"), SplitConfig{Shares: half},
			"0 0 0 0 |"},
		{"cap with redistribution", "100", credits("a:6", "b:3", "c:1"), SplitConfig{Shares: all, Cap: big.NewInt(40)},
			"0 0 0 0 | a=40 b=40 c=20"},
		{"cap not reached", "100", credits("a:6", "b:3", "c:1"), SplitConfig{Shares: all, Cap: big.NewInt(60)},
			"0 0 0 0 | a=60 b=30 c=10"},
		{"cap 0 is none", "100", credits("a:6", "b:3", "c:1"), SplitConfig{Shares: all, Cap: new(big.Int)},
			"0 0 0 0 | a=60 b=30 c=10"},
		{"all capped", "100", credits("a:1", "b:1"), SplitConfig{Shares: all, Cap: big.NewInt(30), NoInfluence: DestinationOwner},
			"40 0 0 40 | a=30 b=30"},
		{"capped by rounding", "10", credits("a:1", "b:1", "c:1"), SplitConfig{Shares: all, Cap: big.NewInt(3)},
			// 4 3 3: a capped; 7 over b, c: 4 3: b capped; 4 to c: capped.
			"0 0 1 1 | a=3 b=3 c=3"},
		{"min payout", "100", credits("a:90", "b:7", "c:3"), SplitConfig{Shares: all, MinPayout: big.NewInt(5)},
			// c dropped; 100 over 90, 7: 92 r76, 7 r21, left 1 to a.
			"0 0 0 0 | a=93 b=7"},
		{"min payout met", "100", credits("a:90", "b:7", "c:3"), SplitConfig{Shares: all, MinPayout: big.NewInt(3)},
			"0 0 0 0 | a=90 b=7 c=3"},
		{"min payout drops amounts of 0", "2", credits("a:10", "b:10", "c:1"), SplitConfig{Shares: all, MinPayout: big.NewInt(1)},
			"0 0 0 0 | a=1 b=1"},
		{"min payout leaves nobody", "10", credits("a:1", "b:1"), SplitConfig{Shares: all, MinPayout: big.NewInt(6), NoInfluence: DestinationStakers},
			"0 10 0 10 |"},
		{"min payout then cap", "100", credits("a:50", "b:45", "c:5"), SplitConfig{Shares: all, Cap: big.NewInt(50), MinPayout: big.NewInt(10)},
			// c dropped; 100 over 50, 45: 53 47; a capped, 50 to b.
			"0 0 0 0 | a=50 b=50"},
		{"min payout above cap", "100", credits("a:1", "b:1"), SplitConfig{Shares: all, Cap: big.NewInt(10), MinPayout: big.NewInt(20)},
			"0 0 100 100 |"},
		{"largest fee", "2^256-1", credits("a:2^300", "b:2^300"), SplitConfig{Shares: all},
			"0 0 0 0 | a=" + num("2^255").String() + " b=" + num("2^255-1").String()},
		{"largest fee shared", "2^256-1", credits("x:2^1000"), SplitConfig{Shares: Shares{Contributors: 5000, Owner: 2500, Stakers: 2500}},
			num("2^254-1").String() + " " + num("2^254-1").String() + " 2 0 | x=" + num("2^255-1").String()},
		{"largest fee uneven", "2^256-1", credits("a:2^255", "b:2^255+1"), SplitConfig{Shares: all},
			// W = 2^256+1: a 2^255−1 r1, b 2^255−1 r2^256; the unit left to b.
			"0 0 0 0 | a=" + num("2^255-1").String() + " b=" + num("2^255").String()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := SplitFee(num(tc.fee), tc.credits, tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			if got := format(s); got != tc.want {
				t.Errorf("split\n got %s\nwant %s", got, tc.want)
			}
		})
	}
}

func TestSplitFeeErrors(t *testing.T) {
	ok := SplitConfig{Shares: Shares{Contributors: 10000}}
	for _, tc := range []struct {
		name    string
		fee     *big.Int
		credits []Credit
		cfg     SplitConfig
		msg     string
	}{
		{"nil fee", nil, nil, ok, "fee <nil> outside"},
		{"negative fee", big.NewInt(-1), nil, ok, "fee -1 outside"},
		{"fee 2^256", num("2^256"), nil, ok, "outside [0, 2^256)"},
		{"duplicate contributor", big.NewInt(1), credits("a:1", "b:2", "a:0"), ok, `contributor "a" credited twice`},
		{"negative weight", big.NewInt(1), credits("a:1", "b:-2"), ok, `contributor "b": weight -2`},
		{"nil weight", big.NewInt(1), []Credit{{Contributor: "a"}}, ok, `contributor "a": weight <nil>`},
		{"empty contributor", big.NewInt(1), credits(":1"), ok, "empty contributor"},
		{"bad config", big.NewInt(1), nil, SplitConfig{}, "sum to 0 basis points"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := SplitFee(tc.fee, tc.credits, tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("SplitFee = %v, %v; want an error with %q", s, err, tc.msg)
			}
		})
	}
}

func TestSplitConfigCheck(t *testing.T) {
	const max = 1<<32 - 1
	for _, tc := range []struct {
		name string
		cfg  SplitConfig
		msg  string // "" for none
	}{
		{"valid", SplitConfig{Shares: Shares{2500, 2500, 2500, 2500}, Cap: big.NewInt(5), MinPayout: big.NewInt(1), NoInfluence: DestinationOwner}, ""},
		{"zero cap and min", SplitConfig{Shares: Shares{Platform: 10000}, Cap: new(big.Int), MinPayout: new(big.Int)}, ""},
		{"sum short", SplitConfig{Shares: Shares{2500, 2500, 2500, 2499}}, "sum to 9999 basis points"},
		{"sum over", SplitConfig{Shares: Shares{Contributors: 10001}}, "sum to 10001 basis points"},
		{"sum wraps", SplitConfig{Shares: Shares{max, max, max, 10003}}, "sum to 12884911888 basis points"},
		{"unknown destination", SplitConfig{Shares: Shares{Owner: 10000}, NoInfluence: "burn"}, `unknown destination "burn"`},
		{"destination case", SplitConfig{Shares: Shares{Owner: 10000}, NoInfluence: "Owner"}, `unknown destination "Owner"`},
		{"negative cap", SplitConfig{Shares: Shares{Owner: 10000}, Cap: big.NewInt(-1)}, "negative cap -1"},
		{"negative min payout", SplitConfig{Shares: Shares{Owner: 10000}, MinPayout: big.NewInt(-3)}, "negative minimum payout -3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Check()
			switch {
			case tc.msg == "" && err != nil:
				t.Errorf("Check: %v", err)
			case tc.msg != "" && (err == nil || !strings.Contains(err.Error(), tc.msg)):
				t.Errorf("Check = %v, want an error with %q", err, tc.msg)
			}
		})
	}
}

// randomCase draws a fee, shares and credits: many small weights, ties, zeros
// and weights of up to 300 bits.
func randomCase(rng *rand.Rand) (*big.Int, []Credit, Shares) {
	fee := randInt(rng, rng.IntN(257))
	if rng.IntN(10) == 0 {
		fee = num("2^256-1")
	}
	cut := []uint32{uint32(rng.IntN(10001)), uint32(rng.IntN(10001)), uint32(rng.IntN(10001))}
	if cut[0] > cut[1] {
		cut[0], cut[1] = cut[1], cut[0]
	}
	if cut[1] > cut[2] {
		cut[1], cut[2] = cut[2], cut[1]
	}
	if cut[0] > cut[1] {
		cut[0], cut[1] = cut[1], cut[0]
	}
	sh := Shares{Contributors: cut[0], Owner: cut[1] - cut[0], Stakers: cut[2] - cut[1], Platform: 10000 - cut[2]}
	if rng.IntN(4) == 0 {
		sh.Contributors, sh.Platform = sh.Contributors+sh.Platform, 0
	}
	n := rng.IntN(30)
	var cs []Credit
	bits := []int{0, 2, 8, 32, 64, 300}[rng.IntN(6)]
	for i := range n {
		var w *big.Int
		switch rng.IntN(6) {
		case 0:
			w = new(big.Int)
		case 1:
			if i > 0 {
				w = new(big.Int).Set(cs[rng.IntN(i)].Weight)
				break
			}
			fallthrough
		default:
			w = randInt(rng, rng.IntN(bits+1))
		}
		cs = append(cs, Credit{Contributor: fmt.Sprintf("c%02d", rng.IntN(1000)) + fmt.Sprint(i), Weight: w})
	}
	return fee, cs, sh
}

// randInt returns a random integer of fewer than bits bits.
func randInt(rng *rand.Rand, bits int) *big.Int {
	x := new(big.Int)
	for i := 0; i < bits; i += 32 {
		x.Lsh(x, 32).Or(x, big.NewInt(int64(rng.Uint32())))
	}
	return x.Rsh(x, uint(max(0, (bits+31)/32*32-bits)))
}

func TestSplitFeeProperties(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	var capped, dropped int // cases where the limits bite
	for i := range 600 {
		fee, cs, sh := randomCase(rng)
		cfg := SplitConfig{Shares: sh, NoInfluence: []Destination{"", DestinationOwner, DestinationStakers, DestinationPlatform}[rng.IntN(4)]}
		withLimits := i%2 == 1
		pool := new(big.Int).Mul(fee, big.NewInt(int64(sh.Contributors)))
		pool.Quo(pool, big.NewInt(10000))
		if withLimits && pool.Sign() > 0 {
			// Limits around the mean payout, so that they bite.
			mean := new(big.Int).Quo(pool, big.NewInt(int64(len(cs)+1)))
			if rng.IntN(3) > 0 {
				cfg.Cap = new(big.Int).Add(randInt(rng, mean.BitLen()+1), big.NewInt(1))
			}
			if rng.IntN(3) > 0 {
				cfg.MinPayout = randInt(rng, mean.BitLen())
			}
		}
		s, err := SplitFee(fee, cs, cfg)
		if err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		// The amounts sum to the fee.
		sum := new(big.Int).Add(s.Owner, s.Stakers)
		sum.Add(sum, s.Platform)
		paid := new(big.Int)
		for j, p := range s.Contributors {
			if p.Amount.Sign() <= 0 || j > 0 && s.Contributors[j-1].Contributor >= p.Contributor {
				t.Fatalf("case %d: contributors %s not ascending with amounts > 0", i, format(s))
			}
			if cfg.Cap != nil && p.Amount.Cmp(cfg.Cap) > 0 || cfg.MinPayout != nil && p.Amount.Cmp(cfg.MinPayout) < 0 {
				t.Fatalf("case %d: %s outside cap %v, min %v", i, format(s), cfg.Cap, cfg.MinPayout)
			}
			paid.Add(paid, p.Amount)
		}
		if sum.Add(sum, paid).Cmp(fee) != 0 {
			t.Fatalf("case %d: amounts sum to %v, fee %v", i, sum, fee)
		}
		if new(big.Int).Add(paid, s.Unpaid).Cmp(pool) != 0 {
			t.Fatalf("case %d: paid %v + unpaid %v ≠ pool %v", i, paid, s.Unpaid, pool)
		}

		// The order of credits does not matter.
		perm := make([]Credit, len(cs))
		for j, k := range rng.Perm(len(cs)) {
			perm[j] = cs[k]
		}
		s2, err := SplitFee(fee, perm, cfg)
		if err != nil || format(s2) != format(s) {
			t.Fatalf("case %d: permuted credits give %s, %v; want %s", i, format(s2), err, format(s))
		}
		if withLimits {
			positive := 0
			for _, c := range cs {
				positive += c.Weight.Sign()
			}
			if cfg.MinPayout != nil && cfg.MinPayout.Sign() > 0 && len(s.Contributors) < positive {
				dropped++
			}
			for _, p := range s.Contributors {
				if cfg.Cap != nil && p.Amount.Cmp(cfg.Cap) == 0 {
					capped++
					break
				}
			}
			continue
		}

		// Without limits: within one unit of the exact share, monotone in
		// the weight, and nothing unpaid unless there is no weight.
		amounts := make(map[string]*big.Int)
		for _, p := range s.Contributors {
			amounts[p.Contributor] = p.Amount
		}
		w := new(big.Int)
		for _, c := range cs {
			w.Add(w, c.Weight)
		}
		if w.Sign() == 0 {
			if s.Unpaid.Cmp(pool) != 0 {
				t.Fatalf("case %d: no weight, unpaid %v, pool %v", i, s.Unpaid, pool)
			}
			continue
		}
		if s.Unpaid.Sign() != 0 {
			t.Fatalf("case %d: unpaid %v without limits", i, s.Unpaid)
		}
		amount := func(c string) *big.Int {
			if a, ok := amounts[c]; ok {
				return a
			}
			return new(big.Int)
		}
		for _, c := range cs {
			// |amount·W − pool·w| < W
			d := new(big.Int).Mul(amount(c.Contributor), w)
			d.Sub(d, new(big.Int).Mul(pool, c.Weight))
			if d.CmpAbs(w) >= 0 {
				t.Fatalf("case %d: %s gets %v, exact share %v/%v", i, c.Contributor, amount(c.Contributor), new(big.Int).Mul(pool, c.Weight), w)
			}
			for _, o := range cs {
				if c.Weight.Cmp(o.Weight) > 0 && amount(c.Contributor).Cmp(amount(o.Contributor)) < 0 {
					t.Fatalf("case %d: %s (weight %v) gets %v, less than %s (weight %v) with %v",
						i, c.Contributor, c.Weight, amount(c.Contributor), o.Contributor, o.Weight, amount(o.Contributor))
				}
			}
		}
	}
	if capped < 30 || dropped < 30 {
		t.Errorf("the cap bit in %d cases, the minimum payout in %d: too few to test them", capped, dropped)
	}
}

func TestSplitFeeDoesNotChangeInputs(t *testing.T) {
	fee := big.NewInt(1000)
	cs := credits("a:3", "b:1")
	cfg := SplitConfig{Shares: Shares{Contributors: 10000}, Cap: big.NewInt(600), MinPayout: big.NewInt(1)}
	s, err := SplitFee(fee, cs, cfg)
	if err != nil {
		t.Fatal(err)
	}
	s.Contributors[0].Amount.SetInt64(0)
	s.Owner.SetInt64(7)
	if fee.Int64() != 1000 || cs[0].Weight.Int64() != 3 || cs[1].Weight.Int64() != 1 || cfg.Cap.Int64() != 600 || cfg.MinPayout.Int64() != 1 {
		t.Errorf("SplitFee or changing its result changed its inputs: fee %v, credits %v, cap %v, min %v", fee, cs, cfg.Cap, cfg.MinPayout)
	}
}
