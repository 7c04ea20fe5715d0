//! Result formats other than plain JSON: `$resultFormat=dataArray` (the DataArray extension of
//! SensorThings), `GeoJSON` and `CSV` (as FROST-Server offers them), and the body of
//! `POST CreateObservations`.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value as Json, json};
use stela_model::{Entity, EntityType, ExpandedContent, Page, value_to_json};
use stela_query::{ExpandItem, QueryOptions, SelectItem};

use crate::error::ApiError;
use crate::render::{Links, entity_json};

/// The result formats of `$resultFormat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ResultFormat {
    DataArray,
    GeoJson,
    Csv,
}

impl ResultFormat {
    pub(crate) fn parse(text: &str) -> Result<ResultFormat, ApiError> {
        match text {
            "dataArray" => Ok(ResultFormat::DataArray),
            "GeoJSON" => Ok(ResultFormat::GeoJson),
            "CSV" => Ok(ResultFormat::Csv),
            other => Err(ApiError::bad_request(format!(
                "unknown $resultFormat '{other}'; use dataArray, GeoJSON or CSV"
            ))),
        }
    }
}

/// The components a dataArray row may hold, in their default order.
const COMPONENTS: [&str; 8] = [
    "id",
    "phenomenonTime",
    "result",
    "resultTime",
    "resultQuality",
    "validTime",
    "parameters",
    "FeatureOfInterest/id",
];

fn bare_expand(name: &str) -> ExpandItem {
    let options = QueryOptions {
        select: Some(vec![SelectItem { path: vec!["id".into()], span: 0..0 }]),
        ..QueryOptions::default()
    };
    ExpandItem { path: vec![name.to_owned()], options, span: 0..0 }
}

/// Prepares the query of a dataArray read: the components come from `$select`, and the
/// Datastream, MultiDatastream (and FeatureOfInterest, when asked for) ids are expanded.
pub(crate) fn data_array_query(
    ty: EntityType,
    options: &mut QueryOptions,
) -> Result<Vec<String>, ApiError> {
    if ty != EntityType::Observation {
        return Err(ApiError::bad_request("$resultFormat=dataArray applies to Observations only"));
    }
    let components: Vec<String> = match options.select.take() {
        None => COMPONENTS[..7].iter().map(|c| (*c).to_owned()).collect(),
        Some(items) => {
            let mut components = Vec::new();
            for item in items {
                let name = item.path.join("/");
                let name = if name == "@iot.id" { "id".to_owned() } else { name };
                if !COMPONENTS.contains(&name.as_str()) {
                    return Err(ApiError::bad_request(format!(
                        "'{name}' cannot be a dataArray component; use {}",
                        COMPONENTS.join(", ")
                    )));
                }
                components.push(name);
            }
            components
        }
    };
    options.expand.retain(|item| {
        !matches!(item.path.first().map(String::as_str), Some("Datastream" | "MultiDatastream"))
    });
    options.expand.push(bare_expand("Datastream"));
    options.expand.push(bare_expand("MultiDatastream"));
    if components.iter().any(|c| c == "FeatureOfInterest/id") {
        options.expand.push(bare_expand("FeatureOfInterest"));
    }
    Ok(components)
}

fn related_id(entity: &Entity, relation: &str) -> Option<i64> {
    entity.expanded.iter().find(|e| e.relation.name == relation).and_then(|e| match &e.content {
        ExpandedContent::One(Some(one)) => Some(one.id),
        _ => None,
    })
}

