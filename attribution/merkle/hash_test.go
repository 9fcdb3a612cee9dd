package merkle

import (
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"
)

func TestKeccak256Vectors(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []string
		want string
	}{
		{"empty", nil, "0xc5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"},
		{"empty string", []string{""}, "0xc5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"},
		{"abc", []string{"abc"}, "0x4e03657aea45a94fc7d47ba826c8d667c0d1e6e33a64a036ec44f58fa12d6c45"},
		{"abc in pieces", []string{"a", "", "bc"}, "0x4e03657aea45a94fc7d47ba826c8d667c0d1e6e33a64a036ec44f58fa12d6c45"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var data [][]byte
			for _, s := range tc.in {
				data = append(data, []byte(s))
			}
			if got := Keccak256(data...).Hex(); got != tc.want {
				t.Errorf("Keccak256 = %s, want %s", got, tc.want)
			}
			if len(tc.in) <= 1 {
				if got := Hash(refKeccak256([]byte(strings.Join(tc.in, "")))).Hex(); got != tc.want {
					t.Errorf("reference Keccak-256 = %s, want %s", got, tc.want)
				}
			}
		})
	}
}

// The reference's generated constants against the first and last round
// constants and two rotation offsets of the Keccak specification.
func TestReferenceConstants(t *testing.T) {
	if refRC[0] != 0x1 || refRC[1] != 0x8082 || refRC[23] != 0x8000000080008008 {
		t.Errorf("round constants %#x %#x … %#x", refRC[0], refRC[1], refRC[23])
	}
	if refRot[1] != 1 || refRot[24] != 14 { // r[1,0] = 1, r[4,4] = 14
		t.Errorf("rotation offsets r[1,0] = %d, r[4,4] = %d", refRot[1], refRot[24])
	}
}

// x/crypto's Keccak-256 against the independent one on random inputs of
// every length 0..600 (every padding case, one to five blocks).
func TestKeccak256AgainstReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for n := 0; n <= 600; n++ {
		msg := make([]byte, n)
		for i := range msg {
			msg[i] = byte(rng.Uint32())
		}
		want := Hash(refKeccak256(msg))
		if got := Keccak256(msg); got != want {
			t.Fatalf("length %d: Keccak256 = %s, reference %s", n, got, want)
		}
		if n > 0 {
			cut := rng.IntN(n + 1)
			if got := Keccak256(msg[:cut], msg[cut:]); got != want {
				t.Fatalf("length %d split at %d: Keccak256 = %s, reference %s", n, cut, got, want)
			}
		}
	}
}

func TestParseHash(t *testing.T) {
	const lower = "0x4e03657aea45a94fc7d47ba826c8d667c0d1e6e33a64a036ec44f58fa12d6c45"
	for _, tc := range []struct {
		name, in string
		errHas   string // "" for success
	}{
		{"lower case", lower, ""},
		{"upper case digits", "0x" + strings.ToUpper(lower[2:]), ""},
		{"no prefix", lower[2:], "missing 0x prefix"},
		{"upper-case prefix", "0X" + lower[2:], "missing 0x prefix"},
		{"empty", "", "missing 0x prefix"},
		{"prefix only", "0x", "0 hex digits after 0x, want 64"},
		{"short", lower[:65], "63 hex digits after 0x, want 64"},
		{"long", lower + "0", "65 hex digits after 0x, want 64"},
		{"bad digit", lower[:10] + "g" + lower[11:], "character 'g' at offset 10 is not a hex digit"},
		{"space", lower[:65] + " ", "character ' ' at offset 65"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, err := ParseHash(tc.in)
			if tc.errHas == "" {
				if err != nil {
					t.Fatal(err)
				}
				if h.Hex() != lower {
					t.Errorf("ParseHash(%q).Hex() = %s, want %s", tc.in, h.Hex(), lower)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.errHas) {
				t.Errorf("ParseHash(%q) error %v, want one containing %q", tc.in, err, tc.errHas)
			}
		})
	}
}

func TestHashJSON(t *testing.T) {
	type doc struct {
		Root  Hash   `json:"root"`
		Proof []Hash `json:"proof"`
	}
	in := doc{Root: Keccak256([]byte("root")), Proof: []Hash{Keccak256([]byte("a")), {}}}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"root":"` + in.Root.Hex() + `","proof":["` + in.Proof[0].Hex() + `","0x` + strings.Repeat("0", 64) + `"]}`
	if string(b) != want {
		t.Fatalf("json = %s, want %s", b, want)
	}
	var out doc
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	if out.Root != in.Root || len(out.Proof) != 2 || out.Proof[0] != in.Proof[0] || out.Proof[1] != in.Proof[1] {
		t.Errorf("round trip: %+v, want %+v", out, in)
	}
	if err := json.Unmarshal([]byte(`{"root":"0x12"}`), &out); err == nil || !strings.Contains(err.Error(), "2 hex digits") {
		t.Errorf("short root: error %v", err)
	}
}

func FuzzParseHash(f *testing.F) {
	f.Add("0x4e03657aea45a94fc7d47ba826c8d667c0d1e6e33a64a036ec44f58fa12d6c45")
	f.Add("0x4E03657AEA45A94FC7D47BA826C8D667C0D1E6E33A64A036EC44F58FA12D6C45")
	f.Add("0x")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		h, err := ParseHash(s)
		if err != nil {
			return
		}
		if !strings.EqualFold(h.Hex(), s) {
			t.Fatalf("ParseHash(%q).Hex() = %s", s, h.Hex())
		}
		h2, err := ParseHash(h.Hex())
		if err != nil || h2 != h {
			t.Fatalf("round trip of %s: %s, %v", h.Hex(), h2.Hex(), err)
		}
	})
}
