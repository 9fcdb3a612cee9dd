package merkle_test

import (
	"fmt"
	"log"
	"math/big"

	"github.com/goinfluence/goinfluence/attribution/merkle"
)

// A payout tree of three contributors paid in one batch: its root, and the
// proof a contributor presents to claim the amount.
func Example() {
	batch := merkle.Keccak256([]byte("run 1, batch 7"))
	payouts := []struct {
		contributor string
		amount      int64
	}{
		{"alice", 700},
		{"bob", 200},
		{"carol", 100},
	}
	leaves := make([]merkle.Hash, len(payouts))
	for i, p := range payouts {
		leaf, err := merkle.PayoutLeaf(batch, p.contributor, big.NewInt(p.amount))
		if err != nil {
			log.Fatal(err)
		}
		leaves[i] = leaf
	}
	tree, err := merkle.New(leaves)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("batch:", batch)
	fmt.Println("root: ", tree.Root())

	proof, err := tree.Proof(leaves[1]) // bob's
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("bob's proof:", proof)
	fmt.Println("bob, 200:", merkle.Verify(tree.Root(), leaves[1], proof))
	more, _ := merkle.PayoutLeaf(batch, "bob", big.NewInt(2000))
	fmt.Println("bob, 2000:", merkle.Verify(tree.Root(), more, proof))
	// Output:
	// batch: 0x0a2ff11509da1fe5dae34f385db69b3036ddb362c7e929f363332fca115cc5e9
	// root:  0x0c17ae8bba503741dda137045d2e3ff9931656199c057b2185413e7ab2915014
	// bob's proof: [0x9583b9f5f346dc953b2b300b41e410d9e45ecdff31ea7866127650d19a137e6e 0xbf792f1dc44b180e0b13e536faea33fe5c45e80c910192eb7e29890e79684eab]
	// bob, 200: true
	// bob, 2000: false
}