/// A page of Observations as dataArray groups, one per Datastream or MultiDatastream.
pub(crate) fn data_array_json(
    links: &Links,
    page: &Page,
    components: &[String],
    next: Option<String>,
) -> Json {
    let mut groups: Vec<(String, i64, Vec<Json>)> = Vec::new();
    for entity in &page.items {
        let (set, id) =
            match (related_id(entity, "Datastream"), related_id(entity, "MultiDatastream")) {
                (Some(id), _) => ("Datastream", id),
                (None, Some(id)) => ("MultiDatastream", id),
                (None, None) => continue,
            };
        let row: Vec<Json> = components
            .iter()
            .map(|component| match component.as_str() {
                "id" => Json::from(entity.id),
                "FeatureOfInterest/id" => {
                    related_id(entity, "FeatureOfInterest").map_or(Json::Null, Json::from)
                }
                name => entity.value(name).map_or(Json::Null, value_to_json),
            })
            .collect();
        match groups.iter_mut().find(|(s, i, _)| s == set && *i == id) {
            Some(group) => group.2.push(Json::Array(row)),
            None => groups.push((set.to_owned(), id, vec![Json::Array(row)])),
        }
    }
    let value: Vec<Json> = groups
        .into_iter()
        .map(|(set, id, rows)| {
            let plural = if set == "Datastream" { "Datastreams" } else { "MultiDatastreams" };
            json!({
                format!("{set}@iot.navigationLink"): format!("{}/{plural}({id})", links.root),
                "components": components,
                "dataArray@iot.count": rows.len(),
                "dataArray": rows,
            })
        })
        .collect();
    let mut object = Map::new();
    if let Some(count) = page.count {
        object.insert("@iot.count".into(), Json::from(count));
    }
    if let Some(next) = next {
        object.insert("@iot.nextLink".into(), Json::String(next));
    }
    object.insert("value".into(), Json::Array(value));
    Json::Object(object)
}

/// The geometry of an entity: its location, feature or observed area, or that of its expanded
/// FeatureOfInterest or Locations.
fn geometry_of(entity: &Entity) -> Json {
    for name in ["location", "feature", "observedArea"] {
        if let Some(value) = entity.value(name) {
            let json = value_to_json(value);
            if !json.is_null() {
                return match json.get("type").and_then(Json::as_str) {
                    Some("Feature") => json.get("geometry").cloned().unwrap_or(Json::Null),
                    _ => json,
                };
            }
        }
    }
    for expanded in &entity.expanded {
        let first = match &expanded.content {
            ExpandedContent::One(Some(one)) => Some(one.as_ref()),
            ExpandedContent::Many(page) => page.items.first(),
            ExpandedContent::One(None) => None,
        };
        if let Some(related) = first {
            let geometry = geometry_of(related);
            if !geometry.is_null() {
                return geometry;
            }
        }
    }
    Json::Null
}

/// A page as a GeoJSON FeatureCollection: one Feature per entity, its JSON as properties.
pub(crate) fn geojson_response(links: &Links, page: &Page, options: &QueryOptions) -> Response {
    let features: Vec<Json> = page
        .items
        .iter()
        .map(|entity| {
            let mut properties = entity_json(links, entity, options);
            if let Json::Object(object) = &mut properties {
                for name in ["location", "feature", "observedArea"] {
                    object.remove(name);
                }
            }
            json!({"type": "Feature", "id": entity.id, "geometry": geometry_of(entity), "properties": properties})
        })
        .collect();
    let body = json!({"type": "FeatureCollection", "features": features});
    ([(header::CONTENT_TYPE, "application/geo+json")], body.to_string()).into_response()
}

/// Flattens JSON into `path → scalar` columns (`properties/a`, `Datastream/name`).
fn flatten(prefix: &str, json: &Json, out: &mut Vec<(String, String)>) {
    match json {
        Json::Object(object) => {
            for (key, value) in object {
                let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}/{key}") };
                flatten(&path, value, out);
            }
        }
        Json::Null => out.push((prefix.to_owned(), String::new())),
        Json::String(text) => out.push((prefix.to_owned(), text.clone())),
        Json::Array(_) => out.push((prefix.to_owned(), json.to_string())),
        other => out.push((prefix.to_owned(), other.to_string())),
    }
}

