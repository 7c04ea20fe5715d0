//! Routes and handlers of the SensorThings REST API.

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path as UrlPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value as Json, json};
use stela_model::{EntityType, ResourcePath, Tail, parse_resource_path, value_to_json};
use stela_query::{QueryOptions, parse_query_options};
use stela_service::{ReadResult, Service};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;

use crate::ServerOptions;
use crate::error::ApiError;
use crate::formats::{self, ResultFormat};
use crate::render::{CollectionView, EntityView, Links, entity_json, refs_json};
use crate::writes::{ServiceWrites, Writes};

/// Versions of the API served; both expose the same data.
const VERSIONS: [&str; 2] = ["v1.0", "v1.1"];

/// Requirement classes of SensorThings 1.1 that this server passes.
const CONFORMANCE: [&str; 6] = [
    "http://www.opengis.net/spec/iot_sensing/1.1/req/datamodel",
    "http://www.opengis.net/spec/iot_sensing/1.1/req/request-data",
    "http://www.opengis.net/spec/iot_sensing/1.1/req/resource-path/resource-path-to-entities",
    "http://www.opengis.net/spec/iot_sensing/1.1/req/create-update-delete",
    "http://www.opengis.net/spec/iot_sensing/1.1/req/multi-datastream",
    "http://www.opengis.net/spec/iot_sensing/1.1/req/data-array/data-array",
];

/// Requirement classes of the MQTT extension, advertised (with their endpoints) only when MQTT
/// runs.
const MQTT_CONFORMANCE: [&str; 2] = [
    "http://www.opengis.net/spec/iot_sensing/1.1/req/create-observations-via-mqtt/observations-creation",
    "http://www.opengis.net/spec/iot_sensing/1.1/req/receive-updates-via-mqtt/receive-updates",
];

#[derive(Debug, Clone)]
pub(crate) struct AppState {
    pub(crate) service: Service,
    pub(crate) options: Arc<ServerOptions>,
}

/// The router of the whole HTTP API, ready to serve.
pub fn app(service: Service, options: ServerOptions) -> Router {
    let state = AppState { service, options: Arc::new(options) };
    Router::new()
        .route("/", get(landing))
        .route("/log/checkpoint", get(log_checkpoint))
        .route("/log/key", get(log_key))
        .route("/log/tile/{*path}", get(log_tile))
        .route("/log/proof/inclusion", get(inclusion_proof))
        .route("/log/proof/consistency", get(consistency_proof))
        .route("/health", get(health))
        .route("/{version}", any(service_root))
        .route("/{version}/", any(service_root))
        .route("/{version}/$batch", any(crate::batch::batch))
        .route("/{version}/{*path}", any(resource))
        .fallback(|| async { ApiError::not_found("no such resource; the API is under /v1.1") })
        .layer(CatchPanicLayer::custom(|_| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal server error; the details are in the server log",
            )
            .into_response()
        }))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

async fn landing() -> Response {
    axum::Json(json!({"name": "Stela", "versions": VERSIONS, "serviceRoot": "/v1.1"}))
        .into_response()
}

/// `GET /health`: the overall status and the report of each registered part (MQTT).
async fn health(State(state): State<AppState>) -> Response {
    let mut body = serde_json::Map::new();
    let mut healthy = true;
    for provider in &state.options.health {
        let report = provider.report();
        healthy &= report.healthy;
        body.insert(provider.name().to_owned(), report.details);
    }
    body.insert("status".to_owned(), json!(if healthy { "ok" } else { "degraded" }));
    axum::Json(Json::Object(body)).into_response()
}

/// The base URL of links: the configured public URL, or the request's host.
fn base_url(options: &ServerOptions, headers: &HeaderMap) -> String {
    if let Some(url) = &options.public_url {
        return url.trim_end_matches('/').to_owned();
    }
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost");
    format!("http://{host}")
}

