//! Entities and collections as SensorThings JSON: control annotations (`@iot.id`,
//! `@iot.selfLink`, `X@iot.navigationLink`), `$select`, expanded relations, next links.

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{Map, Value as Json};
use stela_model::{Entity, EntityType, ExpandedContent, Page, Value, format_time_value};
use stela_query::{ExpandItem, QueryOptions};

/// What the renderer needs to know about the request.
#[derive(Debug, Clone)]
pub struct Links {
    /// The service root, e.g. `http://localhost:8080/v1.1`.
    pub root: String,
}

impl Links {
    /// The self link of an entity.
    pub fn entity(&self, entity: &Entity) -> String {
        format!("{}/{}({})", self.root, entity.ty.set_name(), entity.id)
    }
}

/// Which parts of an entity `$select` keeps.
fn selected(options: &QueryOptions, name: &str) -> bool {
    match &options.select {
        None => true,
        Some(items) => {
            items.iter().any(|item| item.path.first().is_some_and(|first| first == name))
        }
    }
}

fn id_selected(options: &QueryOptions) -> bool {
    selected(options, "id") || selected(options, "@iot.id")
}

/// An entity as JSON (as HTTP and MQTT deliver it), with what `options` (its `$select` and
/// `$expand`) asks for.
pub fn entity_json(links: &Links, entity: &Entity, options: &QueryOptions) -> Json {
    serde_json::to_value(EntityView { links, entity, options }).unwrap_or(Json::Null)
}

/// An entity rendered straight to the output (no intermediate JSON tree): the one definition
/// of an entity's JSON shape, used for responses and, through [`entity_json`], everywhere else.
#[derive(Debug, Clone, Copy)]
pub struct EntityView<'a> {
    pub links: &'a Links,
    pub entity: &'a Entity,
    pub options: &'a QueryOptions,
}

/// The options of an expanded relation, or none.
fn expand_options<'a>(options: &'a QueryOptions, name: &str) -> &'a QueryOptions {
    static NONE: std::sync::OnceLock<QueryOptions> = std::sync::OnceLock::new();
    options
        .expand
        .iter()
        .find(|item: &&ExpandItem| item.path.first().is_some_and(|first| first == name))
        .map_or_else(|| NONE.get_or_init(QueryOptions::default), |item| &item.options)
}

/// A property value without building a JSON tree: JSON by reference, times formatted.
struct ValueView<'a>(&'a Value);

impl Serialize for ValueView<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::Null => serializer.serialize_unit(),
            Value::Text(text) => serializer.serialize_str(text),
            Value::Json(json) => json.serialize(serializer),
            Value::Time(time) => serializer.serialize_str(&format_time_value(*time)),
        }
    }
}

fn is_null(value: &Value) -> bool {
    matches!(value, Value::Null) || matches!(value, Value::Json(Json::Null))
}

impl Serialize for EntityView<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let EntityView { links, entity, options } = *self;
        let mut map = serializer.serialize_map(None)?;
        let self_link = links.entity(entity);
        // Navigation links are the self link and a name: written into one buffer, reused.
        let mut link = String::with_capacity(self_link.len() + 32);
        if id_selected(options) {
            map.serialize_entry("@iot.selfLink", &self_link)?;
            map.serialize_entry("@iot.id", &entity.id)?;
        }
        for (property, value) in entity.ty.properties().iter().zip(&entity.values) {
            let Some(value) = value else { continue };
            if !selected(options, property.name) {
                continue;
            }
            // Optional properties without a value are left out; mandatory ones (resultTime)
            // are null.
            let shown_when_null = property.required
                || (entity.ty == EntityType::Observation && property.name == "resultTime");
            if is_null(value) && !shown_when_null && options.select.is_none() {
                continue;
            }
            map.serialize_entry(property.name, &ValueView(value))?;
        }
        for relation in entity.ty.relations() {
            let expanded = entity.expanded.iter().find(|e| e.relation.name == relation.name);
            match expanded {
                Some(expanded) => {
                    let nested = expand_options(options, relation.name);
                    match &expanded.content {
                        ExpandedContent::One(one) => {
                            let view = one.as_ref().map(|e| EntityView {
                                links,
                                entity: e,
                                options: nested,
                            });
                            map.serialize_entry(relation.name, &view)?;
                        }
                        ExpandedContent::Many(page) => {
                            if let Some(count) = page.count {
                                map.serialize_entry(
                                    &format!("{}@iot.count", relation.name),
                                    &count,
                                )?;
                            }
                            let items: Vec<EntityView<'_>> = page
                                .items
                                .iter()
                                .map(|e| EntityView { links, entity: e, options: nested })
                                .collect();
                            map.serialize_entry(relation.name, &items)?;
                            if let Some(skip) = page.next_skip {
                                let url = format!(
                                    "{self_link}/{}?{}",
                                    relation.name,
                                    nested_query(nested, skip)
                                );
                                map.serialize_entry(
                                    &format!("{}@iot.nextLink", relation.name),
                                    &url,
                                )?;
                            }
                        }
                    }
                }
                None if selected(options, relation.name) => {
                    link.clear();
                    link.push_str(&self_link);
                    link.push('/');
                    link.push_str(relation.name);
                    map.serialize_entry(navigation_key(entity.ty, relation.name), &link)?;
                }
                None => {}
            }
        }
        map.end()
    }
}

