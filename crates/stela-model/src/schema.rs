//! The SensorThings data model as data: the eight entity types, their properties and relations.
//!
//! Every generic part of Stela (decoding, storage, paths, queries, links) walks these tables
//! instead of hard-coding entity shapes, so that adding an entity type (MultiDatastream, the
//! Tasking types) is a matter of adding rows here and a table in the store.

/// One of the entity types of SensorThings 1.1 Sensing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EntityType {
    Thing,
    Location,
    HistoricalLocation,
    Datastream,
    Sensor,
    ObservedProperty,
    Observation,
    FeatureOfInterest,
    MultiDatastream,
}

/// How a property's value is validated, stored and rendered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PropertyKind {
    /// A JSON string.
    Text,
    /// Any JSON value, kept as given (`metadata`, `resultQuality`).
    Json,
    /// A JSON object, kept as given (`properties`, `parameters`, `unitOfMeasurement`).
    JsonObject,
    /// A JSON array, kept as given (`unitOfMeasurements`, `multiObservationDataTypes`).
    JsonArray,
    /// A GeoJSON geometry or feature, validated (`location`, `feature`, `observedArea`).
    Geometry,
    /// An ISO 8601 instant.
    Instant,
    /// An ISO 8601 interval `start/end`.
    Interval,
    /// An instant or an interval (`Observation.phenomenonTime`).
    InstantOrInterval,
    /// The result of an Observation: any JSON value.
    Result,
}

/// A property of an entity type.
#[derive(Debug, PartialEq, Eq)]
pub struct Property {
    /// Name on the wire (`unitOfMeasurement`).
    pub name: &'static str,
    /// Column (or column prefix for times and results) in the store.
    pub column: &'static str,
    pub kind: PropertyKind,
    /// Mandatory on create and on PUT.
    pub required: bool,
    /// Kept up to date by the server; clients may not set it.
    pub server_maintained: bool,
}