pub(crate) fn check_version(version: &str) -> Result<(), ApiError> {
    if VERSIONS.contains(&version) {
        Ok(())
    } else {
        Err(ApiError::not_found(format!("no API version '{version}'; use v1.1 or v1.0")))
    }
}

async fn service_root(
    State(state): State<AppState>,
    UrlPath(version): UrlPath<String>,
    method: Method,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    check_version(&version)?;
    if method != Method::GET {
        return Err(ApiError::method_not_allowed("the service root is read-only"));
    }
    let root = format!("{}/{version}", base_url(&state.options, &headers));
    let sets: Vec<Json> = EntityType::ALL
        .iter()
        .map(|ty| json!({"name": ty.set_name(), "url": format!("{root}/{}", ty.set_name())}))
        .collect();
    let mut body = json!({"value": sets});
    if version == "v1.1" {
        let mut settings = json!({"conformance": CONFORMANCE});
        if !state.options.mqtt_endpoints.is_empty() {
            for class in MQTT_CONFORMANCE {
                if let Some(list) = settings["conformance"].as_array_mut() {
                    list.push(json!(class));
                }
                settings[class] = json!({"endpoints": state.options.mqtt_endpoints});
            }
        }
        body["serverSettings"] = settings;
    }
    Ok(axum::Json(body).into_response())
}

/// Every request below a version root.
async fn resource(
    State(state): State<AppState>,
    UrlPath((version, raw_path)): UrlPath<(String, String)>,
    request: Request,
) -> Result<Response, ApiError> {
    let service = state.service.clone();
    execute(state, version, raw_path, request, &mut ServiceWrites::new(&service)).await
}

/// One request below a version root, sent alone or inside a `$batch`; `raw_path` is the path
/// after the version, percent-decoded once (as the router hands it over). Every write goes
/// through `writes`, never straight to the service: inside a change set they join its open
/// transaction.
pub(crate) async fn execute<W: Writes>(
    state: AppState,
    version: String,
    raw_path: String,
    request: Request,
    writes: &mut W,
) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
    let (method, uri, headers) = (parts.method, parts.uri, parts.headers);
    check_version(&version)?;
    let decoded = percent_encoding::percent_decode_str(&raw_path)
        .decode_utf8()
        .map_err(|_| ApiError::bad_request("the path is not valid UTF-8"))?;
    if decoded == "CreateObservations" {
        if method != Method::POST {
            return Err(ApiError::method_not_allowed("CreateObservations takes POST"));
        }
        let root = format!("{}/{version}", base_url(&state.options, &headers));
        let body = json_body(&state, &headers, body, false).await?;
        return create_observations(&state, &Links { root }, body).await;
    }
    if let Some(entity_path) = decoded.strip_suffix("/$receipt") {
        if method != Method::GET {
            return Err(ApiError::method_not_allowed("receipts are read-only"));
        }
        return receipt(&state, entity_path).await;
    }
    let path = parse_resource_path(&decoded).map_err(|e| ApiError::not_found(e.to_string()))?;
    let root = format!("{}/{version}", base_url(&state.options, &headers));
    let links = Links { root };
    match method {
        Method::GET => {
            let pairs: Vec<(String, String)> = uri
                .query()
                .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
                .unwrap_or_default();
            let (pairs, after) = take_skiptoken(pairs)?;
            let options = parse_query_options(&pairs)?;
            get_resource(&state, &links, &decoded, path, options, &pairs, after).await
        }
        Method::POST => {
            let body = json_body(&state, &headers, body, false).await?;
            let entity = writes.create(path, body).await?;
            let location = links.entity(&entity);
            let json = entity_json(&links, &entity, &QueryOptions::default());
            let mut response = (StatusCode::CREATED, axum::Json(json)).into_response();
            if let Ok(value) = HeaderValue::from_str(&location) {
                response.headers_mut().insert(header::LOCATION, value);
            }
            Ok(response)
        }
        Method::PATCH if is_json_patch(&headers) => {
            let body = json_body(&state, &headers, body, true).await?;
            let patch: json_patch::Patch = serde_json::from_value(body).map_err(|e| {
                ApiError::bad_request(format!("malformed JSON Patch (RFC 6902): {e}"))
            })?;
            let entity = writes.patch_json(path, patch).await?;
            Ok(axum::Json(entity_json(&links, &entity, &QueryOptions::default())).into_response())
        }
        Method::PATCH | Method::PUT => {
            let body = json_body(&state, &headers, body, false).await?;
            let entity = writes.update(path, body, method == Method::PUT).await?;
            Ok(axum::Json(entity_json(&links, &entity, &QueryOptions::default())).into_response())
        }
        Method::DELETE => {
            writes.delete(path).await?;
            Ok(StatusCode::OK.into_response())
        }
        other => Err(ApiError::method_not_allowed(format!("method {other} is not allowed here"))),
    }
}

