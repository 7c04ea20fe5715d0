//! The SensorThings MQTT extension of Stela (conformance classes A.7 "create Observations via
//! MQTT" and A.8 "receive updates via MQTT").
//!
//! Two ways to run it:
//!
//! * [`Broker`]: an embedded MQTT 3.1.1 and MQTT 5 broker. The session loop is ours, on
//!   rumqttc's packet codecs (`mqttbytes::v4`, and `v5` converted at the edge in `protocol.rs`),
//!   because the extension must see every SUBSCRIBE: the topic is a SensorThings path that
//!   decides what is published. MQTT 5 clients get reason codes for refused messages and
//!   subscriptions, and their Receive Maximum and Maximum Packet Size are honoured.
//! * [`Bridge`]: a client of an external broker (Mosquitto), for several instances on one bus.
//!
//! ```text
//!            PUBLISH v1.1/Datastreams(1)/Observations
//!  client ──► session ──► Ingest ──► Service::create ──► commit ──► ChangeEvent
//!     ▲                                                                 │
//!     │  PUBLISH v1.1/Datastreams(1)/Observations                      ▼
//!     └── writer ◄── bounded queue ◄── notifier: Subscriptions::matching, read, entity_json
//! ```
//!
//! Invariants:
//! * Notifications come from the service's change events only, so they follow the commit of
//!   every door (HTTP, batch, MQTT) and never precede it.
//! * Payloads are rendered by `stela_server::render::entity_json`, as HTTP renders them.
//! * Nothing waits on a client: per-client queues are bounded; a full queue drops QoS 0
//!   notifications and disconnects QoS 1 subscribers; both are counted in [`Metrics`].
//! * Invalid input (topics, payloads, packets) is counted, logged and answered within MQTT's
//!   rules; it never stops the broker.
//! * Authentication goes through the [`Authenticator`] hook.

mod auth;
mod bridge;
mod broker;
mod client;
mod ingest;
mod journal;
mod metrics;
mod notifier;
mod payload;
mod protocol;
mod session;
mod subscriptions;
pub mod topic;

pub use auth::{AllowAll, AuthDecision, Authenticator, ConnectRequest, StaticCredentials};
pub use bridge::{Bridge, BridgeOptions, MqttError, parse_broker_url};
pub use broker::{Broker, BrokerOptions};
pub use metrics::{Metrics, MqttState};
