package merkle

import (
	"errors"
	"math/rand/v2"
	"slices"
	"testing"
)

// randomHashes returns n random hashes.
func randomHashes(rng *rand.Rand, n int) []Hash {
	hs := make([]Hash, n)
	for i := range hs {
		for j := range hs[i] {
			hs[i][j] = byte(rng.Uint32())
		}
	}
	return hs
}

func toRef(hs []Hash) [][32]byte {
	out := make([][32]byte, len(hs))
	for i, h := range hs {
		out[i] = h
	}
	return out
}

// Every proof of random trees of 1..70 leaves passes the independent
// verifier (and Verify); altered proofs, leaves and roots fail both.
func TestProofsAgainstReferenceVerifier(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for n := 1; n <= 70; n++ {
		leaves := randomHashes(rng, n)
		tree, err := New(leaves)
		if err != nil {
			t.Fatal(err)
		}
		root := tree.Root()
		if tree.Len() != n {
			t.Fatalf("n=%d: Len = %d", n, tree.Len())
		}
		for li, leaf := range leaves {
			proof, err := tree.Proof(leaf)
			if err != nil {
				t.Fatalf("n=%d leaf %d: %v", n, li, err)
			}
			if !refVerify(root, leaf, toRef(proof)) || !Verify(root, leaf, proof) {
				t.Fatalf("n=%d leaf %d: proof %v not accepted", n, li, proof)
			}
			reject := func(what string, root, leaf Hash, proof []Hash) {
				t.Helper()
				if refVerify(root, leaf, toRef(proof)) || Verify(root, leaf, proof) {
					t.Fatalf("n=%d leaf %d: %s accepted", n, li, what)
				}
			}
			flip := func(h Hash) Hash {
				h[rng.IntN(32)] ^= 1 << rng.IntN(8)
				return h
			}
			reject("altered leaf", root, flip(leaf), proof)
			reject("altered root", flip(root), leaf, proof)
			if n == 1 {
				continue
			}
			other := leaves[(li+1)%n]
			reject("another leaf", root, other, proof)
			reject("another leaf's proof", root, leaf, mustProof(t, tree, other))
			for k := range proof {
				bad := slices.Clone(proof)
				bad[k] = flip(bad[k])
				reject("altered proof element", root, leaf, bad)
			}
			reject("truncated proof", root, leaf, proof[:len(proof)-1])
			reject("extended proof", root, leaf, append(slices.Clone(proof), flip(root)))
			if len(proof) > 1 {
				sw := slices.Clone(proof)
				sw[0], sw[1] = sw[1], sw[0]
				reject("reordered proof", root, leaf, sw)
			}
		}
	}
}

