//! Counters and state of the MQTT side, shown by `GET /health` (through
//! [`stela_server::HealthProvider`]) and usable by the benchmark.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::json;
use stela_server::{HealthProvider, HealthReport};

/// Where the MQTT side stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MqttState {
    /// Configured but not yet serving (embedded) or not yet connected (external).
    Starting,
    /// Embedded broker accepting connections.
    Running,
    /// External broker connected.
    Connected,
    /// External broker unreachable; reconnecting. The text is the last error.
    Reconnecting(String),
    /// The embedded broker could not start (e.g. its address is taken); HTTP still serves.
    Failed(String),
    /// Shut down.
    Stopped,
}

/// Counters of one broker or bridge; all monotonic except the two gauges.
#[derive(Debug)]
pub struct Metrics {
    mode: &'static str,
    endpoint: Mutex<Option<String>>,
    state: Mutex<MqttState>,
    /// Gauge: connected clients.
    pub clients: AtomicU64,
    /// Gauge: distinct subscribed topics.
    pub topics: AtomicU64,
    /// Connections accepted since start.
    pub connections: AtomicU64,
    /// PUBLISH packets received.
    pub messages_in: AtomicU64,
    /// PUBLISH packets sent (notifications).
    pub messages_out: AtomicU64,
    /// Observations created from MQTT messages.
    pub created: AtomicU64,
    /// Messages written to the ingest journal (acknowledged before their commit).
    pub journaled: AtomicU64,
    /// Messages refused: bad topic, bad payload, refused by the write path, bad SUBSCRIBE
    /// topics, failed logins, protocol violations.
    pub rejected: AtomicU64,
    /// QoS 0 notifications dropped because a subscriber's queue was full.
    pub dropped: AtomicU64,
    /// Clients disconnected because they did not keep up (full queue at QoS 1, write
    /// timeout).
    pub slow_disconnects: AtomicU64,
    /// Change events the notifier missed because it fell behind the writers.
    pub events_lost: AtomicU64,
    /// Successful reconnections to an external broker.
    pub reconnects: AtomicU64,
}

/// Adds one to a counter.
pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl Metrics {
    pub(crate) fn new(mode: &'static str) -> Metrics {
        Metrics {
            mode,
            endpoint: Mutex::new(None),
            state: Mutex::new(MqttState::Starting),
            clients: AtomicU64::new(0),
            topics: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            messages_in: AtomicU64::new(0),
            messages_out: AtomicU64::new(0),
            created: AtomicU64::new(0),
            journaled: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            slow_disconnects: AtomicU64::new(0),
            events_lost: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
        }
    }

    /// Metrics of an embedded broker that could not start, so that `/health` says why.
    pub fn failed(reason: impl Into<String>) -> Metrics {
        let metrics = Metrics::new("embedded");
        metrics.set_state(MqttState::Failed(reason.into()));
        metrics
    }

    pub(crate) fn set_state(&self, state: MqttState) {
        if let Ok(mut current) = self.state.lock() {
            *current = state;
        }
    }

    pub(crate) fn set_endpoint(&self, endpoint: String) {
        if let Ok(mut current) = self.endpoint.lock() {
            *current = Some(endpoint);
        }
    }

    /// The current state.
    pub fn state(&self) -> MqttState {
        self.state.lock().map(|state| state.clone()).unwrap_or(MqttState::Starting)
    }

    /// Reads a counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

impl HealthProvider for Metrics {
    fn name(&self) -> &'static str {
        "mqtt"
    }

    fn report(&self) -> HealthReport {
        let state = self.state();
        let (state_name, error) = match &state {
            MqttState::Starting => ("starting", None),
            MqttState::Running => ("running", None),
            MqttState::Connected => ("connected", None),
            MqttState::Reconnecting(error) => ("reconnecting", Some(error.clone())),
            MqttState::Failed(error) => ("failed", Some(error.clone())),
            MqttState::Stopped => ("stopped", None),
        };
        let healthy = matches!(state, MqttState::Running | MqttState::Connected);
        let endpoint = self.endpoint.lock().ok().and_then(|endpoint| endpoint.clone());
        let get = Metrics::get;
        let mut details = json!({
            "mode": self.mode,
            "state": state_name,
            "endpoint": endpoint,
            "clients": get(&self.clients),
            "topics": get(&self.topics),
            "connections": get(&self.connections),
            "messages_in": get(&self.messages_in),
            "messages_out": get(&self.messages_out),
            "observations_created": get(&self.created),
            "journaled": get(&self.journaled),
            "rejected": get(&self.rejected),
            "dropped": get(&self.dropped),
            "slow_disconnects": get(&self.slow_disconnects),
            "events_lost": get(&self.events_lost),
            "reconnects": get(&self.reconnects),
        });
        if let Some(error) = error {
            details["error"] = json!(error);
        }
        HealthReport { healthy, details }
    }
}
