package merkle

import (
	"bytes"
	"errors"
	"fmt"
	"hash"
	"math/bits"
	"slices"
	"sort"

	"golang.org/x/crypto/sha3"
)

// ErrEmpty is returned by New for a tree without leaves, which
// OpenZeppelin's merkle-tree refuses too.
var ErrEmpty = errors.New("merkle: a tree needs at least one leaf")

// ErrNotInTree is wrapped by the error of Tree.Proof for a leaf the tree
// does not hold.
var ErrNotInTree = errors.New("merkle: leaf not in tree")

// Tree is a Merkle tree laid out as OpenZeppelin's StandardMerkleTree lays
// it out (see the package documentation). It is immutable and safe for
// concurrent use.
type Tree struct {
	// nodes is the tree array: root at 0, the children of node i at 2i+1
	// and 2i+2, sorted leaf i at len(nodes)-1-i.
	nodes []Hash
}

// New builds the tree of already-hashed leaves (Leaf, PayoutLeaf): the
// leaves are sorted ascending, byte by byte, then laid out and hashed as
// OpenZeppelin's StandardMerkleTree.of does, so that the root and every
// proof are those OpenZeppelin computes for the same values. leaves is not
// modified. Duplicate leaves are allowed, as OpenZeppelin allows them. New
// returns ErrEmpty for no leaves.
func New(leaves []Hash) (*Tree, error) {
	n := len(leaves)
	if n == 0 {
		return nil, ErrEmpty
	}
	sorted := slices.Clone(leaves)
	slices.SortFunc(sorted, func(a, b Hash) int { return bytes.Compare(a[:], b[:]) })
	nodes := make([]Hash, 2*n-1)
	for i, l := range sorted {
		nodes[len(nodes)-1-i] = l
	}
	k := sha3.NewLegacyKeccak256()
	for i := n - 2; i >= 0; i-- {
		nodes[i] = hashPairWith(k, nodes[2*i+1], nodes[2*i+2])
	}
	return &Tree{nodes: nodes}, nil
}

// Root returns the root of the tree: node 0, which for a single leaf is the
// leaf itself.
func (t *Tree) Root() Hash { return t.nodes[0] }

// Len returns the number of leaves, duplicates included.
func (t *Tree) Len() int { return (len(t.nodes) + 1) / 2 }

// Leaves returns a copy of the leaves in ascending order.
func (t *Tree) Leaves() []Hash {
	n := t.Len()
	out := make([]Hash, n)
	for i := range out {
		out[i] = t.nodes[len(t.nodes)-1-i]
	}
	return out
}

// Proof returns the proof of leaf: the sibling of the leaf's node, then the
// sibling of its parent, and so on up to (not including) the root, as
// OpenZeppelin's getProof returns it. Verify(t.Root(), leaf, proof) holds
// and so does MerkleProof.verify on chain. A leaf present more than once is
// proved at its last place in sorted order, as OpenZeppelin's getProof of a
// value does. The proof of the only leaf of a one-leaf tree is empty (not nil). A leaf
// the tree does not hold is an error wrapping ErrNotInTree.
func (t *Tree) Proof(leaf Hash) ([]Hash, error) {
	// i: the last sorted position holding leaf, if any (sorted leaf i is
	// node len-1-i).
	last := len(t.nodes) - 1
	i := sort.Search(t.Len(), func(i int) bool {
		return bytes.Compare(t.nodes[last-i][:], leaf[:]) > 0
	}) - 1
	if i < 0 || t.nodes[last-i] != leaf {
		return nil, fmt.Errorf("%w: %s", ErrNotInTree, leaf.Hex())
	}
	proof := make([]Hash, 0, bits.Len(uint(last))) // never nil: JSON "[]", as OpenZeppelin prints
	for j := last - i; j > 0; j = (j - 1) / 2 {
		proof = append(proof, t.nodes[sibling(j)])
	}
	return proof, nil
}

// Dump returns a copy of the whole tree array: root at index 0, the
// children of node i at 2i+1 and 2i+2, sorted leaf i at index 2n−2−i. It is
// OpenZeppelin's tree.dump().tree, for tests and debugging.
func (t *Tree) Dump() []Hash { return slices.Clone(t.nodes) }

// Verify reports whether proof proves that leaf is in the tree with root
// root, as OpenZeppelin's MerkleProof.verify does: starting from the leaf,
// each proof element is hashed with the running hash as a sorted pair, and
// the result must equal root.
func Verify(root, leaf Hash, proof []Hash) bool {
	k := sha3.NewLegacyKeccak256()
	h := leaf
	for _, p := range proof {
		h = hashPairWith(k, h, p)
	}
	return h == root
}

// hashPairWith returns keccak256 of a and b concatenated in ascending byte
// order (OpenZeppelin's commutative node hash), reusing k.
func hashPairWith(k hash.Hash, a, b Hash) Hash {
	if bytes.Compare(a[:], b[:]) > 0 {
		a, b = b, a
	}
	k.Reset()
	k.Write(a[:])
	k.Write(b[:])
	var h Hash
	k.Sum(h[:0])
	return h
}

// sibling returns the index of the other child of node j's parent (j > 0).
func sibling(j int) int {
	if j%2 == 1 {
		return j + 1
	}
	return j - 1
}
