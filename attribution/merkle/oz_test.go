package merkle

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/big"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
)

// ozDir holds check.mjs and its pinned @openzeppelin/merkle-tree.
var ozDir = filepath.Join("..", "..", "scripts", "oz-merkle")

// ozResult is what check.mjs prints.
type ozResult struct {
	Root        Hash     `json:"root"`
	Tree        []Hash   `json:"tree"`
	Proofs      [][]Hash `json:"proofs"`      // getProof(i)
	ValueProofs [][]Hash `json:"valueProofs"` // getProof(values[i])
}

// TestOpenZeppelin builds payout trees of random values with this package
// and with OpenZeppelin's StandardMerkleTree (scripts/oz-merkle/check.mjs,
// under node) and compares roots, tree arrays and every proof. It runs only
// with GOINFLUENCE_OZ=1 and the npm packages installed: make test-oz.
func TestOpenZeppelin(t *testing.T) {
	if os.Getenv("GOINFLUENCE_OZ") != "1" {
		t.Skip("OpenZeppelin cross-check off: run `make test-oz` (needs node and npm), or set GOINFLUENCE_OZ=1 after `npm ci` in scripts/oz-merkle")
	}
	if _, err := os.Stat(filepath.Join(ozDir, "node_modules")); err != nil {
		t.Skipf("OpenZeppelin cross-check: %s/node_modules missing, run `npm ci` there (or `make test-oz`)", ozDir)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("GOINFLUENCE_OZ=1 but node is not on PATH: %v", err)
	}
	rng := rand.New(rand.NewPCG(12, 13))
	sizes := []int{1, 2, 3, 4, 5, 6, 7, 8, 9, 15, 16, 17, 31, 33, 64, 100, 257}
	for _, n := range sizes {
		t.Run(fmt.Sprint(n), func(t *testing.T) { ozCase(t, node, randomPayouts(rng, n, false)) })
	}
	for _, n := range []int{2, 3, 10, 40} {
		t.Run(fmt.Sprintf("%d with duplicates", n), func(t *testing.T) { ozCase(t, node, randomPayouts(rng, n, true)) })
	}
}

type payout struct {
	batch       Hash
	contributor string
	amount      *big.Int
}

// randomPayouts returns n payouts: one batch for most of them, contributors
// with non-ASCII names, amounts from 0 to 2²⁵⁶−1; with dup, some repeated.
func randomPayouts(rng *rand.Rand, n int, dup bool) []payout {
	batch := randomHashes(rng, 1)[0]
	max := new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 256), big.NewInt(1))
	ps := make([]payout, n)
	for i := range ps {
		p := payout{batch: batch, contributor: fmt.Sprintf("contributor-%d-%x-é✓", i, rng.Uint32())}
		if rng.IntN(8) == 0 {
			p.batch = randomHashes(rng, 1)[0]
		}
		switch rng.IntN(5) {
		case 0:
			p.amount = big.NewInt(0)
		case 1:
			p.amount = new(big.Int).Set(max)
		case 2:
			p.amount = big.NewInt(rng.Int64N(1_000_000))
		default:
			h := randomHashes(rng, 1)[0]
			p.amount = new(big.Int).SetBytes(h[:rng.IntN(33)])
		}
		ps[i] = p
	}
	if dup {
		for i := 1; i < n; i += 3 {
			ps[i] = ps[0]
		}
		ps[n-1] = ps[n/2]
	}
	return ps
}

func ozCase(t *testing.T, node string, ps []payout) {
	values := make([][3]string, len(ps))
	leaves := make([]Hash, len(ps))
	count := map[Hash]int{}
	for i, p := range ps {
		values[i] = [3]string{p.batch.Hex(), Keccak256([]byte(p.contributor)).Hex(), p.amount.String()}
		leaf, err := PayoutLeaf(p.batch, p.contributor, p.amount)
		if err != nil {
			t.Fatal(err)
		}
		leaves[i] = leaf
		count[leaf]++
	}
	oz := runOZ(t, node, values)

	tree, err := New(leaves)
	if err != nil {
		t.Fatal(err)
	}
	if tree.Root() != oz.Root {
		t.Fatalf("root %s, OpenZeppelin %s", tree.Root(), oz.Root)
	}
	if d := tree.Dump(); !slices.Equal(d, oz.Tree) {
		t.Fatalf("tree array differs from OpenZeppelin's:\n%v\n%v", d, oz.Tree)
	}
	if len(oz.Proofs) != len(ps) || len(oz.ValueProofs) != len(ps) {
		t.Fatalf("OpenZeppelin returned %d and %d proofs for %d values", len(oz.Proofs), len(oz.ValueProofs), len(ps))
	}
	for i, leaf := range leaves {
		proof, err := tree.Proof(leaf)
		if err != nil {
			t.Fatalf("value %d: %v", i, err)
		}
		if !slices.Equal(proof, oz.ValueProofs[i]) {
			t.Errorf("value %d: proof %v, OpenZeppelin getProof(value) %v", i, proof, oz.ValueProofs[i])
		}
		// getProof(i) proves the value's own place; for a duplicated value
		// that may be another place than getProof(value)'s.
		if count[leaf] == 1 && !slices.Equal(proof, oz.Proofs[i]) {
			t.Errorf("value %d: proof %v, OpenZeppelin getProof(%d) %v", i, proof, i, oz.Proofs[i])
		}
		if !Verify(tree.Root(), leaf, oz.Proofs[i]) {
			t.Errorf("value %d: OpenZeppelin getProof(%d) %v rejected by Verify", i, i, oz.Proofs[i])
		}
	}
}

func runOZ(t *testing.T, node string, values [][3]string) ozResult {
	t.Helper()
	in, err := json.Marshal(map[string]any{"values": values})
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(node, "check.mjs")
	cmd.Dir = ozDir
	cmd.Stdin = bytes.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node check.mjs: %v\n%s", err, stderr.Bytes())
	}
	var r ozResult
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("output of check.mjs: %v\n%s", err, out)
	}
	return r
}
