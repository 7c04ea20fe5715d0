//! Turning a client's JSON entity into a validated [`EntityInput`].
//!
//! The same decoder serves create (POST, deep insert), merge update (PATCH) and replace (PUT);
//! every error names the offending member by its JSON Pointer, so a client can find it in a
//! deep insert of any depth.

use serde_json::{Map, Value as Json};

use crate::schema::{EntityType, PropertyKind, Relation};
use crate::value::{TimeValue, Value, parse_instant, parse_interval, parse_time_value};

/// An entity as a client sent it, validated against the model.
#[derive(Debug, Clone, PartialEq)]
pub struct EntityInput {
    pub ty: EntityType,
    /// Values of the properties that were given, by index into `ty.properties()`.
    pub values: Vec<(usize, Value)>,
    /// Related entities that were given.
    pub links: Vec<RelationInput>,
}

/// The entities given for one navigation property.
#[derive(Debug, Clone, PartialEq)]
pub struct RelationInput {
    pub relation: &'static Relation,
    pub targets: Vec<LinkTarget>,
}

/// A related entity: an existing one by id, or a new one to create with the parent (deep insert).
#[derive(Debug, Clone, PartialEq)]
pub enum LinkTarget {
    Existing(i64),
    New(EntityInput),
}

/// What the JSON is decoded for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeMode {
    /// POST: mandatory properties must be given; related entities may be nested.
    Create,
    /// PATCH: any subset of properties; related entities only by `@iot.id`.
    Patch,
    /// PUT: every mandatory property; related entities only by `@iot.id`.
    Put,
}

/// A client error in an entity body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}{}", if pointer.is_empty() { String::new() } else { format!(" (at {pointer})") })]
pub struct DecodeError {
    /// JSON Pointer (RFC 6901) of the offending member; empty for the whole body.
    pub pointer: String,
    pub message: String,
}

impl EntityInput {
    /// The value given for the property called `name`.
    pub fn value(&self, name: &str) -> Option<&Value> {
        let index = self.ty.property_index(name)?;
        self.values.iter().find(|(i, _)| *i == index).map(|(_, v)| v)
    }

    /// Sets (or replaces) the value of the property called `name`.
    pub fn set_value(&mut self, name: &str, value: Value) {
        let Some(index) = self.ty.property_index(name) else {
            debug_assert!(false, "{} has no property {name}", self.ty);
            return;
        };
        match self.values.iter_mut().find(|(i, _)| *i == index) {
            Some(slot) => slot.1 = value,
            None => self.values.push((index, value)),
        }
    }

    /// The targets given for the relation called `name`.
    pub fn link(&self, name: &str) -> Option<&RelationInput> {
        self.links.iter().find(|l| l.relation.name == name)
    }
}

/// Decodes and validates `json` as an entity of type `ty`.
pub fn decode_entity(
    ty: EntityType,
    json: &Json,
    mode: DecodeMode,
) -> Result<EntityInput, DecodeError> {
    decode_at(ty, json, mode, "", 0)
}

/// Deep inserts deeper than this are refused (no legitimate graph needs it).
const MAX_DEPTH: usize = 32;

fn error(pointer: &str, message: impl Into<String>) -> DecodeError {
    DecodeError { pointer: pointer.to_owned(), message: message.into() }
}

fn decode_at(
    ty: EntityType,
    json: &Json,
    mode: DecodeMode,
    pointer: &str,
    depth: usize,
) -> Result<EntityInput, DecodeError> {
    if depth > MAX_DEPTH {
        return Err(error(pointer, "deep insert nested too deeply"));
    }
    let Json::Object(object) = json else {
        return Err(error(pointer, format!("expected a JSON object for a {ty}")));
    };
    let mut input = EntityInput { ty, values: Vec::new(), links: Vec::new() };
    for (key, member) in object {
        let member_pointer = format!("{pointer}/{}", escape_pointer(key));
        if key == "@iot.id" || key == "@iot.selfLink" || key.ends_with("@iot.navigationLink") {
            continue;
        }
        if let Some(index) = ty.property_index(key) {
            let property = &ty.properties()[index];
            if property.server_maintained {
                // Read-only properties are tolerated (clients echo entities back) but ignored.
                continue;
            }
            let value =
                decode_property(property.kind, property.required, member, &member_pointer, object)?;
            input.values.push((index, value));
        } else if let Some(relation) = ty.relation(key) {
            let targets = decode_relation(relation, member, mode, &member_pointer, depth)?;
            input.links.push(RelationInput { relation, targets });
        } else {
            return Err(error(&member_pointer, format!("unknown property '{key}' of {ty}")));
        }
    }
    if mode != DecodeMode::Patch {
        for (index, property) in ty.properties().iter().enumerate() {
            if property.required && !input.values.iter().any(|(i, _)| *i == index) {
                return Err(error(
                    pointer,
                    format!("missing mandatory property '{}' of {ty}", property.name),
                ));
            }
        }
    }
    Ok(input)
}

