// Cross-check of attribution/merkle against OpenZeppelin's StandardMerkleTree.
//
// Reads {"values": [[batch, contributorHash, amount], ...]} on stdin (batch
// and contributorHash as 0x-hex bytes32, amount as a decimal string) and
// prints {"root", "tree", "proofs", "valueProofs"}: the root, the whole tree
// array (tree.dump().tree), the proof of every value by its index
// (tree.getProof(i)) and by the value itself (tree.getProof(value), which
// looks the leaf hash up: for duplicated values, OZ proves the last one).
//
// Run by TestOpenZeppelin in attribution/merkle (make test-oz).
import { StandardMerkleTree } from '@openzeppelin/merkle-tree';

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const input = JSON.parse(Buffer.concat(chunks).toString('utf8'));

const encoding = ['bytes32', 'bytes32', 'uint256'];
const values = input.values.map(([batch, contributor, amount]) => [batch, contributor, BigInt(amount)]);
const tree = StandardMerkleTree.of(values, encoding);

const out = {
  root: tree.root,
  tree: tree.dump().tree,
  proofs: values.map((_, i) => tree.getProof(i)),
  valueProofs: values.map(v => tree.getProof(v)),
};
process.stdout.write(JSON.stringify(out) + '\n');
