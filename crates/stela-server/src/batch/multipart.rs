//! The multipart form of a batch (SensorThings 1.1 §11.2, adapted from OData 4.0 §11.7):
//! `multipart/mixed` bodies whose parts are `application/http` requests or nested
//! `multipart/mixed` change sets, and the response in the same shape.
//!
//! ```text
//!   --batch_1                                   request part: MIME headers, empty line, an
//!   Content-Type: application/http              HTTP request (request line, headers, empty
//!                                               line, body); parsed with httparse
//!   GET Things(1) HTTP/1.1
//!
//!
//!   --batch_1                                   change set part: a nested multipart/mixed
//!   Content-Type: multipart/mixed;boundary=cs_1 body of request parts, each with a Content-ID
//!
//!   --cs_1
//!   Content-Type: application/http
//!   Content-ID: 1
//!   …
//!   --cs_1--
//!   --batch_1--
//! ```
//!
//! Splitting at boundaries is written here rather than taken from a crate: the multipart crates
//! on crates.io (`multer`, `mime-multipart`, `multipart`) are built for `multipart/form-data`
//! uploads (streaming fields with a Content-Disposition name), do not recurse into a nested
//! `multipart/mixed` part, and cannot say which part of a batch is malformed. RFC 2046's
//! delimiter rules fit in one function. HTTP messages inside parts are parsed by `httparse`.
//!
//! Parts are numbered from 1 in error messages: `part 2` is the second part of the batch,
//! `change set in part 2, part 1` the first request of the change set that part 2 holds.
//! Bare LF line ends are accepted as well as CRLF, and a request line without an HTTP version
//! (as in the standard's example) is read as HTTP/1.1.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt::Write as _;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method};

use super::{BatchRequest, Done, Outcome, Reply, Unit};
use crate::error::ApiError;

/// Most headers one part or one request in a part may have.
const MAX_HEADERS: usize = 64;

/// The media type (lowercase) and parameters (names lowercase, values unquoted) of a
/// Content-Type value.
pub(super) fn media_type(value: &str) -> (String, Vec<(String, String)>) {
    let mut pieces = value.split(';');
    let media_type = pieces.next().unwrap_or_default().trim().to_ascii_lowercase();
    let params = pieces
        .filter_map(|piece| {
            let (name, value) = piece.split_once('=')?;
            let value = value.trim();
            let value = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(value)
                .to_owned();
            Some((name.trim().to_ascii_lowercase(), value))
        })
        .collect();
    (media_type, params)
}

fn malformed(label: &str, what: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request(format!("malformed batch: {label}: {what}"))
}

/// Parses a multipart batch body into units.
pub(super) fn parse(body: &[u8], boundary: &str) -> Result<Vec<Unit>, ApiError> {
    let parts = split(body, boundary).map_err(|what| malformed("the body", what))?;
    let mut units = Vec::with_capacity(parts.len());
    let mut content_ids = HashSet::new();
    for (index, part) in parts.iter().enumerate() {
        let label = format!("part {}", index + 1);
        let (headers, content) = part_headers(&label, part)?;
        let content_type = header_text(&headers, "content-type").unwrap_or_default();
        let (kind, params) = media_type(content_type);
        match kind.as_str() {
            "application/http" => {
                let request = http_request(label, &headers, content)?;
                check_unique(&request, &mut content_ids)?;
                units.push(Unit::Single(request));
            }
            "multipart/mixed" => {
                let boundary = params
                    .into_iter()
                    .find(|(name, _)| name == "boundary")
                    .map(|(_, value)| value)
                    .filter(|value| !value.is_empty())
                    .ok_or_else(|| malformed(&label, "the change set has no boundary parameter"))?;
                let inner = split(content, &boundary)
                    .map_err(|what| malformed(&label, format!("the change set: {what}")))?;
                let mut requests = Vec::with_capacity(inner.len());
                for (inner_index, inner_part) in inner.iter().enumerate() {
                    let label =
                        format!("change set in part {}, part {}", index + 1, inner_index + 1);
                    let (headers, content) = part_headers(&label, inner_part)?;
                    let content_type = header_text(&headers, "content-type").unwrap_or_default();
                    match media_type(content_type).0.as_str() {
                        "application/http" => {}
                        "multipart/mixed" => {
                            return Err(malformed(&label, "change sets cannot be nested"));
                        }
                        other => {
                            return Err(malformed(
                                &label,
                                format!(
                                    "Content-Type '{other}'; a change set holds application/http \
                                     parts"
                                ),
                            ));
                        }
                    }
                    let request = http_request(label, &headers, content)?;
                    check_unique(&request, &mut content_ids)?;
                    requests.push(request);
                }
                units.push(Unit::Atomic { group: None, requests });
            }
            "" => {
                return Err(malformed(
                    &label,
                    "no Content-Type; a part is application/http or multipart/mixed",
                ));
            }
            other => {
                return Err(malformed(
                    &label,
                    format!(
                        "unsupported Content-Type '{other}'; a part is application/http or \
                         multipart/mixed"
                    ),
                ));
            }
        }
    }
    Ok(units)
}

