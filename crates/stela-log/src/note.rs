//! C2SP signed-note (<https://c2sp.org/signed-note>) with Ed25519 keys, byte-compatible with
//! golang.org/x/mod/sumdb/note.
//!
//! ```text
//! If you think cryptography is the answer to your problem,      ┐ text: what is signed,
//! then you don't know what your problem is.                     ┘ ends with "\n"
//!                                                               ← one blank line
//! — PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZI…   ← "— " name " "
//!                                                                 base64(key ID ‖ signature)
//! ```
//!
//! Keys travel as text: the verifier key `<name>+<key ID hex>+<base64(0x01 ‖ public key)>`
//! and the signer key `PRIVATE+KEY+<name>+<key ID hex>+<base64(0x01 ‖ seed)>`, where
//! key ID = first 4 bytes of SHA-256(name ‖ "\n" ‖ 0x01 ‖ public key), big-endian.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

use crate::error::ErrorCode;
use crate::hash::sha256;

/// Signature type byte of Ed25519 in signed notes.
const ALGORITHM_ED25519: u8 = 0x01;

/// The prefix of a signature line: em dash (U+2014) and a space.
const SIGNATURE_PREFIX: &str = "\u{2014} ";

/// Most signature lines a note may carry (the C2SP minimum is 16; Go allows 100).
pub const MAX_SIGNATURES: usize = 100;

/// A public key that verifies notes: name, key ID and Ed25519 public key.
#[derive(Clone, PartialEq, Eq)]
pub struct VerifierKey {
    name: String,
    key_id: u32,
    public_key: VerifyingKey,
}

/// A private key that signs notes. Its `Debug` output hides the key.
#[derive(Clone)]
pub struct SignerKey {
    name: String,
    key_id: u32,
    signing_key: SigningKey,
}

/// One signature line of a note.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NoteSignature {
    /// Key name as written on the line.
    pub name: String,
    /// Key ID: the first four bytes of the base64 payload, big-endian.
    pub key_id: u32,
    /// The rest of the payload: the signature proper (64 bytes for Ed25519).
    pub signature: Vec<u8>,
}

/// A note split into text and signature lines, nothing verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// The signed text, including its final newline.
    pub text: String,
    /// Signature lines in order of appearance.
    pub signatures: Vec<NoteSignature>,
}

/// A note with at least one valid signature by a trusted key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenedNote {
    /// The signed text, including its final newline.
    pub text: String,
    /// Signatures by the given verifier keys, each key once, all valid.
    pub verified: Vec<NoteSignature>,
    /// Signatures by unknown keys (e.g. witnesses not configured), repeated lines dropped.
    pub unverified: Vec<NoteSignature>,
}

/// Why a key string or key could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The key does not have the `name+keyid+base64` (or `PRIVATE+KEY+…`) shape.
    #[error("malformed key: {0}")]
    Malformed(&'static str),
    /// The key name is empty or contains whitespace, `+` or a control character.
    #[error("invalid key name {0:?}")]
    InvalidName(String),
    /// The key's algorithm byte is not Ed25519 (0x01).
    #[error("unsupported key algorithm 0x{0:02x}")]
    UnsupportedAlgorithm(u8),
    /// The key material is not 32 bytes after the algorithm byte.
    #[error("key material is {0} bytes, expected 32")]
    WrongLength(usize),
    /// The stated key ID is not the one computed from name and public key.
    #[error("key id {stated:08x} does not match the computed id {computed:08x}")]
    KeyIdMismatch {
        /// The ID written in the key string.
        stated: u32,
        /// The ID computed from the name and the public key.
        computed: u32,
    },
    /// The public key is not a canonical encoding of a point, or has small order.
    #[error("invalid Ed25519 public key")]
    InvalidPublicKey,
}

/// Why a note could not be signed, parsed or verified.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    /// The text to sign or the note does not end with a newline.
    #[error("note text does not end with a newline")]
    MissingFinalNewline,
    /// The note contains an ASCII control character other than newline.
    #[error("note contains a control character at byte {0}")]
    ControlCharacter(usize),
    /// No blank line separates the text from signatures.
    #[error("note has no blank line before its signatures")]
    MissingSignatureBlock,
    /// The signature block is empty.
    #[error("note has no signature lines")]
    NoSignatures,
    /// A signature line is malformed; `line` counts signature lines from 1.
    #[error("signature line {line} is malformed: {reason}")]
    MalformedSignatureLine {
        /// Which signature line.
        line: usize,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// More than [`MAX_SIGNATURES`] signature lines.
    #[error("note has more than {MAX_SIGNATURES} signatures")]
    TooManySignatures,
    /// Two verifier keys share a name and key ID.
    #[error("ambiguous key {name}+{key_id:08x}")]
    AmbiguousKey {
        /// Shared name.
        name: String,
        /// Shared key ID.
        key_id: u32,
    },
    /// A signature by a trusted key does not verify.
    #[error("invalid signature for key {name}+{key_id:08x}")]
    InvalidSignature {
        /// The key's name.
        name: String,
        /// The key's ID.
        key_id: u32,
    },
    /// No signature is by a trusted key.
    #[error("note has no signature by a trusted key ({unverified} by unknown keys)")]
    NoTrustedSignature {
        /// How many distinct signatures by unknown keys the note had.
        unverified: usize,
    },
}

