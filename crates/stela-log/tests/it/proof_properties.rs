//! Property tests: for random trees up to 300 leaves, roots and proofs computed through
//! `HashReader` from `Appender` output equal the naive recursive RFC 6962 definitions and
//! verify; tampering with any single bit of a proof, root, index or size is caught unless the
//! tampered claim has exactly the same shape (in which case no verifier could tell).

use std::collections::BTreeMap;

use proptest::prelude::*;
use stela_log::{
    Appender, Hash, HashReader, NodeId, consistency_proof, consistency_proof_node_ids,
    inclusion_proof, inclusion_proof_node_ids, inclusion_proofs, leaf_hash, tree_root,
    tree_root_node_ids, verify_consistency, verify_inclusion,
};

use crate::support::{consistency, consistency_shape, inclusion_shape, mth, path};

/// A store fed only by what the appender emits, as the database will be; it also records
/// every batch it was asked for so tests can check the batching contract.
#[derive(Default)]
struct RecordingStore {
    nodes: BTreeMap<NodeId, Hash>,
    asked: std::cell::RefCell<Vec<Vec<NodeId>>>,
}

impl HashReader for RecordingStore {
    type Error = NodeId;

    fn read_hashes(&self, ids: &[NodeId]) -> Result<Vec<Hash>, NodeId> {
        self.asked.borrow_mut().push(ids.to_vec());
        ids.iter().map(|id| self.nodes.get(id).copied().ok_or(*id)).collect()
    }
}

/// Builds the store by appending in random-sized batches, restoring the appender from the
/// store between batches as a server restart would.
fn build(leaves: &[Hash], batch_sizes: &[usize]) -> RecordingStore {
    let mut store = RecordingStore::default();
    let mut size = 0usize;
    let mut batches = batch_sizes.iter().cycle();
    while size < leaves.len() {
        let batch = (*batches.next().unwrap_or(&1)).clamp(1, leaves.len() - size);
        let edge_ids = Appender::right_edge_ids(size as u64);
        let edge = store.read_hashes(&edge_ids).expect("right edge is stored");
        let mut appender = Appender::restore(size as u64, edge).expect("right edge fits size");
        let appended = appender.append(&leaves[size..size + batch]).expect("fits");
        for (id, hash) in appended.nodes {
            assert!(store.nodes.insert(id, hash).is_none(), "node {id} emitted twice");
        }
        size += batch;
        assert_eq!(appended.root, mth(&leaves[..size]));
    }
    // Only perfect subtrees are stored: 2n - popcount(n) of them.
    let n = leaves.len();
    assert_eq!(store.nodes.len(), 2 * n - n.count_ones() as usize);
    store.asked.borrow_mut().clear();
    store
}

fn leaves(n: usize, seed: u64) -> Vec<Hash> {
    (0..n).map(|i| leaf_hash(format!("{seed}:{i}").as_bytes())).collect()
}