/// `<relation>@iot.navigationLink`, worked out once per relation of the model.
fn navigation_key(ty: EntityType, relation: &str) -> &'static str {
    static KEYS: std::sync::OnceLock<Vec<(EntityType, &'static str, String)>> =
        std::sync::OnceLock::new();
    let keys = KEYS.get_or_init(|| {
        EntityType::ALL
            .iter()
            .flat_map(|ty| {
                ty.relations()
                    .iter()
                    .map(|r| (*ty, r.name, format!("{}@iot.navigationLink", r.name)))
            })
            .collect()
    });
    keys.iter()
        .find(|(t, name, _)| *t == ty && *name == relation)
        .map_or("@iot.navigationLink", |(_, _, key)| key.as_str())
}

/// The query of the next page of an expanded collection: its own options, the next `$skip`.
fn nested_query(options: &QueryOptions, skip: u64) -> String {
    let mut pairs: Vec<(&str, String)> = Vec::new();
    if let Some(filter) = &options.filter {
        pairs.push(("$filter", filter.to_string()));
    }
    if !options.orderby.is_empty() {
        let keys: Vec<String> = options.orderby.iter().map(ToString::to_string).collect();
        pairs.push(("$orderby", keys.join(",")));
    }
    if let Some(select) = &options.select {
        let items: Vec<String> = select.iter().map(ToString::to_string).collect();
        pairs.push(("$select", items.join(",")));
    }
    if !options.expand.is_empty() {
        let items: Vec<String> = options.expand.iter().map(ToString::to_string).collect();
        pairs.push(("$expand", items.join(",")));
    }
    if let Some(top) = options.top {
        pairs.push(("$top", top.to_string()));
    }
    pairs.push(("$skip", skip.to_string()));
    crate::encode_query(pairs.iter().map(|(k, v)| (*k, v.as_str())))
}

/// A collection page as JSON.
pub fn collection_json(
    links: &Links,
    page: &Page,
    options: &QueryOptions,
    next_link: Option<String>,
) -> Json {
    serde_json::to_value(CollectionView { links, page, options, next_link: next_link.as_deref() })
        .unwrap_or(Json::Null)
}

/// A collection page rendered straight to the output: `@iot.count`, `@iot.nextLink`, `value`.
#[derive(Debug, Clone, Copy)]
pub struct CollectionView<'a> {
    pub links: &'a Links,
    pub page: &'a Page,
    pub options: &'a QueryOptions,
    pub next_link: Option<&'a str>,
}

impl Serialize for CollectionView<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        if let Some(count) = self.page.count {
            map.serialize_entry("@iot.count", &count)?;
        }
        if let Some(next) = self.next_link {
            map.serialize_entry("@iot.nextLink", next)?;
        }
        let items: Vec<EntityView<'_>> = self
            .page
            .items
            .iter()
            .map(|entity| EntityView { links: self.links, entity, options: self.options })
            .collect();
        map.serialize_entry("value", &items)?;
        map.end()
    }
}

/// A collection of association links (`$ref`).
pub fn refs_json(links: &Links, page: &Page, next_link: Option<String>) -> Json {
    let mut object = Map::new();
    if let Some(count) = page.count {
        object.insert("@iot.count".into(), Json::from(count));
    }
    if let Some(next) = next_link {
        object.insert("@iot.nextLink".into(), Json::String(next));
    }
    let items =
        page.items.iter().map(|e| serde_json::json!({"@iot.selfLink": links.entity(e)})).collect();
    object.insert("value".into(), Json::Array(items));
    Json::Object(object)
}
