// Package attribution turns influence scores into payments that anyone can
// check (DESIGN §12).
//
// It holds:
//
//   - the registry: which contributor and which DataNet each training
//     example belongs to (Registry, read from CSV or JSON Lines);
//   - per-inference aggregation: the positive influence of each contributor's
//     examples on one inference, as exact fixed-point integers (Weight);
//   - the reward split: an inference's fee divided between the model owner,
//     the stakers, the platform and the contributors, in exact integer
//     arithmetic with every rounding rule stated (SplitFee);
//   - receipts and Merkle commitments over a batch of inferences, whose
//     payouts verify on chain with OpenZeppelin's MerkleProof.
//
// No float enters an amount: fees and payouts are non-negative integers below
// 2^256 (*big.Int), and weights are floor(score·2^WeightBits), so that an
// independent implementation following this documentation reproduces every
// amount to the unit.
//
// # Attributing a batch
//
// NewAttributor opens a run: the store (i8 unless Config.AllowFloat), the
// method that preconditions the queries, the registry (every stored id must
// be in it) and the configuration, and hashes every input into the run
// manifest, whose SHA-256 is the run id. Attribute then, for a batch of
// inferences: scores each query against the store (StoreScorer: exact
// integer sums for i8 stores); credits the TopK distinct examples with the
// highest positive scores, exact duplicates (the same content_sha256)
// counting once and sharing one credit among all their copies; aggregates
// the credits per contributor and per DataNet; splits each fee (SplitFee);
// and returns the Receipt.
//
// # Receipts
//
// A Receipt (format goinfluence.receipt/v1, JSON) holds the run manifest,
// the batch hash keccak256(run id ‖ keccak256(id₁) ‖ … ‖ keccak256(idₙ)),
// one InferenceRecord per inference (the SHA-256 of its query gradient and of
// its quantised preconditioned query, its credited examples as [id, isum,
// score], its fee and split, its DataNets' credits), the payouts per
// contributor over the batch, and two Merkle roots, both OpenZeppelin
// StandardMerkleTrees (package merkle):
//
//   - the payout tree, of the values [batch, keccak256(utf8(contributor)),
//     amount] with the leaf encoding ["bytes32", "bytes32", "uint256"],
//     one leaf per contributor paid;
//   - the record tree, of the values [batch, i, keccak256(record i)] with
//     the encoding ["bytes32", "uint256", "bytes32"], where record i is
//     inference i's record as the receipt's JSON holds it, compact, fields
//     in the order of InferenceRecord (RecordLeaf).
//
// Check verifies a receipt on its own; Attributor.Verify recomputes it from
// its inputs and names what differs; ProofOf gives a contributor's payout
// proof, which OpenZeppelin's MerkleProof.verify accepts.
package attribution
