//! Signed-note vectors from golang.org/x/mod/sumdb/note `note_test.go` (the PeterNeumann and
//! EnochRoot keys), reproduced byte for byte.

use stela_log::note::{KeyError, MAX_SIGNATURES, Note, NoteError};
use stela_log::{SignerKey, VerifierKey, open_note, sign_note};

const PETER_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
const PETER_SKEY: &str =
    "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
const ENOCH_VKEY: &str = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop";
const TEXT: &str = "If you think cryptography is the answer to your problem,\n\
                    then you don't know what your problem is.\n";
const PETER_SIG: &str = "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";
const ENOCH_SIG: &str = "— EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n";

fn peter() -> VerifierKey {
    VerifierKey::parse(PETER_VKEY).expect("published key")
}

fn enoch() -> VerifierKey {
    VerifierKey::parse(ENOCH_VKEY).expect("published key")
}

/// `TestNewVerifier`, including every substring and every one-byte increment.
#[test]
fn verifier_key_parses_and_manglings_do_not() {
    let key = peter();
    assert_eq!(key.name(), "PeterNeumann");
    assert_eq!(key.key_id(), 0xc74f20a3);
    assert_eq!(key.to_string(), PETER_VKEY);
    let bytes = PETER_VKEY.as_bytes();
    for i in 0..=bytes.len() {
        for j in i + 1..=bytes.len() {
            if i == 0 && j == bytes.len() {
                continue;
            }
            let part = String::from_utf8_lossy(&bytes[i..j]);
            assert!(VerifierKey::parse(&part).is_err(), "accepted {part:?}");
        }
    }
    for i in 0..bytes.len() {
        let mut mangled = bytes.to_vec();
        mangled[i] = mangled[i].wrapping_add(1);
        let mangled = String::from_utf8_lossy(&mangled);
        assert!(VerifierKey::parse(&mangled).is_err(), "accepted {mangled:?}");
    }
    // Wrong key length and unknown algorithm, each with a key ID adjusted to match.
    assert!(
        VerifierKey::parse(
            "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY=="
        )
        .is_err()
    );
    assert_eq!(
        VerifierKey::parse("PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"),
        Err(KeyError::UnsupportedAlgorithm(0x65))
    );
}

/// `TestNewSigner`, plus the round trip of the private key string.
#[test]
fn signer_key_parses_and_manglings_do_not() {
    let signer = SignerKey::parse(PETER_SKEY).expect("published key");
    assert_eq!(signer.key_id(), 0xc74f20a3);
    assert_eq!(signer.to_private_key_string(), PETER_SKEY);
    assert_eq!(signer.verifier_key(), peter());
    assert!(!format!("{signer:?}").contains("AYEKFALV"), "Debug must not print the key");
    let bytes = PETER_SKEY.as_bytes();
    for i in 0..=bytes.len() {
        for j in i + 1..=bytes.len() {
            if i == 0 && j == bytes.len() {
                continue;
            }
            let part = String::from_utf8_lossy(&bytes[i..j]);
            assert!(SignerKey::parse(&part).is_err(), "accepted {part:?}");
        }
    }
    for i in 0..bytes.len() {
        let mut mangled = bytes.to_vec();
        mangled[i] = mangled[i].wrapping_add(1);
        let mangled = String::from_utf8_lossy(&mangled);
        assert!(SignerKey::parse(&mangled).is_err(), "accepted {mangled:?}");
    }
}

/// `TestSign` / `ExampleSign`: Ed25519 is deterministic, so the note is reproduced exactly.
#[test]
fn sign_reproduces_go_note() {
    let signer = SignerKey::parse(PETER_SKEY).expect("published key");
    let note = sign_note(TEXT, &[&signer]).expect("valid text");
    assert_eq!(note, format!("{TEXT}\n{PETER_SIG}"));
    assert_eq!(sign_note("abc", &[&signer]), Err(NoteError::MissingFinalNewline));
    assert!(sign_note("a\u{1}b\n", &[&signer]).is_err());
    assert_eq!(sign_note(TEXT, &[]), Err(NoteError::NoSignatures));
}

