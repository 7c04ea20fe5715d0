//! Where the writes of one request go.
//!
//! `routes::execute` turns one request into a service call and a response. It is written once,
//! against [`Writes`], so that a request inside a batch behaves exactly like the same request
//! sent alone:
//!
//! ```text
//!   plain request, batch request outside a change set ─► ServiceWrites ─► Service::create …
//!                                                          (each write its own transaction)
//!   request inside a change set / atomicity group      ─► TxWrites ─► Writer::create …
//!                                                          (the change set's one transaction)
//! ```
//!
//! Both remember the entity a POST created, which is what a later `$<Content-ID>` of the same
//! batch refers to.

use serde_json::Value as Json;
use stela_model::{Entity, EntityType, ResourcePath};
use stela_service::{Service, ServiceError, Writer};

/// The write operations of the REST API.
pub(crate) trait Writes {
    /// Creates an entity in the collection `path` addresses.
    async fn create(&mut self, path: ResourcePath, body: Json) -> Result<Entity, ServiceError>;
    /// Updates the entity `path` addresses: merge (PATCH) or replace (PUT).
    async fn update(
        &mut self,
        path: ResourcePath,
        body: Json,
        replace: bool,
    ) -> Result<Entity, ServiceError>;
    /// Applies an RFC 6902 JSON Patch to the entity `path` addresses.
    async fn patch_json(
        &mut self,
        path: ResourcePath,
        patch: json_patch::Patch,
    ) -> Result<Entity, ServiceError>;
    /// Deletes the entity `path` addresses.
    async fn delete(&mut self, path: ResourcePath) -> Result<(), ServiceError>;
}

/// Writes through the service, each in its own transaction.
#[derive(Debug)]
pub(crate) struct ServiceWrites<'a> {
    service: &'a Service,
    /// The entity the last successful POST created.
    pub(crate) created: Option<(EntityType, i64)>,
}

impl<'a> ServiceWrites<'a> {
    pub(crate) fn new(service: &'a Service) -> ServiceWrites<'a> {
        ServiceWrites { service, created: None }
    }
}

impl Writes for ServiceWrites<'_> {
    async fn create(&mut self, path: ResourcePath, body: Json) -> Result<Entity, ServiceError> {
        let entity = self.service.create(path, body).await?;
        self.created = Some((entity.ty, entity.id));
        Ok(entity)
    }

    async fn update(
        &mut self,
        path: ResourcePath,
        body: Json,
        replace: bool,
    ) -> Result<Entity, ServiceError> {
        self.service.update(path, body, replace).await
    }

    async fn patch_json(
        &mut self,
        path: ResourcePath,
        patch: json_patch::Patch,
    ) -> Result<Entity, ServiceError> {
        self.service.patch_json(path, patch).await
    }

    async fn delete(&mut self, path: ResourcePath) -> Result<(), ServiceError> {
        self.service.delete(path).await
    }
}

/// Writes into an open transaction (`Service::atomic`); they commit or roll back with it.
/// Every method completes without waiting: the transaction runs on a blocking thread.
#[derive(Debug)]
pub(crate) struct TxWrites<'a, 'w, 'tx> {
    writer: &'a mut Writer<'w, 'tx>,
    /// The entity the last successful POST created.
    pub(crate) created: Option<(EntityType, i64)>,
}

impl<'a, 'w, 'tx> TxWrites<'a, 'w, 'tx> {
    pub(crate) fn new(writer: &'a mut Writer<'w, 'tx>) -> TxWrites<'a, 'w, 'tx> {
        TxWrites { writer, created: None }
    }
}

impl Writes for TxWrites<'_, '_, '_> {
    async fn create(&mut self, path: ResourcePath, body: Json) -> Result<Entity, ServiceError> {
        let entity = self.writer.create(&path, &body)?;
        self.created = Some((entity.ty, entity.id));
        Ok(entity)
    }

    async fn update(
        &mut self,
        path: ResourcePath,
        body: Json,
        replace: bool,
    ) -> Result<Entity, ServiceError> {
        self.writer.update(&path, &body, replace)
    }

    async fn patch_json(
        &mut self,
        path: ResourcePath,
        patch: json_patch::Patch,
    ) -> Result<Entity, ServiceError> {
        self.writer.patch_json(&path, &patch)
    }

    async fn delete(&mut self, path: ResourcePath) -> Result<(), ServiceError> {
        self.writer.delete(&path)
    }
}

/// The writes of a POST in a bulk run of a batch (`batch/bulk.rs`), in two passes: first it
/// records the create the request would make, without making it; then it answers that create
/// with what the bulk write made of it. Anything else is refused.
#[derive(Debug, Default)]
pub(crate) struct BulkWrites {
    /// First pass: the create the request reached.
    pub(crate) captured: Option<(ResourcePath, Json)>,
    /// Second pass: what the bulk write made of it.
    answer: Option<Result<Entity, ServiceError>>,
    /// The entity the POST created (second pass).
    pub(crate) created: Option<(EntityType, i64)>,
}

impl BulkWrites {
    /// The second pass, answering with `answer`.
    pub(crate) fn answering(answer: Result<Entity, ServiceError>) -> BulkWrites {
        BulkWrites { answer: Some(answer), ..BulkWrites::default() }
    }
}

fn deferred() -> ServiceError {
    ServiceError::Internal("the write is deferred to a bulk write".into())
}

impl Writes for BulkWrites {
    async fn create(&mut self, path: ResourcePath, body: Json) -> Result<Entity, ServiceError> {
        let Some(answer) = self.answer.take() else {
            self.captured = Some((path, body));
            return Err(deferred());
        };
        let entity = answer?;
        self.created = Some((entity.ty, entity.id));
        Ok(entity)
    }

    async fn update(&mut self, _: ResourcePath, _: Json, _: bool) -> Result<Entity, ServiceError> {
        Err(deferred())
    }

    async fn patch_json(
        &mut self,
        _: ResourcePath,
        _: json_patch::Patch,
    ) -> Result<Entity, ServiceError> {
        Err(deferred())
    }

    async fn delete(&mut self, _: ResourcePath) -> Result<(), ServiceError> {
        Err(deferred())
    }
}
