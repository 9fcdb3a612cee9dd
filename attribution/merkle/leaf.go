package merkle

import (
	"errors"
	"fmt"
	"math/big"
)

// Word is one 32-byte word of the Solidity ABI encoding. abi.encode of
// static types (bytes32, uintN, intN, address, bool) is the concatenation
// of one Word per value.
type Word [32]byte

// Bytes32 returns the ABI word of a bytes32 value: the 32 bytes as they are.
func Bytes32(h Hash) Word { return Word(h) }

// Uint256 returns the ABI word of a uint256 value: x big-endian, padded on
// the left with zeros. It is an error if x is nil, negative or at least 2²⁵⁶.
func Uint256(x *big.Int) (Word, error) {
	if err := checkUint256(x); err != nil {
		return Word{}, fmt.Errorf("merkle: uint256: %w", err)
	}
	var w Word
	x.FillBytes(w[:])
	return w, nil
}

// Leaf returns the StandardMerkleTree leaf of a value made of static ABI
// values given as words:
//
//	keccak256(keccak256(abi.encode(words...)))
//
// where abi.encode is the words concatenated. Hashing twice keeps a leaf
// from ever being read as an inner node (second preimage).
func Leaf(words ...Word) Hash {
	enc := make([]byte, 0, len(words)*len(Word{}))
	for _, w := range words {
		enc = append(enc, w[:]...)
	}
	inner := Keccak256(enc)
	return Keccak256(inner[:])
}

// PayoutLeaf returns the leaf of the payout tree (DESIGN §12) for the
// amount paid to a contributor in a batch: the value
// [batch, keccak256(utf8(contributor)), amount] with leaf encoding
// ["bytes32","bytes32","uint256"]. It is an error if amount is not a
// uint256.
func PayoutLeaf(batch Hash, contributor string, amount *big.Int) (Hash, error) {
	if err := checkUint256(amount); err != nil {
		return Hash{}, fmt.Errorf("merkle: payout leaf of contributor %q: amount: %w", contributor, err)
	}
	a, _ := Uint256(amount)
	return Leaf(Bytes32(batch), Bytes32(Keccak256([]byte(contributor))), a), nil
}

// checkUint256 says why x is not a uint256, or returns nil.
func checkUint256(x *big.Int) error {
	switch {
	case x == nil:
		return errors.New("nil value")
	case x.Sign() < 0:
		return fmt.Errorf("%s is negative", x)
	case x.BitLen() > 256:
		return fmt.Errorf("a value of %d bits does not fit in 256 bits", x.BitLen())
	}
	return nil
}
