package gradients_test

import (
	"context"
	"fmt"
	"log"
	"testing"

	"github.com/goinfluence/goinfluence/gradients"
)

func TestPhilox4x32KnownAnswers(t *testing.T) {
	const m = 0xffffffff
	tests := []struct {
		name string
		ctr  [4]uint32
		key  [2]uint32
		want [4]uint32
	}{
		// The known-answer vectors of Random123's kat_vectors.
		{"zeros", [4]uint32{}, [2]uint32{}, [4]uint32{0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}},
		{"ones", [4]uint32{m, m, m, m}, [2]uint32{m, m}, [4]uint32{0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}},
	}
	for _, tc := range tests {
		if got := gradients.Philox4x32(tc.ctr, tc.key); got != tc.want {
			t.Errorf("%s: Philox4x32(%08x, %08x) = %08x, want %08x", tc.name, tc.ctr, tc.key, got, tc.want)
		}
	}
}

func TestKey(t *testing.T) {
	tests := []struct {
		seed uint64
		want [2]uint32
	}{
		{0, [2]uint32{0, 0}},
		{42, [2]uint32{42, 0}},
		{0x0123456789abcdef, [2]uint32{0x89abcdef, 0x01234567}},
	}
	for _, tc := range tests {
		if got := gradients.Key(tc.seed); got != tc.want {
			t.Errorf("Key(%#x) = %08x, want %08x", tc.seed, got, tc.want)
		}
	}
}

func ExamplePhilox4x32() {
	// The block that holds the signs of outputs 0…127 of input 0 of the
	// Rademacher matrix of seed 42, layer 0: output j has sign bit
	// (w[j/32] >> (j%32)) & 1.
	w := gradients.Philox4x32([4]uint32{0, 0, 0, 0}, gradients.Key(42))
	fmt.Printf("%08x\n", w)
	for j := range 8 {
		fmt.Print(1-2*int(w[j/32]>>(j%32)&1), " ")
	}
	fmt.Println()
	// Output:
	// [9ceaf053 77f5493b 12bf50ad 5742b3d7]
	// -1 -1 1 1 -1 1 -1 1
}

func ExampleProjection_Apply() {
	// One example with a 2-token factored layer (3 → 2) and a dense bias.
	b := &gradients.Batch{N: 1, IDs: []int64{7}, Layers: []gradients.Layer{
		{Name: "fc", DIn: 3, DOut: 2, Tokens: 2, TokenAxis: true,
			A: []float64{1, 0, 2, 0, 1, 1}, S: []float64{1, -1, 0.5, 2}},
		{Name: "bias", D: 2, Grad: []float64{0.5, -0.5}},
	}}
	p := gradients.Projection{Kind: gradients.Rademacher, K: 4, Seed: 42}
	phi, err := p.Apply(context.Background(), b)
	if err != nil {
		log.Fatal(err)
	}
	for _, l := range phi.Layers {
		fmt.Printf("%s: D=%d %.4f\n", l.Name, l.D, l.Grad)
	}

	// Kronecker keeps the factored form, with smaller sides.
	p = gradients.Projection{Kind: gradients.Kronecker, KIn: 2, KOut: 1, Seed: 42}
	kron, err := p.Apply(context.Background(), &gradients.Batch{N: 1, Layers: b.Layers[:1]})
	if err != nil {
		log.Fatal(err)
	}
	l := kron.Layers[0]
	fmt.Printf("%s: tokens=%d d_in=%d d_out=%d\n", l.Name, l.Tokens, l.DIn, l.DOut)
	// Output:
	// fc: D=4 [-0.5000 1.0000 -1.5000 0.5000]
	// bias: D=4 [0.5000 -0.5000 0.0000 0.0000]
	// fc: tokens=2 d_in=2 d_out=1
}