async fn get_resource(
    state: &AppState,
    links: &Links,
    path_text: &str,
    path: ResourcePath,
    mut options: QueryOptions,
    pairs: &[(String, String)],
    after: Option<Vec<Json>>,
) -> Result<Response, ApiError> {
    let tail = path.tail;
    let format = options.result_format.as_deref().map(ResultFormat::parse).transpose()?;
    if format.is_some() && (tail != Tail::None || path.target().is_single()) {
        return Err(ApiError::bad_request("$resultFormat applies to collections"));
    }
    let components = match format {
        Some(ResultFormat::DataArray) => formats::data_array_query(path.target().ty, &mut options)?,
        _ => Vec::new(),
    };
    let result = state.service.read(path, options.clone(), after).await?;
    let json = match (result, tail) {
        (ReadResult::Entity(entity), Tail::Property(index)) => {
            json!({ entity.ty.properties()[index].name: property_value(&entity, index) })
        }
        (ReadResult::Entity(entity), Tail::PropertyValue(index)) => {
            return Ok(raw_value(property_value(&entity, index)));
        }
        (ReadResult::Entity(entity), Tail::Ref) => json!({"@iot.selfLink": links.entity(&entity)}),
        (ReadResult::Entity(entity), Tail::None) => {
            return Ok(axum::Json(EntityView { links, entity: &entity, options: &options })
                .into_response());
        }
        (ReadResult::Collection { page, .. }, tail) => {
            let next = match (&page.next_after, page.next_skip) {
                (Some(after), _) => Some(keyset_link(links, path_text, pairs, after)),
                (None, Some(skip)) => Some(next_link(links, path_text, pairs, skip)),
                (None, None) => None,
            };
            match format {
                Some(ResultFormat::DataArray) => {
                    formats::data_array_json(links, &page, &components, next)
                }
                Some(ResultFormat::GeoJson) => {
                    return Ok(formats::geojson_response(links, &page, &options));
                }
                Some(ResultFormat::Csv) => return formats::csv_response(links, &page, &options),
                None if tail == Tail::Ref => refs_json(links, &page, next),
                None => {
                    let view = CollectionView {
                        links,
                        page: &page,
                        options: &options,
                        next_link: next.as_deref(),
                    };
                    return Ok(axum::Json(view).into_response());
                }
            }
        }
    };
    Ok(axum::Json(json).into_response())
}

/// The JSON of one property of an entity (null when it has none).
fn property_value(entity: &stela_model::Entity, index: usize) -> Json {
    entity.values.get(index).and_then(Option::as_ref).map_or(Json::Null, value_to_json)
}

/// `$value`: strings as text, everything else as JSON text.
fn raw_value(value: Json) -> Response {
    match value {
        Json::String(text) => {
            ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response()
        }
        other => ([(header::CONTENT_TYPE, "application/json")], other.to_string()).into_response(),
    }
}

