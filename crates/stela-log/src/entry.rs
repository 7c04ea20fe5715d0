//! The log entry: what one committed write looks like in the log, serialised with the RFC 8785
//! JSON Canonicalization Scheme so that anyone can recompute its leaf hash byte for byte.
//!
//! ```text
//! {"actor":"","body":{"@iot.id":7,"name":"t1"},"committed_at":"2026-11-02T10:00:00Z",
//!  "entity_id":7,"entity_type":"Thing","op":"create"}
//! ```
//!
//! Canonicalisation is `serde_json_canonicalizer` (RFC 8785: keys sorted by UTF-16 code units,
//! ECMAScript number formatting, minimal escapes), checked against the RFC's own vectors in
//! the tests. JCS treats every number as a double (I-JSON, RFC 7493); an integer it would round,
//! such as 2^53 + 1, is refused instead of logged wrongly.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::ErrorCode;
use crate::hash::{Hash, leaf_hash};

/// Largest integer magnitude a double holds exactly (2^53 − 1, ECMAScript's
/// `Number.MAX_SAFE_INTEGER`).
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// Deepest nesting of `body` accepted; deeper input is refused to protect the stack.
pub const MAX_BODY_DEPTH: usize = 64;

/// The kind of write an entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Operation {
    /// A new entity.
    Create,
    /// A changed entity (PATCH or PUT).
    Update,
    /// A removed entity.
    Delete,
}

/// One committed write, as logged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogEntry {
    /// What happened.
    pub op: Operation,
    /// SensorThings entity type, e.g. `Thing`, `Observation`.
    pub entity_type: String,
    /// The entity's `@iot.id`.
    pub entity_id: i64,
    /// The entity's JSON after the write; `{"@iot.id": id}` for a delete.
    pub body: Value,
    /// When the write committed, RFC 3339 (e.g. `2026-11-02T10:00:00.123Z`), from the
    /// caller's clock.
    pub committed_at: String,
    /// Who wrote; empty until authentication exists.
    pub actor: String,
}

/// Why an entry cannot be logged or read back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    /// `committed_at` is not an RFC 3339 date-time.
    #[error("committed_at {0:?} is not an RFC 3339 date-time")]
    InvalidTimestamp(String),
    /// An integer that JCS would round (beyond ±(2^53 − 1) and not exactly printable).
    #[error("number at {path} cannot be represented exactly in canonical JSON")]
    UnsafeNumber {
        /// JSON pointer to the number (`/entity_id` or `/body/...`).
        path: String,
    },
    /// `body` nests deeper than [`MAX_BODY_DEPTH`].
    #[error("body nests deeper than {MAX_BODY_DEPTH} levels")]
    TooDeep,
    /// The text is not the JSON of a log entry.
    #[error("not a log entry: {0}")]
    NotAnEntry(String),
    /// The text is a log entry but not in canonical form.
    #[error("log entry is not in RFC 8785 canonical form")]
    NotCanonical,
    /// The canonicaliser failed.
    #[error("canonicalising entry: {0}")]
    Canonicalize(String),
}

impl EntryError {
    /// The transport-agnostic kind of this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            EntryError::Canonicalize(_) => ErrorCode::Internal,
            _ => ErrorCode::Malformed,
        }
    }
}

impl LogEntry {
    /// The entry for deleting entity `entity_id` of `entity_type`: its body is
    /// `{"@iot.id": entity_id}`.
    pub fn delete(entity_type: &str, entity_id: i64, committed_at: &str, actor: &str) -> LogEntry {
        LogEntry {
            op: Operation::Delete,
            entity_type: entity_type.to_owned(),
            entity_id,
            body: serde_json::json!({ "@iot.id": entity_id }),
            committed_at: committed_at.to_owned(),
            actor: actor.to_owned(),
        }
    }

    /// Checks the entry can be logged exactly: RFC 3339 timestamp, no integer that JCS would
    /// round, bounded nesting.
    pub fn validate(&self) -> Result<(), EntryError> {
        validate_parts(self.entity_id, &self.body, &self.committed_at)
    }

    /// The RFC 8785 canonical JSON of the entry: the exact bytes that are logged.
    pub fn to_canonical_json(&self) -> Result<String, EntryError> {
        canonical_entry(
            self.op,
            &self.entity_type,
            self.entity_id,
            &self.body,
            &self.committed_at,
            &self.actor,
        )
    }

    /// The entry's leaf hash: [`leaf_hash`] of its canonical JSON.
    pub fn leaf_hash(&self) -> Result<Hash, EntryError> {
        Ok(leaf_hash(self.to_canonical_json()?.as_bytes()))
    }

