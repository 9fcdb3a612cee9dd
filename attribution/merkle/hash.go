package merkle

import (
	"encoding/hex"
	"fmt"

	"golang.org/x/crypto/sha3"
)

// Hash is a 32-byte Keccak-256 digest: a leaf, an inner node or a root of a
// Tree, or any other bytes32 value of a commitment.
type Hash [32]byte

// Hex returns h as "0x" followed by 64 lower-case hex digits, the form
// Solidity tools and OpenZeppelin's merkle-tree print.
func (h Hash) Hex() string {
	var b [2 + 2*len(h)]byte
	b[0], b[1] = '0', 'x'
	hex.Encode(b[2:], h[:])
	return string(b[:])
}

// String returns h.Hex().
func (h Hash) String() string { return h.Hex() }

// ParseHash parses "0x" followed by exactly 64 hex digits of either case.
// The error says what is wrong: a missing prefix, the number of digits, or
// the first character that is not a hex digit and where it is.
func ParseHash(s string) (Hash, error) {
	var h Hash
	if len(s) < 2 || s[0] != '0' || s[1] != 'x' {
		return h, fmt.Errorf("merkle: hash %s: missing 0x prefix", quote(s))
	}
	digits := s[2:]
	if len(digits) != 2*len(h) {
		return h, fmt.Errorf("merkle: hash %s: %d hex digits after 0x, want %d", quote(s), len(digits), 2*len(h))
	}
	for i := 0; i < len(digits); i++ {
		if !isHex(digits[i]) {
			return h, fmt.Errorf("merkle: hash %s: character %q at offset %d is not a hex digit", quote(s), digits[i], 2+i)
		}
	}
	if _, err := hex.Decode(h[:], []byte(digits)); err != nil {
		return Hash{}, fmt.Errorf("merkle: hash %s: %w", quote(s), err) // unreachable: digits checked above
	}
	return h, nil
}

// MarshalText encodes h as h.Hex(), so that JSON carries hashes as
// "0x…" strings.
func (h Hash) MarshalText() ([]byte, error) { return []byte(h.Hex()), nil }

// UnmarshalText decodes what ParseHash accepts.
func (h *Hash) UnmarshalText(text []byte) error {
	v, err := ParseHash(string(text))
	if err != nil {
		return err
	}
	*h = v
	return nil
}

// Keccak256 returns the Keccak-256 digest of the concatenation of data: the
// original Keccak padding (0x01 … 0x80) that Ethereum and Solidity's
// keccak256 use, not the FIPS-202 SHA3-256.
func Keccak256(data ...[]byte) Hash {
	k := sha3.NewLegacyKeccak256()
	for _, d := range data {
		k.Write(d)
	}
	var h Hash
	k.Sum(h[:0])
	return h
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// quote quotes s for an error message, shortening long inputs.
func quote(s string) string {
	const max = 80
	if len(s) > max {
		return fmt.Sprintf("%q…(%d bytes)", s[:max], len(s))
	}
	return fmt.Sprintf("%q", s)
}