/// The link to the next page: the same request with the next `$skip`.
fn next_link(links: &Links, path: &str, pairs: &[(String, String)], skip: u64) -> String {
    let skip = skip.to_string();
    let kept =
        pairs.iter().filter(|(key, _)| key != "$skip").map(|(k, v)| (k.as_str(), v.as_str()));
    let query = crate::encode_query(kept.chain([("$skip", skip.as_str())]));
    format!("{}/{}?{query}", links.root, path.trim_start_matches('/'))
}

/// The link to the next page of a keyset-paged collection: the same request, minus `$skip`,
/// with a `$skiptoken` holding the last entity's sort keys. Deep pages cost as little as the
/// first, because the database seeks to the token instead of counting skipped rows.
fn keyset_link(links: &Links, path: &str, pairs: &[(String, String)], after: &[Json]) -> String {
    let token = URL_SAFE_NO_PAD.encode(Json::Array(after.to_vec()).to_string());
    let kept =
        pairs.iter().filter(|(key, _)| key != "$skip").map(|(k, v)| (k.as_str(), v.as_str()));
    let query = crate::encode_query(kept.chain([("$skiptoken", token.as_str())]));
    format!("{}/{}?{query}", links.root, path.trim_start_matches('/'))
}

/// Decoded `key=value` pairs of a query string, in order.
type QueryPairs = Vec<(String, String)>;

/// Removes `$skiptoken` from the query pairs and decodes it.
fn take_skiptoken(
    pairs: Vec<(String, String)>,
) -> Result<(QueryPairs, Option<Vec<Json>>), ApiError> {
    let mut after = None;
    let mut rest = Vec::with_capacity(pairs.len());
    for (key, value) in pairs {
        if key == "$skiptoken" {
            let invalid =
                || ApiError::bad_request("invalid $skiptoken; use the @iot.nextLink as given");
            let bytes = URL_SAFE_NO_PAD.decode(value.as_bytes()).map_err(|_| invalid())?;
            let Ok(Json::Array(values)) = serde_json::from_slice::<Json>(&bytes) else {
                return Err(invalid());
            };
            after = Some(values);
        } else {
            rest.push((key, value));
        }
    }
    Ok((rest, after))
}

fn is_json_patch(headers: &HeaderMap) -> bool {
    content_type(headers).is_some_and(|ct| ct == "application/json-patch+json")
}

fn content_type(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or_default().trim().to_ascii_lowercase())
}

/// Reads a JSON request body within the size limit.
async fn json_body(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
    patch: bool,
) -> Result<Json, ApiError> {
    match content_type(headers) {
        None => {}
        Some(ct) if ct == "application/json" || (patch && ct == "application/json-patch+json") => {}
        Some(ct) if ct.ends_with("+json") && !patch => {}
        Some(ct) => {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("unsupported content type '{ct}'; send application/json"),
            ));
        }
    }
    let bytes: Bytes =
        axum::body::to_bytes(body, state.options.max_body_bytes).await.map_err(|_| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "the request body is larger than the limit of {} bytes",
                    state.options.max_body_bytes
                ),
            )
        })?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request(format!("malformed JSON: {e}")))
}

/// `…/Set(id)/$receipt`: the entity's log entries with inclusion proofs and a checkpoint.
async fn receipt(state: &AppState, entity_path: &str) -> Result<Response, ApiError> {
    let path = parse_resource_path(entity_path).map_err(|e| ApiError::not_found(e.to_string()))?;
    let [step] = path.steps.as_slice() else {
        return Err(ApiError::not_found(
            "receipts are served for entities addressed as Set(id), e.g. Observations(1)/$receipt",
        ));
    };
    let (Some(id), Tail::None) = (step.id, path.tail) else {
        return Err(ApiError::not_found(
            "receipts are served for entities addressed as Set(id), e.g. Observations(1)/$receipt",
        ));
    };
    let receipt = state.service.receipt(step.ty, id).await?;
    Ok(axum::Json(receipt).into_response())
}