fn decode_relation(
    relation: &'static Relation,
    member: &Json,
    mode: DecodeMode,
    pointer: &str,
    depth: usize,
) -> Result<Vec<LinkTarget>, DecodeError> {
    if relation.many {
        let Json::Array(items) = member else {
            return Err(error(
                pointer,
                format!("'{}' must be an array of entities", relation.name),
            ));
        };
        items
            .iter()
            .enumerate()
            .map(|(i, item)| decode_target(relation, item, mode, &format!("{pointer}/{i}"), depth))
            .collect()
    } else {
        Ok(vec![decode_target(relation, member, mode, pointer, depth)?])
    }
}

fn decode_target(
    relation: &'static Relation,
    item: &Json,
    mode: DecodeMode,
    pointer: &str,
    depth: usize,
) -> Result<LinkTarget, DecodeError> {
    let Json::Object(object) = item else {
        return Err(error(pointer, format!("'{}' must be an entity object", relation.name)));
    };
    if let Some(id) = object.get("@iot.id") {
        return match id.as_i64() {
            Some(id) => Ok(LinkTarget::Existing(id)),
            None => Err(error(&format!("{pointer}/@iot.id"), "'@iot.id' must be an integer")),
        };
    }
    if mode != DecodeMode::Create {
        return Err(error(
            pointer,
            format!(
                "related entities cannot be created in an update; link an existing {} with {{\"@iot.id\": …}}",
                relation.target
            ),
        ));
    }
    decode_at(relation.target, item, DecodeMode::Create, pointer, depth + 1).map(LinkTarget::New)
}

fn decode_property(
    kind: PropertyKind,
    required: bool,
    member: &Json,
    pointer: &str,
    object: &Map<String, Json>,
) -> Result<Value, DecodeError> {
    let name = pointer.rsplit('/').next().unwrap_or_default();
    if member.is_null() && kind != PropertyKind::Result {
        if required {
            return Err(error(pointer, format!("'{name}' must not be null")));
        }
        return Ok(Value::Null);
    }
    match kind {
        PropertyKind::Text => match member {
            Json::String(s) => Ok(Value::Text(s.clone())),
            _ => Err(error(pointer, format!("'{name}' must be a string"))),
        },
        PropertyKind::Json | PropertyKind::Result => Ok(Value::Json(member.clone())),
        PropertyKind::JsonObject => match member {
            Json::Object(_) => Ok(Value::Json(member.clone())),
            _ => Err(error(pointer, format!("'{name}' must be a JSON object"))),
        },
        PropertyKind::JsonArray => match member {
            Json::Array(_) => Ok(Value::Json(member.clone())),
            _ => Err(error(pointer, format!("'{name}' must be a JSON array"))),
        },
        PropertyKind::Geometry => {
            let encoding = object.get("encodingType").and_then(Json::as_str);
            if encoding.is_none_or(is_geojson_encoding) {
                validate_geojson(member).map_err(|why| {
                    error(pointer, format!("'{name}' is not valid GeoJSON: {why}"))
                })?;
            }
            Ok(Value::Json(member.clone()))
        }
        PropertyKind::Instant => {
            let text = time_text(member, pointer, name)?;
            parse_instant(text)
                .map(|t| Value::Time(TimeValue::Instant(t)))
                .map_err(|e| error(pointer, format!("'{name}': {e}")))
        }
        PropertyKind::Interval => {
            let text = time_text(member, pointer, name)?;
            parse_interval(text)
                .map(|(s, e)| Value::Time(TimeValue::Interval(s, e)))
                .map_err(|e| error(pointer, format!("'{name}': {e}")))
        }
        PropertyKind::InstantOrInterval => {
            let text = time_text(member, pointer, name)?;
            parse_time_value(text)
                .map(Value::Time)
                .map_err(|e| error(pointer, format!("'{name}': {e}")))
        }
    }
}

