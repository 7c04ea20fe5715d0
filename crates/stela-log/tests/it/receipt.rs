//! Receipts end to end: log entries, sign a checkpoint, hand out a receipt, verify it offline,
//! and check that every kind of tampering is reported as exactly that.

use serde_json::json;
use stela_log::note::NoteError;
use stela_log::{
    Checkpoint, LogEntry, MemoryTree, Operation, ProofError, Receipt, ReceiptEntry, SignerKey,
    VerifierKey, VerifyError, inclusion_proofs, sign_note, verify_receipt,
};

const ORIGIN: &str = "stela.example/log";

struct Log {
    tree: MemoryTree,
    entries: Vec<String>,
    signer: SignerKey,
}

fn entry(i: i64) -> String {
    LogEntry {
        op: if i % 3 == 0 { Operation::Create } else { Operation::Update },
        entity_type: "Observation".to_owned(),
        entity_id: i,
        body: json!({"@iot.id": i, "result": i as f64 / 4.0}),
        committed_at: format!("2026-11-02T10:00:{:02}Z", i % 60),
        actor: String::new(),
    }
    .to_canonical_json()
    .expect("valid entry")
}

fn new_log(size: i64) -> Log {
    let entries: Vec<String> = (0..size).map(entry).collect();
    let tree = MemoryTree::from_entries(&entries).expect("fits");
    let signer = SignerKey::from_seed(ORIGIN, &[42; 32]).expect("valid name");
    Log { tree, entries, signer }
}

impl Log {
    fn checkpoint_note(&self) -> String {
        let checkpoint = Checkpoint {
            origin: ORIGIN.to_owned(),
            size: self.tree.size(),
            root: self.tree.root(),
            extensions: vec![],
        };
        sign_note(&checkpoint.to_text().expect("valid checkpoint"), &[&self.signer])
            .expect("valid text")
    }

    fn receipt(&self, indexes: &[u64]) -> Receipt {
        let proofs = inclusion_proofs(indexes, self.tree.size(), &self.tree).expect("stored");
        Receipt {
            entries: indexes
                .iter()
                .zip(&proofs)
                .map(|(&index, proof)| {
                    ReceiptEntry::new(index, self.entries[index as usize].clone(), proof)
                })
                .collect(),
            tree_size: self.tree.size(),
            checkpoint: self.checkpoint_note(),
        }
    }

    fn key(&self) -> VerifierKey {
        self.signer.verifier_key()
    }
}

#[test]
fn a_receipt_verifies_after_a_json_round_trip() {
    let log = new_log(37);
    let receipt = log.receipt(&[0, 5, 36]);
    let json = serde_json::to_string(&receipt).expect("serialisable");
    let read: Receipt = serde_json::from_str(&json).expect("deserialisable");
    assert_eq!(read, receipt);
    let verified = verify_receipt(&read, &log.key()).expect("valid receipt");
    assert_eq!(verified.checkpoint.origin, ORIGIN);
    assert_eq!(verified.checkpoint.size, 37);
    assert_eq!(verified.entries.len(), 3);
    assert_eq!(verified.entries[2].leaf_index, 36);
    assert_eq!(verified.entries[2].entry.entity_id, 36);
    // A one-entry log: the proof is empty.
    let tiny = new_log(1);
    assert!(verify_receipt(&tiny.receipt(&[0]), &tiny.key()).is_ok());
}

#[test]
fn unknown_fields_are_refused() {
    let log = new_log(3);
    let mut value = serde_json::to_value(log.receipt(&[1])).expect("serialisable");
    value["extra"] = json!(true);
    assert!(serde_json::from_value::<Receipt>(value).is_err());
}

#[test]
fn each_tampering_names_the_failed_check() {
    let log = new_log(37);
    let good = log.receipt(&[0, 5, 36]);
    let key = log.key();

    let other_key = SignerKey::from_seed(ORIGIN, &[43; 32]).expect("valid").verifier_key();
    assert_eq!(
        verify_receipt(&good, &other_key),
        Err(VerifyError::Signature(NoteError::NoTrustedSignature { unverified: 1 }))
    );

    let mut forged = good.clone();
    forged.checkpoint = forged.checkpoint.replacen("37\n", "38\n", 1);
    assert!(matches!(
        verify_receipt(&forged, &key),
        Err(VerifyError::Signature(NoteError::InvalidSignature { .. }))
    ));

    let mut wrong_size = good.clone();
    wrong_size.tree_size = 36;
    assert_eq!(
        verify_receipt(&wrong_size, &key),
        Err(VerifyError::TreeSizeMismatch { receipt: 36, checkpoint: 37 })
    );

    let mut altered_entry = good.clone();
    altered_entry.entries[1].entry = altered_entry.entries[1].entry.replace("1.25", "1.26");
    assert!(matches!(
        verify_receipt(&altered_entry, &key),
        Err(VerifyError::Inclusion {
            entry: 1,
            leaf_index: 5,
            source: ProofError::RootMismatch { .. }
        })
    ));

    let mut wrong_index = good.clone();
    wrong_index.entries[2].leaf_index = 35;
    assert!(matches!(
        verify_receipt(&wrong_index, &key),
        Err(VerifyError::Inclusion { entry: 2, leaf_index: 35, .. })
    ));

    let mut bad_base64 = good.clone();
    bad_base64.entries[1].inclusion_proof[2] = "not base64".to_owned();
    assert_eq!(
        verify_receipt(&bad_base64, &key),
        Err(VerifyError::ProofEncoding { entry: 1, element: 2 })
    );

    let mut short_proof = good.clone();
    short_proof.entries[0].inclusion_proof.pop();
    assert!(matches!(
        verify_receipt(&short_proof, &key),
        Err(VerifyError::Inclusion { entry: 0, source: ProofError::ProofTooShort, .. })
    ));

    let mut empty = good.clone();
    empty.entries.clear();
    assert_eq!(verify_receipt(&empty, &key), Err(VerifyError::NoEntries));

    // A correctly signed note whose text is not a checkpoint.
    let mut not_a_checkpoint = good.clone();
    not_a_checkpoint.checkpoint = sign_note("hello\n", &[&log.signer]).expect("valid");
    assert!(matches!(verify_receipt(&not_a_checkpoint, &key), Err(VerifyError::Checkpoint(_))));

    // A leaf that is in the tree but is not a canonical entry.
    let raw = MemoryTree::from_entries(["{\"op\": \"create\"}"]).expect("fits");
    let checkpoint =
        Checkpoint { origin: ORIGIN.to_owned(), size: 1, root: raw.root(), extensions: vec![] };
    let odd = Receipt {
        entries: vec![ReceiptEntry::new(0, "{\"op\": \"create\"}".to_owned(), &[])],
        tree_size: 1,
        checkpoint: sign_note(&checkpoint.to_text().expect("valid"), &[&log.signer])
            .expect("valid"),
    };
    assert!(matches!(verify_receipt(&odd, &key), Err(VerifyError::Entry { entry: 0, .. })));

    // Every error renders a message naming what failed.
    let message = verify_receipt(&bad_base64, &key).expect_err("invalid").to_string();
    assert_eq!(message, "entry 1: inclusion proof element 2 is not a base64 32-byte hash");
}
