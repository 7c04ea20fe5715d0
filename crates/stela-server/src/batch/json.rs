//! The JSON form of a batch (OData 4.01 JSON Format §19, as FROST-Server offers it):
//!
//! ```text
//!   {"requests": [{"id": "1", "method": "post", "url": "Things", "body": {…},
//!                  "atomicityGroup": "g1", "dependsOn": ["0"], "headers": {…}}, …]}
//!   ─► {"responses": [{"id": "1", "status": 201, "atomicityGroup": "g1",
//!                      "headers": {"location": "…/Things(7)"}, "location": "…/Things(7)",
//!                      "body": {…}}, …]}
//! ```
//!
//! Requests with the same `atomicityGroup` are adjacent and run in one transaction; `dependsOn`
//! names earlier requests or groups that must have succeeded (424 otherwise). The top-level
//! `location` member repeats the Location header for FROST-Server's clients.

use std::collections::HashSet;

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, header};
use serde_json::{Map, Value as Json};

use super::{BatchRequest, Done, Outcome, Reply, Unit};
use crate::error::ApiError;

fn malformed(label: &str, what: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request(format!("malformed JSON batch: {label}: {what}"))
}

/// Parses a JSON batch body into units.
pub(super) fn parse(body: &[u8]) -> Result<Vec<Unit>, ApiError> {
    let document: Json = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("malformed JSON batch: {e}")))?;
    let Some(requests) = document.get("requests").and_then(Json::as_array) else {
        return Err(ApiError::bad_request(
            "malformed JSON batch: expected an object with a 'requests' array",
        ));
    };
    let mut units: Vec<Unit> = Vec::new();
    let mut ids: HashSet<String> = HashSet::new();
    let mut groups: HashSet<String> = HashSet::new();
    for (index, item) in requests.iter().enumerate() {
        let request = request(index, item, &ids, &groups)?;
        let group = item.get("atomicityGroup").map(|g| text(&request.label, "atomicityGroup", g));
        let group = group.transpose()?;
        if let Some(id) = &request.id {
            if groups.contains(id) {
                return Err(malformed(
                    &request.label,
                    format!("'{id}' already names an atomicity group"),
                ));
            }
            ids.insert(id.clone());
        }
        match group {
            None => units.push(Unit::Single(request)),
            Some(group) => {
                if ids.contains(&group) {
                    return Err(malformed(
                        &request.label,
                        format!("atomicityGroup '{group}' is also the id of a request"),
                    ));
                }
                match units.last_mut() {
                    Some(Unit::Atomic { group: Some(last), requests }) if *last == group => {
                        requests.push(request);
                    }
                    _ if groups.contains(&group) => {
                        return Err(malformed(
                            &request.label,
                            format!(
                                "the requests of atomicityGroup '{group}' must be adjacent in \
                                 'requests'"
                            ),
                        ));
                    }
                    _ => {
                        groups.insert(group.clone());
                        units.push(Unit::Atomic { group: Some(group), requests: vec![request] });
                    }
                }
            }
        }
    }
    Ok(units)
}

fn text(label: &str, member: &str, value: &Json) -> Result<String, ApiError> {
    value
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| malformed(label, format!("'{member}' must be a string")))
}