fn time_text<'a>(member: &'a Json, pointer: &str, name: &str) -> Result<&'a str, DecodeError> {
    member
        .as_str()
        .ok_or_else(|| error(pointer, format!("'{name}' must be an ISO 8601 time string")))
}

/// The encoding types under which `location` and `feature` hold GeoJSON.
pub fn is_geojson_encoding(encoding: &str) -> bool {
    matches!(encoding, "application/geo+json" | "application/vnd.geo+json" | "application/json")
}

/// Checks that `json` is a GeoJSON geometry, feature or feature collection.
pub fn validate_geojson(json: &Json) -> Result<(), String> {
    serde_json::from_value::<geojson::GeoJson>(json.clone()).map(|_| ()).map_err(|e| e.to_string())
}

fn escape_pointer(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn check_error(ty: EntityType, body: Json, mode: DecodeMode, expected: &str) {
        let err = decode_entity(ty, &body, mode).expect_err("must fail");
        assert_eq!(err.to_string(), expected);
    }

    #[test]
    fn deep_insert_is_decoded() {
        let body = json!({
            "name": "t", "description": "d", "properties": {"a": 1},
            "Locations": [{"@iot.id": 4}],
            "Datastreams": [{
                "name": "ds", "description": "d", "observationType": "x",
                "unitOfMeasurement": {"name": "n", "symbol": "s", "definition": "d"},
                "Sensor": {"@iot.id": 1},
                "ObservedProperty": {"name": "op", "definition": "x", "description": "d"}
            }]
        });
        let input = decode_entity(EntityType::Thing, &body, DecodeMode::Create).unwrap();
        assert_eq!(input.value("name"), Some(&Value::Text("t".into())));
        assert_eq!(input.link("Locations").unwrap().targets, vec![LinkTarget::Existing(4)]);
        let datastreams = &input.link("Datastreams").unwrap().targets;
        let LinkTarget::New(ds) = &datastreams[0] else { panic!("expected a new Datastream") };
        assert!(matches!(ds.link("ObservedProperty").unwrap().targets[0], LinkTarget::New(_)));
    }

    #[test]
    fn errors_name_the_member() {
        check_error(
            EntityType::Thing,
            json!({"name": "t"}),
            DecodeMode::Create,
            "missing mandatory property 'description' of Thing",
        );
        check_error(
            EntityType::Thing,
            json!({"name": "t", "description": "d", "colour": "red"}),
            DecodeMode::Create,
            "unknown property 'colour' of Thing (at /colour)",
        );
        check_error(
            EntityType::Thing,
            json!({"name": 5, "description": "d"}),
            DecodeMode::Create,
            "'name' must be a string (at /name)",
        );
        check_error(
            EntityType::Thing,
            json!({"name": "t", "description": "d", "Datastreams": [{"name": "x"}]}),
            DecodeMode::Create,
            "missing mandatory property 'description' of Datastream (at /Datastreams/0)",
        );
        check_error(
            EntityType::Location,
            json!({"name": "l", "description": "d", "encodingType": "application/geo+json",
                   "location": {"type": "Point", "coordinates": "x"}}),
            DecodeMode::Create,
            "'location' is not valid GeoJSON: invalid type: string \"x\", expected a coordinate element (number or array) (at /location)",
        );
        check_error(
            EntityType::Observation,
            json!({"result": 1, "phenomenonTime": "soon"}),
            DecodeMode::Create,
            "'phenomenonTime': 'soon' is not an ISO 8601 date-time with a time zone (at /phenomenonTime)",
        );
        check_error(
            EntityType::Thing,
            json!({"Datastreams": [{"name": "x"}]}),
            DecodeMode::Patch,
            "related entities cannot be created in an update; link an existing Datastream with {\"@iot.id\": …} (at /Datastreams/0)",
        );
    }

    #[test]
    fn patch_accepts_subsets_and_links() {
        let input = decode_entity(
            EntityType::Thing,
            &json!({"Locations": [{"@iot.id": 2}]}),
            DecodeMode::Patch,
        )
        .unwrap();
        assert!(input.values.is_empty());
        assert_eq!(input.links.len(), 1);
    }
}
