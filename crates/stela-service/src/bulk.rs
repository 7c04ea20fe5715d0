//! Bulk creation: many entities in one transaction, each succeeding or failing alone.

use serde_json::Value as Json;
use stela_model::ResourcePath;

use crate::ServiceError;
use crate::writer::Writer;

/// See [`Writer::create_many`].
pub(crate) fn create_many(
    writer: &mut Writer<'_, '_>,
    items: &[(&ResourcePath, &Json)],
) -> Vec<Result<i64, ServiceError>> {
    items.iter().map(|(path, body)| writer.isolated(|w| w.create_id(path, body))).collect()
}