/// A Content-ID names one request of the whole batch (OData 4.0 §11.7.3).
fn check_unique(request: &BatchRequest, seen: &mut HashSet<String>) -> Result<(), ApiError> {
    match &request.id {
        Some(id) if !seen.insert(id.clone()) => Err(malformed(
            &request.label,
            format!(
                "Content-ID '{id}' is used by an earlier part; Content-IDs are unique in a batch"
            ),
        )),
        _ => Ok(()),
    }
}

/// Splits a multipart body at its delimiters (RFC 2046 §5.1.1): a delimiter is `--boundary` at
/// the start of a line, followed by optional spaces and a line end; the line end before it
/// belongs to it. The preamble before the first delimiter and the epilogue after the closing
/// one (`--boundary--`) are ignored.
fn split<'a>(body: &'a [u8], boundary: &str) -> Result<Vec<&'a [u8]>, String> {
    let delimiter = format!("--{boundary}");
    let delimiter = delimiter.as_bytes();
    // (where the delimiter starts, where the part after it starts)
    let mut delimiters: Vec<(usize, usize)> = Vec::new();
    let mut closed = None;
    let mut from = 0;
    while let Some(found) = find(&body[from..], delimiter) {
        let at = from + found;
        from = at + 1;
        if at != 0 && body[at - 1] != b'\n' {
            continue;
        }
        let after = at + delimiter.len();
        if body[after..].starts_with(b"--") {
            closed = Some(at);
            break;
        }
        let padding = body[after..].iter().take_while(|b| matches!(b, b' ' | b'\t')).count();
        let rest = &body[after + padding..];
        let line_end = if rest.starts_with(b"\r\n") {
            2
        } else if rest.starts_with(b"\n") {
            1
        } else {
            continue; // `--boundaryX…`: another boundary that starts with ours
        };
        delimiters.push((at, after + padding + line_end));
    }
    let Some(close) = closed else {
        return Err(if delimiters.is_empty() {
            format!("no line starts with '--{boundary}', the boundary of its Content-Type")
        } else {
            format!("it does not end with the closing delimiter '--{boundary}--'")
        });
    };
    let ends = delimiters.iter().skip(1).map(|(at, _)| *at).chain([close]);
    Ok(delimiters
        .iter()
        .zip(ends)
        .map(|((_, start), end)| {
            let part = &body[*start..end.max(*start)];
            part.strip_suffix(b"\r\n").or_else(|| part.strip_suffix(b"\n")).unwrap_or(part)
        })
        .collect())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || haystack.len() < needle.len() {
        return None;
    }
    haystack.windows(needle.len()).position(|window| window == needle)
}

/// The MIME headers of a part and what follows the empty line after them.
fn part_headers<'a>(label: &str, part: &'a [u8]) -> Result<(HeaderMap, &'a [u8]), ApiError> {
    let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
    match httparse::parse_headers(part, &mut storage) {
        Ok(httparse::Status::Complete((length, parsed))) => {
            Ok((header_map(label, parsed)?, &part[length..]))
        }
        Ok(httparse::Status::Partial) => Err(malformed(
            label,
            "its MIME headers do not end with an empty line (a part starts with its headers, \
             e.g. Content-Type: application/http, and an empty line)",
        )),
        Err(error) => Err(malformed(
            label,
            format!(
                "malformed MIME headers ({error}); a part starts with its headers, e.g. \
                 Content-Type: application/http, and an empty line"
            ),
        )),
    }
}

fn header_map(label: &str, parsed: &[httparse::Header<'_>]) -> Result<HeaderMap, ApiError> {
    let mut headers = HeaderMap::with_capacity(parsed.len());
    for parsed in parsed {
        let name = HeaderName::from_bytes(parsed.name.as_bytes())
            .map_err(|_| malformed(label, format!("invalid header name '{}'", parsed.name)))?;
        let value = HeaderValue::from_bytes(parsed.value)
            .map_err(|_| malformed(label, format!("invalid value of header '{}'", parsed.name)))?;
        headers.append(name, value);
    }
    Ok(headers)
}

fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|value| value.to_str().ok()).map(str::trim)
}

