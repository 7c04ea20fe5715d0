//! `POST /v1.1/$batch`: many requests in one HTTP request.
//!
//! Two wire forms, one executor:
//!
//! ```text
//!   multipart/mixed (SensorThings 1.1 §11, OData 4.0 §11.7) ─► multipart::parse ─┐
//!   application/json (OData 4.01 JSON, as FROST-Server)     ─► json::parse ──────┤
//!                                                                                 ▼
//!                                    units: a request alone, or an atomic unit (a change
//!                                    set, an atomicity group) of requests
//!                                                                                 │
//!   run: a request alone ─► routes::execute with ServiceWrites (its own transaction)
//!        POSTs in a row  ─► bulk::run: checked one by one as above, written in one bulk
//!                           transaction (each still succeeds or fails alone)
//!        an atomic unit  ─► Service::atomic(|writer| each request: routes::execute with
//!                           TxWrites) — the first failing request rolls the unit back
//!                                                                                 │
//!   outcomes ─► multipart::render / json::render ─► 200 with one response per request
//! ```
//!
//! A request's URL is absolute (`http://host/v1.1/Things`), an absolute path (`/v1.1/Things`),
//! relative to the service root (`Things`), or starts with a reference `$<id>` to the entity
//! that an earlier request with that Content-ID (multipart) or id (JSON) created
//! (`$sensor1/Datastreams`). In bodies, `{"@iot.id": "$sensor1"}` is such a reference too.
//! A request of an atomic unit sees what the unit's earlier requests wrote; a reference to an
//! entity of a unit that was rolled back does not resolve.
//!
//! Limits: the body limit of every request (413), at most `max_batch_requests` requests (413),
//! and a body that does not parse is a 400 naming the part and what is wrong. All of these are
//! found before anything runs, so a rejected batch writes nothing.

mod bulk;
mod json;
mod multipart;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value as Json;
use stela_model::{EntityType, parse_resource_path};
use stela_service::ServiceError;

use crate::error::ApiError;
use crate::routes::{AppState, check_version, execute};
use crate::writes::{ServiceWrites, TxWrites};

/// One request of a batch, whichever form it came in.
#[derive(Debug)]
pub(crate) struct BatchRequest {
    /// How messages name the request: `part 3`, `requests[2] (id '7')`.
    label: String,
    /// Content-ID (multipart) or id (JSON): a later `$<id>` refers to what this request created.
    id: Option<String>,
    method: Method,
    /// The URL as written in the batch.
    url: String,
    /// The request's own headers (Content-Type, …).
    headers: HeaderMap,
    body: Bytes,
    /// Ids of requests or atomicity groups that must have succeeded for this one to run
    /// (JSON form only).
    depends_on: Vec<String>,
}

/// What the executor runs as one step.
#[derive(Debug)]
pub(crate) enum Unit {
    /// A request on its own; its writes are one transaction.
    Single(BatchRequest),
    /// Requests that succeed or fail together: a change set (multipart) or an atomicity group
    /// (JSON, which names it).
    Atomic { group: Option<String>, requests: Vec<BatchRequest> },
}

impl Unit {
    fn len(&self) -> usize {
        match self {
            Unit::Single(_) => 1,
            Unit::Atomic { requests, .. } => requests.len(),
        }
    }
}

/// The response to one request of a batch.
#[derive(Debug, Clone)]
pub(crate) struct Reply {
    status: StatusCode,
    /// Response headers (Content-Type, Location); never Content-Length, which the renderers
    /// compute.
    headers: HeaderMap,
    body: Bytes,
}

/// What running a unit came to.
#[derive(Debug)]
pub(crate) enum Outcome {
    Single(Reply),
    /// Every request of an atomic unit succeeded and the unit committed; one reply each.
    Committed(Vec<Reply>),
    /// The request at index `failed` failed and nothing of the unit was written; one reply per
    /// request: the failure, and 424 for the others. `failed` is `None` when every request
    /// succeeded but the commit failed; each request then has the commit's error.
    RolledBack {
        failed: Option<usize>,
        replies: Vec<Reply>,
    },
}

/// A unit after running: the ids of its requests (for the response), its group, its outcome.
#[derive(Debug)]
pub(crate) struct Done {
    ids: Vec<Option<String>>,
    group: Option<String>,
    outcome: Outcome,
}

/// Entities created so far in this batch, by the Content-ID / id of the request that created
/// them.
type References = HashMap<String, (EntityType, i64)>;

