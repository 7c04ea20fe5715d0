//! RFC 8785 (JSON Canonicalization Scheme) writer for the values a log entry holds.
//!
//! Written here rather than through a generic serializer because it is on the write path of
//! every change: one pass over the value into one buffer, no intermediate maps. Numbers use
//! ECMAScript's `Number.prototype.toString` (the `ryu-js` crate, as RFC 8785 §3.2.2.3 asks);
//! strings escape only what §3.2.2.2 lists; object members are sorted by their UTF-16 code
//! units (§3.2.3). The RFC's vectors and an equivalence property test against the
//! `serde_json_canonicalizer` crate check it.

use serde_json::Value;

/// Appends the canonical form of `value` to `out`.
pub fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(number) => write_number(number, out),
        Value::String(text) => write_string(text, out),
        Value::Array(items) => {
            out.push('[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        Value::Object(members) => {
            let mut sorted: Vec<(&String, &Value)> = members.iter().collect();
            if !sorted.windows(2).all(|pair| utf16_less(pair[0].0, pair[1].0)) {
                sorted.sort_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()));
            }
            out.push('{');
            for (index, (key, item)) in sorted.into_iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                write_string(key, out);
                out.push(':');
                write_canonical(item, out);
            }
            out.push('}');
        }
    }
}

/// The canonical form of `value`.
pub fn to_canonical_string(value: &Value) -> String {
    let mut out = String::with_capacity(256);
    write_canonical(value, &mut out);
    out
}

fn utf16_less(a: &str, b: &str) -> bool {
    if a.is_ascii() && b.is_ascii() { a < b } else { a.encode_utf16().lt(b.encode_utf16()) }
}

fn write_number(number: &serde_json::Number, out: &mut String) {
    if let Some(integer) = number.as_i64() {
        write_integer(integer, out);
    } else if let Some(integer) = number.as_u64() {
        // Beyond i64: ECMAScript prints the nearest double (callers refuse unsafe integers).
        let mut buffer = ryu_js::Buffer::new();
        out.push_str(buffer.format(integer as f64));
    } else if let Some(float) = number.as_f64() {
        let mut buffer = ryu_js::Buffer::new();
        out.push_str(buffer.format(float));
    }
}

/// Appends an integer in decimal (its canonical form when it is safe, see
/// [`crate::MAX_SAFE_INTEGER`]).
pub fn write_integer(integer: i64, out: &mut String) {
    out.push_str(itoa::Buffer::new().format(integer));
}

/// Appends the canonical form of the string `text` (RFC 8785 §3.2.2.2).
pub fn write_string(text: &str, out: &mut String) {
    out.push('"');
    // Most strings (every name, type and time of an entry) hold nothing to escape: one scan,
    // one copy.
    if !text.bytes().any(|byte| byte < 0x20 || byte == b'"' || byte == b'\\') {
        out.push_str(text);
        out.push('"');
        return;
    }
    let mut start = 0;
    for (index, byte) in text.bytes().enumerate() {
        let escape: Option<&str> = match byte {
            b'"' => Some("\\\""),
            b'\\' => Some("\\\\"),
            0x08 => Some("\\b"),
            0x09 => Some("\\t"),
            0x0a => Some("\\n"),
            0x0c => Some("\\f"),
            0x0d => Some("\\r"),
            0x00..=0x1f => None,
            _ => continue,
        };
        out.push_str(&text[start..index]);
        match escape {
            Some(sequence) => out.push_str(sequence),
            None => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.push_str("\\u00");
                out.push(char::from(HEX[usize::from(byte >> 4)]));
                out.push(char::from(HEX[usize::from(byte & 0x0f)]));
            }
        }
        start = index + 1;
    }
    out.push_str(&text[start..]);
    out.push('"');
}