/// A page as CSV: one row per entity, one column per (flattened) property.
pub(crate) fn csv_response(
    links: &Links,
    page: &Page,
    options: &QueryOptions,
) -> Result<Response, ApiError> {
    let rows: Vec<Vec<(String, String)>> = page
        .items
        .iter()
        .map(|entity| {
            let mut cells = Vec::new();
            flatten("", &entity_json(links, entity, options), &mut cells);
            cells
        })
        .collect();
    let mut columns: Vec<String> = Vec::new();
    for row in &rows {
        for (name, _) in row {
            if !columns.contains(name) {
                columns.push(name.clone());
            }
        }
    }
    let mut writer = csv::Writer::from_writer(Vec::new());
    let internal = |e: csv::Error| {
        tracing::error!(error = %e, "writing CSV");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal server error; the details are in the server log",
        )
    };
    writer.write_record(&columns).map_err(internal)?;
    for row in &rows {
        let record: Vec<&str> = columns
            .iter()
            .map(|column| {
                row.iter().find(|(name, _)| name == column).map_or("", |(_, value)| value.as_str())
            })
            .collect();
        writer.write_record(&record).map_err(internal)?;
    }
    let bytes = writer.into_inner().map_err(|e| internal(e.into_error().into()))?;
    Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], bytes).into_response())
}

/// The rows of a `CreateObservations` request, as the Observation JSON each stands for
/// (`None` for a row that does not match its components), group by group.
pub(crate) fn create_observations_rows(body: &Json) -> Result<Vec<Vec<Option<Json>>>, ApiError> {
    let Json::Array(groups) = body else {
        return Err(ApiError::bad_request(
            "CreateObservations expects a JSON array of dataArray groups",
        ));
    };
    let mut all = Vec::with_capacity(groups.len());
    for (g, group) in groups.iter().enumerate() {
        let at = |what: &str| ApiError::bad_request(format!("group {g}: {what}"));
        let Json::Object(group) = group else { return Err(at("must be an object")) };
        let parent = match (group.get("Datastream"), group.get("MultiDatastream")) {
            (Some(ds), None) => ("Datastream", ds.clone()),
            (None, Some(mds)) => ("MultiDatastream", mds.clone()),
            _ => return Err(at("needs exactly one of 'Datastream' and 'MultiDatastream'")),
        };
        let components: Vec<String> = group
            .get("components")
            .and_then(Json::as_array)
            .ok_or_else(|| at("'components' must be an array of names"))?
            .iter()
            .map(|c| {
                c.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| at("'components' must be an array of names"))
            })
            .collect::<Result<_, _>>()?;
        for component in &components {
            if component == "id" || !COMPONENTS.contains(&component.as_str()) {
                return Err(at(&format!(
                    "'{component}' cannot be a component of a new Observation"
                )));
            }
        }
        let rows = group
            .get("dataArray")
            .and_then(Json::as_array)
            .ok_or_else(|| at("'dataArray' must be an array"))?;
        if let Some(count) = group.get("dataArray@iot.count").and_then(Json::as_u64)
            && count != rows.len() as u64
        {
            return Err(at(&format!(
                "'dataArray@iot.count' is {count} but 'dataArray' has {} rows",
                rows.len()
            )));
        }
        let mut observations = Vec::with_capacity(rows.len());
        for row in rows {
            // A malformed row gets "error" in the response; the other rows are created.
            let observation = match row.as_array() {
                Some(values) if values.len() == components.len() => {
                    let mut observation = Map::new();
                    observation.insert(parent.0.to_owned(), parent.1.clone());
                    for (component, value) in components.iter().zip(values) {
                        if component == "FeatureOfInterest/id" {
                            observation
                                .insert("FeatureOfInterest".into(), json!({"@iot.id": value}));
                        } else {
                            observation.insert(component.clone(), value.clone());
                        }
                    }
                    Some(Json::Object(observation))
                }
                _ => None,
            };
            observations.push(observation);
        }
        all.push(observations);
    }
    Ok(all)
}
