//! RFC 6962 reference vectors used by Trillian and certificate-transparency-go, as published
//! in transparency-dev/merkle: `testonly/constants.go` (leaves, node hashes, roots) and
//! `proof/verify_test.go` (inclusion and consistency proofs, corruption probes).

use stela_log::{
    Appender, EMPTY_ROOT, Hash, MemoryTree, NodeId, ProofError, consistency_proof, inclusion_proof,
    leaf_hash, tree_root, verify_consistency, verify_inclusion,
};

use crate::support::h;

/// `testonly.LeafInputs()`.
fn leaf_inputs() -> Vec<Vec<u8>> {
    [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ]
    .iter()
    .map(|hex| {
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("test vector"))
            .collect()
    })
    .collect()
}

/// `testonly.NodeHashes()`: level, then index.
fn node_hashes() -> Vec<Vec<Hash>> {
    vec![
        vec![
            h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
            h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
            h("0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7"),
            h("07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7"),
            h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
            h("4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658"),
            h("b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f"),
            h("46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1"),
        ],
        vec![
            h("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"),
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
            h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
        ],
        vec![
            h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
            h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
        ],
        vec![h("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328")],
    ]
}

/// `testonly.RootHashes()`: index = tree size.
fn roots() -> Vec<Hash> {
    vec![
        h("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
        h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
        h("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"),
        h("aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77"),
        h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
        h("4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4"),
        h("76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef"),
        h("ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c"),
        h("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"),
    ]
}

/// `inclusionProofs` of verify_test.go, with the 1-based leaf numbers made 0-based indexes.
fn inclusion_vectors() -> Vec<(u64, u64, Vec<Hash>)> {
    vec![
        (0, 1, vec![]),
        (
            0,
            8,
            vec![
                h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
                h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
                h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
            ],
        ),
        (
            5,
            8,
            vec![
                h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
                h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
                h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
            ],
        ),
        (2, 3, vec![h("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125")]),
        (
            1,
            5,
            vec![
                h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
                h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
                h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
            ],
        ),
    ]
}

/// `consistencyProofs` of verify_test.go.
fn consistency_vectors() -> Vec<(u64, u64, Vec<Hash>)> {
    vec![
        (1, 1, vec![]),
        (
            1,
            8,
            vec![
                h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
                h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
                h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
            ],
        ),
        (
            6,
            8,
            vec![
                h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
                h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
                h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
            ],
        ),
        (
            2,
            5,
            vec![
                h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
                h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
            ],
        ),
        (
            6,
            7,
            vec![
                h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
                h("b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f"),
                h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
            ],
        ),
    ]
}

fn reference_tree() -> MemoryTree {
    MemoryTree::from_entries(leaf_inputs()).expect("8 leaves fit")
}

#[test]
fn leaf_and_node_hashes_match() {
    let tree = reference_tree();
    for (level, row) in node_hashes().iter().enumerate() {
        for (index, want) in row.iter().enumerate() {
            let id = NodeId::new(level as u8, index as u64);
            assert_eq!(tree.node(id), Some(*want), "node {id}");
        }
    }
    for (index, input) in leaf_inputs().iter().enumerate() {
        assert_eq!(leaf_hash(input), node_hashes()[0][index]);
    }
}

#[test]
fn roots_match_for_every_size() {
    let tree = reference_tree();
    for (size, want) in roots().iter().enumerate() {
        assert_eq!(tree_root(size as u64, &tree), Ok(*want), "size {size}");
    }
    assert_eq!(roots()[0], EMPTY_ROOT);
}

/// `testonly.CompactTrees()`: the right edge after each append.
#[test]
fn appender_right_edges_match_compact_trees() {
    let nh = node_hashes();
    let want: Vec<Vec<Hash>> = vec![
        vec![],
        vec![nh[0][0]],
        vec![nh[1][0]],
        vec![nh[1][0], nh[0][2]],
        vec![nh[2][0]],
        vec![nh[2][0], nh[0][4]],
        vec![nh[2][0], nh[1][2]],
        vec![nh[2][0], nh[1][2], nh[0][6]],
        vec![nh[3][0]],
    ];
    let mut appender = Appender::new();
    assert_eq!(appender.right_edge(), want[0].as_slice());
    for (size, input) in leaf_inputs().iter().enumerate() {
        let appended = appender.append(&[leaf_hash(input)]).expect("fits");
        assert_eq!(appender.right_edge(), want[size + 1].as_slice(), "size {}", size + 1);
        assert_eq!(appended.root, roots()[size + 1]);
        let restored = Appender::restore(size as u64 + 1, want[size + 1].clone()).expect("valid");
        assert_eq!(restored.root(), roots()[size + 1]);
    }
}

#[test]
fn inclusion_proofs_match_and_verify() {
    let tree = reference_tree();
    let leaves = leaf_inputs();
    for (index, size, want) in inclusion_vectors() {
        let proof = inclusion_proof(index, size, &tree).expect("in range");
        assert_eq!(proof, want, "inclusion {index} in {size}");
        let leaf = leaf_hash(&leaves[index as usize]);
        let root = roots()[size as usize];
        assert_eq!(verify_inclusion(&leaf, index, size, &proof, &root), Ok(()));
        for (description, probe) in corrupt_inclusion(&leaf, index, size, &proof, &root) {
            assert!(probe.is_err(), "inclusion {index} in {size}: accepted {description}");
        }
    }
}

/// The probes of `corruptInclusionProof` in verify_test.go.
fn corrupt_inclusion(
    leaf: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Vec<(String, Result<(), ProofError>)> {
    let some_hash = h("abacaba000000000000000000000000000000000000000000060061e00123456");
    let wrong_leaf = leaf_hash(b"WrongLeaf");
    let with = |p: Vec<Hash>| p;
    let mut probes = vec![
        ("index - 1", verify_inclusion(leaf, index.wrapping_sub(1), size, proof, root)),
        ("index + 1", verify_inclusion(leaf, index + 1, size, proof, root)),
        ("index ^ 2", verify_inclusion(leaf, index ^ 2, size, proof, root)),
        ("size * 2", verify_inclusion(leaf, index, size * 2, proof, root)),
        ("size / 2", verify_inclusion(leaf, index, size / 2, proof, root)),
        ("wrong leaf", verify_inclusion(&wrong_leaf, index, size, proof, root)),
        ("empty root", verify_inclusion(leaf, index, size, proof, &EMPTY_ROOT)),
        ("random root", verify_inclusion(leaf, index, size, proof, &some_hash)),
        (
            "trailing root",
            verify_inclusion(leaf, index, size, &with([proof, &[*root]].concat()), root),
        ),
        (
            "preceding root",
            verify_inclusion(leaf, index, size, &with([&[*root], proof].concat()), root),
        ),
    ]
    .into_iter()
    .map(|(d, r)| (d.to_owned(), r))
    .collect::<Vec<_>>();
    for i in 0..proof.len() {
        let mut wrong = proof.to_vec();
        wrong[i][0] ^= 8;
        probes
            .push((format!("proof[{i}] bit 3"), verify_inclusion(leaf, index, size, &wrong, root)));
    }
    if let Some((_, shorter)) = proof.split_last() {
        probes.push((
            "removed component".to_owned(),
            verify_inclusion(leaf, index, size, shorter, root),
        ));
    }
    if proof.len() > 1 {
        let mut inserted = vec![proof[0], some_hash];
        inserted.extend_from_slice(&proof[1..]);
        probes.push((
            "inserted component".to_owned(),
            verify_inclusion(leaf, index, size, &inserted, root),
        ));
    }
    probes
}

#[test]
fn consistency_proofs_match_and_verify() {
    let tree = reference_tree();
    for (old, new, want) in consistency_vectors() {
        let proof = consistency_proof(old, new, &tree).expect("in range");
        assert_eq!(proof, want, "consistency {old} to {new}");
        let (old_root, new_root) = (roots()[old as usize], roots()[new as usize]);
        assert_eq!(verify_consistency(old, new, &old_root, &new_root, &proof), Ok(()));
        if proof.is_empty() {
            continue;
        }
        for (description, probe) in corrupt_consistency(old, new, &old_root, &new_root, &proof) {
            assert!(probe.is_err(), "consistency {old} to {new}: accepted {description}");
        }
    }
}

/// The probes of `corruptConsistencyProof` in verify_test.go.
fn corrupt_consistency(
    old: u64,
    new: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Vec<(String, Result<(), ProofError>)> {
    let wrong_root = leaf_hash(b"WrongRoot");
    let v = |o: u64, n: u64, r1: &Hash, r2: &Hash, p: &[Hash]| verify_consistency(o, n, r1, r2, p);
    let mut probes = vec![
        ("old - 1", v(old - 1, new, old_root, new_root, proof)),
        ("old + 1", v(old + 1, new, old_root, new_root, proof)),
        ("old ^ 2", v(old ^ 2, new, old_root, new_root, proof)),
        ("new * 2", v(old, new * 2, old_root, new_root, proof)),
        ("new / 2", v(old, new / 2, old_root, new_root, proof)),
        ("wrong old root", v(old, new, &wrong_root, new_root, proof)),
        ("wrong new root", v(old, new, old_root, &wrong_root, proof)),
        ("swapped roots", v(old, new, new_root, old_root, proof)),
        ("empty proof", v(old, new, old_root, new_root, &[])),
        ("trailing old root", v(old, new, old_root, new_root, &[proof, &[*old_root]].concat())),
        ("trailing new root", v(old, new, old_root, new_root, &[proof, &[*new_root]].concat())),
        ("preceding old root", v(old, new, old_root, new_root, &[&[*old_root], proof].concat())),
        ("preceding new root", v(old, new, old_root, new_root, &[&[*new_root], proof].concat())),
        ("preceding proof[0]", v(old, new, old_root, new_root, &[&[proof[0]], proof].concat())),
        ("truncated proof", v(old, new, old_root, new_root, &proof[..proof.len() - 1])),
    ]
    .into_iter()
    .map(|(d, r)| (d.to_owned(), r))
    .collect::<Vec<_>>();
    for i in 0..proof.len() {
        let mut wrong = proof.to_vec();
        wrong[i][0] ^= 16;
        probes.push((format!("proof[{i}] bit 4"), v(old, new, old_root, new_root, &wrong)));
    }
    probes
}

/// `TestVerifyConsistency`'s table, adapted where this crate is stricter: an empty old tree
/// must come with the empty root.
#[test]
fn consistency_edge_cases() {
    let root1 = leaf_hash(b"don't care 1");
    let root2 = leaf_hash(b"don't care 2");
    let proof2 = [EMPTY_ROOT];
    type Case<'a> = (u64, u64, Hash, Hash, &'a [Hash], bool);
    let cases: [Case<'_>; 13] = [
        (0, 0, root1, root2, &[], false),
        (1, 1, root1, root2, &[], false),
        (0, 0, EMPTY_ROOT, EMPTY_ROOT, &[], true),
        (0, 1, EMPTY_ROOT, root2, &[], true),
        (1, 1, root2, root2, &[], true),
        (1, 0, root1, root2, &[], false),
        (2, 1, root1, root2, &[], false),
        (1, 2, root1, root2, &[], false),
        (0, 0, EMPTY_ROOT, root2, &[], false),
        (1, 1, EMPTY_ROOT, root2, &[], false),
        (0, 0, EMPTY_ROOT, EMPTY_ROOT, &proof2, false),
        (0, 1, EMPTY_ROOT, EMPTY_ROOT, &proof2, false),
        (1, 1, EMPTY_ROOT, EMPTY_ROOT, &proof2, false),
    ];
    for (old, new, old_root, new_root, proof, ok) in cases {
        let result = verify_consistency(old, new, &old_root, &new_root, proof);
        assert_eq!(result.is_ok(), ok, "{old} to {new}: {result:?}");
    }
    // Stricter than Go: a non-empty root for the empty tree is refused.
    assert!(verify_consistency(0, 1, &root1, &root2, &[]).is_err());
}

/// `TestVerifyInclusion`'s probes of impossible index/size pairs with an empty proof.
#[test]
fn inclusion_edge_cases() {
    let some_hash = h("abacaba000000000000000000000000000000000000000000060061e00123456");
    for (index, size) in [(0, 0), (0, 1), (1, 0), (2, 1)] {
        assert!(verify_inclusion(&some_hash, index, size, &[], &EMPTY_ROOT).is_err());
    }
    // A one-leaf tree: root and leaf hash are the same and the proof is empty.
    let leaf = leaf_hash(b"data");
    assert_eq!(verify_inclusion(&leaf, 0, 1, &[], &leaf), Ok(()));
    assert!(verify_inclusion(&leaf, 0, 1, &[], &EMPTY_ROOT).is_err());
}
