//! Every parser and verifier fed random and mutated input: each must return, never panic
//! (debug builds also trap integer overflow, so this covers arithmetic too).

use proptest::prelude::*;
use stela_log::{
    Appender, Checkpoint, EntryBundleId, Hash, LogEntry, Note, Receipt, SignerKey, TileId,
    VerifierKey, consistency_proof_node_ids, decode_entry_bundle, inclusion_proof_node_ids,
    open_note, parse_tile_path, root_from_inclusion_proof, root_from_tiles, tiles_for_growth,
    verify_consistency, verify_inclusion, verify_receipt,
};

const PETER_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
const PETER_SKEY: &str =
    "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
const PETER_NOTE: &str = "If you think cryptography is the answer to your problem,\n\
then you don't know what your problem is.\n\n\
— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";
const CHECKPOINT: &str =
    "go.sum database tree\n123456789012\nTszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBb0=\n";
const ENTRY: &str = r#"{"actor":"","body":{"@iot.id":42},"committed_at":"2026-11-02T10:00:00Z","entity_id":42,"entity_type":"Datastream","op":"delete"}"#;

/// A valid sample with up to four bytes replaced, deleted or inserted, as a lossy string.
fn mutated(sample: &'static str) -> impl Strategy<Value = String> {
    proptest::collection::vec((any::<usize>(), any::<u8>(), 0u8..3), 0..4).prop_map(move |edits| {
        let mut bytes = sample.as_bytes().to_vec();
        for (at, byte, kind) in edits {
            let at = at % (bytes.len() + 1);
            match kind {
                0 if at < bytes.len() => bytes[at] = byte,
                1 if at < bytes.len() => {
                    bytes.remove(at);
                }
                _ => bytes.insert(at, byte),
            }
        }
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        proptest::collection::vec(any::<u8>(), 0..200)
            .prop_map(|bytes| String::from_utf8_lossy(&bytes).into_owned()),
        "[—+/ .px0-9a-zA-Z=\n]{0,120}",
    ]
}

fn hashes(max: usize) -> impl Strategy<Value = Vec<Hash>> {
    proptest::collection::vec(any::<[u8; 32]>(), 0..max)
}

fn size() -> impl Strategy<Value = u64> {
    prop_oneof![any::<u64>(), 0u64..600, Just(u64::MAX), Just(u64::MAX - 1), Just(1u64 << 63)]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn text_parsers(input in text()) {
        let _ = Checkpoint::parse(&input);
        let _ = Note::parse(&input);
        let _ = open_note(&input, &[VerifierKey::parse(PETER_VKEY).expect("valid")]);
        let _ = VerifierKey::parse(&input);
        let _ = SignerKey::parse(&input);
        let _ = parse_tile_path(&input);
        let _ = LogEntry::from_canonical_json(&input);
        if let Ok(receipt) = serde_json::from_str::<Receipt>(&input) {
            let _ = verify_receipt(&receipt, &VerifierKey::parse(PETER_VKEY).expect("valid"));
        }
    }

    #[test]
    fn mutated_valid_inputs(
        note in mutated(PETER_NOTE),
        checkpoint in mutated(CHECKPOINT),
        vkey in mutated(PETER_VKEY),
        skey in mutated(PETER_SKEY),
        entry in mutated(ENTRY),
        path in mutated("tile/entries/x001/x234/067.p/17"),
    ) {
        let _ = open_note(&note, &[VerifierKey::parse(PETER_VKEY).expect("valid")]);
        let _ = Checkpoint::parse(&checkpoint);
        let _ = VerifierKey::parse(&vkey);
        let _ = SignerKey::parse(&skey);
        let _ = LogEntry::from_canonical_json(&entry);
        let _ = parse_tile_path(&path);
        let receipt = Receipt {
            entries: vec![stela_log::ReceiptEntry { leaf_index: 0, entry, inclusion_proof: vec![vkey] }],
            tree_size: 123456789012,
            checkpoint: format!("{checkpoint}\n{}", note.rsplit('\n').nth(1).unwrap_or_default()),
        };
        let _ = verify_receipt(&receipt, &VerifierKey::parse(PETER_VKEY).expect("valid"));
    }

    #[test]
    fn bundles(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = decode_entry_bundle(&bytes);
    }

    #[test]
    fn proof_verifiers(
        leaf in any::<[u8; 32]>(),
        root in any::<[u8; 32]>(),
        other_root in any::<[u8; 32]>(),
        index in size(),
        tree_size in size(),
        proof in hashes(70),
    ) {
        let _ = verify_inclusion(&leaf, index, tree_size, &proof, &root);
        let _ = root_from_inclusion_proof(&leaf, index, tree_size, &proof);
        let _ = verify_consistency(index, tree_size, &root, &other_root, &proof);
        let _ = inclusion_proof_node_ids(index, tree_size);
        let _ = consistency_proof_node_ids(index, tree_size);
    }

    #[test]
    fn appender_and_tiles(
        tree_size in size(),
        edge in hashes(66),
        leaves in hashes(5),
        level in any::<u8>(),
        index in any::<u64>(),
        width in any::<u16>(),
        growth in 0u64..2000,
    ) {
        if let Ok(mut appender) = Appender::restore(tree_size, edge) {
            let _ = appender.append(&leaves);
            let _ = appender.root();
        }
        let tile = TileId { level, index, width };
        let _ = tile.node_ids();
        let _ = tile.path();
        let _ = EntryBundleId { index, width }.path();
        let _ = TileId::at_size(level, index, tree_size);
        let _ = tiles_for_growth(tree_size, tree_size.saturating_add(growth));
    }

    #[test]
    fn tile_reader_with_hostile_server(
        tree_size in prop_oneof![0u64..100_000, size()],
        seed in any::<u8>(),
        honest_length in any::<bool>(),
    ) {
        let fetch = |tile: &TileId| -> Result<Vec<u8>, ()> {
            let len = if honest_length { usize::from(tile.width) * 32 } else { usize::from(seed) };
            Ok(vec![seed; len])
        };
        let _ = root_from_tiles(tree_size, fetch);
    }
}
