//! Entities as read back from the store, with the related entities a query expanded.

use crate::schema::{EntityType, Property, Relation};
use crate::value::{Value, value_to_json};

/// An entity read from the store.
#[derive(Debug, Clone, PartialEq)]
pub struct Entity {
    pub ty: EntityType,
    pub id: i64,
    /// Values aligned with `ty.properties()`; `None` where the property was not selected.
    pub values: Vec<Option<Value>>,
    /// Related entities included by `$expand`, in the order asked for.
    pub expanded: Vec<Expanded>,
}

/// The entities of one expanded relation.
#[derive(Debug, Clone, PartialEq)]
pub struct Expanded {
    pub relation: &'static Relation,
    pub content: ExpandedContent,
}

/// A to-one relation expands to at most one entity, a to-many relation to a page.
#[derive(Debug, Clone, PartialEq)]
pub enum ExpandedContent {
    One(Option<Box<Entity>>),
    Many(Page),
}

/// One page of a collection.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Page {
    pub items: Vec<Entity>,
    /// The total number of matching entities, when `$count=true`.
    pub count: Option<i64>,
    /// When more entities follow: the `$skip` of the next page.
    pub next_skip: Option<u64>,
    /// When more entities follow and the order allows keyset paging: the sort key values of
    /// the last entity (ending with its id), from which the next page continues.
    pub next_after: Option<Vec<serde_json::Value>>,
}

impl Entity {
    /// The value of the property called `name`, when it was read.
    pub fn value(&self, name: &str) -> Option<&Value> {
        let index = self.ty.property_index(name)?;
        self.values.get(index).and_then(Option::as_ref)
    }
}

/// The entity's own state as a JSON object: its properties except those the server derives
/// (a Datastream's extents), leaving out nulls unless the property is mandatory. This is what
/// the log records and what a JSON Patch edits.
pub fn own_properties_json<'a>(
    values: impl IntoIterator<Item = (&'a Property, &'a Value)>,
) -> serde_json::Map<String, serde_json::Value> {
    let mut object = serde_json::Map::new();
    for (property, value) in values {
        if is_own_property(property, value) {
            object.insert(property.name.to_owned(), value_to_json(value));
        }
    }
    object
}

/// Whether [`own_properties_json`] includes `property` with `value`: not a server-maintained
/// one, and not null unless the property is mandatory.
pub fn is_own_property(property: &Property, value: &Value) -> bool {
    let null = matches!(value, Value::Null | Value::Json(serde_json::Value::Null));
    !property.server_maintained && (!null || property.required)
}
