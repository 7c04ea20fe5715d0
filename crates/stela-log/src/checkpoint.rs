//! C2SP tlog-checkpoint (<https://c2sp.org/tlog-checkpoint>): the note text that states a log's
//! origin, tree size and root hash.
//!
//! ```text
//! example.com/behind-the-sofa                    ← origin
//! 20852163                                       ← tree size, decimal, no leading zeros
//! CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=   ← base64 root hash
//! [extension lines, each non-empty]
//! ```

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::error::ErrorCode;
use crate::hash::{HASH_SIZE, Hash};

/// A parsed checkpoint body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's identity, conventionally a schema-less URL such as `example.com/log42`.
    pub origin: String,
    /// Number of leaves in the tree.
    pub size: u64,
    /// RFC 6962 root of the tree of `size` leaves.
    pub root: Hash,
    /// Opaque extra lines, each non-empty; not recommended by the spec, kept for round trips.
    pub extensions: Vec<String>,
}

/// Why a checkpoint text was rejected, naming the 1-based line at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    /// The text does not end with a newline.
    #[error("checkpoint does not end with a newline")]
    MissingFinalNewline,
    /// The text has fewer than the three mandatory lines.
    #[error("checkpoint has {0} lines, needs at least 3")]
    TooFewLines(usize),
    /// A line is empty (origin, size, root and extensions must all be non-empty).
    #[error("checkpoint line {0} is empty")]
    EmptyLine(usize),
    /// The text contains an ASCII control character other than newline.
    #[error("checkpoint line {0} contains a control character")]
    ControlCharacter(usize),
    /// The size line is not a canonical decimal `u64`.
    #[error("checkpoint size {0:?} is not a decimal number without leading zeros")]
    InvalidSize(String),
    /// The root line is not the canonical base64 of 32 bytes.
    #[error("checkpoint root {0:?} is not the base64 of a 32-byte hash")]
    InvalidRoot(String),
}

impl CheckpointError {
    /// The transport-agnostic kind of this error.
    pub fn code(&self) -> ErrorCode {
        ErrorCode::Malformed
    }
}

impl Checkpoint {
    /// The note text: `origin\nsize\nbase64(root)\n` followed by one line per extension.
    ///
    /// Fails, rather than produce a text that would read back differently, when the origin or
    /// an extension is empty or contains a newline or another control character.
    pub fn to_text(&self) -> Result<String, CheckpointError> {
        let free_lines = std::iter::once((1, self.origin.as_str()))
            .chain(self.extensions.iter().enumerate().map(|(i, line)| (i + 4, line.as_str())));
        for (number, line) in free_lines {
            check_line(number, line)?;
        }
        let mut text = format!("{}\n{}\n{}\n", self.origin, self.size, STANDARD.encode(self.root));
        for extension in &self.extensions {
            text.push_str(extension);
            text.push('\n');
        }
        debug_assert_eq!(Checkpoint::parse(&text).as_ref(), Ok(self));
        Ok(text)
    }

    /// Parses a note text strictly: exactly the format [`Checkpoint::to_text`] writes, with
    /// no spaces, leading zeros, non-canonical base64 or empty lines tolerated.
    pub fn parse(text: &str) -> Result<Checkpoint, CheckpointError> {
        let body = text.strip_suffix('\n').ok_or(CheckpointError::MissingFinalNewline)?;
        let lines: Vec<&str> = body.split('\n').collect();
        for (number, line) in lines.iter().enumerate() {
            check_line(number + 1, line)?;
        }
        let [origin, size, root, extensions @ ..] = lines.as_slice() else {
            return Err(CheckpointError::TooFewLines(lines.len()));
        };
        Ok(Checkpoint {
            origin: (*origin).to_owned(),
            size: parse_size(size)?,
            root: parse_root(root)?,
            extensions: extensions.iter().map(|line| (*line).to_owned()).collect(),
        })
    }
}

/// Every line must be non-empty and free of control characters (newline included).
fn check_line(number: usize, line: &str) -> Result<(), CheckpointError> {
    if line.is_empty() {
        return Err(CheckpointError::EmptyLine(number));
    }
    if line.chars().any(|c| c.is_ascii_control()) {
        return Err(CheckpointError::ControlCharacter(number));
    }
    Ok(())
}