impl KeyError {
    /// The transport-agnostic kind of this error.
    pub fn code(&self) -> ErrorCode {
        ErrorCode::Malformed
    }
}

impl NoteError {
    /// The transport-agnostic kind of this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            NoteError::InvalidSignature { .. } | NoteError::NoTrustedSignature { .. } => {
                ErrorCode::VerificationFailed
            }
            _ => ErrorCode::Malformed,
        }
    }
}

/// Whether `name` may be a key name: non-empty, no Unicode whitespace, no `+`, no control
/// characters (which a note could not carry anyway).
pub fn is_valid_key_name(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(|c| c.is_whitespace() || c == '+' || c.is_control())
}

/// The key ID of an Ed25519 key: SHA-256(name ‖ "\n" ‖ 0x01 ‖ public key)[..4], big-endian.
pub fn ed25519_key_id(name: &str, public_key: &VerifyingKey) -> u32 {
    let digest =
        sha256(&[name.as_bytes(), b"\n", &[ALGORITHM_ED25519], public_key.as_bytes().as_slice()]);
    u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]])
}

fn check_name(name: &str) -> Result<(), KeyError> {
    if is_valid_key_name(name) { Ok(()) } else { Err(KeyError::InvalidName(name.to_owned())) }
}

/// Parses `hex8+base64(0x01 ‖ 32 bytes)` into the stated key ID and the 32 bytes.
fn parse_id_and_material(id_hex: &str, material: &str) -> Result<(u32, [u8; 32]), KeyError> {
    let lowercase_hex = id_hex.len() == 8
        && id_hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !lowercase_hex {
        return Err(KeyError::Malformed("key id is not 8 lowercase hex digits"));
    }
    let stated =
        u32::from_str_radix(id_hex, 16).map_err(|_| KeyError::Malformed("key id is not hex"))?;
    let bytes = STANDARD.decode(material).map_err(|_| KeyError::Malformed("key is not base64"))?;
    if STANDARD.encode(&bytes) != material {
        return Err(KeyError::Malformed("key base64 is not canonical"));
    }
    let (&algorithm, key) = bytes.split_first().ok_or(KeyError::Malformed("key is empty"))?;
    if algorithm != ALGORITHM_ED25519 {
        return Err(KeyError::UnsupportedAlgorithm(algorithm));
    }
    let key: [u8; 32] = key.try_into().map_err(|_| KeyError::WrongLength(key.len()))?;
    Ok((stated, key))
}

fn checked_public_key(bytes: &[u8; 32]) -> Result<VerifyingKey, KeyError> {
    let key = VerifyingKey::from_bytes(bytes).map_err(|_| KeyError::InvalidPublicKey)?;
    // Reject small-order points and non-canonical encodings, as current Go note does.
    if key.is_weak() || key.to_edwards().compress().to_bytes() != *bytes {
        return Err(KeyError::InvalidPublicKey);
    }
    Ok(key)
}

impl VerifierKey {
    /// A verifier key for `name` and an Ed25519 public key.
    pub fn new(name: &str, public_key: VerifyingKey) -> Result<VerifierKey, KeyError> {
        check_name(name)?;
        let public_key = checked_public_key(public_key.as_bytes())?;
        let key_id = ed25519_key_id(name, &public_key);
        Ok(VerifierKey { name: name.to_owned(), key_id, public_key })
    }

    /// Parses `<name>+<key ID hex>+<base64(0x01 ‖ public key)>`, checking the key ID.
    pub fn parse(text: &str) -> Result<VerifierKey, KeyError> {
        let mut parts = text.splitn(3, '+');
        let (Some(name), Some(id_hex), Some(material)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(KeyError::Malformed("expected <name>+<key id>+<key>"));
        };
        check_name(name)?;
        let (stated, key_bytes) = parse_id_and_material(id_hex, material)?;
        let public_key = checked_public_key(&key_bytes)?;
        let computed = ed25519_key_id(name, &public_key);
        if stated != computed {
            return Err(KeyError::KeyIdMismatch { stated, computed });
        }
        Ok(VerifierKey { name: name.to_owned(), key_id: computed, public_key })
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key ID.
    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// The Ed25519 public key.
    pub fn public_key(&self) -> &VerifyingKey {
        &self.public_key
    }

    /// Whether `signature` is this key's valid Ed25519 signature of `message` (strict
    /// verification: canonical `S`, no small-order `R`).
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        Signature::from_slice(signature)
            .is_ok_and(|signature| self.public_key.verify_strict(message, &signature).is_ok())
    }
}

