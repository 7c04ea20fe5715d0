//! Integration tests of the MQTT extension: a real Stela (SQLite, HTTP and the broker on
//! port 0) and real MQTT clients over TCP. External-broker tests run when
//! `STELA_TEST_MQTT_URL` names a broker (e.g. mqtt://127.0.0.1:1883).

mod burst;
mod create;
mod external;
mod receive;
mod robustness;
mod soak;
mod support;
mod v5;