func mustProof(t *testing.T, tree *Tree, leaf Hash) []Hash {
	t.Helper()
	p, err := tree.Proof(leaf)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// The layout of trees of 1..5 leaves against hand-built arrays and proofs,
// written in terms of the sorted leaves s0 < s1 < … and the independent
// pair hash; the leaves are given to New in another order.
func TestLayout(t *testing.T) {
	h := func(a, b Hash) Hash { return refPair(a, b) }
	for _, tc := range []struct {
		n int
		// tree builds the expected array; proofs the expected proof of
		// each sorted leaf, from the array.
		tree   func(s []Hash) []Hash
		proofs func(a []Hash) [][]Hash
	}{
		{1,
			func(s []Hash) []Hash { return []Hash{s[0]} },
			func(a []Hash) [][]Hash { return [][]Hash{{}} }},
		{2,
			func(s []Hash) []Hash { return []Hash{h(s[1], s[0]), s[1], s[0]} },
			func(a []Hash) [][]Hash { return [][]Hash{{a[1]}, {a[2]}} }},
		{3,
			func(s []Hash) []Hash {
				n1 := h(s[1], s[0])
				return []Hash{h(n1, s[2]), n1, s[2], s[1], s[0]}
			},
			func(a []Hash) [][]Hash {
				// s0 at 4, s1 at 3, s2 at 2.
				return [][]Hash{{a[3], a[2]}, {a[4], a[2]}, {a[1]}}
			}},
		{4,
			func(s []Hash) []Hash {
				n1, n2 := h(s[3], s[2]), h(s[1], s[0])
				return []Hash{h(n1, n2), n1, n2, s[3], s[2], s[1], s[0]}
			},
			func(a []Hash) [][]Hash {
				// s0 at 6, s1 at 5, s2 at 4, s3 at 3.
				return [][]Hash{{a[5], a[1]}, {a[6], a[1]}, {a[3], a[2]}, {a[4], a[2]}}
			}},
		{5,
			func(s []Hash) []Hash {
				n3, n2 := h(s[1], s[0]), h(s[3], s[2])
				n1 := h(n3, s[4])
				return []Hash{h(n1, n2), n1, n2, n3, s[4], s[3], s[2], s[1], s[0]}
			},
			func(a []Hash) [][]Hash {
				// s0 at 8, s1 at 7, s2 at 6, s3 at 5, s4 at 4.
				return [][]Hash{
					{a[7], a[4], a[2]},
					{a[8], a[4], a[2]},
					{a[5], a[1]},
					{a[6], a[1]},
					{a[3], a[2]},
				}
			}},
	} {
		rng := rand.New(rand.NewPCG(5, uint64(tc.n)))
		leaves := randomHashes(rng, tc.n)
		sorted := slices.Clone(leaves)
		slices.SortFunc(sorted, func(a, b Hash) int { return compareRef(a, b) })
		if tc.n > 1 && slices.Equal(sorted, leaves) {
			leaves[0], leaves[1] = leaves[1], leaves[0] // New must sort
		}
		tree, err := New(leaves)
		if err != nil {
			t.Fatal(err)
		}
		want := tc.tree(sorted)
		if got := tree.Dump(); !slices.Equal(got, want) {
			t.Errorf("n=%d: tree\n%v\nwant\n%v", tc.n, got, want)
			continue
		}
		if tree.Root() != want[0] {
			t.Errorf("n=%d: Root = %s, want %s", tc.n, tree.Root(), want[0])
		}
		if got := tree.Leaves(); !slices.Equal(got, sorted) {
			t.Errorf("n=%d: Leaves = %v, want %v", tc.n, got, sorted)
		}
		for i, wp := range tc.proofs(want) {
			got := mustProof(t, tree, sorted[i])
			if !slices.Equal(got, wp) || got == nil {
				t.Errorf("n=%d: proof of s%d = %v, want %v", tc.n, i, got, wp)
			}
		}
	}
}

// compareRef orders hashes as unsigned byte strings, without bytes.Compare.
func compareRef(a, b Hash) int {
	for i := range a {
		if a[i] != b[i] {
			if a[i] < b[i] {
				return -1
			}
			return 1
		}
	}
	return 0
}

func TestNewEmpty(t *testing.T) {
	if _, err := New(nil); !errors.Is(err, ErrEmpty) {
		t.Errorf("New(nil) error %v, want ErrEmpty", err)
	}
}

func TestNewKeepsInput(t *testing.T) {
	leaves := randomHashes(rand.New(rand.NewPCG(6, 7)), 9)
	in := slices.Clone(leaves)
	tree, err := New(leaves)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(leaves, in) {
		t.Error("New modified its argument")
	}
	d := tree.Dump()
	d[0] = Hash{}
	l := tree.Leaves()
	l[0] = Hash{1}
	if tree.Root() == (Hash{}) || tree.Leaves()[0] == (Hash{1}) {
		t.Error("Dump or Leaves shares the tree's storage")
	}
}

func TestProofUnknownLeaf(t *testing.T) {
	rng := rand.New(rand.NewPCG(8, 9))
	leaves := randomHashes(rng, 6)
	tree, err := New(leaves)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []Hash{{}, {0xff, 0xff}, tree.Root(), randomHashes(rng, 1)[0]} {
		if _, err := tree.Proof(h); !errors.Is(err, ErrNotInTree) {
			t.Errorf("Proof(%s) error %v, want ErrNotInTree", h, err)
		}
	}
}

// Duplicate leaves are kept; a duplicated leaf is proved at its last
// sorted place (smallest tree index), as OpenZeppelin's getProof(value).
func TestDuplicates(t *testing.T) {
	rng := rand.New(rand.NewPCG(10, 11))
	for n := 2; n <= 12; n++ {
		leaves := randomHashes(rng, n)
		leaves[n-1] = leaves[0]
		if n > 4 {
			leaves[n-2] = leaves[0]
		}
		tree, err := New(leaves)
		if err != nil {
			t.Fatal(err)
		}
		if tree.Len() != n {
			t.Fatalf("n=%d: Len = %d", n, tree.Len())
		}
		d := tree.Dump()
		idx := slices.Index(d, leaves[0]) // the first, smallest index holding it
		var want []Hash
		for j := idx; j > 0; j = (j - 1) / 2 {
			want = append(want, d[sibling(j)])
		}
		for _, leaf := range leaves {
			p := mustProof(t, tree, leaf)
			if !refVerify(tree.Root(), leaf, toRef(p)) {
				t.Fatalf("n=%d: proof of %s rejected", n, leaf)
			}
			if leaf == leaves[0] && !slices.Equal(p, want) {
				t.Fatalf("n=%d: duplicated leaf proved as %v, want %v", n, p, want)
			}
		}
	}
}
