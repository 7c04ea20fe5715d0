//! HTTP front end of Stela.
//!
//! (Being written; this is the interface the binary builds on.)

use std::future::Future;

use stela_service::Service;

/// Options of the HTTP layer.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Largest request body accepted; larger bodies get 413.
    pub max_body_bytes: usize,
    /// Externally visible base URL (e.g. `https://example.org/sta`) used in self links;
    /// when `None`, links are built from the request's `Host` header.
    pub public_url: Option<String>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions { max_body_bytes: 16 * 1024 * 1024, public_url: None }
    }
}

/// Serves the API on `listener` until `shutdown` completes, then drains open requests.
pub async fn run(
    listener: tokio::net::TcpListener,
    service: Service,
    options: ServerOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let _ = (listener, service, options);
    shutdown.await;
    Ok(())
}