    /// Reads an entry from its canonical JSON, refusing any other serialisation of it.
    pub fn from_canonical_json(text: &str) -> Result<LogEntry, EntryError> {
        let entry: LogEntry =
            serde_json::from_str(text).map_err(|e| EntryError::NotAnEntry(e.to_string()))?;
        if entry.to_canonical_json()? != text {
            return Err(EntryError::NotCanonical);
        }
        Ok(entry)
    }
}

/// The RFC 8785 canonical JSON of the entry made of these parts (see [`LogEntry`]), checked as
/// [`LogEntry::validate`] checks it; what [`LogEntry::to_canonical_json`] returns, without
/// building the entry (the write path logs every change through here).
pub fn canonical_entry(
    op: Operation,
    entity_type: &str,
    entity_id: i64,
    body: &Value,
    committed_at: &str,
    actor: &str,
) -> Result<String, EntryError> {
    validate_parts(entity_id, body, committed_at)?;
    let envelope = EntryEnvelope::unchecked(committed_at, actor);
    Ok(envelope
        .write(op, entity_type, entity_id, 256, |out| crate::jcs::write_canonical(body, out)))
}

/// [`canonical_entry`] for the body of an entity, `{"@iot.id": body_id, …members}`, given as
/// the canonical text of its members other than `@iot.id` (`"name":"x","result":1`, sorted,
/// no braces): the write path renders a body once, straight into the entry.
///
/// Every member's name must sort after `@iot.id` (entity property and relation names do: they
/// start with a letter), and every member's value must have passed [`check_body_member`].
pub fn canonical_entity_entry(
    op: Operation,
    entity_type: &str,
    entity_id: i64,
    body_id: i64,
    members: &str,
    committed_at: &str,
    actor: &str,
) -> Result<String, EntryError> {
    EntryEnvelope::new(committed_at, actor)?.entity_entry(
        op,
        entity_type,
        entity_id,
        body_id,
        members,
    )
}

/// What the entries of one transaction share, its commit time and actor, checked and rendered
/// once: [`EntryEnvelope::entity_entry`] is [`canonical_entity_entry`] without checking and
/// escaping them again for every change (the write path renders an entry per change).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryEnvelope {
    /// `{"actor":"…","body":`
    head: String,
    /// `,"committed_at":"…","entity_id":`
    middle: String,
}

impl EntryEnvelope {
    /// Checks `committed_at` (RFC 3339) and renders the shared parts.
    pub fn new(committed_at: &str, actor: &str) -> Result<EntryEnvelope, EntryError> {
        if !is_rfc3339(committed_at) {
            return Err(EntryError::InvalidTimestamp(committed_at.to_owned()));
        }
        Ok(EntryEnvelope::unchecked(committed_at, actor))
    }

    fn unchecked(committed_at: &str, actor: &str) -> EntryEnvelope {
        let mut head = String::from("{\"actor\":");
        crate::jcs::write_string(actor, &mut head);
        head.push_str(",\"body\":");
        let mut middle = String::from(",\"committed_at\":");
        crate::jcs::write_string(committed_at, &mut middle);
        middle.push_str(",\"entity_id\":");
        EntryEnvelope { head, middle }
    }

    /// [`canonical_entity_entry`] with this envelope's commit time and actor.
    pub fn entity_entry(
        &self,
        op: Operation,
        entity_type: &str,
        entity_id: i64,
        body_id: i64,
        members: &str,
    ) -> Result<String, EntryError> {
        if entity_id.unsigned_abs() > MAX_SAFE_INTEGER || body_id.unsigned_abs() > MAX_SAFE_INTEGER
        {
            // The rare ids that need the whole check (and its error's path).
            validate_parts(entity_id, &Value::from(body_id), "1970-01-01T00:00:00Z")?;
        }
        Ok(self.write(op, entity_type, entity_id, members.len() + 24, |out| {
            out.push_str("{\"@iot.id\":");
            crate::jcs::write_integer(body_id, out);
            if !members.is_empty() {
                out.push(',');
                out.push_str(members);
            }
            out.push('}');
        }))
    }

    /// The entry whose body `body` writes, the members in their canonical order (all ASCII
    /// keys, sorted); `body_length` is a guess of the body's length.
    fn write(
        &self,
        op: Operation,
        entity_type: &str,
        entity_id: i64,
        body_length: usize,
        body: impl FnOnce(&mut String),
    ) -> String {
        let mut out = String::with_capacity(
            self.head.len() + body_length + self.middle.len() + entity_type.len() + 64,
        );
        out.push_str(&self.head);
        body(&mut out);
        out.push_str(&self.middle);
        crate::jcs::write_integer(entity_id, &mut out);
        out.push_str(",\"entity_type\":");
        crate::jcs::write_string(entity_type, &mut out);
        out.push_str(",\"op\":");
        out.push_str(match op {
            Operation::Create => "\"create\"",
            Operation::Update => "\"update\"",
            Operation::Delete => "\"delete\"",
        });
        out.push('}');
        out
    }
}

