//! The subscription index: which topics exist, who subscribed to each, and which topics a
//! change event concerns.
//!
//! Pure data (no I/O, no locks); the broker keeps it behind a mutex. It is generic over the
//! subscriber handle so that tests can use plain values.
//!
//! Lookups are by key, so the cost of an event depends on the topics it matches, not on the
//! number of topics: `Set(type)` for creations, `Entity(type, id)` for entity and property
//! topics, `Nav { parent, parent_id, relation }` for `Datastreams(1)/Observations`-style topics.
//! Navigation topics deeper than one hop (`Things(1)/Datastreams(2)/Observations`) are rare
//! and checked one by one (`DeepNav`).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use rumqttc::QoS;
use serde_json::Value as Json;
use stela_model::{EntityType, Relation};
use stela_service::{ChangeEvent, ChangeKind};

use crate::topic::{Topic, TopicKind};

/// How a topic is found from a change event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum MatchKey {
    Set(EntityType),
    Entity(EntityType, i64),
    /// `<parent set>(parent_id)/<relation>`; `relation` is the parent's navigation property.
    Nav {
        parent: EntityType,
        parent_id: i64,
        relation: &'static str,
    },
    DeepNav(EntityType),
}

fn match_key(topic: &Topic) -> MatchKey {
    match topic.kind {
        TopicKind::Set(ty) => MatchKey::Set(ty),
        TopicKind::Entity(ty, id) | TopicKind::Property(ty, id, _) => MatchKey::Entity(ty, id),
        TopicKind::Navigation(ty) => match topic.path.steps.as_slice() {
            [parent, child] if parent.via.is_none() => match (parent.id, child.via) {
                (Some(parent_id), Some(relation)) => {
                    MatchKey::Nav { parent: parent.ty, parent_id, relation: relation.name }
                }
                _ => MatchKey::DeepNav(ty),
            },
            _ => MatchKey::DeepNav(ty),
        },
    }
}

/// The relation seen from the created entity (Observation → `Datastream`) whose parents a
/// `Nav` key names.
fn child_relation(topic: &Topic) -> Option<&'static Relation> {
    match topic.path.steps.as_slice() {
        [_, child] => child.via.map(Relation::inverse_relation),
        _ => None,
    }
}

#[derive(Debug)]
struct Entry<S> {
    topic: Arc<Topic>,
    key: MatchKey,
    subscribers: HashMap<u64, (S, QoS)>,
    /// Property topics: the last value published (or read at subscription), to publish only
    /// changes.
    last_value: Option<Json>,
}

/// One topic an event concerns, with its subscribers at that moment.
#[derive(Debug, Clone)]
pub(crate) struct TopicMatch<S> {
    pub name: Arc<str>,
    pub topic: Arc<Topic>,
    pub subscribers: Vec<(S, QoS)>,
}

/// What a change event concerns.
#[derive(Debug)]
pub(crate) struct Matches<S> {
    /// Set, entity and property topics.
    pub direct: Vec<TopicMatch<S>>,
    /// Relations of the changed entity (e.g. `Observation.Datastream`) whose related
    /// entities must be read to find the `Nav` topics (`Datastreams(id)/Observations`).
    pub relations: Vec<&'static Relation>,
    /// Deep navigation topics of the changed type, to be checked one by one.
    pub deep: Vec<TopicMatch<S>>,
}

impl<S> Matches<S> {
    pub fn is_empty(&self) -> bool {
        self.direct.is_empty() && self.relations.is_empty() && self.deep.is_empty()
    }
}

/// All subscriptions of the broker.
#[derive(Debug)]
pub(crate) struct Subscriptions<S> {
    topics: HashMap<Arc<str>, Entry<S>>,
    index: HashMap<MatchKey, HashSet<Arc<str>>>,
    /// Per (created type, its relation): how many `Nav` topics need that relation resolved.
    nav_relations: HashMap<(EntityType, &'static str), usize>,
}

impl<S> Default for Subscriptions<S> {
    fn default() -> Self {
        Subscriptions {
            topics: HashMap::new(),
            index: HashMap::new(),
            nav_relations: HashMap::new(),
        }
    }
}

impl<S: Clone> Subscriptions<S> {
    /// Number of distinct topics with at least one subscriber.
    pub fn topic_count(&self) -> usize {
        self.topics.len()
    }