fn flip(hash: &Hash, bit: usize) -> Hash {
    let mut out = *hash;
    out[(bit / 8) % 32] ^= 1 << (bit % 8);
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn roots_and_inclusion_proofs_match_rfc(
        n in 1usize..300,
        seed in any::<u64>(),
        batch_sizes in proptest::collection::vec(1usize..40, 1..8),
        picks in proptest::collection::vec(any::<u64>(), 1..6),
    ) {
        let leaves = leaves(n, seed);
        let store = build(&leaves, &batch_sizes);
        for pick in picks {
            let size = 1 + pick % n as u64;
            let index = (pick >> 20) % size;
            let prefix = &leaves[..size as usize];
            let root = tree_root(size, &store).expect("stored");
            prop_assert_eq!(root, mth(prefix));
            let proof = inclusion_proof(index, size, &store).expect("stored");
            prop_assert_eq!(&proof, &path(index as usize, prefix));
            prop_assert_eq!(verify_inclusion(&leaves[index as usize], index, size, &proof, &root), Ok(()));
            // One batched read per call (none when nothing is needed), of distinct, sorted ids
            // that the helpers predicted.
            let asked = store.asked.borrow_mut().drain(..).collect::<Vec<_>>();
            let mut root_ids = tree_root_node_ids(size);
            root_ids.sort_unstable();
            let proof_ids = inclusion_proof_node_ids(index, size).expect("in range");
            let expected: Vec<Vec<NodeId>> =
                [root_ids, proof_ids].into_iter().filter(|ids| !ids.is_empty()).collect();
            prop_assert_eq!(&asked, &expected);
            prop_assert!(asked.iter().all(|ids| ids.windows(2).all(|pair| pair[0] < pair[1])));
        }
    }

    #[test]
    fn batched_inclusion_proofs_equal_single_ones(
        n in 1usize..300,
        seed in any::<u64>(),
        picks in proptest::collection::vec(any::<u64>(), 1..10),
    ) {
        let leaves = leaves(n, seed);
        let store = build(&leaves, &[n]);
        let size = n as u64;
        let indexes: Vec<u64> = picks.iter().map(|pick| pick % size).collect();
        let batched = inclusion_proofs(&indexes, size, &store).expect("stored");
        prop_assert!(store.asked.borrow().len() <= 1, "one read at most");
        for (index, proof) in indexes.iter().zip(&batched) {
            prop_assert_eq!(proof, &path(*index as usize, &leaves));
        }
    }

    #[test]
    fn consistency_proofs_match_rfc(
        n in 1usize..300,
        seed in any::<u64>(),
        batch_sizes in proptest::collection::vec(1usize..40, 1..8),
        picks in proptest::collection::vec((any::<u64>(), any::<u64>()), 1..6),
    ) {
        let leaves = leaves(n, seed);
        let store = build(&leaves, &batch_sizes);
        for (a, b) in picks {
            let new = 1 + a % n as u64;
            let old = b % (new + 1);
            let proof = consistency_proof(old, new, &store).expect("stored");
            prop_assert_eq!(&proof, &consistency(old as usize, &leaves[..new as usize]));
            let old_root = mth(&leaves[..old as usize]);
            let new_root = mth(&leaves[..new as usize]);
            prop_assert_eq!(verify_consistency(old, new, &old_root, &new_root, &proof), Ok(()));
            let asked = store.asked.borrow_mut().drain(..).collect::<Vec<_>>();
            let expected_ids = consistency_proof_node_ids(old, new).expect("in range");
            prop_assert_eq!(asked.first().cloned().unwrap_or_default(), expected_ids);
        }
    }

    #[test]
    fn inclusion_tampering_is_caught(
        n in 1usize..300,
        seed in any::<u64>(),
        pick in any::<u64>(),
        bit in 0usize..256,
        int_bit in 0u32..64,
    ) {
        let leaves = leaves(n, seed);
        let size = n as u64;
        let index = pick % size;
        let leaf = leaves[index as usize];
        let root = mth(&leaves);
        let proof = path(index as usize, &leaves);
        prop_assert!(verify_inclusion(&leaf, index, size, &proof, &root).is_ok());

        for i in 0..proof.len() {
            let mut tampered = proof.clone();
            tampered[i] = flip(&tampered[i], bit);
            prop_assert!(verify_inclusion(&leaf, index, size, &tampered, &root).is_err());
        }
        prop_assert!(verify_inclusion(&flip(&leaf, bit), index, size, &proof, &root).is_err());
        prop_assert!(verify_inclusion(&leaf, index, size, &proof, &flip(&root, bit)).is_err());

        // Index and size are bound exactly as far as the proof's shape binds them: the RFC
        // verifier accepts a tampered claim iff it has the same shape as the true one.
        let shape = inclusion_shape(index, size);
        let tampered_index = index ^ (1 << int_bit);
        let accepted = verify_inclusion(&leaf, tampered_index, size, &proof, &root).is_ok();
        prop_assert_eq!(accepted, inclusion_shape(tampered_index, size) == shape);
        prop_assert!(!accepted, "a leaf's position is always bound by its proof");
        let tampered_size = size ^ (1 << int_bit);
        let accepted = verify_inclusion(&leaf, index, tampered_size, &proof, &root).is_ok();
        prop_assert_eq!(accepted, inclusion_shape(index, tampered_size) == shape);
    }

    #[test]
    fn consistency_tampering_is_caught(
        n in 2usize..300,
        seed in any::<u64>(),
        pick in any::<u64>(),
        bit in 0usize..256,
        int_bit in 0u32..64,
    ) {
        let leaves = leaves(n, seed);
        let new = n as u64;
        let old = 1 + pick % (new - 1);
        let old_root = mth(&leaves[..old as usize]);
        let new_root = mth(&leaves);
        let proof = consistency(old as usize, &leaves);
        prop_assert!(verify_consistency(old, new, &old_root, &new_root, &proof).is_ok());

        for i in 0..proof.len() {
            let mut tampered = proof.clone();
            tampered[i] = flip(&tampered[i], bit);
            prop_assert!(verify_consistency(old, new, &old_root, &new_root, &tampered).is_err());
        }
        prop_assert!(verify_consistency(old, new, &flip(&old_root, bit), &new_root, &proof).is_err());
        prop_assert!(verify_consistency(old, new, &old_root, &flip(&new_root, bit), &proof).is_err());

        let shape = consistency_shape(old, new);
        let tampered_old = old ^ (1 << int_bit);
        let accepted = verify_consistency(tampered_old, new, &old_root, &new_root, &proof).is_ok();
        prop_assert_eq!(accepted, consistency_shape(tampered_old, new) == shape);
        let tampered_new = new ^ (1 << int_bit);
        let accepted = verify_consistency(old, tampered_new, &old_root, &new_root, &proof).is_ok();
        prop_assert_eq!(accepted, consistency_shape(old, tampered_new) == shape);
    }
}

/// The shape oracle is not vacuous: growing a tree whose size is not a power of two often
/// keeps an inclusion proof's shape (5 → 7 leaves for leaf 0), so RFC 6962 proofs alone do not
/// bind the tree size; the signed checkpoint does.
#[test]
fn inclusion_proofs_do_not_bind_size_alone() {
    let leaves = leaves(7, 1);
    let proof5 = path(0, &leaves[..5]);
    let root7_with_proof5_shape = {
        // Same shape, so a verifier given size 7 recomputes the size-5 root from the same
        // proof; the proof is accepted for (0, 7) against that root.
        stela_log::root_from_inclusion_proof(&leaves[0], 0, 7, &proof5).expect("same length")
    };
    assert_eq!(root7_with_proof5_shape, mth(&leaves[..5]));
    assert_eq!(inclusion_shape(0, 5), inclusion_shape(0, 7));
    assert_ne!(inclusion_shape(0, 5), inclusion_shape(0, 9));
}