/// Checks one member of a body as [`LogEntry::validate`] checks the whole body.
pub fn check_body_member(name: &str, value: &Value) -> Result<(), EntryError> {
    if numbers_are_safe(value, 1) {
        Ok(())
    } else {
        let mut path = String::from("/body/");
        path.push_str(&name.replace('~', "~0").replace('/', "~1"));
        check_numbers(value, &mut path, 1)
    }
}

fn validate_parts(entity_id: i64, body: &Value, committed_at: &str) -> Result<(), EntryError> {
    if !is_rfc3339(committed_at) {
        return Err(EntryError::InvalidTimestamp(committed_at.to_owned()));
    }
    if !number_survives_canonicalization(&serde_json::Number::from(entity_id)) {
        return Err(EntryError::UnsafeNumber { path: "/entity_id".to_owned() });
    }
    // The cheap walk first; the one that names the place only when there is a problem.
    if numbers_are_safe(body, 0) { Ok(()) } else { check_numbers(body, &mut "/body".to_owned(), 0) }
}

/// Whether [`check_numbers`] would accept `value`.
fn numbers_are_safe(value: &Value, depth: usize) -> bool {
    if depth > MAX_BODY_DEPTH {
        return false;
    }
    match value {
        Value::Number(number) => number_survives_canonicalization(number),
        Value::Array(items) => items.iter().all(|item| numbers_are_safe(item, depth + 1)),
        Value::Object(members) => members.values().all(|item| numbers_are_safe(item, depth + 1)),
        Value::Null | Value::Bool(_) | Value::String(_) => true,
    }
}

/// Walks `value`, refusing numbers JCS would change and nesting beyond [`MAX_BODY_DEPTH`].
fn check_numbers(value: &Value, path: &mut String, depth: usize) -> Result<(), EntryError> {
    if depth > MAX_BODY_DEPTH {
        return Err(EntryError::TooDeep);
    }
    match value {
        Value::Number(number) => {
            if number_survives_canonicalization(number) {
                Ok(())
            } else {
                Err(EntryError::UnsafeNumber { path: path.clone() })
            }
        }
        Value::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("/{index}"));
                check_numbers(item, path, depth + 1)?;
                path.truncate(len);
            }
            Ok(())
        }
        Value::Object(members) => {
            for (key, item) in members {
                let len = path.len();
                path.push('/');
                path.push_str(&key.replace('~', "~0").replace('/', "~1"));
                check_numbers(item, path, depth + 1)?;
                path.truncate(len);
            }
            Ok(())
        }
        Value::Null | Value::Bool(_) | Value::String(_) => Ok(()),
    }
}

/// Whether JCS writes `number` so that it reads back as the same number. Integers within
/// ±(2^53 − 1) and all doubles do; a larger integer does only if it is exactly a double whose
/// ECMAScript form spells all its digits (10^19 does, 2^63 does not: it prints as
/// `9223372036854776000`).
fn number_survives_canonicalization(number: &serde_json::Number) -> bool {
    let integer_magnitude = number.as_u64().or_else(|| number.as_i64().map(i64::unsigned_abs));
    match integer_magnitude {
        Some(magnitude) if magnitude <= MAX_SAFE_INTEGER => true,
        Some(_) => serde_json_canonicalizer::to_string(number)
            .ok()
            .and_then(|text| serde_json::from_str::<serde_json::Number>(&text).ok())
            .is_some_and(|read_back| read_back == *number),
        None => number.as_f64().is_some_and(f64::is_finite),
    }
}

