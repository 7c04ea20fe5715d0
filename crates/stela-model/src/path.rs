//! SensorThings resource paths: `Things(1)/Datastreams(2)/Observations`, `Things(1)/name/$value`,
//! `Datastreams(1)/Thing/$ref`.
//!
//! Parsing checks the path against the model (every segment names a set, relation or property
//! that exists where it stands); whether the ids exist and are related is for the store.

use crate::schema::{EntityType, Relation};

/// One step of a path: an entity set or a navigation, optionally narrowed to one id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    pub ty: EntityType,
    /// The relation followed from the previous step; `None` for the first step.
    pub via: Option<&'static Relation>,
    /// `Set(id)` or `Relation(id)`.
    pub id: Option<i64>,
}

impl Step {
    /// Whether this step addresses a single entity (by id, or a to-one navigation).
    pub fn is_single(&self) -> bool {
        self.id.is_some() || self.via.is_some_and(|r| !r.many)
    }
}

/// What follows the entity steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tail {
    /// The entity or collection itself.
    None,
    /// `…/name`: the property, by index into the type's properties, as `{"name": …}`.
    Property(usize),
    /// `…/name/$value`: the raw value of the property.
    PropertyValue(usize),
    /// `…/$ref`: association links only.
    Ref,
}

/// A parsed resource path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourcePath {
    pub steps: Vec<Step>,
    pub tail: Tail,
}

impl ResourcePath {
    /// The last step: what the path addresses.
    pub fn target(&self) -> &Step {
        match self.steps.last() {
            Some(step) => step,
            None => unreachable!("a parsed path has at least one step"),
        }
    }
}

/// A path that does not name anything in the model.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PathError(pub String);

/// Parses a path relative to the service root, without leading slash or query.
pub fn parse_resource_path(path: &str) -> Result<ResourcePath, PathError> {
    let mut segments = path.split('/').filter(|s| !s.is_empty());
    let first = segments.next().ok_or_else(|| PathError("empty resource path".into()))?;
    let (name, id) = split_id(first)?;
    let ty = EntityType::from_set_name(name)
        .ok_or_else(|| PathError(format!("no entity set '{name}'")))?;
    let mut steps = vec![Step { ty, via: None, id }];
    let mut tail = Tail::None;
    for segment in segments {
        let Some(current) = steps.last().copied() else { break };
        match tail {
            Tail::None => {}
            Tail::Property(index) if segment == "$value" => {
                tail = Tail::PropertyValue(index);
                continue;
            }
            _ => {
                return Err(PathError(format!(
                    "nothing can follow '{}' in a path",
                    last_name(&steps, tail)
                )));
            }
        }
        if segment == "$ref" {
            tail = Tail::Ref;
            continue;
        }
        let (name, id) = split_id(segment)?;
        if !current.is_single() {
            return Err(PathError(format!(
                "'{name}' cannot follow the collection '{}'; address one entity first, e.g. {}(1)",
                current.via.map_or(current.ty.set_name(), |r| r.name),
                current.via.map_or(current.ty.set_name(), |r| r.name),
            )));
        }
        if let Some(relation) = current.ty.relation(name) {
            if id.is_some() && !relation.many {
                return Err(PathError(format!("'{name}' is a single entity and takes no id")));
            }
            steps.push(Step { ty: relation.target, via: Some(relation), id });
        } else if let Some(index) = current.ty.property_index(name) {
            if id.is_some() {
                return Err(PathError(format!("property '{name}' takes no id")));
            }
            tail = Tail::Property(index);
        } else {
            return Err(PathError(format!("{} has no property or relation '{name}'", current.ty)));
        }
    }
    if tail == Tail::Ref && steps.len() == 1 && steps[0].id.is_some() {
        return Err(PathError(
            "'$ref' applies to a relation or a collection, not to an entity".into(),
        ));
    }
    Ok(ResourcePath { steps, tail })
}

fn last_name(steps: &[Step], tail: Tail) -> &'static str {
    match tail {
        Tail::Ref => "$ref",
        Tail::PropertyValue(_) => "$value",
        Tail::Property(i) => steps.last().map_or("", |s| s.ty.properties()[i].name),
        Tail::None => "",
    }
}

/// Splits `Things(12)` into `("Things", Some(12))`.
fn split_id(segment: &str) -> Result<(&str, Option<i64>), PathError> {
    let Some(open) = segment.find('(') else {
        return Ok((segment, None));
    };
    let name = &segment[..open];
    let rest = &segment[open + 1..];
    let inner = rest
        .strip_suffix(')')
        .ok_or_else(|| PathError(format!("unbalanced parentheses in '{segment}'")))?;
    let digits = inner.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')).unwrap_or(inner);
    let id = digits
        .parse::<i64>()
        .map_err(|_| PathError(format!("'{inner}' is not an entity id; ids are integers")))?;
    Ok((name, Some(id)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(path: &str, expected: &str) {
        let actual = match parse_resource_path(path) {
            Ok(p) => {
                let steps: Vec<String> = p
                    .steps
                    .iter()
                    .map(|s| {
                        format!("{}{}", s.ty, s.id.map(|i| format!("({i})")).unwrap_or_default())
                    })
                    .collect();
                format!("{} {:?}", steps.join(">"), p.tail)
            }
            Err(e) => format!("error: {e}"),
        };
        assert_eq!(actual, expected, "{path}");
    }

    #[test]
    fn paths() {
        check("Things", "Thing None");
        check("Things(1)", "Thing(1) None");
        check("Things(1)/Datastreams(2)/Observations", "Thing(1)>Datastream(2)>Observation None");
        check("Datastreams(1)/Thing/Locations/$ref", "Datastream(1)>Thing>Location Ref");
        check("Things(1)/name", "Thing(1) Property(0)");
        check("Things(1)/name/$value", "Thing(1) PropertyValue(0)");
        check("Things(1)/Datastreams/$ref", "Thing(1)>Datastream Ref");
        check("Things", "Thing None");
        check("Thingz", "error: no entity set 'Thingz'");
        check("Things(x)", "error: 'x' is not an entity id; ids are integers");
        check(
            "Things/Datastreams",
            "error: 'Datastreams' cannot follow the collection 'Things'; address one entity first, e.g. Things(1)",
        );
        check("Things(1)/Sensor", "error: Thing has no property or relation 'Sensor'");
        check("Datastreams(1)/Thing(2)", "error: 'Thing' is a single entity and takes no id");
        check("Things(1)/name/$value/x", "error: nothing can follow '$value' in a path");
        check(
            "Things(1)/$ref",
            "error: '$ref' applies to a relation or a collection, not to an entity",
        );
    }
}