/// How two entity types are connected in the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// This entity's table holds the target's id in `column` (to-one).
    Forward { column: &'static str },
    /// The target's table holds this entity's id in `column` (to-many).
    Reverse { column: &'static str },
    /// A join table with this entity's id in `this_column` and the target's in `target_column`;
    /// `ordered` join tables keep the order of linking in a `rank` column (a MultiDatastream's
    /// ObservedProperties are ordered like its result arrays).
    Join {
        table: &'static str,
        this_column: &'static str,
        target_column: &'static str,
        ordered: bool,
    },
}

/// A navigation property.
#[derive(Debug, PartialEq, Eq)]
pub struct Relation {
    /// Name on the wire (`Datastreams`, `Thing`).
    pub name: &'static str,
    pub target: EntityType,
    /// To-many (a collection) or to-one.
    pub many: bool,
    /// An entity cannot exist without this relation (Datastream → Thing).
    pub required: bool,
    /// The name of the same relation seen from the target.
    pub inverse: &'static str,
    pub link: Link,
}

const fn prop(
    name: &'static str,
    column: &'static str,
    kind: PropertyKind,
    required: bool,
) -> Property {
    Property { name, column, kind, required, server_maintained: false }
}

const fn maintained(name: &'static str, column: &'static str, kind: PropertyKind) -> Property {
    Property { name, column, kind, required: false, server_maintained: true }
}

use PropertyKind as K;

const NAME: Property = prop("name", "name", K::Text, true);
const DESCRIPTION: Property = prop("description", "description", K::Text, true);
const ENCODING_TYPE: Property = prop("encodingType", "encoding_type", K::Text, true);
const PROPERTIES: Property = prop("properties", "properties", K::JsonObject, false);

static THING_PROPERTIES: [Property; 3] = [NAME, DESCRIPTION, PROPERTIES];
static LOCATION_PROPERTIES: [Property; 5] =
    [NAME, DESCRIPTION, ENCODING_TYPE, prop("location", "location", K::Geometry, true), PROPERTIES];
static HISTORICAL_LOCATION_PROPERTIES: [Property; 1] = [prop("time", "time", K::Instant, true)];
static DATASTREAM_PROPERTIES: [Property; 8] = [
    NAME,
    DESCRIPTION,
    prop("unitOfMeasurement", "unit_of_measurement", K::JsonObject, true),
    prop("observationType", "observation_type", K::Text, true),
    maintained("observedArea", "observed_area", K::Geometry),
    maintained("phenomenonTime", "phenomenon_time", K::Interval),
    maintained("resultTime", "result_time", K::Interval),
    PROPERTIES,
];
static SENSOR_PROPERTIES: [Property; 5] =
    [NAME, DESCRIPTION, ENCODING_TYPE, prop("metadata", "metadata", K::Json, true), PROPERTIES];
static OBSERVED_PROPERTY_PROPERTIES: [Property; 4] =
    [NAME, prop("definition", "definition", K::Text, true), DESCRIPTION, PROPERTIES];
static OBSERVATION_PROPERTIES: [Property; 6] = [
    // Mandatory in the model, but the server supplies the current time when it is omitted.
    prop("phenomenonTime", "phenomenon_time", K::InstantOrInterval, false),
    prop("resultTime", "result_time", K::Instant, false),
    prop("result", "result", K::Result, true),
    prop("resultQuality", "result_quality", K::Json, false),
    prop("validTime", "valid_time", K::Interval, false),
    prop("parameters", "parameters", K::JsonObject, false),
];
static MULTI_DATASTREAM_PROPERTIES: [Property; 9] = [
    NAME,
    DESCRIPTION,
    prop("unitOfMeasurements", "unit_of_measurements", K::JsonArray, true),
    // Fixed to OM_ComplexObservation; the server fills it in when it is omitted.
    prop("observationType", "observation_type", K::Text, false),
    prop("multiObservationDataTypes", "multi_observation_data_types", K::JsonArray, true),
    maintained("observedArea", "observed_area", K::Geometry),
    maintained("phenomenonTime", "phenomenon_time", K::Interval),
    maintained("resultTime", "result_time", K::Interval),
    PROPERTIES,
];
static FEATURE_PROPERTIES: [Property; 5] =
    [NAME, DESCRIPTION, ENCODING_TYPE, prop("feature", "feature", K::Geometry, true), PROPERTIES];

use EntityType as E;

static THING_RELATIONS: [Relation; 4] = [
    Relation {
        name: "Locations",
        target: E::Location,
        many: true,
        required: false,
        inverse: "Things",
        link: Link::Join {
            table: "things_locations",
            this_column: "thing_id",
            target_column: "location_id",
            ordered: false,
        },
    },
    Relation {
        name: "HistoricalLocations",
        target: E::HistoricalLocation,
        many: true,
        required: false,
        inverse: "Thing",
        link: Link::Reverse { column: "thing_id" },
    },
    Relation {
        name: "Datastreams",
        target: E::Datastream,
        many: true,
        required: false,
        inverse: "Thing",
        link: Link::Reverse { column: "thing_id" },
    },
    Relation {
        name: "MultiDatastreams",
        target: E::MultiDatastream,
        many: true,
        required: false,
        inverse: "Thing",
        link: Link::Reverse { column: "thing_id" },
    },
];
static LOCATION_RELATIONS: [Relation; 2] = [
    Relation {
        name: "Things",
        target: E::Thing,
        many: true,
        required: false,
        inverse: "Locations",
        link: Link::Join {
            table: "things_locations",
            this_column: "location_id",
            target_column: "thing_id",
            ordered: false,
        },
    },
    Relation {
        name: "HistoricalLocations",
        target: E::HistoricalLocation,
        many: true,
        required: false,
        inverse: "Locations",
        link: Link::Join {
            table: "locations_historical_locations",
            this_column: "location_id",
            target_column: "historical_location_id",
            ordered: false,
        },
    },
];
static HISTORICAL_LOCATION_RELATIONS: [Relation; 2] = [
    Relation {
        name: "Thing",
        target: E::Thing,
        many: false,
        required: true,
        inverse: "HistoricalLocations",
        link: Link::Forward { column: "thing_id" },
    },
    Relation {
        name: "Locations",
        target: E::Location,
        many: true,
        required: false,
        inverse: "HistoricalLocations",
        link: Link::Join {
            table: "locations_historical_locations",
            this_column: "historical_location_id",
            target_column: "location_id",
            ordered: false,
        },
    },
];
static DATASTREAM_RELATIONS: [Relation; 4] = [
    Relation {
        name: "Thing",
        target: E::Thing,
        many: false,
        required: true,
        inverse: "Datastreams",
        link: Link::Forward { column: "thing_id" },
    },
    Relation {
        name: "Sensor",
        target: E::Sensor,
        many: false,
        required: true,
        inverse: "Datastreams",
        link: Link::Forward { column: "sensor_id" },
    },
    Relation {
        name: "ObservedProperty",
        target: E::ObservedProperty,
        many: false,
        required: true,
        inverse: "Datastreams",
        link: Link::Forward { column: "observed_property_id" },
    },
    Relation {
        name: "Observations",
        target: E::Observation,
        many: true,
        required: false,
        inverse: "Datastream",
        link: Link::Reverse { column: "datastream_id" },
    },
];
static SENSOR_RELATIONS: [Relation; 2] = [
    Relation {
        name: "Datastreams",
        target: E::Datastream,
        many: true,
        required: false,
        inverse: "Sensor",
        link: Link::Reverse { column: "sensor_id" },
    },
    Relation {
        name: "MultiDatastreams",
        target: E::MultiDatastream,
        many: true,
        required: false,
        inverse: "Sensor",
        link: Link::Reverse { column: "sensor_id" },
    },
];
static OBSERVED_PROPERTY_RELATIONS: [Relation; 2] = [
    Relation {
        name: "Datastreams",
        target: E::Datastream,
        many: true,
        required: false,
        inverse: "ObservedProperty",
        link: Link::Reverse { column: "observed_property_id" },
    },
    Relation {
        name: "MultiDatastreams",
        target: E::MultiDatastream,
        many: true,
        required: false,
        inverse: "ObservedProperties",
        link: Link::Join {
            table: "multi_datastreams_observed_properties",
            this_column: "observed_property_id",
            target_column: "multi_datastream_id",
            ordered: true,
        },
    },
];
static MULTI_DATASTREAM_RELATIONS: [Relation; 4] = [
    Relation {
        name: "Thing",
        target: E::Thing,
        many: false,
        required: true,
        inverse: "MultiDatastreams",
        link: Link::Forward { column: "thing_id" },
    },
    Relation {
        name: "Sensor",
        target: E::Sensor,
        many: false,
        required: true,
        inverse: "MultiDatastreams",
        link: Link::Forward { column: "sensor_id" },
    },
    Relation {
        name: "ObservedProperties",
        target: E::ObservedProperty,
        many: true,
        required: false,
        inverse: "MultiDatastreams",
        link: Link::Join {
            table: "multi_datastreams_observed_properties",
            this_column: "multi_datastream_id",
            target_column: "observed_property_id",
            ordered: true,
        },
    },
    Relation {
        name: "Observations",
        target: E::Observation,
        many: true,
        required: false,
        inverse: "MultiDatastream",
        link: Link::Reverse { column: "multi_datastream_id" },
    },
];
static OBSERVATION_RELATIONS: [Relation; 3] = [
    Relation {
        name: "Datastream",
        target: E::Datastream,
        many: false,
        // Exactly one of Datastream and MultiDatastream; the store checks it.
        required: false,
        inverse: "Observations",
        link: Link::Forward { column: "datastream_id" },
    },
    Relation {
        name: "FeatureOfInterest",
        target: E::FeatureOfInterest,
        many: false,
        // Required in the model; the server generates one from the Thing's Location when omitted.
        required: false,
        inverse: "Observations",
        link: Link::Forward { column: "feature_id" },
    },
    Relation {
        name: "MultiDatastream",
        target: E::MultiDatastream,
        many: false,
        required: false,
        inverse: "Observations",
        link: Link::Forward { column: "multi_datastream_id" },
    },
];
static FEATURE_RELATIONS: [Relation; 1] = [Relation {
    name: "Observations",
    target: E::Observation,
    many: true,
    required: false,
    inverse: "FeatureOfInterest",
    link: Link::Reverse { column: "feature_id" },
}];

impl EntityType {
    /// All entity types, in the order of the service root document.
    pub const ALL: [EntityType; 9] = [
        E::Thing,
        E::Location,
        E::HistoricalLocation,
        E::Datastream,
        E::Sensor,
        E::ObservedProperty,
        E::Observation,
        E::FeatureOfInterest,
        E::MultiDatastream,
    ];

    /// Singular name (`Thing`).
    pub fn name(self) -> &'static str {
        match self {
            E::Thing => "Thing",
            E::Location => "Location",
            E::HistoricalLocation => "HistoricalLocation",
            E::Datastream => "Datastream",
            E::Sensor => "Sensor",
            E::ObservedProperty => "ObservedProperty",
            E::Observation => "Observation",
            E::FeatureOfInterest => "FeatureOfInterest",
            E::MultiDatastream => "MultiDatastream",
        }
    }

    /// Entity set name (`Things`).
    pub fn set_name(self) -> &'static str {
        match self {
            E::Thing => "Things",
            E::Location => "Locations",
            E::HistoricalLocation => "HistoricalLocations",
            E::Datastream => "Datastreams",
            E::Sensor => "Sensors",
            E::ObservedProperty => "ObservedProperties",
            E::Observation => "Observations",
            E::FeatureOfInterest => "FeaturesOfInterest",
            E::MultiDatastream => "MultiDatastreams",
        }
    }

    /// The store table.
    pub fn table(self) -> &'static str {
        match self {
            E::Thing => "things",
            E::Location => "locations",
            E::HistoricalLocation => "historical_locations",
            E::Datastream => "datastreams",
            E::Sensor => "sensors",
            E::ObservedProperty => "observed_properties",
            E::Observation => "observations",
            E::FeatureOfInterest => "features",
            E::MultiDatastream => "multi_datastreams",
        }
    }

    pub fn from_set_name(name: &str) -> Option<EntityType> {
        EntityType::ALL.into_iter().find(|t| t.set_name() == name)
    }

    pub fn properties(self) -> &'static [Property] {
        match self {
            E::Thing => &THING_PROPERTIES,
            E::Location => &LOCATION_PROPERTIES,
            E::HistoricalLocation => &HISTORICAL_LOCATION_PROPERTIES,
            E::Datastream => &DATASTREAM_PROPERTIES,
            E::Sensor => &SENSOR_PROPERTIES,
            E::ObservedProperty => &OBSERVED_PROPERTY_PROPERTIES,
            E::Observation => &OBSERVATION_PROPERTIES,
            E::FeatureOfInterest => &FEATURE_PROPERTIES,
            E::MultiDatastream => &MULTI_DATASTREAM_PROPERTIES,
        }
    }

    pub fn relations(self) -> &'static [Relation] {
        match self {
            E::Thing => &THING_RELATIONS,
            E::Location => &LOCATION_RELATIONS,
            E::HistoricalLocation => &HISTORICAL_LOCATION_RELATIONS,
            E::Datastream => &DATASTREAM_RELATIONS,
            E::Sensor => &SENSOR_RELATIONS,
            E::ObservedProperty => &OBSERVED_PROPERTY_RELATIONS,
            E::Observation => &OBSERVATION_RELATIONS,
            E::FeatureOfInterest => &FEATURE_RELATIONS,
            E::MultiDatastream => &MULTI_DATASTREAM_RELATIONS,
        }
    }

    /// The index of the property called `name`.
    pub fn property_index(self, name: &str) -> Option<usize> {
        self.properties().iter().position(|p| p.name == name)
    }

    pub fn property(self, name: &str) -> Option<&'static Property> {
        self.properties().iter().find(|p| p.name == name)
    }

    pub fn relation(self, name: &str) -> Option<&'static Relation> {
        self.relations().iter().find(|r| r.name == name)
    }
}