/// RFC 3339 §5.6 `date-time`: `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`, `T`/`Z` in either case,
/// fields in range (leap second 60 allowed, day checked against the month).
pub fn is_rfc3339(text: &str) -> bool {
    let bytes = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| -> Option<u32> {
        let part = bytes.get(range)?;
        part.iter()
            .try_fold(0u32, |acc, b| b.is_ascii_digit().then(|| acc * 10 + u32::from(b - b'0')))
    };
    let at = |index: usize, allowed: &[u8]| bytes.get(index).is_some_and(|b| allowed.contains(b));
    let (Some(year), Some(month), Some(day), Some(hour), Some(minute), Some(second)) =
        (digits(0..4), digits(5..7), digits(8..10), digits(11..13), digits(14..16), digits(17..19))
    else {
        return false;
    };
    let separators = at(4, b"-") && at(7, b"-") && at(10, b"Tt") && at(13, b":") && at(16, b":");
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days_in_month = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    let fields = (1..=days_in_month).contains(&day) && hour <= 23 && minute <= 59 && second <= 60;
    let mut rest = bytes.get(19..).unwrap_or_default();
    if let Some(fraction) = rest.strip_prefix(b".") {
        let count = fraction.iter().take_while(|b| b.is_ascii_digit()).count();
        if count == 0 {
            return false;
        }
        rest = fraction.get(count..).unwrap_or_default();
    }
    let offset = match rest {
        [b'Z' | b'z'] => true,
        [b'+' | b'-', h1, h2, b':', m1, m2] => {
            let all_digits = [h1, h2, m1, m2].iter().all(|b| b.is_ascii_digit());
            let hours = u32::from(h1.wrapping_sub(b'0')) * 10 + u32::from(h2.wrapping_sub(b'0'));
            let minutes = u32::from(m1.wrapping_sub(b'0')) * 10 + u32::from(m2.wrapping_sub(b'0'));
            all_digits && hours <= 23 && minutes <= 59
        }
        _ => false,
    };
    separators && fields && offset
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entity_entry_from_members_is_the_canonical_entry_of_its_body() {
        let body = serde_json::json!({"@iot.id": 42, "Datastream": {"@iot.id": 7},
            "phenomenonTime": "2024-01-01T00:00:00Z", "result": [1.5, {"b": 1, "a": "é"}]});
        let members = body
            .as_object()
            .unwrap()
            .iter()
            .filter(|(name, _)| *name != "@iot.id")
            .map(|(name, value)| {
                check_body_member(name, value).unwrap();
                format!(
                    "{}:{}",
                    crate::jcs::to_canonical_string(&Value::from(name.clone())),
                    crate::jcs::to_canonical_string(value)
                )
            })
            .collect::<Vec<_>>()
            .join(",");
        let at = "2026-11-25T17:00:00.5Z";
        for op in [Operation::Create, Operation::Update] {
            assert_eq!(
                canonical_entity_entry(op, "Observation", 42, 42, &members, at, "").unwrap(),
                canonical_entry(op, "Observation", 42, &body, at, "").unwrap()
            );
        }
        assert_eq!(
            canonical_entity_entry(Operation::Create, "Thing", 1, 1, "", at, "").unwrap(),
            canonical_entry(
                Operation::Create,
                "Thing",
                1,
                &serde_json::json!({"@iot.id": 1}),
                at,
                ""
            )
            .unwrap()
        );
        // One envelope for a transaction's entries: the same text as entry by entry, also
        // with an actor to escape and ids at and beyond the safe range.
        let actor = "did:example:\"q\"\n";
        let envelope = EntryEnvelope::new(at, actor).unwrap();
        for id in [0, 1, -3, 9_007_199_254_740_991, -9_007_199_254_740_991] {
            let body = serde_json::json!({"@iot.id": id});
            assert_eq!(
                envelope.entity_entry(Operation::Delete, "Sensor", id, id, "").unwrap(),
                canonical_entry(Operation::Delete, "Sensor", id, &body, at, actor).unwrap()
            );
        }
        for id in [9_007_199_254_740_993, i64::MIN, i64::MAX] {
            assert_eq!(
                envelope.entity_entry(Operation::Create, "Thing", id, id, "").unwrap_err(),
                canonical_entry(
                    Operation::Create,
                    "Thing",
                    id,
                    &serde_json::json!({"@iot.id": id}),
                    at,
                    actor
                )
                .unwrap_err()
            );
        }
        assert_eq!(
            EntryEnvelope::new("yesterday", "").unwrap_err(),
            EntryError::InvalidTimestamp("yesterday".into())
        );
        let error = check_body_member("result", &serde_json::json!([1, 9_007_199_254_740_993_u64]))
            .unwrap_err();
        assert_eq!(error, EntryError::UnsafeNumber { path: "/body/result/1".into() });
        assert_eq!(
            LogEntry {
                op: Operation::Create,
                entity_type: "Observation".into(),
                entity_id: 1,
                body: serde_json::json!({"@iot.id": 1, "result": [1, 9_007_199_254_740_993_u64]}),
                committed_at: at.into(),
                actor: String::new(),
            }
            .validate()
            .unwrap_err(),
            error
        );
    }

    #[test]
    fn timestamps() {
        for good in
            ["2026-11-02T10:00:00Z", "2024-02-29t23:59:60.123456z", "1999-12-31T00:00:00+05:30"]
        {
            assert!(is_rfc3339(good), "{good}");
        }
        for bad in [
            "",
            "2026-11-02",
            "2026-11-02 10:00:00Z",
            "2023-02-29T10:00:00Z",
            "2026-13-02T10:00:00Z",
            "2026-11-02T24:00:00Z",
            "2026-11-02T10:00:00",
            "2026-11-02T10:00:00.Z",
            "2026-11-02T10:00:00+0530",
            "2026-11-02T10:00:00+24:00",
            "2026-11-02T10:00:00Zjunk",
            "+026-11-02T10:00:00Z",
        ] {
            assert!(!is_rfc3339(bad), "{bad}");
        }
    }
}
