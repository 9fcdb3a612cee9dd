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
package attribution