/// The HTTP request an `application/http` part holds.
fn http_request(
    label: String,
    part_headers: &HeaderMap,
    content: &[u8],
) -> Result<BatchRequest, ApiError> {
    if let Some(encoding) = header_text(part_headers, "content-transfer-encoding")
        && !["binary", "8bit", "7bit"].contains(&encoding.to_ascii_lowercase().as_str())
    {
        return Err(malformed(
            &label,
            format!("Content-Transfer-Encoding '{encoding}' is not supported; use binary"),
        ));
    }
    let id = header_text(part_headers, "content-id").filter(|id| !id.is_empty()).map(str::to_owned);
    let label = match &id {
        Some(id) => format!("{label} (Content-ID {id})"),
        None => label,
    };
    let content = with_http_version(content);
    let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut storage);
    let head_length = match request.parse(&content) {
        Ok(httparse::Status::Complete(length)) => length,
        // The empty line after the headers was taken as the line end before the delimiter:
        // a request without a body.
        Ok(httparse::Status::Partial) => {
            let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut completed = content.to_vec();
            completed.extend_from_slice(b"\r\n");
            let mut retry = httparse::Request::new(&mut storage);
            return match retry.parse(&completed) {
                Ok(httparse::Status::Complete(_)) => build_request(label, id, &retry, Bytes::new()),
                Ok(httparse::Status::Partial) => Err(malformed(
                    &label,
                    "no request line (e.g. GET Things(1) HTTP/1.1) after the part headers",
                )),
                Err(error) => Err(malformed(&label, format!("malformed HTTP request: {error}"))),
            };
        }
        Err(error) => {
            return Err(malformed(
                &label,
                format!(
                    "malformed HTTP request ({error}); expected a request line such as \
                     'POST Things HTTP/1.1', headers and an empty line"
                ),
            ));
        }
    };
    let rest = &content[head_length..];
    let declared = request
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .map(|h| {
            std::str::from_utf8(h.value)
                .ok()
                .and_then(|text| text.trim().parse::<usize>().ok())
                .ok_or_else(|| malformed(&label, "Content-Length is not a number"))
        })
        .transpose()?;
    let body = match declared {
        Some(length) if length > rest.len() => {
            return Err(malformed(
                &label,
                format!(
                    "Content-Length is {length}, but the part holds {} bytes of body",
                    rest.len()
                ),
            ));
        }
        Some(length) => &rest[..length],
        None => rest,
    };
    build_request(label, id, &request, Bytes::copy_from_slice(body))
}

/// Adds ` HTTP/1.1` to a request line that has only a method and a target.
fn with_http_version(content: &[u8]) -> Cow<'_, [u8]> {
    let start = content.iter().take_while(|b| matches!(b, b'\r' | b'\n')).count();
    let line_end =
        content[start..].iter().position(|b| *b == b'\n').map_or(content.len(), |p| start + p);
    let line = &content[start..line_end];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let words = line.split(|b| *b == b' ').filter(|word| !word.is_empty()).count();
    if words != 2 {
        return Cow::Borrowed(content);
    }
    let mut fixed = Vec::with_capacity(content.len() + 9);
    fixed.extend_from_slice(&content[..start]);
    fixed.extend_from_slice(line);
    fixed.extend_from_slice(b" HTTP/1.1");
    fixed.extend_from_slice(&content[start + line.len()..]);
    Cow::Owned(fixed)
}

fn build_request(
    label: String,
    id: Option<String>,
    request: &httparse::Request<'_, '_>,
    body: Bytes,
) -> Result<BatchRequest, ApiError> {
    let method = request
        .method
        .and_then(|m| Method::from_bytes(m.as_bytes()).ok())
        .ok_or_else(|| malformed(&label, "no method in the request line"))?;
    let url = request.path.ok_or_else(|| malformed(&label, "no URL in the request line"))?;
    let headers = header_map(&label, request.headers)?;
    Ok(BatchRequest {
        label,
        id,
        method,
        url: url.to_owned(),
        headers,
        body,
        depends_on: Vec::new(),
    })
}