    /// Adds (or replaces, e.g. to change the QoS) the subscription of connection `conn` to the
    /// topic `name`. Returns true when the topic is new.
    pub fn subscribe(
        &mut self,
        name: &str,
        topic: Topic,
        conn: u64,
        subscriber: S,
        qos: QoS,
    ) -> bool {
        if let Some(entry) = self.topics.get_mut(name) {
            entry.subscribers.insert(conn, (subscriber, qos));
            return false;
        }
        let key = match_key(&topic);
        if let MatchKey::Nav { .. } = key
            && let Some(relation) = child_relation(&topic)
        {
            *self.nav_relations.entry((relation_owner(relation), relation.name)).or_default() += 1;
        }
        let name: Arc<str> = Arc::from(name);
        self.index.entry(key).or_default().insert(Arc::clone(&name));
        let subscribers = HashMap::from([(conn, (subscriber, qos))]);
        self.topics
            .insert(name, Entry { topic: Arc::new(topic), key, subscribers, last_value: None });
        true
    }

    /// Removes the subscription of `conn` to `name`; the topic goes when nobody is left.
    pub fn unsubscribe(&mut self, name: &str, conn: u64) {
        let Some(entry) = self.topics.get_mut(name) else { return };
        entry.subscribers.remove(&conn);
        if !entry.subscribers.is_empty() {
            return;
        }
        let Some((name, entry)) = self.topics.remove_entry(name) else { return };
        if let Some(names) = self.index.get_mut(&entry.key) {
            names.remove(&name);
            if names.is_empty() {
                self.index.remove(&entry.key);
            }
        }
        if let MatchKey::Nav { .. } = entry.key
            && let Some(relation) = child_relation(&entry.topic)
        {
            let key = (relation_owner(relation), relation.name);
            if let Some(count) = self.nav_relations.get_mut(&key) {
                *count -= 1;
                if *count == 0 {
                    self.nav_relations.remove(&key);
                }
            }
        }
    }

    fn matches_of(&self, key: &MatchKey, keep: impl Fn(&Topic) -> bool) -> Vec<TopicMatch<S>> {
        let Some(names) = self.index.get(key) else { return Vec::new() };
        names
            .iter()
            .filter_map(|name| {
                let entry = self.topics.get(name)?;
                keep(&entry.topic).then(|| TopicMatch {
                    name: Arc::clone(name),
                    topic: Arc::clone(&entry.topic),
                    subscribers: entry.subscribers.values().cloned().collect(),
                })
            })
            .collect()
    }

    /// The topics `event` concerns (navigation topics still need the related ids).
    pub fn matching(&self, event: &ChangeEvent) -> Matches<S> {
        let ty = event.ty;
        let mut matches = Matches { direct: Vec::new(), relations: Vec::new(), deep: Vec::new() };
        match event.kind {
            ChangeKind::Created => {
                matches.direct = self.matches_of(&MatchKey::Set(ty), |_| true);
                matches.direct.extend(self.matches_of(&MatchKey::Entity(ty, event.id), |topic| {
                    matches!(topic.kind, TopicKind::Entity(..))
                }));
                matches.relations = ty
                    .relations()
                    .iter()
                    .filter(|relation| self.nav_relations.contains_key(&(ty, relation.name)))
                    .collect();
                matches.deep = self.matches_of(&MatchKey::DeepNav(ty), |_| true);
            }
            ChangeKind::Updated => {
                matches.direct = self.matches_of(&MatchKey::Entity(ty, event.id), |_| true);
            }
            ChangeKind::Deleted => {}
        }
        matches
    }

    /// The `Nav` topics `<parent>(parent_id)/<relation>`.
    pub fn navigation(
        &self,
        parent: EntityType,
        parent_id: i64,
        relation: &'static str,
    ) -> Vec<TopicMatch<S>> {
        self.matches_of(&MatchKey::Nav { parent, parent_id, relation }, |_| true)
    }

    /// Records `value` as the current value of the property topic `name`; returns whether it
    /// differs from the value known before (an unknown value counts as different).
    pub fn replace_value(&mut self, name: &str, value: &Json) -> bool {
        let Some(entry) = self.topics.get_mut(name) else { return false };
        if entry.last_value.as_ref() == Some(value) {
            return false;
        }
        entry.last_value = Some(value.clone());
        true
    }