impl fmt::Display for VerifierKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut material = Vec::with_capacity(33);
        material.push(ALGORITHM_ED25519);
        material.extend_from_slice(self.public_key.as_bytes());
        write!(f, "{}+{:08x}+{}", self.name, self.key_id, STANDARD.encode(material))
    }
}

impl fmt::Debug for VerifierKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VerifierKey({self})")
    }
}

impl FromStr for VerifierKey {
    type Err = KeyError;

    fn from_str(text: &str) -> Result<VerifierKey, KeyError> {
        VerifierKey::parse(text)
    }
}

impl SignerKey {
    /// A signer for `name` with the caller's key (generated elsewhere: this crate has no
    /// randomness).
    pub fn new(name: &str, signing_key: SigningKey) -> Result<SignerKey, KeyError> {
        check_name(name)?;
        let public_key = checked_public_key(signing_key.verifying_key().as_bytes())?;
        let key_id = ed25519_key_id(name, &public_key);
        Ok(SignerKey { name: name.to_owned(), key_id, signing_key })
    }

    /// A signer for `name` from a 32-byte Ed25519 seed (RFC 8032 private key).
    pub fn from_seed(name: &str, seed: &[u8; 32]) -> Result<SignerKey, KeyError> {
        SignerKey::new(name, SigningKey::from_bytes(seed))
    }

    /// Parses `PRIVATE+KEY+<name>+<key ID hex>+<base64(0x01 ‖ seed)>`, checking that the key
    /// ID matches the public key derived from the seed.
    pub fn parse(text: &str) -> Result<SignerKey, KeyError> {
        let rest = text
            .strip_prefix("PRIVATE+KEY+")
            .ok_or(KeyError::Malformed("signer key does not start with PRIVATE+KEY+"))?;
        let mut parts = rest.splitn(3, '+');
        let (Some(name), Some(id_hex), Some(material)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(KeyError::Malformed("expected PRIVATE+KEY+<name>+<key id>+<seed>"));
        };
        check_name(name)?;
        let (stated, seed) = parse_id_and_material(id_hex, material)?;
        let signer = SignerKey::from_seed(name, &seed)?;
        if stated != signer.key_id {
            return Err(KeyError::KeyIdMismatch { stated, computed: signer.key_id });
        }
        Ok(signer)
    }

    /// The private key string that [`SignerKey::parse`] reads. Keep it secret.
    pub fn to_private_key_string(&self) -> String {
        let mut material = Vec::with_capacity(33);
        material.push(ALGORITHM_ED25519);
        material.extend_from_slice(self.signing_key.as_bytes());
        format!("PRIVATE+KEY+{}+{:08x}+{}", self.name, self.key_id, STANDARD.encode(material))
    }

    /// The matching verifier key.
    pub fn verifier_key(&self) -> VerifierKey {
        VerifierKey {
            name: self.name.clone(),
            key_id: self.key_id,
            public_key: self.signing_key.verifying_key(),
        }
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key ID.
    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// The Ed25519 signature of `message` (deterministic, RFC 8032).
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.signing_key.sign(message).to_bytes()
    }
}

impl fmt::Debug for SignerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SignerKey({}+{:08x}+<redacted>)", self.name, self.key_id)
    }
}

impl NoteSignature {
    /// The signature line, without its newline: `— <name> <base64(key ID ‖ signature)>`.
    pub fn to_line(&self) -> String {
        let mut payload = Vec::with_capacity(4 + self.signature.len());
        payload.extend_from_slice(&self.key_id.to_be_bytes());
        payload.extend_from_slice(&self.signature);
        format!("{SIGNATURE_PREFIX}{} {}", self.name, STANDARD.encode(payload))
    }