/// `/log/checkpoint`: the newest signed checkpoint (C2SP signed note).
async fn log_checkpoint(State(state): State<AppState>) -> Result<Response, ApiError> {
    let note = state.service.checkpoint().await?;
    Ok((
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8"), (header::CACHE_CONTROL, "no-store")],
        note,
    )
        .into_response())
}

/// `/log/key`: the verifier key of the log's checkpoints.
async fn log_key(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{}\n", state.service.log_verifier_key()),
    )
        .into_response()
}

/// `/log/tile/…`: hash tiles and entry bundles (C2SP tlog-tiles). Full tiles never change.
async fn log_tile(
    State(state): State<AppState>,
    UrlPath(path): UrlPath<String>,
) -> Result<Response, ApiError> {
    let (bytes, full) = state.service.log_tile(format!("tile/{path}")).await?;
    let cache = if full { "public, max-age=31536000, immutable" } else { "no-store" };
    Ok((
        [(header::CONTENT_TYPE, "application/octet-stream"), (header::CACHE_CONTROL, cache)],
        bytes,
    )
        .into_response())
}

fn number_param(uri: &Uri, name: &str) -> Result<u64, ApiError> {
    let pairs: Vec<(String, String)> = uri
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let value = pairs
        .iter()
        .find(|(key, _)| key == name)
        .ok_or_else(|| ApiError::bad_request(format!("missing query parameter '{name}'")))?;
    value.1.parse().map_err(|_| {
        ApiError::bad_request(format!("'{name}' must be a non-negative integer, got '{}'", value.1))
    })
}

/// `/log/proof/inclusion?index=…&size=…`
async fn inclusion_proof(State(state): State<AppState>, uri: Uri) -> Result<Response, ApiError> {
    let (index, size) = (number_param(&uri, "index")?, number_param(&uri, "size")?);
    if index >= size {
        return Err(ApiError::bad_request(format!("index {index} is not below size {size}")));
    }
    let proof = state.service.inclusion_proof(index, size).await?;
    Ok(axum::Json(json!({"index": index, "size": size, "proof": proof.hashes})).into_response())
}

/// `/log/proof/consistency?from=…&to=…`
async fn consistency_proof(State(state): State<AppState>, uri: Uri) -> Result<Response, ApiError> {
    let (from, to) = (number_param(&uri, "from")?, number_param(&uri, "to")?);
    if from > to {
        return Err(ApiError::bad_request(format!("'from' ({from}) must not exceed 'to' ({to})")));
    }
    let proof = state.service.consistency_proof(from, to).await?;
    Ok(axum::Json(json!({"from": from, "to": to, "proof": proof.hashes})).into_response())
}

/// `POST CreateObservations` (DataArray extension): many Observations in one transaction; the
/// response lists the new Observations' URLs in input order, `"error"` for rows that failed
/// (their writes undone, the other rows kept).
async fn create_observations(
    state: &AppState,
    links: &Links,
    body: Json,
) -> Result<Response, ApiError> {
    let groups = formats::create_observations_rows(&body)?;
    let path =
        parse_resource_path("Observations").map_err(|e| ApiError::not_found(e.to_string()))?;
    let root = links.root.clone();
    // Decoded here, on a request thread: the writer thread only writes.
    let rows: Vec<Option<Json>> = groups.into_iter().flatten().collect();
    let decoded = stela_service::decode_creates(
        rows.iter().flatten().map(|observation| (path.clone(), observation)),
    );
    let created = state.service.create_decoded(decoded).await?;
    let mut created = created.into_iter();
    let results: Vec<Json> = rows
        .iter()
        .map(|row| {
            // A row that does not match its components was not an item.
            let id = row.as_ref().and_then(|_| created.next()).and_then(Result::ok);
            id.map_or(Json::String("error".into()), |id| {
                Json::String(format!("{root}/Observations({id})"))
            })
        })
        .collect();
    Ok((StatusCode::CREATED, axum::Json(Json::Array(results))).into_response())
}