fn parse_size(line: &str) -> Result<u64, CheckpointError> {
    let invalid = || CheckpointError::InvalidSize(line.to_owned());
    let canonical =
        line.bytes().all(|b| b.is_ascii_digit()) && (line == "0" || !line.starts_with('0'));
    if !canonical {
        return Err(invalid());
    }
    line.parse().map_err(|_| invalid())
}

/// Decodes the standard, padded, canonical base64 of a 32-byte hash.
pub(crate) fn decode_hash_base64(text: &str) -> Option<Hash> {
    let bytes = STANDARD.decode(text).ok()?;
    let hash: Hash = bytes.try_into().ok()?;
    // The engine already rejects non-zero trailing bits; the round trip makes the rule explicit.
    (STANDARD.encode(hash) == text).then_some(hash)
}

fn parse_root(line: &str) -> Result<Hash, CheckpointError> {
    debug_assert_eq!(HASH_SIZE, 32);
    decode_hash_base64(line).ok_or_else(|| CheckpointError::InvalidRoot(line.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::leaf_hash;

    /// golang.org/x/mod/sumdb/tlog note_test.go `TestFormatTree`: the root is
    /// `RecordHash("hello world")`, i.e. the RFC 6962 leaf hash.
    const GO_TREE: &str =
        "go.sum database tree\n123456789012\nTszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBb0=\n";

    #[test]
    fn go_sumdb_tree_vector() {
        let checkpoint = Checkpoint {
            origin: "go.sum database tree".to_owned(),
            size: 123456789012,
            root: leaf_hash(b"hello world"),
            extensions: vec![],
        };
        assert_eq!(checkpoint.to_text().as_deref(), Ok(GO_TREE));
        assert_eq!(Checkpoint::parse(GO_TREE), Ok(checkpoint));
    }

    #[test]
    fn round_trip_with_extensions() {
        let checkpoint = Checkpoint {
            origin: "stela.example/log".to_owned(),
            size: 0,
            root: crate::hash::EMPTY_ROOT,
            extensions: vec!["a b".to_owned(), "— c".to_owned()],
        };
        let text = checkpoint.to_text().expect("valid");
        assert_eq!(Checkpoint::parse(&text), Ok(checkpoint));
    }

    #[test]
    fn refuses_to_write_what_would_not_read_back() {
        let valid = Checkpoint {
            origin: "o".to_owned(),
            size: 1,
            root: crate::hash::EMPTY_ROOT,
            extensions: vec![],
        };
        for origin in ["", "a\nb", "a\rb"] {
            let checkpoint = Checkpoint { origin: origin.to_owned(), ..valid.clone() };
            assert!(checkpoint.to_text().is_err(), "{origin:?}");
        }
        for extension in ["", "x\n", "\u{1}"] {
            let checkpoint = Checkpoint { extensions: vec![extension.to_owned()], ..valid.clone() };
            assert!(checkpoint.to_text().is_err(), "{extension:?}");
        }
    }

    #[test]
    fn rejects_non_canonical_forms() {
        let root = "TszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBb0=";
        let bad = [
            format!("o\n1\n{root}"),
            format!("o\n01\n{root}\n"),
            format!("o\n+1\n{root}\n"),
            format!("o\n 1\n{root}\n"),
            format!("o\n0xabcdef\n{root}\n"),
            format!("o\n18446744073709551616\n{root}\n"),
            "o\n1\nTszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBTOOBIG=\n".to_owned(),
            "o\n1\nTszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBb1=\n".to_owned(),
            "o\n1\nTszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBb0\n".to_owned(),
            format!("\n1\n{root}\n"),
            format!("o\n1\n{root}\n\n"),
            format!("o\n1\n{root}\next\n\n"),
            format!("o\r\n1\n{root}\n"),
            "o\n1\n".to_owned(),
            String::new(),
        ];
        for text in bad {
            assert!(Checkpoint::parse(&text).is_err(), "accepted {text:?}");
        }
    }
}
