//! HTTP front end of Stela: the SensorThings API 1.1 REST interface.
//!
//! This crate alone knows HTTP: routes, status codes, headers, the JSON shapes of the wire.
//! Handlers are `extract → stela-service call → render`; no SQL and no model rules here.
//!
//! ```text
//!   request ─► router ─► resource handler: path (stela-model) + query options (stela-query)
//!                         ├─ GET    ─► Service::read   ─► render (entity / collection / $ref / $value)
//!                         ├─ POST   ─► Service::create ─► 201 + Location
//!                         ├─ PATCH  ─► Service::update or patch_json (application/json-patch+json)
//!                         ├─ PUT    ─► Service::update(replace)
//!                         └─ DELETE ─► Service::delete
//!   errors ─► ApiError (one table: error code → status) ─► {"code", "type", "message"}
//! ```

mod batch;
mod error;
mod formats;
pub mod render;
mod routes;
mod writes;

use std::future::Future;

use stela_service::Service;

pub use routes::app;

/// Options of the HTTP layer.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Largest request body accepted; larger bodies get 413.
    pub max_body_bytes: usize,
    /// Externally visible base URL (e.g. `https://example.org/sta`) used in self links;
    /// when `None`, links are built from the request's `Host` header.
    pub public_url: Option<String>,
    /// Endpoints (`mqtt://host:port`) of the MQTT extension, advertised in `serverSettings`
    /// under both MQTT conformance classes; empty when MQTT is off.
    pub mqtt_endpoints: Vec<String>,
    /// Reports of other parts of the process (the MQTT broker) shown by `GET /health`; this
    /// hook keeps the HTTP crate independent of them.
    pub health: Vec<std::sync::Arc<dyn HealthProvider>>,
    /// Most requests one `$batch` may hold (counting each request of a change set); more get
    /// 413 before any of them runs.
    pub max_batch_requests: usize,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            max_body_bytes: 16 * 1024 * 1024,
            public_url: None,
            mqtt_endpoints: Vec::new(),
            health: Vec::new(),
            max_batch_requests: 10_000,
        }
    }
}

/// A part of the process that reports its state under `GET /health`.
pub trait HealthProvider: Send + Sync + std::fmt::Debug {
    /// The member of the health document holding this report, e.g. `mqtt`.
    fn name(&self) -> &'static str;
    /// The current state as a JSON object; `healthy: false` makes the overall status
    /// `degraded`.
    fn report(&self) -> HealthReport;
}

/// One part's state, as shown by `GET /health`.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthReport {
    /// Whether the part works as configured (an external broker that is unreachable is not).
    pub healthy: bool,
    /// Details: counters, states; rendered as given.
    pub details: serde_json::Value,
}

/// Serves the API on `listener` until `shutdown` completes, then drains open requests.
pub async fn run(
    listener: tokio::net::TcpListener,
    service: Service,
    options: ServerOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let interval = service.options().checkpoint_interval;
    let checkpoints = tokio::spawn(service.clone().run_checkpoints(interval));
    let served =
        axum::serve(listener, app(service, options)).with_graceful_shutdown(shutdown).await;
    checkpoints.abort();
    served
}

/// Characters escaped in query components of the links Stela writes. OData's own punctuation
/// (`$ ( ) ' , / :`) stays readable, as clients and people expect in `@iot.nextLink`.
const QUERY_COMPONENT: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'&')
    .add(b'+')
    .add(b'<')
    .add(b'>')
    .add(b'=')
    .add(b'`')
    .add(b'{')
    .add(b'}')
    .add(b'|')
    .add(b'\\')
    .add(b'^')
    .add(b'[')
    .add(b']');

/// Encodes query pairs as `k=v&k=v` with [`QUERY_COMPONENT`] escaping.
pub(crate) fn encode_query<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut out = String::new();
    for (key, value) in pairs {
        if !out.is_empty() {
            out.push('&');
        }
        out.extend(percent_encoding::utf8_percent_encode(key, QUERY_COMPONENT));
        out.push('=');
        out.extend(percent_encoding::utf8_percent_encode(value, QUERY_COMPONENT));
    }
    out
}
