//! SensorThings MQTT topics: what a SUBSCRIBE topic asks for and where a PUBLISH creates.
//!
//! Pure: no I/O. A topic is `<version>/<resource path>[?<query>]` with the version `v1.1` or
//! `v1.0`; the forms of the standard (18-088 §14, A.7 and A.8) are
//!
//! ```text
//! receive   v1.1/<Set>                  entities created in the set
//!           v1.1/<Set>(id)              the entity, whenever it is created or updated
//!           v1.1/<Set>(id)/<property>   {"<property>": value}, whenever the value changes
//!           v1.1/<Entity>(id)/<NavSet>  entities created in that related collection
//!           …?$select=a,b               the same, with only the selected members
//! create    v1.1/Observations, v1.1/Datastreams(id)/Observations,
//!           v1.1/FeaturesOfInterest(id)/Observations
//! ```
//!
//! Wildcards (`+`, `#`) have no meaning here and are refused, as FROST-Server does.

use stela_model::{EntityType, ResourcePath, Step, Tail, parse_resource_path};
use stela_query::{QueryOptions, parse_query_options};

/// The API versions whose topics are served; both carry the same data.
pub const VERSIONS: [&str; 2] = ["v1.1", "v1.0"];

/// Why a topic was refused; the text is logged and says what would be accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TopicError(pub String);

/// A parsed subscription topic.
#[derive(Debug, Clone, PartialEq)]
pub struct Topic {
    /// `v1.1` or `v1.0`: the version of the links in the payloads.
    pub version: &'static str,
    /// The resource path, as HTTP would address it.
    pub path: ResourcePath,
    /// What changes are published on the topic.
    pub kind: TopicKind,
    /// `$select` of the topic (the only option the standard allows there).
    pub options: QueryOptions,
}

/// What a subscription listens to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicKind {
    /// `<Set>`: entities created in the set.
    Set(EntityType),
    /// `<Set>(id)`: that entity, when it is created or updated.
    Entity(EntityType, i64),
    /// `<Set>(id)/<property>`: the property (by index) when its value changes.
    Property(EntityType, i64, usize),
    /// `<Entity>(id)/<NavSet>` (any depth): entities of the given type created in the
    /// collection the path addresses.
    Navigation(EntityType),
}

impl TopicKind {
    /// The type of the entities whose changes the topic reports.
    pub fn entity_type(self) -> EntityType {
        match self {
            TopicKind::Set(ty)
            | TopicKind::Entity(ty, _)
            | TopicKind::Property(ty, _, _)
            | TopicKind::Navigation(ty) => ty,
        }
    }
}

/// Splits `v1.1/rest` into the version and the rest.
fn split_version(topic: &str) -> Result<(&'static str, &str), TopicError> {
    if topic.contains(['+', '#']) {
        return Err(TopicError(format!(
            "'{topic}': wildcards are not supported; SensorThings topics name one resource, \
             e.g. v1.1/Datastreams(1)/Observations"
        )));
    }
    for version in VERSIONS {
        if let Some(rest) = topic.strip_prefix(version).and_then(|rest| rest.strip_prefix('/')) {
            return Ok((version, rest));
        }
    }
    Err(TopicError(format!(
        "'{topic}' is not a SensorThings topic; topics start with v1.1/ (or v1.0/), \
         e.g. v1.1/Things"
    )))
}

/// Parses a SUBSCRIBE topic.
pub fn parse_subscription(topic: &str) -> Result<Topic, TopicError> {
    let (version, rest) = split_version(topic)?;
    let (path_text, query) = match rest.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (rest, None),
    };
    let path = parse_resource_path(path_text)
        .map_err(|error| TopicError(format!("'{topic}': {error}")))?;
    let target = *path.target();
    let kind = match path.tail {
        Tail::None if path.steps.len() == 1 => match target.id {
            None => TopicKind::Set(target.ty),
            Some(id) => TopicKind::Entity(target.ty, id),
        },
        Tail::None if !target.is_single() => TopicKind::Navigation(target.ty),
        Tail::None => {
            return Err(TopicError(format!(
                "'{topic}': subscribe to the entity itself, e.g. {version}/{}(1), \
                 or to a related collection, e.g. {version}/Datastreams(1)/Observations",
                target.ty.set_name()
            )));
        }
        Tail::Property(index) if path.steps.len() == 1 && target.id.is_some() => {
            TopicKind::Property(target.ty, target.id.unwrap_or_default(), index)
        }
        Tail::Property(_) => {
            return Err(TopicError(format!(
                "'{topic}': property topics name an entity of a set, e.g. {version}/Things(1)/name"
            )));
        }
        Tail::PropertyValue(_) | Tail::Ref => {
            return Err(TopicError(format!("'{topic}': $value and $ref are not topics")));
        }
    };
    let options = match query {
        None => QueryOptions::default(),
        Some(_) if matches!(kind, TopicKind::Property(..)) => {
            return Err(TopicError(format!("'{topic}': property topics take no query options")));
        }
        Some(query) => parse_topic_query(topic, query, target.ty)?,
    };
    Ok(Topic { version, path, kind, options })
}

/// Parses the query of a topic: `$select` only, checked against the model.
fn parse_topic_query(topic: &str, query: &str, ty: EntityType) -> Result<QueryOptions, TopicError> {
    let mut pairs = Vec::new();
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if key != "$select" {
            return Err(TopicError(format!(
                "'{topic}': only $select is allowed in topics, not '{key}'"
            )));
        }
        pairs.push((key.to_owned(), value.to_owned()));
    }
    let options =
        parse_query_options(&pairs).map_err(|error| TopicError(format!("'{topic}': {error}")))?;
    for item in options.select.iter().flatten() {
        let Some(name) = item.path.first() else { continue };
        let known = name == "id"
            || name == "@iot.id"
            || ty.property(name).is_some()
            || ty.relation(name).is_some();
        if !known || item.path.len() > 1 {
            return Err(TopicError(format!(
                "'{topic}': {ty} has no property '{}'",
                item.path.join("/")
            )));
        }
    }
    Ok(options)
}