    fn parse_line(line: &str, number: usize) -> Result<NoteSignature, NoteError> {
        let malformed = |reason| NoteError::MalformedSignatureLine { line: number, reason };
        let rest =
            line.strip_prefix(SIGNATURE_PREFIX).ok_or(malformed("does not start with \"— \""))?;
        let (name, encoded) = rest.split_once(' ').ok_or(malformed("no space after key name"))?;
        if !is_valid_key_name(name) {
            return Err(malformed("invalid key name"));
        }
        let payload = STANDARD.decode(encoded).map_err(|_| malformed("signature is not base64"))?;
        if STANDARD.encode(&payload) != encoded {
            return Err(malformed("signature base64 is not canonical"));
        }
        let [a, b, c, d, signature @ ..] = payload.as_slice() else {
            return Err(malformed("signature is shorter than 5 bytes"));
        };
        if signature.is_empty() {
            return Err(malformed("signature is shorter than 5 bytes"));
        }
        Ok(NoteSignature {
            name: name.to_owned(),
            key_id: u32::from_be_bytes([*a, *b, *c, *d]),
            signature: signature.to_vec(),
        })
    }
}

fn check_control_characters(text: &str) -> Result<(), NoteError> {
    match text.bytes().position(|b| b < 0x20 && b != b'\n') {
        Some(at) => Err(NoteError::ControlCharacter(at)),
        None => Ok(()),
    }
}

impl Note {
    /// Splits a note into text and signature lines, checking its syntax only.
    pub fn parse(message: &str) -> Result<Note, NoteError> {
        check_control_characters(message)?;
        // The text ends at the last blank line; it keeps its own final newline.
        let split = message.rfind("\n\n").ok_or(NoteError::MissingSignatureBlock)?;
        let (text, block) = (&message[..=split], &message[split + 2..]);
        if block.is_empty() {
            return Err(NoteError::NoSignatures);
        }
        let lines = block.strip_suffix('\n').ok_or(NoteError::MissingFinalNewline)?;
        let mut signatures = Vec::new();
        for (number, line) in lines.split('\n').enumerate() {
            if number >= MAX_SIGNATURES {
                return Err(NoteError::TooManySignatures);
            }
            signatures.push(NoteSignature::parse_line(line, number + 1)?);
        }
        Ok(Note { text: text.to_owned(), signatures })
    }
}

impl fmt::Display for Note {
    /// The note as transmitted: text, blank line, one line per signature.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.text)?;
        for signature in &self.signatures {
            writeln!(f, "{}", signature.to_line())?;
        }
        Ok(())
    }
}

/// Signs `text` (which must end with a newline) with each signer, in order, and returns the
/// note: text, blank line, signature lines.
pub fn sign_note(text: &str, signers: &[&SignerKey]) -> Result<String, NoteError> {
    if !text.ends_with('\n') {
        return Err(NoteError::MissingFinalNewline);
    }
    check_control_characters(text)?;
    if signers.is_empty() {
        return Err(NoteError::NoSignatures);
    }
    if signers.len() > MAX_SIGNATURES {
        return Err(NoteError::TooManySignatures);
    }
    let note = Note {
        text: text.to_owned(),
        signatures: signers
            .iter()
            .map(|signer| NoteSignature {
                name: signer.name.clone(),
                key_id: signer.key_id,
                signature: signer.sign(text.as_bytes()).to_vec(),
            })
            .collect(),
    };
    Ok(note.to_string())
}

/// Parses a note and checks its signatures against the trusted `verifiers`.
///
/// Signatures by unknown keys (name and key ID not both matching a verifier) are kept aside in
/// [`OpenedNote::unverified`]; every signature by a known key must verify; at least one must
/// exist. Duplicate verifier keys are an error, as in Go.
pub fn open_note(message: &str, verifiers: &[VerifierKey]) -> Result<OpenedNote, NoteError> {
    let note = Note::parse(message)?;
    let mut verified = Vec::new();
    let mut verified_keys = BTreeSet::new();
    let mut unverified = Vec::new();
    let mut unverified_seen = BTreeSet::new();
    for signature in note.signatures {
        let mut matching = verifiers
            .iter()
            .filter(|key| key.name == signature.name && key.key_id == signature.key_id);
        let Some(key) = matching.next() else {
            if unverified_seen.insert(signature.clone()) {
                unverified.push(signature);
            }
            continue;
        };
        if matching.next().is_some() {
            return Err(NoteError::AmbiguousKey { name: signature.name, key_id: signature.key_id });
        }
        if !key.verify(note.text.as_bytes(), &signature.signature) {
            return Err(NoteError::InvalidSignature {
                name: signature.name,
                key_id: signature.key_id,
            });
        }
        if verified_keys.insert((signature.name.clone(), signature.key_id)) {
            verified.push(signature);
        }
    }
    if verified.is_empty() {
        return Err(NoteError::NoTrustedSignature { unverified: unverified.len() });
    }
    Ok(OpenedNote { text: note.text, verified, unverified })
}