/// What every request of the batch shares.
#[derive(Debug, Clone)]
struct Context {
    /// The version of the batch URL; relative request URLs are below it.
    version: String,
    /// The batch request's `Host`: links in the responses are built from it, whatever `Host`
    /// a request inside the batch names.
    host: Option<HeaderValue>,
    /// The path of the configured public URL (`sta` for `https://example.org/sta`), which
    /// absolute request URLs may start with.
    prefix: String,
}

/// `POST /{version}/$batch`.
pub(crate) async fn batch(
    State(state): State<AppState>,
    UrlPath(version): UrlPath<String>,
    method: Method,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    check_version(&version)?;
    if method != Method::POST {
        return Err(ApiError::method_not_allowed("a batch is sent with POST"));
    }
    let content_type =
        headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let form = Form::of(content_type)?;
    let limit = state.options.max_body_bytes;
    let bytes = axum::body::to_bytes(body, limit).await.map_err(|_| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the request body is larger than the limit of {limit} bytes"),
        )
    })?;
    let units = match &form {
        Form::Multipart { boundary } => multipart::parse(&bytes, boundary)?,
        Form::Json => json::parse(&bytes)?,
    };
    let count: usize = units.iter().map(Unit::len).sum();
    let max = state.options.max_batch_requests;
    if count > max {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the batch has {count} requests; at most {max} are allowed in one batch"),
        ));
    }
    let context = Context {
        version,
        host: headers.get(header::HOST).cloned(),
        prefix: public_path_prefix(state.options.public_url.as_deref()),
    };
    let done = run(&state, &context, units).await;
    Ok(match form {
        Form::Multipart { .. } => {
            let (content_type, body) = multipart::render(&done);
            ([(header::CONTENT_TYPE, content_type)], body).into_response()
        }
        Form::Json => axum::Json(json::render(&done)).into_response(),
    })
}

/// The wire form of a batch, from its Content-Type.
enum Form {
    Multipart { boundary: String },
    Json,
}

impl Form {
    fn of(content_type: &str) -> Result<Form, ApiError> {
        let (media_type, params) = multipart::media_type(content_type);
        match media_type.as_str() {
            "multipart/mixed" => match params.into_iter().find(|(name, _)| name == "boundary") {
                Some((_, boundary)) if !boundary.is_empty() => Ok(Form::Multipart { boundary }),
                _ => Err(ApiError::bad_request(
                    "a multipart/mixed batch needs a boundary parameter in its Content-Type",
                )),
            },
            "application/json" => Ok(Form::Json),
            other => Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!(
                    "unsupported batch content type '{other}'; send multipart/mixed with a \
                     boundary, or application/json"
                ),
            )),
        }
    }
}

/// The path of the public URL without slashes: `sta` for `https://example.org/sta/`.
fn public_path_prefix(public_url: Option<&str>) -> String {
    let Some(url) = public_url else { return String::new() };
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    let path = after_scheme.find('/').map_or("", |slash| &after_scheme[slash..]);
    path.trim_matches('/').to_owned()
}

/// Runs the units in order. A request alone that fails does not stop the batch; a request whose
/// `dependsOn` names a failed request or group is not run (424).
async fn run(state: &AppState, context: &Context, units: Vec<Unit>) -> Vec<Done> {
    let mut references = References::new();
    let mut failed: HashSet<String> = HashSet::new();
    let mut done = Vec::with_capacity(units.len());
    let mut units = units.into_iter().peekable();
    while let Some(unit) = units.next() {
        match unit {
            Unit::Single(request) => {
                // POSTs that follow each other go in one bulk write.
                let mut run_ids: HashSet<String> = request.id.iter().cloned().collect();
                let bulk = bulk::joins_run(context, &request, &references, &HashSet::new());
                let mut run = vec![request];
                while let Some(Unit::Single(next)) = units.peek()
                    && bulk
                    && bulk::joins_run(context, next, &references, &run_ids)
                {
                    if let Some(Unit::Single(next)) = units.next() {
                        run_ids.extend(next.id.iter().cloned());
                        run.push(next);
                    }
                }
                let replies = if run.len() > 1 {
                    bulk::run(state, context, &run, &mut references).await
                } else {
                    let request = &run[0];
                    vec![match unmet_dependency(request, &failed) {
                        Some(dependency) => failed_dependency(request, dependency).await,
                        None => run_alone(state, context, request, &mut references).await,
                    }]
                };
                for (request, reply) in run.into_iter().zip(replies) {
                    if !reply.status.is_success()
                        && let Some(id) = &request.id
                    {
                        failed.insert(id.clone());
                    }
                    done.push(Done {
                        ids: vec![request.id],
                        group: None,
                        outcome: Outcome::Single(reply),
                    });
                }
            }
            Unit::Atomic { group, requests } => {
                let ids: Vec<Option<String>> = requests.iter().map(|r| r.id.clone()).collect();
                let outcome = run_atomic(
                    state,
                    context,
                    group.as_deref(),
                    requests,
                    &failed,
                    &mut references,
                )
                .await;
                if matches!(outcome, Outcome::RolledBack { .. }) {
                    failed.extend(ids.iter().flatten().cloned());
                    failed.extend(group.iter().cloned());
                }
                done.push(Done { ids, group, outcome });
            }
        }
    }
    done
}