/// `TestOpen`.
#[test]
fn open_matches_go_behaviour() {
    let both = format!("{TEXT}\n{PETER_SIG}{ENOCH_SIG}");

    // One signature verified, one not.
    let opened = open_note(&both, &[peter()]).expect("signed by peter");
    assert_eq!(opened.text, TEXT);
    assert_eq!(opened.verified.len(), 1);
    assert_eq!(opened.verified[0].name, "PeterNeumann");
    assert_eq!(opened.verified[0].key_id, 0xc74f20a3);
    assert_eq!(opened.unverified.len(), 1);
    assert_eq!(opened.unverified[0].name, "EnochRoot");
    assert_eq!(opened.unverified[0].key_id, 0xaf0cfe78);
    assert_eq!(opened.unverified[0].to_line() + "\n", ENOCH_SIG);

    // Both verified.
    let opened = open_note(&both, &[peter(), enoch()]).expect("signed by both");
    assert_eq!(opened.verified.len(), 2);
    assert!(opened.unverified.is_empty());

    // Both unverified.
    assert_eq!(open_note(&both, &[]), Err(NoteError::NoTrustedSignature { unverified: 2 }));

    // Duplicated verifier: ambiguous only when it is used.
    let enoch_only = format!("{TEXT}\n{ENOCH_SIG}");
    assert_eq!(
        open_note(&enoch_only, &[enoch(), peter(), enoch()]),
        Err(NoteError::AmbiguousKey { name: "EnochRoot".to_owned(), key_id: 0xaf0cfe78 })
    );
    let peter_only = format!("{TEXT}\n{PETER_SIG}");
    assert!(open_note(&peter_only, &[enoch(), peter(), enoch()]).is_ok());

    // Too many signatures.
    let many = format!("{TEXT}\n{}", PETER_SIG.repeat(MAX_SIGNATURES + 1));
    assert_eq!(open_note(&many, &[peter()]), Err(NoteError::TooManySignatures));
    assert_eq!(open_note(&many, &[]), Err(NoteError::TooManySignatures));

    // Invalid signature: four base64 characters inserted into the signature.
    let (head, tail) = PETER_SIG.split_at(60);
    let corrupted = format!("{TEXT}\n{head}ABCD{tail}");
    assert_eq!(
        open_note(&corrupted, &[peter()]),
        Err(NoteError::InvalidSignature { name: "PeterNeumann".to_owned(), key_id: 0xc74f20a3 })
    );

    // Duplicated verified and unverified signatures.
    let (head, tail) = ENOCH_SIG.split_at(60);
    let enoch_abcd = format!("{head}ABCD{tail}");
    let message = format!("{TEXT}\n{PETER_SIG}{PETER_SIG}{ENOCH_SIG}{ENOCH_SIG}{enoch_abcd}");
    let opened = open_note(&message, &[peter()]).expect("signed by peter");
    assert_eq!(opened.verified.len(), 1);
    assert_eq!(opened.unverified.len(), 2);
    assert_eq!(opened.unverified[1].to_line() + "\n", enoch_abcd);

    // Invalid encoded message syntax ("\xff" cannot be a &str; UTF-8 is the caller's check).
    let bad_messages = [
        TEXT.to_owned(),
        format!("{TEXT}\n"),
        format!("{TEXT}\n{}", &PETER_SIG[..PETER_SIG.len() - 1]),
        format!("\u{1}{TEXT}\n{PETER_SIG}"),
        format!(
            "{TEXT}\n— Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM="
        ),
        format!("{TEXT}\n{PETER_SIG}Unexpected line.\n"),
    ];
    for message in bad_messages {
        let error = open_note(&message, &[peter()]).expect_err("malformed");
        assert_eq!(error.code(), stela_log::ErrorCode::Malformed, "{message:?}: {error}");
    }

    // A signature under the right key ID but another name is just unknown.
    let misnamed = format!("{TEXT}\n{}", PETER_SIG.replace("PeterNeumann", "CarmenSandiego"));
    assert_eq!(
        open_note(&misnamed, &[peter()]),
        Err(NoteError::NoTrustedSignature { unverified: 1 })
    );
    let wrong_id = format!("{TEXT}\n{}", PETER_SIG.replace("x08g", "xxxx"));
    assert_eq!(
        open_note(&wrong_id, &[peter()]),
        Err(NoteError::NoTrustedSignature { unverified: 1 })
    );
}

/// The structural parse and its display are inverse.
#[test]
fn note_round_trip() {
    let message = format!("{TEXT}\n{PETER_SIG}{ENOCH_SIG}");
    let note = Note::parse(&message).expect("well formed");
    assert_eq!(note.text, TEXT);
    assert_eq!(note.signatures.len(), 2);
    assert_eq!(note.to_string(), message);
    // A text with blank lines of its own: the last blank line separates the signatures.
    let signer = SignerKey::parse(PETER_SKEY).expect("published key");
    let text = "a\n\nb\n\n";
    let signed = sign_note(text, &[&signer]).expect("valid");
    assert_eq!(open_note(&signed, &[peter()]).expect("valid").text, text);
}

/// Keys made from caller-supplied bytes (the crate has no randomness) round-trip through
/// their text forms, and a key ID covers the name.
#[test]
fn keys_from_seed() {
    let signer = SignerKey::from_seed("stela.example/log", &[7; 32]).expect("valid name");
    let vkey = signer.verifier_key();
    assert_eq!(VerifierKey::parse(&vkey.to_string()), Ok(vkey.clone()));
    assert_eq!(
        SignerKey::parse(&signer.to_private_key_string()).map(|s| s.verifier_key()),
        Ok(vkey.clone())
    );
    assert!(SignerKey::from_seed("bad name", &[7; 32]).is_err());
    assert!(SignerKey::from_seed("a+b", &[7; 32]).is_err());
    assert!(SignerKey::from_seed("", &[7; 32]).is_err());
    let other = SignerKey::from_seed("stela.example/other", &[7; 32]).expect("valid name");
    assert_ne!(other.key_id(), signer.key_id());
    let note = sign_note("x\n", &[&signer, &other]).expect("valid");
    let opened = open_note(&note, &[vkey]).expect("signed");
    assert_eq!(opened.unverified.len(), 1);
}
