//! [`ErrorCode`]: the one small, transport-agnostic classification every error of this crate
//! maps to, so the server can pick a status in a single table.

/// What kind of failure an error of this crate is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// The input does not parse: a malformed checkpoint, note, key, tile path, entry bundle,
    /// log entry or receipt (the client's fault, HTTP 400).
    Malformed,
    /// The input parses but a cryptographic check fails: a signature, an inclusion or
    /// consistency proof, a root (the client's evidence is wrong, HTTP 400/422).
    VerificationFailed,
    /// The request names a leaf or tree size the tree cannot answer for (HTTP 400/404).
    OutOfRange,
    /// The hash store failed or is inconsistent; never the client's fault (HTTP 500).
    Internal,
}