/// The first entry of the request's `dependsOn` that failed.
fn unmet_dependency<'a>(request: &'a BatchRequest, failed: &HashSet<String>) -> Option<&'a str> {
    request.depends_on.iter().find(|d| failed.contains(d.as_str())).map(String::as_str)
}

async fn failed_dependency(request: &BatchRequest, dependency: &str) -> Reply {
    let message =
        format!("{} was not run: '{dependency}', which it depends on, failed", request.label);
    reply_of(ApiError::new(StatusCode::FAILED_DEPENDENCY, message).into_response()).await
}

/// A request on its own, through the service (its writes are one transaction).
async fn run_alone(
    state: &AppState,
    context: &Context,
    request: &BatchRequest,
    references: &mut References,
) -> Reply {
    let mut writes = ServiceWrites::new(&state.service);
    let reply = execute_one(state, context, request, references, &mut writes, false).await;
    if let (Some(id), Some(created)) = (&request.id, writes.created) {
        references.insert(id.clone(), created);
    }
    reply
}

/// The requests of an atomic unit in one transaction: the first failing request rolls it back.
async fn run_atomic(
    state: &AppState,
    context: &Context,
    group: Option<&str>,
    requests: Vec<BatchRequest>,
    failed: &HashSet<String>,
    references: &mut References,
) -> Outcome {
    let labels: Vec<String> = requests.iter().map(|r| r.label.clone()).collect();
    let unit = match group {
        Some(group) => format!("atomicity group '{group}'"),
        None => "change set".to_owned(),
    };
    // A dependency outside the unit that already failed fails the unit before it starts.
    for (index, request) in requests.iter().enumerate() {
        if let Some(dependency) = unmet_dependency(request, failed) {
            let reply = failed_dependency(request, dependency).await;
            return rolled_back(&labels, &unit, index, reply).await;
        }
    }
    // Requests run inside the transaction, on the blocking thread that holds it; the failing
    // one leaves its reply here before the closure returns the error that rolls back.
    let failure: Arc<Mutex<Option<(usize, Reply)>>> = Arc::default();
    let (task_state, task_context, task_failure) =
        (state.clone(), context.clone(), Arc::clone(&failure));
    let mut task_references = references.clone();
    let result = state
        .service
        .atomic(move |writer| {
            let mut replies = Vec::with_capacity(requests.len());
            for (index, request) in requests.iter().enumerate() {
                let mut writes = TxWrites::new(writer);
                // `execute` with TxWrites never waits (no I/O, the writes are synchronous), so
                // blocking this thread, which is not a runtime worker, on it is safe. Not
                // through the runtime's `block_on`: that would enter the runtime on the
                // writer thread, where a store's own client (PostgreSQL's) must block.
                let reply = block_on(execute_one(
                    &task_state,
                    &task_context,
                    request,
                    &task_references,
                    &mut writes,
                    true,
                ));
                if !reply.status.is_success() {
                    let mut slot = task_failure.lock().unwrap_or_else(|p| p.into_inner());
                    *slot = Some((index, reply));
                    return Err(ServiceError::BadRequest("a request of the unit failed".into()));
                }
                if let (Some(id), Some(created)) = (&request.id, writes.created) {
                    task_references.insert(id.clone(), created);
                }
                replies.push(reply);
            }
            Ok((replies, task_references))
        })
        .await;
    match result {
        Ok((replies, committed_references)) => {
            *references = committed_references;
            Outcome::Committed(replies)
        }
        Err(error) => {
            let failure = failure.lock().unwrap_or_else(|p| p.into_inner()).take();
            match failure {
                Some((index, reply)) => {
                    let label = labels.get(index).map_or("a request", String::as_str);
                    let prefix = format!("{label} failed, so nothing of its {unit} was written");
                    rolled_back(&labels, &unit, index, prefix_message(reply, &prefix)).await
                }
                None => {
                    let reply = reply_of(ApiError::from(error).into_response()).await;
                    Outcome::RolledBack { failed: None, replies: vec![reply; labels.len()] }
                }
            }
        }
    }
}