/// One member of `requests`; `ids` and `groups` are those of the requests before it.
fn request(
    index: usize,
    item: &Json,
    ids: &HashSet<String>,
    groups: &HashSet<String>,
) -> Result<BatchRequest, ApiError> {
    let label = format!("requests[{index}]");
    let Json::Object(members) = item else {
        return Err(malformed(&label, "expected an object"));
    };
    let id = match members.get("id") {
        Some(id) => text(&label, "id", id)?,
        None => return Err(malformed(&label, "missing member 'id'")),
    };
    let label = format!("requests[{index}] (id '{id}')");
    if ids.contains(&id) {
        return Err(malformed(&label, "the id is used by an earlier request; ids are unique"));
    }
    if members.contains_key("if") {
        return Err(malformed(&label, "'if' is not supported"));
    }
    let method = match members.get("method") {
        Some(method) => text(&label, "method", method)?,
        None => return Err(malformed(&label, "missing member 'method'")),
    };
    let method = Method::from_bytes(method.to_ascii_uppercase().as_bytes())
        .map_err(|_| malformed(&label, format!("'{method}' is not an HTTP method")))?;
    let url = match members.get("url") {
        Some(url) => text(&label, "url", url)?,
        None => return Err(malformed(&label, "missing member 'url'")),
    };
    let mut headers = HeaderMap::new();
    match members.get("headers") {
        None | Some(Json::Null) => {}
        Some(Json::Object(given)) => {
            for (name, value) in given {
                let value = text(&label, &format!("headers/{name}"), value)?;
                let name = HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| malformed(&label, format!("invalid header name '{name}'")))?;
                let value = HeaderValue::from_str(&value)
                    .map_err(|_| malformed(&label, format!("invalid value of header '{name}'")))?;
                headers.append(name, value);
            }
        }
        Some(_) => return Err(malformed(&label, "'headers' must be an object")),
    }
    let mut depends_on = Vec::new();
    match members.get("dependsOn") {
        None | Some(Json::Null) => {}
        Some(Json::Array(names)) => {
            for name in names {
                let name = text(&label, "dependsOn", name)?;
                if !ids.contains(&name) && !groups.contains(&name) {
                    return Err(malformed(
                        &label,
                        format!("dependsOn names '{name}', which is no earlier request or group"),
                    ));
                }
                depends_on.push(name);
            }
        }
        Some(_) => return Err(malformed(&label, "'dependsOn' must be an array of ids")),
    }
    let body = match members.get("body") {
        None | Some(Json::Null) => Bytes::new(),
        // A body in a media type other than JSON is a string (OData 4.01 JSON §19.1).
        Some(Json::String(raw)) if !is_json(&headers) => Bytes::from(raw.clone()),
        Some(body) => {
            if !headers.contains_key(header::CONTENT_TYPE) {
                headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            }
            Bytes::from(body.to_string())
        }
    };
    Ok(BatchRequest { label, id: Some(id), method, url, headers, body, depends_on })
}

/// Whether the Content-Type is absent or JSON (`application/json`, `…+json`).
fn is_json(headers: &HeaderMap) -> bool {
    headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_none_or(|value| {
        let media_type = value.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
        media_type == "application/json" || media_type.ends_with("+json")
    })
}

/// `{"responses": […]}`: one response per request, in the order of the requests.
/// The response of a JSON batch: `{"responses": [...]}`, one per request in order.
#[derive(Debug, serde::Serialize)]
pub(super) struct Rendered<'a> {
    responses: Vec<ResponseOut<'a>>,
}

#[derive(Debug, serde::Serialize)]
struct ResponseOut<'a> {
    id: Option<&'a str>,
    #[serde(rename = "atomicityGroup", skip_serializing_if = "Option::is_none")]
    atomicity_group: Option<&'a str>,
    status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    location: Option<Json>,
    #[serde(skip_serializing_if = "Map::is_empty")]
    headers: Map<String, Json>,
    #[serde(skip_serializing_if = "Option::is_none")]
    body: Option<BodyOut<'a>>,
}

/// A reply's body: its JSON as it is (not parsed into a tree and written again), or its text.
#[derive(Debug, serde::Serialize)]
#[serde(untagged)]
enum BodyOut<'a> {
    Json(&'a serde_json::value::RawValue),
    Text(String),
}

pub(super) fn render(done: &[Done]) -> Rendered<'_> {
    let mut responses = Vec::new();
    for unit in done {
        let group = unit.group.as_deref();
        let replies: &[Reply] = match &unit.outcome {
            Outcome::Single(reply) => std::slice::from_ref(reply),
            Outcome::Committed(replies) | Outcome::RolledBack { replies, .. } => replies,
        };
        for (index, reply) in replies.iter().enumerate() {
            let id = unit.ids.get(index).and_then(Option::as_deref);
            responses.push(response(id, group, reply));
        }
    }
    Rendered { responses }
}

fn response<'a>(id: Option<&'a str>, group: Option<&'a str>, reply: &'a Reply) -> ResponseOut<'a> {
    let json_body = is_json(&reply.headers);
    let mut headers = Map::new();
    for (name, value) in &reply.headers {
        if name == header::CONTENT_TYPE && json_body {
            continue;
        }
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        headers.insert(name.as_str().to_owned(), Json::String(value));
    }
    let location = headers.get("location").cloned();
    let body = (!reply.body.is_empty()).then(|| {
        let raw = json_body.then(|| serde_json::from_slice(&reply.body).ok()).flatten();
        match raw {
            Some(raw) => BodyOut::Json(raw),
            None => BodyOut::Text(String::from_utf8_lossy(&reply.body).into_owned()),
        }
    });
    ResponseOut {
        id,
        atomicity_group: group,
        status: reply.status.as_u16(),
        location,
        headers,
        body,
    }
}
