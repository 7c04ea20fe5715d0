//! Entities and collections as SensorThings JSON: control annotations (`@iot.id`,
//! `@iot.selfLink`, `X@iot.navigationLink`), `$select`, expanded relations, next links.

use serde_json::{Map, Value as Json};
use stela_model::{Entity, ExpandedContent, Page, value_to_json};
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

/// An entity as JSON (as HTTP and MQTT deliver it), with what `options` (its `$select` and `$expand`) asks for.
pub fn entity_json(links: &Links, entity: &Entity, options: &QueryOptions) -> Json {
    let mut object = Map::new();
    let self_link = links.entity(entity);
    if id_selected(options) {
        object.insert("@iot.selfLink".into(), Json::String(self_link.clone()));
        object.insert("@iot.id".into(), Json::from(entity.id));
    }
    for (property, value) in entity.ty.properties().iter().zip(&entity.values) {
        let Some(value) = value else { continue };
        if !selected(options, property.name) {
            continue;
        }
        let json = value_to_json(value);
        // Optional properties without a value are left out; mandatory ones (resultTime) are null.
        let shown_when_null = property.required
            || (entity.ty == stela_model::EntityType::Observation && property.name == "resultTime");
        if json.is_null() && !shown_when_null && options.select.is_none() {
            continue;
        }
        object.insert(property.name.into(), json);
    }
    for relation in entity.ty.relations() {
        let expanded = entity.expanded.iter().find(|e| e.relation.name == relation.name);
        match expanded {
            Some(expanded) => {
                let nested = expand_options(options, relation.name);
                match &expanded.content {
                    ExpandedContent::One(one) => {
                        let json =
                            one.as_ref().map_or(Json::Null, |e| entity_json(links, e, &nested));
                        object.insert(relation.name.into(), json);
                    }
                    ExpandedContent::Many(page) => {
                        if let Some(count) = page.count {
                            object
                                .insert(format!("{}@iot.count", relation.name), Json::from(count));
                        }
                        let items =
                            page.items.iter().map(|e| entity_json(links, e, &nested)).collect();
                        object.insert(relation.name.into(), Json::Array(items));
                        if let Some(skip) = page.next_skip {
                            let url = format!(
                                "{self_link}/{}?{}",
                                relation.name,
                                nested_query(&nested, skip)
                            );
                            object.insert(
                                format!("{}@iot.nextLink", relation.name),
                                Json::String(url),
                            );
                        }
                    }
                }
            }
            None if selected(options, relation.name) => {
                object.insert(
                    format!("{}@iot.navigationLink", relation.name),
                    Json::String(format!("{self_link}/{}", relation.name)),
                );
            }
            None => {}
        }
    }
    Json::Object(object)
}

fn expand_options(options: &QueryOptions, name: &str) -> QueryOptions {
    options
        .expand
        .iter()
        .find(|item: &&ExpandItem| item.path.first().is_some_and(|first| first == name))
        .map(|item| item.options.clone())
        .unwrap_or_default()
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
    let mut object = Map::new();
    if let Some(count) = page.count {
        object.insert("@iot.count".into(), Json::from(count));
    }
    if let Some(next) = next_link {
        object.insert("@iot.nextLink".into(), Json::String(next));
    }
    let items = page.items.iter().map(|e| entity_json(links, e, options)).collect();
    object.insert("value".into(), Json::Array(items));
    Json::Object(object)
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