/// The response body and its Content-Type: one part per unit, a nested multipart/mixed part
/// for each committed change set, a single `application/http` part (with the Content-ID of
/// the request that failed) for a change set that was rolled back (OData 4.0 §11.7.4).
pub(super) fn render(done: &[Done]) -> (String, Vec<u8>) {
    let bodies: Vec<&[u8]> = done
        .iter()
        .flat_map(|unit| match &unit.outcome {
            Outcome::Single(reply) => vec![&reply.body[..]],
            Outcome::Committed(replies) | Outcome::RolledBack { replies, .. } => {
                replies.iter().map(|r| &r.body[..]).collect()
            }
        })
        .collect();
    let boundary = fresh_boundary("batchresponse", &bodies);
    let mut out = Vec::new();
    for unit in done {
        match &unit.outcome {
            Outcome::Single(reply) => {
                let id = unit.ids.first().and_then(Option::as_deref);
                http_part(&mut out, &boundary, id, reply);
            }
            Outcome::RolledBack { failed, replies } => {
                let index = failed.unwrap_or(0);
                let id = failed.and_then(|index| unit.ids.get(index)).and_then(Option::as_deref);
                if let Some(reply) = replies.get(index) {
                    http_part(&mut out, &boundary, id, reply);
                }
            }
            Outcome::Committed(replies) => {
                let bodies: Vec<&[u8]> = replies.iter().map(|r| &r.body[..]).collect();
                let changeset = fresh_boundary("changesetresponse", &bodies);
                let head = format!(
                    "--{boundary}\r\nContent-Type: multipart/mixed; boundary={changeset}\r\n\r\n"
                );
                out.extend_from_slice(head.as_bytes());
                for (index, reply) in replies.iter().enumerate() {
                    let id = unit.ids.get(index).and_then(Option::as_deref);
                    http_part(&mut out, &changeset, id, reply);
                }
                out.extend_from_slice(format!("--{changeset}--\r\n").as_bytes());
            }
        }
    }
    out.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/mixed; boundary={boundary}"), out)
}

/// One `application/http` part: MIME headers, then the response (status line, headers, body).
/// The line end after the body belongs to the next delimiter.
fn http_part(out: &mut Vec<u8>, boundary: &str, content_id: Option<&str>, reply: &Reply) {
    let mut head = format!(
        "--{boundary}\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n"
    );
    if let Some(id) = content_id {
        let _ = write!(head, "Content-ID: {id}\r\n");
    }
    let reason = reply.status.canonical_reason().unwrap_or_default();
    let _ = write!(head, "\r\nHTTP/1.1 {} {reason}\r\n", reply.status.as_u16());
    for (name, value) in &reply.headers {
        let _ = write!(head, "{}: ", canonical_name(name.as_str()));
        head.push_str(&String::from_utf8_lossy(value.as_bytes()));
        head.push_str("\r\n");
    }
    let _ = write!(head, "Content-Length: {}\r\n\r\n", reply.body.len());
    out.extend_from_slice(head.as_bytes());
    out.extend_from_slice(&reply.body);
    out.extend_from_slice(b"\r\n");
}

/// `content-type` → `Content-Type`.
fn canonical_name(name: &str) -> String {
    name.split('-')
        .map(|word| {
            let mut chars = word.chars();
            match chars.next() {
                Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join("-")
}

/// A boundary that occurs in none of `bodies`: a prefix and 128 random bits.
fn fresh_boundary(prefix: &str, bodies: &[&[u8]]) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    loop {
        let count = COUNTER.fetch_add(1, Ordering::Relaxed);
        let random = RandomState::new();
        let boundary = format!(
            "{prefix}_{:016x}{:016x}",
            random.hash_one(count),
            random.hash_one(count.wrapping_add(1))
        );
        if !bodies.iter().any(|body| find(body, boundary.as_bytes()).is_some()) {
            return boundary;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(body: &str, boundary: &str) -> Vec<String> {
        split(body.as_bytes(), boundary)
            .expect("splits")
            .into_iter()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .collect()
    }

    #[test]
    fn split_handles_preamble_padding_lf_and_epilogue() {
        let body = "preamble\r\n--b  \r\none\r\n--bX\r\n--b\ntwo\n\n--b--\r\nepilogue";
        assert_eq!(parts(body, "b"), ["one\r\n--bX", "two\n"]);
    }

    #[test]
    fn split_names_what_is_missing() {
        assert!(split(b"nothing here", "b").unwrap_err().contains("no line starts with '--b'"));
        assert!(split(b"--b\r\npart\r\n", "b").unwrap_err().contains("closing delimiter '--b--'"));
    }

    #[test]
    fn request_line_without_version_is_http_1_1() {
        let fixed = with_http_version(b"GET /v1.1/Things(1)\r\nHost: h\r\n\r\n");
        assert_eq!(&fixed[..], b"GET /v1.1/Things(1) HTTP/1.1\r\nHost: h\r\n\r\n");
        let kept = with_http_version(b"GET Things HTTP/1.1\r\n\r\n");
        assert!(matches!(kept, Cow::Borrowed(_)));
    }

    #[test]
    fn media_type_reads_quoted_parameters() {
        let (kind, params) = media_type("Multipart/Mixed; Boundary=\"a b\"");
        assert_eq!(kind, "multipart/mixed");
        assert_eq!(params, [("boundary".to_owned(), "a b".to_owned())]);
    }

    #[test]
    fn canonical_header_names() {
        assert_eq!(canonical_name("content-type"), "Content-Type");
        assert_eq!(canonical_name("location"), "Location");
    }
}
