//! MQTT in `stela serve`: announced, advertised, reported by /health, switched off, and a taken
//! address that leaves HTTP serving.

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{Server, http_client, serve_command};

const MQTT_CREATE_CLASS: &str = "http://www.opengis.net/spec/iot_sensing/1.1/req/create-observations-via-mqtt/observations-creation";
const MQTT_RECEIVE_CLASS: &str =
    "http://www.opengis.net/spec/iot_sensing/1.1/req/receive-updates-via-mqtt/receive-updates";

async fn get_json(url: &str) -> Value {
    let response = http_client().get(url).send().await.expect("GET");
    assert!(response.status().is_success(), "GET {url}: {}", response.status());
    response.json().await.expect("JSON")
}

/// Sends an MQTT 3.1.1 CONNECT by hand and returns the CONNACK bytes.
fn connack(mqtt_url: &str) -> [u8; 4] {
    let address = mqtt_url.strip_prefix("mqtt://").expect("mqtt:// URL");
    let mut stream = TcpStream::connect(address).expect("connect to the broker");
    stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    stream
        .write_all(&[0x10, 13, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 60, 0, 1, b'a'])
        .expect("send CONNECT");
    let mut answer = [0u8; 4];
    stream.read_exact(&mut answer).expect("read CONNACK");
    answer
}

#[tokio::test]
async fn the_embedded_broker_is_announced_advertised_and_healthy() {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(data_dir.path());
    let mqtt_url = server.mqtt_url.clone().expect("the MQTT address is announced");
    assert!(mqtt_url.starts_with("mqtt://127.0.0.1:"), "{mqtt_url}");
    assert_eq!(connack(&mqtt_url), [0x20, 2, 0, 0]);

    let root = get_json(&server.url("/v1.1")).await;
    let settings = &root["serverSettings"];
    for class in [MQTT_CREATE_CLASS, MQTT_RECEIVE_CLASS] {
        assert!(settings["conformance"].as_array().is_some_and(|all| all.contains(&json!(class))));
        assert_eq!(settings[class]["endpoints"], json!([mqtt_url]));
    }
    let health = get_json(&server.url("/health")).await;
    assert_eq!(health["status"], "ok", "{health}");
    assert_eq!(health["mqtt"]["state"], "running", "{health}");
    assert_eq!(health["mqtt"]["endpoint"], json!(mqtt_url));
}

#[tokio::test]
async fn a_taken_mqtt_address_is_reported_and_http_still_serves() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("hold a port, like another broker");
    let address = taken.local_addr().expect("address").to_string();
    let data_dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start_with(serve_command(data_dir.path(), &["--mqtt-listen", &address]));
    assert_eq!(server.mqtt_url, None);

    let root = get_json(&server.url("/v1.1")).await;
    assert!(root["serverSettings"].get(MQTT_CREATE_CLASS).is_none(), "{root}");
    assert!(!root["serverSettings"]["conformance"].to_string().contains("mqtt"), "{root}");
    let health = get_json(&server.url("/health")).await;
    assert_eq!(health["status"], "degraded", "{health}");
    assert_eq!(health["mqtt"]["state"], "failed", "{health}");
    let stderr = server.stderr();
    assert!(stderr.contains(&address), "the address is not named:\n{stderr}");
    assert!(stderr.contains("already in use"), "the cause is not said:\n{stderr}");
    assert!(stderr.contains("--mqtt-listen"), "--mqtt-listen is not named:\n{stderr}");
    drop(taken);
}

#[tokio::test]
async fn mqtt_can_be_switched_off() {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start_with(serve_command(data_dir.path(), &["--mqtt-listen", "off"]));
    assert_eq!(server.mqtt_url, None);
    let root = get_json(&server.url("/v1.1")).await;
    assert!(root["serverSettings"].get(MQTT_RECEIVE_CLASS).is_none(), "{root}");
    let health = get_json(&server.url("/health")).await;
    assert_eq!(health, json!({"status": "ok"}));
}
