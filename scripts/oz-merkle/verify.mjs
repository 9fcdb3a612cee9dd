// Verifies payout proofs with OpenZeppelin's StandardMerkleTree.verify.
//
// Reads a JSON array of proofs as 'goinfluence proof --json' prints them
// ({"root", "leafEncoding", "value", "proof"}) on stdin and prints a JSON
// array of booleans, one per proof.
//
// Run by TestReceiptProofsOpenZeppelin in attribution (make test-oz).
import { StandardMerkleTree } from '@openzeppelin/merkle-tree';

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const proofs = JSON.parse(Buffer.concat(chunks).toString('utf8'));
const ok = proofs.map(p => StandardMerkleTree.verify(p.root, p.leafEncoding, p.value, p.proof));
process.stdout.write(JSON.stringify(ok) + '\n');