/// The outcome of a unit whose request at `failed` failed with `reply`: 424 for the others.
async fn rolled_back(labels: &[String], unit: &str, failed: usize, reply: Reply) -> Outcome {
    let mut replies = Vec::with_capacity(labels.len());
    for (index, label) in labels.iter().enumerate() {
        if index == failed {
            replies.push(reply.clone());
            continue;
        }
        let what = if index < failed { "was rolled back" } else { "was not run" };
        let culprit = labels.get(failed).map_or("a request", String::as_str);
        let message = format!("{label} {what}: {culprit} of the same {unit} failed");
        let error = ApiError::new(StatusCode::FAILED_DEPENDENCY, message);
        replies.push(reply_of(error.into_response()).await);
    }
    Outcome::RolledBack { failed: Some(failed), replies }
}

/// Runs one request of the batch through the same code as a request sent alone.
async fn execute_one<W: crate::writes::Writes>(
    state: &AppState,
    context: &Context,
    request: &BatchRequest,
    references: &References,
    writes: &mut W,
    in_atomic_unit: bool,
) -> Reply {
    let target = match resolve(context, &request.url, references) {
        Ok(target) => target,
        Err(error) => return reply_of(error.into_response()).await,
    };
    if in_atomic_unit && let Err(error) = check_atomic_request(request, &target) {
        return reply_of(error.into_response()).await;
    }
    let mut builder = axum::http::Request::builder().method(request.method.clone()).uri(target.uri);
    if let Some(headers) = builder.headers_mut() {
        headers.extend(request.headers.clone());
        headers.remove(header::CONTENT_LENGTH);
        headers.remove(header::HOST);
        if let Some(host) = &context.host {
            headers.insert(header::HOST, host.clone());
        }
    }
    let body = substitute_body_references(&request.body, references);
    let http_request = match builder.body(Body::from(body)) {
        Ok(http_request) => http_request,
        Err(error) => {
            let message = format!("{}: invalid request: {error}", request.label);
            return reply_of(ApiError::bad_request(message).into_response()).await;
        }
    };
    let response =
        match execute(state.clone(), target.version, target.path, http_request, writes).await {
            Ok(response) => response,
            Err(error) => error.into_response(),
        };
    reply_of(response).await
}

/// Change sets hold writes to entities only: reads (OData 4.0 §11.7.3) and anything that is not
/// an entity path (which could write through a transaction of its own, waiting forever on the
/// one this unit holds) are refused.
fn check_atomic_request(request: &BatchRequest, target: &Target) -> Result<(), ApiError> {
    if request.method == Method::GET || request.method == Method::HEAD {
        return Err(ApiError::bad_request(format!(
            "{}: a change set or atomicity group holds writes only; send the GET outside it",
            request.label
        )));
    }
    let decoded = percent_encoding::percent_decode_str(&target.path)
        .decode_utf8()
        .map_err(|_| ApiError::bad_request("the path is not valid UTF-8"))?;
    parse_resource_path(&decoded).map_err(|e| ApiError::not_found(e.to_string()))?;
    Ok(())
}

/// Where a request of the batch goes, in the form the router hands a request to `execute`.
#[derive(Debug)]
struct Target {
    version: String,
    /// The resource path after the version, percent-decoded once.
    path: String,
    /// `/{version}/{path}?{query}`, as sent.
    uri: Uri,
}

/// Characters a request line may carry but a URI may not; they are escaped, not refused.
const NOT_IN_URI: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'<')
    .add(b'>')
    .add(b'\\')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');

