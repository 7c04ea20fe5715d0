//! The service layer: the one write path and the read API shared by every door.
//!
//! (Being written; this is the interface the binary builds on.)

use std::path::Path;

/// Options of the read and write API that do not depend on the transport.
#[derive(Debug, Clone)]
pub struct ServiceOptions {
    /// Page size used when a request has no `$top`.
    pub default_top: u32,
    /// Largest `$top` a client may ask for; larger values are capped to this.
    pub max_top: u32,
}

impl Default for ServiceOptions {
    fn default() -> Self {
        ServiceOptions { default_top: 100, max_top: 10_000 }
    }
}

/// Errors of the service layer.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The store could not be opened or used.
    #[error("storage error: {0}")]
    Storage(String),
}

/// Handle on the service; cheap to clone.
#[derive(Debug, Clone)]
pub struct Service {}

impl Service {
    /// Opens (creating when missing) the SQLite database at `path`.
    pub fn open_sqlite(path: &Path, options: ServiceOptions) -> Result<Service, ServiceError> {
        let _ = (path, options);
        Ok(Service {})
    }
}
