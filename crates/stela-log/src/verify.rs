//! Proof verification exactly as RFC 9162 §2.1.3.2 (inclusion) and §2.1.4.2 (consistency)
//! spell it out. Everything here takes adversarial input: no step can panic or overflow, and
//! every failure says which check failed.

use crate::error::ErrorCode;
use crate::hash::{EMPTY_ROOT, Hash, node_hash, to_hex};

/// Why a proof did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// The leaf index is not smaller than the tree size.
    #[error("leaf index {index} is not in a tree of size {size}")]
    LeafIndexOutOfRange {
        /// The claimed leaf index.
        index: u64,
        /// The claimed tree size.
        size: u64,
    },
    /// The old tree is larger than the new one.
    #[error("old tree size {old_size} is larger than new tree size {new_size}")]
    SizesOutOfOrder {
        /// The claimed earlier size.
        old_size: u64,
        /// The claimed later size.
        new_size: u64,
    },
    /// The proof has more hashes than the tree shape allows.
    #[error("proof has more hashes than a proof for these sizes can have")]
    ProofTooLong,
    /// The proof has fewer hashes than the tree shape needs.
    #[error("proof has fewer hashes than a proof for these sizes needs")]
    ProofTooShort,
    /// A consistency proof between two different non-empty sizes must not be empty.
    #[error("consistency proof is empty")]
    EmptyProof,
    /// The root computed from the proof is not the expected root.
    #[error(
        "computed root {computed} does not match expected root {expected}",
        computed = to_hex(.computed),
        expected = to_hex(.expected)
    )]
    RootMismatch {
        /// What the proof hashes to.
        computed: Hash,
        /// What it should hash to.
        expected: Hash,
    },
    /// The old root computed from a consistency proof is not the expected old root.
    #[error(
        "computed old root {computed} does not match expected old root {expected}",
        computed = to_hex(.computed),
        expected = to_hex(.expected)
    )]
    OldRootMismatch {
        /// What the proof hashes to.
        computed: Hash,
        /// What it should hash to.
        expected: Hash,
    },
}

impl ProofError {
    /// The transport-agnostic kind of this error.
    pub fn code(&self) -> ErrorCode {
        ErrorCode::VerificationFailed
    }
}

/// Computes the root that an inclusion proof leads to (RFC 9162 §2.1.3.2 steps 1–4), checking
/// the proof length against the tree shape.
pub fn root_from_inclusion_proof(
    leaf_hash: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
) -> Result<Hash, ProofError> {
    if index >= size {
        return Err(ProofError::LeafIndexOutOfRange { index, size });
    }
    let mut node = index;
    let mut last = size - 1;
    let mut root = *leaf_hash;
    for sibling in proof {
        if last == 0 {
            return Err(ProofError::ProofTooLong);
        }
        if node & 1 == 1 || node == last {
            root = node_hash(sibling, &root);
            if node & 1 == 0 {
                while node & 1 == 0 && node != 0 {
                    node >>= 1;
                    last >>= 1;
                }
            }
        } else {
            root = node_hash(&root, sibling);
        }
        node >>= 1;
        last >>= 1;
    }
    if last != 0 {
        return Err(ProofError::ProofTooShort);
    }
    Ok(root)
}

/// Checks that `leaf_hash` is leaf `index` of the tree of `size` leaves whose root is `root`.
pub fn verify_inclusion(
    leaf_hash: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    let computed = root_from_inclusion_proof(leaf_hash, index, size, proof)?;
    if computed == *root {
        Ok(())
    } else {
        Err(ProofError::RootMismatch { computed, expected: *root })
    }
}

/// Checks that the tree of `old_size` leaves with root `old_root` is a prefix of the tree of
/// `new_size` leaves with root `new_root`.
///
/// Beyond RFC 9162 §2.1.4.2 (which covers `0 < old_size < new_size`): equal sizes need an empty
/// proof and equal roots; an empty old tree needs an empty proof and `old_root` equal to
/// [`EMPTY_ROOT`], so that no input is accepted without being checked.
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    if old_size > new_size {
        return Err(ProofError::SizesOutOfOrder { old_size, new_size });
    }
    if old_size == 0 || old_size == new_size {
        if !proof.is_empty() {
            return Err(ProofError::ProofTooLong);
        }
        if old_size == 0 && *old_root != EMPTY_ROOT {
            return Err(ProofError::OldRootMismatch { computed: EMPTY_ROOT, expected: *old_root });
        }
        if old_size == new_size && old_root != new_root {
            return Err(ProofError::RootMismatch { computed: *old_root, expected: *new_root });
        }
        return Ok(());
    }
    // Step 1.
    let Some((first, rest)) = proof.split_first() else {
        return Err(ProofError::EmptyProof);
    };
    // Step 2: when the old tree is a perfect subtree its root is the proof's implicit first
    // element.
    let (seed, path) = if old_size.is_power_of_two() { (old_root, proof) } else { (first, rest) };
    // Step 3.
    let mut node = old_size - 1;
    let mut last = new_size - 1;
    // Step 4.
    while node & 1 == 1 {
        node >>= 1;
        last >>= 1;
    }
    // Step 5.
    let mut old_hash = *seed;
    let mut new_hash = *seed;
    // Step 6.
    for sibling in path {
        if last == 0 {
            return Err(ProofError::ProofTooLong);
        }
        if node & 1 == 1 || node == last {
            old_hash = node_hash(sibling, &old_hash);
            new_hash = node_hash(sibling, &new_hash);
            if node & 1 == 0 {
                while node & 1 == 0 && node != 0 {
                    node >>= 1;
                    last >>= 1;
                }
            }
        } else {
            new_hash = node_hash(&new_hash, sibling);
        }
        node >>= 1;
        last >>= 1;
    }
    // Step 7.
    if last != 0 {
        return Err(ProofError::ProofTooShort);
    }
    if old_hash != *old_root {
        return Err(ProofError::OldRootMismatch { computed: old_hash, expected: *old_root });
    }
    if new_hash != *new_root {
        return Err(ProofError::RootMismatch { computed: new_hash, expected: *new_root });
    }
    Ok(())
}
