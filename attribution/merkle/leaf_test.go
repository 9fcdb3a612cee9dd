package merkle

import (
	"math/big"
	"strings"
	"testing"
)

func mustParse(t *testing.T, s string) Hash {
	t.Helper()
	h, err := ParseHash(s)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func bigDec(s string) *big.Int {
	x, ok := new(big.Int).SetString(s, 10)
	if !ok {
		panic(s)
	}
	return x
}

const maxUint256 = "115792089237316195423570985008687907853269984665640564039457584007913129639935"

// Leaves against vectors computed by @openzeppelin/merkle-tree 1.0.8: the
// root of StandardMerkleTree.of([value], ["bytes32","bytes32","uint256"])
// is the value's leaf.
func TestLeafVectors(t *testing.T) {
	word := func(b byte) (w Word) {
		w[31] = b
		return w
	}
	u := func(s string) Word {
		w, err := Uint256(bigDec(s))
		if err != nil {
			t.Fatal(err)
		}
		return w
	}
	var ones Word
	for i := range ones {
		ones[i] = 0xff
	}
	alice := mustParse(t, "0x9c0257114eb9399a2985f8e75dad7600c5d89fe3824ffa99ec1c3eb8bf3b0501")
	if got := Keccak256([]byte("alice")); got != alice {
		t.Fatalf("keccak256(alice) = %s", got)
	}
	batch := mustParse(t, "0x0a2ff11509da1fe5dae34f385db69b3036ddb362c7e929f363332fca115cc5e9")
	for _, tc := range []struct {
		name  string
		words []Word
		want  string
	}{
		{"1, 2, 3", []Word{word(1), word(2), word(3)}, "0x6bf4e61b5cdb00b5d13973040b7e7c9690fc0e3e3509eabf38ee45a4fe1a3c0a"},
		{"zeros", []Word{{}, {}, u("0")}, "0xd5fd4d0eb2494be14301a4f3632965d5b5bff462c958f980f91470070fd13f52"},
		{"all ones", []Word{ones, ones, u(maxUint256)}, "0x466948472e3c10a0b07e80a06488a17353426db0950c1d3aeffdc6078a3a2880"},
		{"alice, 1e18", []Word{Bytes32(batch), Bytes32(alice), u("1000000000000000000")}, "0x1d0f96b75b26ca2330a03a374be2bb4b56237bccc8e678b66ec14fc338773084"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Leaf(tc.words...).Hex(); got != tc.want {
				t.Errorf("Leaf = %s, want %s", got, tc.want)
			}
			var enc []byte
			for _, w := range tc.words {
				enc = append(enc, w[:]...)
			}
			inner := refKeccak256(enc)
			if got := Hash(refKeccak256(inner[:])).Hex(); got != tc.want {
				t.Errorf("reference leaf = %s, want %s", got, tc.want)
			}
		})
	}
	got, err := PayoutLeaf(batch, "alice", bigDec("1000000000000000000"))
	if err != nil {
		t.Fatal(err)
	}
	if want := "0x1d0f96b75b26ca2330a03a374be2bb4b56237bccc8e678b66ec14fc338773084"; got.Hex() != want {
		t.Errorf("PayoutLeaf = %s, want %s", got, want)
	}
}

func TestUint256(t *testing.T) {
	for _, tc := range []struct {
		name   string
		x      *big.Int
		want   string // hex of the word, without 0x; "" for an error
		errHas string
	}{
		{"zero", big.NewInt(0), strings.Repeat("0", 64), ""},
		{"one", big.NewInt(1), strings.Repeat("0", 63) + "1", ""},
		{"0x0102", big.NewInt(0x0102), strings.Repeat("0", 60) + "0102", ""},
		{"max", bigDec(maxUint256), strings.Repeat("f", 64), ""},
		{"2^256", new(big.Int).Lsh(big.NewInt(1), 256), "", "257 bits does not fit in 256 bits"},
		{"minus one", big.NewInt(-1), "", "-1 is negative"},
		{"nil", nil, "", "nil value"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, err := Uint256(tc.x)
			if tc.errHas != "" {
				if err == nil || !strings.Contains(err.Error(), tc.errHas) {
					t.Errorf("error %v, want one containing %q", err, tc.errHas)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := Hash(w).Hex()[2:]; got != tc.want {
				t.Errorf("word %s, want %s", got, tc.want)
			}
		})
	}
}

func TestPayoutLeafErrors(t *testing.T) {
	_, err := PayoutLeaf(Hash{}, "bob", big.NewInt(-5))
	if err == nil || !strings.Contains(err.Error(), `contributor "bob"`) || !strings.Contains(err.Error(), "-5 is negative") {
		t.Errorf("error %v", err)
	}
}