    /// Sets the starting value of a property topic, unless a value is known already.
    pub fn initial_value(&mut self, name: &str, value: Json) {
        if let Some(entry) = self.topics.get_mut(name)
            && entry.last_value.is_none()
        {
            entry.last_value = Some(value);
        }
    }
}

/// The entity type a relation belongs to (the source of `relation`).
fn relation_owner(relation: &'static Relation) -> EntityType {
    relation.inverse_relation().target
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topic::parse_subscription;

    fn event(kind: ChangeKind, ty: EntityType, id: i64) -> ChangeEvent {
        ChangeEvent { kind, ty, id }
    }

    fn subscribe(subs: &mut Subscriptions<&'static str>, name: &str, conn: u64, who: &'static str) {
        let topic = parse_subscription(name).expect("valid topic");
        subs.subscribe(name, topic, conn, who, QoS::AtMostOnce);
    }

    fn names(matches: &[TopicMatch<&'static str>]) -> Vec<String> {
        let mut names: Vec<String> = matches.iter().map(|m| m.name.to_string()).collect();
        names.sort();
        names
    }

    #[test]
    fn events_find_their_topics() {
        let mut subs = Subscriptions::default();
        subscribe(&mut subs, "v1.1/Observations", 1, "a");
        subscribe(&mut subs, "v1.0/Observations", 1, "a");
        subscribe(&mut subs, "v1.1/Things(1)", 2, "b");
        subscribe(&mut subs, "v1.1/Things(1)/name", 2, "b");
        subscribe(&mut subs, "v1.1/Datastreams(4)/Observations", 3, "c");
        subscribe(&mut subs, "v1.1/Things(1)/Datastreams(4)/Observations", 3, "c");
        assert_eq!(subs.topic_count(), 6);

        let created = subs.matching(&event(ChangeKind::Created, EntityType::Observation, 9));
        assert_eq!(names(&created.direct), ["v1.0/Observations", "v1.1/Observations"]);
        let relations: Vec<&str> = created.relations.iter().map(|r| r.name).collect();
        assert_eq!(relations, ["Datastream"]);
        assert_eq!(names(&created.deep), ["v1.1/Things(1)/Datastreams(4)/Observations"]);
        assert_eq!(
            names(&subs.navigation(EntityType::Datastream, 4, "Observations")),
            ["v1.1/Datastreams(4)/Observations"]
        );
        assert!(subs.navigation(EntityType::Datastream, 5, "Observations").is_empty());

        let updated = subs.matching(&event(ChangeKind::Updated, EntityType::Thing, 1));
        assert_eq!(names(&updated.direct), ["v1.1/Things(1)", "v1.1/Things(1)/name"]);
        let created_thing = subs.matching(&event(ChangeKind::Created, EntityType::Thing, 1));
        assert_eq!(names(&created_thing.direct), ["v1.1/Things(1)"]);
        assert!(subs.matching(&event(ChangeKind::Updated, EntityType::Thing, 2)).is_empty());
        assert!(subs.matching(&event(ChangeKind::Deleted, EntityType::Thing, 1)).is_empty());
    }

    #[test]
    fn topics_go_with_their_last_subscriber() {
        let mut subs = Subscriptions::default();
        subscribe(&mut subs, "v1.1/Datastreams(4)/Observations", 1, "a");
        subscribe(&mut subs, "v1.1/Datastreams(4)/Observations", 2, "b");
        let created = event(ChangeKind::Created, EntityType::Observation, 1);
        assert_eq!(
            subs.navigation(EntityType::Datastream, 4, "Observations")[0].subscribers.len(),
            2
        );
        subs.unsubscribe("v1.1/Datastreams(4)/Observations", 1);
        assert_eq!(subs.matching(&created).relations.len(), 1);
        subs.unsubscribe("v1.1/Datastreams(4)/Observations", 2);
        assert!(subs.matching(&created).is_empty());
        assert_eq!(subs.topic_count(), 0);
        subs.unsubscribe("v1.1/never", 2);
    }

    #[test]
    fn property_values_are_published_only_when_they_change() {
        let mut subs = Subscriptions::default();
        subscribe(&mut subs, "v1.1/Things(1)/name", 1, "a");
        subs.initial_value("v1.1/Things(1)/name", Json::from("x"));
        assert!(!subs.replace_value("v1.1/Things(1)/name", &Json::from("x")));
        assert!(subs.replace_value("v1.1/Things(1)/name", &Json::from("y")));
        assert!(!subs.replace_value("v1.1/Things(1)/name", &Json::from("y")));
        subs.initial_value("v1.1/Things(1)/name", Json::from("z"));
        assert!(!subs.replace_value("v1.1/Things(1)/name", &Json::from("y")));
    }
}
