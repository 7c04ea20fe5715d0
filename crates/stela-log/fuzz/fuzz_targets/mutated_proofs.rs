//! Fuzz target: the verifier never accepts a mutated inclusion or consistency proof.
//!
//! The input chooses a tree size, a leaf, an old size and a mutation; the target builds the
//! tree in memory, takes the genuine proofs (which must verify), applies the mutation (flip
//! one bit of one proof hash, drop or duplicate a hash, change the leaf or a root) and asserts
//! that the mutated proof is rejected.

#![no_main]

use libfuzzer_sys::fuzz_target;
use stela_log::{MemoryTree, consistency_proof, inclusion_proof, leaf_hash, tree_root, verify_consistency, verify_inclusion};

fuzz_target!(|data: &[u8]| {
    if data.len() < 6 {
        return;
    }
    let size = u64::from(data[0]) + 1;
    let index = u64::from(data[1]) % size;
    let old = u64::from(data[2]) % (size + 1);
    let (target, bit, kind) = (usize::from(data[3]), data[4] % 8, data[5] % 4);
    let mut tree = MemoryTree::new();
    for i in 0..size {
        if tree.append_entry(&i.to_be_bytes()).is_err() {
            return;
        }
    }
    let root = tree.root();
    let leaf = leaf_hash(&index.to_be_bytes());
    let Ok(mut proof) = inclusion_proof(index, size, &tree) else { return };
    assert!(verify_inclusion(&leaf, index, size, &proof, &root).is_ok());
    let mut leaf_mutated = leaf;
    match kind {
        0 if !proof.is_empty() => {
            let at = target % proof.len();
            proof[at][usize::from(bit) % 32] ^= 1 << bit;
        }
        1 if !proof.is_empty() => {
            proof.pop();
        }
        2 => proof.push(root),
        _ => leaf_mutated[0] ^= 1 << bit,
    }
    assert!(verify_inclusion(&leaf_mutated, index, size, &proof, &root).is_err(), "a mutated inclusion proof was accepted");

    if old == 0 || old == size {
        return;
    }
    let Ok(old_root) = tree_root(old, &tree) else { return };
    let Ok(mut proof) = consistency_proof(old, size, &tree) else { return };
    assert!(verify_consistency(old, size, &old_root, &root, &proof).is_ok());
    if proof.is_empty() {
        return;
    }
    let at = target % proof.len();
    proof[at][usize::from(bit) % 32] ^= 1 << bit;
    assert!(verify_consistency(old, size, &old_root, &root, &proof).is_err(), "a mutated consistency proof was accepted");
});
