// Package merkle computes the Keccak-256 Merkle commitments of attribution
// receipts (DESIGN §12) exactly as OpenZeppelin's StandardMerkleTree
// (@openzeppelin/merkle-tree) computes them, so that a root published by
// goinfluence can be checked with OpenZeppelin's JavaScript library and its
// proofs verified on chain by MerkleProof.verify.
//
// # Hash
//
// Every hash is Keccak-256 with the original Keccak padding, Solidity's
// keccak256 (not FIPS-202 SHA3-256). Hashes are written "0x" followed by 64
// lower-case hex digits (Hash.Hex, and JSON through MarshalText).
//
// # Leaves
//
// A leaf commits to one value, a tuple of static ABI values (bytes32,
// uint256, …), each encoded as one 32-byte Word as Solidity's abi.encode
// encodes it: bytes32 as its bytes (Bytes32), uint256 big-endian and padded
// on the left with zeros (Uint256). The leaf is the Keccak-256 of the
// Keccak-256 of the words concatenated:
//
//	leaf = keccak256(keccak256(word₁ ‖ word₂ ‖ … ‖ wordₖ))
//
// which is StandardMerkleTree's leaf for the same values and leaf encoding.
// A payout leaf (PayoutLeaf) is the value
//
//	[batch, keccak256(utf8(contributor)), amount]
//
// with leaf encoding ["bytes32","bytes32","uint256"]:
// StandardMerkleTree.of(values, ["bytes32","bytes32","uint256"]) over the
// same values has the same leaves, root and proofs.
//
// # Tree
//
// New sorts the n ≥ 1 leaves ascending (as unsigned byte strings) and lays
// them out in an array of 2n−1 nodes, sorted leaf i at index 2n−2−i, so
// the smallest leaf is last. The remaining nodes are filled from index n−2
// down to 0, node i being the hash of its children 2i+1 and 2i+2 as a
// sorted pair:
//
//	node(a, b) = keccak256(min(a, b) ‖ max(a, b))
//
// and the root is node 0 (for n = 1, the only leaf itself). For n = 3, with
// sorted leaves s₀ < s₁ < s₂:
//
//	index   0                    1              2    3    4
//	node    node(node₁, s₂)      node(s₁, s₀)   s₂   s₁   s₀
//
// The array is a complete binary tree in heap order; when n is not a power
// of two its leaves sit on the last two levels. Duplicate leaves are kept, as OpenZeppelin keeps
// them; an empty tree is an error.
//
// # Proofs
//
// The proof of a leaf at index j lists the sibling of node j (j+1 when j is
// odd, j−1 when even), then the sibling of its parent (j−1)/2, and so on up
// to the root's children: the leaf first, the root excluded. Verify folds
// the proof into the leaf with the sorted-pair hash and compares the result
// with the root, as MerkleProof.verify does; since the pair hash is
// commutative the proof needs no left/right flags.
package merkle