/// Resolves a request URL of the batch: absolute URL, absolute path, path relative to the
/// service root, and a leading `$<id>` reference.
fn resolve(context: &Context, url: &str, references: &References) -> Result<Target, ApiError> {
    let url = url.trim();
    let without_authority = match url.split_once("://") {
        Some((scheme, rest)) if !scheme.is_empty() && scheme.chars().all(is_scheme_char) => {
            rest.find('/').map_or("/", |slash| &rest[slash..])
        }
        _ => url,
    };
    let (path, query) = match without_authority.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (without_authority, None),
    };
    let (version, path) = match path.strip_prefix('/') {
        Some(absolute) => {
            let below_prefix = match context.prefix.as_str() {
                "" => absolute,
                prefix => absolute
                    .strip_prefix(prefix)
                    .and_then(|rest| rest.strip_prefix('/'))
                    .unwrap_or(absolute),
            };
            below_prefix.split_once('/').unwrap_or((below_prefix, ""))
        }
        None => (context.version.as_str(), path),
    };
    let path = resolve_reference(path, references)?;
    if path.is_empty() {
        return Err(ApiError::not_found(format!(
            "'{url}' addresses no resource; name an entity set or entity, e.g. Things(1)"
        )));
    }
    let mut text = format!("/{version}/{path}");
    if let Some(query) = query {
        text.push('?');
        text.push_str(query);
    }
    let escaped = percent_encoding::utf8_percent_encode(&text, NOT_IN_URI).to_string();
    let uri = Uri::try_from(escaped.as_str())
        .map_err(|e| ApiError::bad_request(format!("invalid request URL '{url}': {e}")))?;
    let decoded = percent_encoding::percent_decode_str(&path)
        .decode_utf8()
        .map_err(|_| ApiError::bad_request(format!("the path of '{url}' is not valid UTF-8")))?;
    Ok(Target { version: version.to_owned(), path: decoded.into_owned(), uri })
}

fn is_scheme_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')
}

/// `$sensor1/Datastreams` → `Sensors(42)/Datastreams`.
fn resolve_reference(path: &str, references: &References) -> Result<String, ApiError> {
    let Some(reference) = path.strip_prefix('$') else { return Ok(path.to_owned()) };
    let (name, rest) = match reference.split_once('/') {
        Some((name, rest)) => (name, Some(rest)),
        None => (reference, None),
    };
    let Some((ty, id)) = references.get(name) else {
        return Err(ApiError::not_found(format!(
            "'${name}' refers to no entity: no earlier request of this batch with Content-ID \
             (or id) '{name}' created one"
        )));
    };
    Ok(match rest {
        Some(rest) => format!("{}({id})/{rest}", ty.set_name()),
        None => format!("{}({id})", ty.set_name()),
    })
}

/// Replaces `"@iot.id": "$<id>"` in a JSON body with the id of the entity `<id>` created.
/// Bodies without references are passed on untouched.
fn substitute_body_references(body: &Bytes, references: &References) -> Bytes {
    if references.is_empty() || !body.windows(2).any(|pair| pair == b"\"$") {
        return body.clone();
    }
    let Ok(mut json) = serde_json::from_slice::<Json>(body) else { return body.clone() };
    replace_references(&mut json, references);
    serde_json::to_vec(&json).map_or_else(|_| body.clone(), Bytes::from)
}

fn replace_references(value: &mut Json, references: &References) {
    match value {
        Json::Object(members) => {
            for (key, member) in members.iter_mut() {
                if key == "@iot.id"
                    && let Json::String(text) = member
                    && let Some((_, id)) = text.strip_prefix('$').and_then(|n| references.get(n))
                {
                    *member = Json::from(*id);
                } else {
                    replace_references(member, references);
                }
            }
        }
        Json::Array(items) => {
            items.iter_mut().for_each(|item| replace_references(item, references))
        }
        _ => {}
    }
}

/// A response as status, headers and body bytes.
async fn reply_of(response: Response) -> Reply {
    let (parts, body) = response.into_parts();
    let mut headers = parts.headers;
    headers.remove(header::CONTENT_LENGTH);
    match axum::body::to_bytes(body, usize::MAX).await {
        Ok(body) => Reply { status: parts.status, headers, body },
        Err(error) => {
            tracing::error!(error = %error, "reading the response of a batch request failed");
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            let body = serde_json::json!({
                "code": 500,
                "type": "error",
                "message": "internal server error; the details are in the server log",
            });
            Reply {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                headers,
                body: Bytes::from(body.to_string()),
            }
        }
    }
}

/// Puts `prefix` before the message of an error reply (`{"code", "type", "message"}`).
fn prefix_message(mut reply: Reply, prefix: &str) -> Reply {
    if let Ok(Json::Object(mut error)) = serde_json::from_slice::<Json>(&reply.body)
        && let Some(Json::String(message)) = error.get("message")
    {
        let message = format!("{prefix}: {message}");
        error.insert("message".into(), Json::String(message));
        reply.body = Bytes::from(Json::Object(error).to_string());
    }
    reply
}

/// Runs a future to completion on the current thread, parking it while the future waits,
/// without entering any async runtime.
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = std::task::Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut context = std::task::Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let std::task::Poll::Ready(output) = future.as_mut().poll(&mut context) {
            return output;
        }
        std::thread::park();
    }
}