/// Parses a PUBLISH topic: only Observations are created over MQTT.
pub fn parse_create_topic(topic: &str) -> Result<ResourcePath, TopicError> {
    let (version, rest) = split_version(topic)?;
    let explain = || {
        TopicError(format!(
            "'{topic}': only Observations are created over MQTT; publish to {version}/Observations, \
             {version}/Datastreams(id)/Observations or {version}/FeaturesOfInterest(id)/Observations"
        ))
    };
    if rest.contains('?') {
        return Err(explain());
    }
    let path = parse_resource_path(rest).map_err(|_| explain())?;
    let target = *path.target();
    let parent_allowed = |step: &Step| {
        step.id.is_some()
            && step.via.is_none()
            && matches!(step.ty, EntityType::Datastream | EntityType::FeatureOfInterest)
    };
    let allowed = path.tail == Tail::None
        && target.ty == EntityType::Observation
        && target.id.is_none()
        && match path.steps.as_slice() {
            [_] => true,
            [parent, _] => parent_allowed(parent),
            _ => false,
        };
    if allowed { Ok(path) } else { Err(explain()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(topic: &str, expected: &str) {
        let actual = match parse_subscription(topic) {
            Ok(parsed) => {
                let select: Vec<String> =
                    parsed.options.select.iter().flatten().map(ToString::to_string).collect();
                format!("{} {:?} select={}", parsed.version, parsed.kind, select.join(","))
            }
            Err(error) => format!("error: {error}"),
        };
        assert_eq!(actual, expected, "{topic}");
    }

    #[test]
    fn subscription_topics() {
        check("v1.1/Things", "v1.1 Set(Thing) select=");
        check("v1.0/Observations", "v1.0 Set(Observation) select=");
        check("v1.1/Things(7)", "v1.1 Entity(Thing, 7) select=");
        check("v1.1/Things(7)/name", "v1.1 Property(Thing, 7, 0) select=");
        check("v1.1/Datastreams(1)/Observations", "v1.1 Navigation(Observation) select=");
        check("v1.1/Things(1)/Datastreams(2)/Observations", "v1.1 Navigation(Observation) select=");
        check("v1.1/Things?$select=name,id", "v1.1 Set(Thing) select=name,id");
        check(
            "v1.1/Datastreams(1)/Observations?$select=result",
            "v1.1 Navigation(Observation) select=result",
        );
        check(
            "v1.1/#",
            "error: 'v1.1/#': wildcards are not supported; SensorThings topics name one resource, e.g. v1.1/Datastreams(1)/Observations",
        );
        check(
            "v1.1/+/Observations",
            "error: 'v1.1/+/Observations': wildcards are not supported; SensorThings topics name one resource, e.g. v1.1/Datastreams(1)/Observations",
        );
        check(
            "sensors/temp",
            "error: 'sensors/temp' is not a SensorThings topic; topics start with v1.1/ (or v1.0/), e.g. v1.1/Things",
        );
        check("v1.1/Thingz", "error: 'v1.1/Thingz': no entity set 'Thingz'");
        check(
            "v1.1/Things(1)/name/$value",
            "error: 'v1.1/Things(1)/name/$value': $value and $ref are not topics",
        );
        check(
            "v1.1/Things?$filter=id eq 1",
            "error: 'v1.1/Things?$filter=id eq 1': only $select is allowed in topics, not '$filter'",
        );
        check(
            "v1.1/Things?$select=nope",
            "error: 'v1.1/Things?$select=nope': Thing has no property 'nope'",
        );
        check(
            "v1.1/Things(1)/name?$select=name",
            "error: 'v1.1/Things(1)/name?$select=name': property topics take no query options",
        );
        check(
            "v1.1/Datastreams(1)/Thing",
            "error: 'v1.1/Datastreams(1)/Thing': subscribe to the entity itself, e.g. v1.1/Things(1), or to a related collection, e.g. v1.1/Datastreams(1)/Observations",
        );
        check(
            "v1.1/Datastreams(1)/Thing/name",
            "error: 'v1.1/Datastreams(1)/Thing/name': property topics name an entity of a set, e.g. v1.1/Things(1)/name",
        );
        check(
            "v1.1",
            "error: 'v1.1' is not a SensorThings topic; topics start with v1.1/ (or v1.0/), e.g. v1.1/Things",
        );
    }

    #[test]
    fn create_topics() {
        for ok in [
            "v1.1/Observations",
            "v1.0/Observations",
            "v1.1/Datastreams(3)/Observations",
            "v1.1/FeaturesOfInterest(4)/Observations",
        ] {
            assert!(parse_create_topic(ok).is_ok(), "{ok}");
        }
        for refused in [
            "v1.1/Things",
            "v1.1/Observations(1)",
            "v1.1/Datastreams/Observations",
            "v1.1/Things(1)/Datastreams(1)/Observations",
            "v1.1/Observations?$select=id",
            "v2/Observations",
            "v1.1/+/Observations",
            "",
        ] {
            assert!(parse_create_topic(refused).is_err(), "{refused}");
        }
        assert_eq!(
            parse_create_topic("v1.1/Things").map(|_| ()),
            Err(TopicError(
                "'v1.1/Things': only Observations are created over MQTT; publish to \
                 v1.1/Observations, v1.1/Datastreams(id)/Observations or \
                 v1.1/FeaturesOfInterest(id)/Observations"
                    .into()
            ))
        );
    }
}