impl Relation {
    /// The same relation seen from its target.
    pub fn inverse_relation(&self) -> &'static Relation {
        match self.target.relation(self.inverse) {
            Some(inverse) => inverse,
            None => unreachable!("schema tables are consistent (checked by a test)"),
        }
    }
}

impl std::fmt::Display for EntityType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_relation_has_a_consistent_inverse() {
        for ty in EntityType::ALL {
            for rel in ty.relations() {
                let inverse = rel
                    .target
                    .relation(rel.inverse)
                    .unwrap_or_else(|| panic!("{}.{} has no inverse", ty, rel.name));
                assert_eq!(inverse.target, ty, "{}.{}", ty, rel.name);
                assert_eq!(inverse.inverse, rel.name, "{}.{}", ty, rel.name);
                match (&rel.link, &inverse.link) {
                    (Link::Forward { column: a }, Link::Reverse { column: b })
                    | (Link::Reverse { column: a }, Link::Forward { column: b }) => {
                        assert_eq!(a, b)
                    }
                    (
                        Link::Join { table: t1, this_column: a1, target_column: b1, .. },
                        Link::Join { table: t2, this_column: a2, target_column: b2, .. },
                    ) => {
                        assert_eq!((t1, a1, b1), (t2, b2, a2));
                    }
                    other => panic!("{}.{}: mismatched links {other:?}", ty, rel.name),
                }
            }
        }
    }

    #[test]
    fn set_names_round_trip() {
        for ty in EntityType::ALL {
            assert_eq!(EntityType::from_set_name(ty.set_name()), Some(ty));
        }
        assert_eq!(EntityType::from_set_name("Thing"), None);
    }
}
