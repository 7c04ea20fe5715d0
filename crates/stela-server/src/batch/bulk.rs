//! POSTs that follow each other in a batch, outside change sets, written in one bulk
//! transaction (`Writer::create_decoded`: multi-row inserts for Observations) instead of one
//! transaction each, with the replies of the same requests sent alone.
//!
//! ```text
//!   a run of POSTs ─► 1. each through routes::execute with BulkWrites: every check a POST
//!                        makes; what reaches the write is recorded, not written
//!                  ─► 2. the recorded creates: decode_creates, one Service::atomic(create_decoded),
//!                        the new entities read back (read_many)
//!                  ─► 3. each through routes::execute again with BulkWrites answering: the reply of the
//!                        request sent alone, with what step 2 made of it
//! ```
//!
//! Each request still succeeds or fails on its own. A run ends before a request that refers
//! (`$<id>`) to one of the run, or that depends on another (`dependsOn`): those run in order.

use std::collections::{HashMap, HashSet};

use axum::http::Method;
use serde_json::Value as Json;
use stela_model::{Entity, EntityType, ResourcePath, parse_resource_path};
use stela_service::{ServiceError, decode_creates};

use super::{BatchRequest, Context, References, Reply, execute_one, resolve};
use crate::routes::AppState;
use crate::writes::BulkWrites;

/// Whether `request` may join a run of bulk POSTs; `run_ids` are the ids of the run's earlier
/// requests.
pub(super) fn joins_run(
    context: &Context,
    request: &BatchRequest,
    references: &References,
    run_ids: &HashSet<String>,
) -> bool {
    if request.method != Method::POST || !request.depends_on.is_empty() {
        return false;
    }
    // A reference to a request of the run cannot be resolved before the run is written.
    if refers_to_any(request.url.as_bytes(), run_ids) || refers_to_any(&request.body, run_ids) {
        return false;
    }
    // Entity paths only: CreateObservations and the like write on their own.
    resolve(context, &request.url, references).is_ok_and(|target| {
        percent_encoding::percent_decode_str(&target.path)
            .decode_utf8()
            .is_ok_and(|path| parse_resource_path(&path).is_ok())
    })
}

/// Whether `text` holds `$<id>` for one of `ids` (conservatively: `$` followed by the id).
fn refers_to_any(text: &[u8], ids: &HashSet<String>) -> bool {
    if ids.is_empty() {
        return false;
    }
    text.iter().enumerate().filter(|(_, b)| **b == b'$').any(|(at, _)| {
        let rest = &text[at + 1..];
        let end = rest
            .iter()
            .position(|b| !(b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')))
            .unwrap_or(rest.len());
        (1..=end).any(|len| std::str::from_utf8(&rest[..len]).is_ok_and(|id| ids.contains(id)))
    })
}

/// Runs `requests` (a run that [`joins_run`] accepted) and returns one reply each, in order;
/// adds what they created to `references`.
pub(super) async fn run(
    state: &AppState,
    context: &Context,
    requests: &[BatchRequest],
    references: &mut References,
) -> Vec<Reply> {
    // 1. What each request would create, after every check of a POST sent alone.
    let mut captured: Vec<Option<(ResourcePath, Json)>> = Vec::with_capacity(requests.len());
    for request in requests {
        let mut capture = BulkWrites::default();
        let _ = execute_one(state, context, request, references, &mut capture, false).await;
        captured.push(capture.captured);
    }
    // 2. One transaction for all of them; then the new entities, read as a POST reads them.
    let items: Vec<(ResourcePath, &Json)> =
        captured.iter().flatten().map(|(path, body)| (path.clone(), body)).collect();
    let types: Vec<EntityType> = items.iter().map(|(path, _)| path.target().ty).collect();
    let decoded = decode_creates(items);
    let created: Vec<Result<i64, ServiceError>> = match state.service.create_decoded(decoded).await
    {
        Ok(created) => created,
        Err(error) => types.iter().map(|_| Err(error.clone())).collect(),
    };
    let entities = read_back(state, &types, &created).await;
    let mut results = types.iter().zip(created).map(|(ty, id)| {
        let id = id?;
        entities.get(&(*ty, id)).cloned().ok_or_else(|| {
            ServiceError::NotFound(format!("the new {ty} {id} was deleted before it was read"))
        })
    });
    // 3. The replies, as the requests sent alone get them.
    let mut replies = Vec::with_capacity(requests.len());
    for (request, captured) in requests.iter().zip(&captured) {
        let reply = match captured.as_ref().and_then(|_| results.next()) {
            Some(result) => {
                let mut writes = BulkWrites::answering(result);
                let reply =
                    execute_one(state, context, request, references, &mut writes, false).await;
                if let (Some(id), Some(created)) = (&request.id, writes.created) {
                    references.insert(id.clone(), created);
                }
                reply
            }
            // It failed before its write: the same failure again, and nothing written.
            None => {
                execute_one(state, context, request, references, &mut BulkWrites::default(), false)
                    .await
            }
        };
        replies.push(reply);
    }
    replies
}

/// The created entities, by type and id.
async fn read_back(
    state: &AppState,
    types: &[EntityType],
    created: &[Result<i64, ServiceError>],
) -> HashMap<(EntityType, i64), Entity> {
    let mut by_type: HashMap<EntityType, Vec<i64>> = HashMap::new();
    for (ty, id) in types.iter().zip(created) {
        if let Ok(id) = id {
            by_type.entry(*ty).or_default().push(*id);
        }
    }
    let mut entities = HashMap::new();
    for (ty, ids) in by_type {
        // A failed read leaves them out: their requests then answer 404, naming why.
        if let Ok(read) = state.service.read_many(ty, ids).await {
            entities.extend(read.into_iter().map(|e| ((ty, e.id), e)));
        }
    }
    entities
}
