//! The SensorThings API 1.1 data model of Stela: entity types, properties and relations as
//! data ([`schema`]), property values and ISO 8601 times ([`value`]), validation of client
//! JSON ([`decode`]), resource paths ([`path`]) and entities read back ([`entity`]).
//!
//! This crate does no I/O and reads no clock.

pub mod decode;
pub mod entity;
pub mod path;
pub mod schema;
pub mod value;

pub use decode::{DecodeError, DecodeMode, EntityInput, LinkTarget, RelationInput, decode_entity};
pub use entity::{Entity, Expanded, ExpandedContent, Page, is_own_property, own_properties_json};
pub use path::{PathError, ResourcePath, Step, Tail, parse_resource_path};
pub use schema::{EntityType, Link, Property, PropertyKind, Relation};
pub use value::{
    Micros, TimeValue, Value, format_instant, format_time_value, value_to_json, write_instant,
};
