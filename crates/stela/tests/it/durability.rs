//! Durability: every Observation acknowledged (201 over HTTP, PUBACK over MQTT) survives
//! `kill -9` and a restart, and is created once.

use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{Value, json};

use crate::support::{Server, created_key, http_client, key_of};

/// How many Observations are posted, one request each, before the hard kill.
const OBSERVATIONS: u64 = 200;

/// How many Observations are published over MQTT (QoS 1) before the hard kill.
const MQTT_OBSERVATIONS: u64 = 5_000;

/// How long a restarted server may take to create what its journal holds.
const REPLAY_WAIT: Duration = Duration::from_secs(30);

/// A Thing with a Location and a Datastream (with its Sensor and ObservedProperty), all
/// created in one deep insert.
fn thing_with_datastream() -> Value {
    json!({
        "name": "t",
        "description": "d",
        "Locations": [{
            "name": "l",
            "description": "d",
            "encodingType": "application/geo+json",
            "location": {"type": "Point", "coordinates": [8.0, 50.0]}
        }],
        "Datastreams": [{
            "name": "ds",
            "description": "d",
            "observationType": "http://www.opengis.net/def/observationType/OGC-OM/2.0/OM_Measurement",
            "unitOfMeasurement": {
                "name": "degree Celsius",
                "symbol": "degC",
                "definition": "http://unitsofmeasure.org/ucum.html#para-30"
            },
            "Sensor": {
                "name": "s",
                "description": "d",
                "encodingType": "application/pdf",
                "metadata": "http://example.org/s.pdf"
            },
            "ObservedProperty": {
                "name": "op",
                "definition": "http://example.org/op",
                "description": "d"
            }
        }]
    })
}

/// Creates a Thing with its Datastream on `server`; returns the Datastream's id.
async fn create_datastream(server: &Server) -> String {
    let client = http_client();
    let response = client
        .post(server.url("/v1.1/Things"))
        .json(&thing_with_datastream())
        .send()
        .await
        .expect("POST Thing");
    assert_eq!(response.status().as_u16(), 201, "POST Thing: {response:?}");
    let thing = created_key(&response);

    let response = client
        .get(server.url(&format!("/v1.1/Things({thing})/Datastreams")))
        .send()
        .await
        .expect("GET Datastreams");
    assert_eq!(response.status().as_u16(), 200, "GET Datastreams: {response:?}");
    let datastreams: Value = response.json().await.expect("Datastreams JSON");
    key_of(&datastreams["value"][0]["@iot.id"])
}

/// `@iot.count` of the Observations of `datastream`.
async fn count_observations(server: &Server, datastream: &str) -> u64 {
    let url =
        server.url(&format!("/v1.1/Datastreams({datastream})/Observations?$count=true&$top=0"));
    let response = http_client().get(url).send().await.expect("GET Observations");
    assert_eq!(response.status().as_u16(), 200, "GET Observations: {response:?}");
    let page: Value = response.json().await.expect("Observations JSON");
    page["@iot.count"].as_u64().unwrap_or_else(|| panic!("no @iot.count: {page}"))
}

#[tokio::test]
async fn acknowledged_observations_survive_sigkill() {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let client = http_client();
    let server = Server::start(data_dir.path());
    let datastream = create_datastream(&server).await;

    let observations_url = server.url(&format!("/v1.1/Datastreams({datastream})/Observations"));
    for result in 0..OBSERVATIONS {
        let response = client
            .post(&observations_url)
            .json(&json!({"result": result, "phenomenonTime": "2026-01-01T00:00:00Z"}))
            .send()
            .await
            .unwrap_or_else(|error| panic!("POST Observation {result}: {error}"));
        let status = response.status().as_u16();
        if status != 201 {
            let body = response.text().await.unwrap_or_default();
            panic!("POST Observation {result}: {status} {body}");
        }
    }
    server.kill_hard();

    let restarted = Server::start(data_dir.path());
    let response = client
        .get(
            restarted
                .url(&format!("/v1.1/Datastreams({datastream})/Observations?$count=true&$top=1")),
        )
        .send()
        .await
        .expect("GET Observations after restart");
    assert_eq!(response.status().as_u16(), 200, "GET Observations: {response:?}");
    let page: Value = response.json().await.expect("Observations JSON");
    assert_eq!(page["@iot.count"].as_u64(), Some(OBSERVATIONS), "after kill -9: {page}");
    assert_eq!(page["value"].as_array().map(Vec::len), Some(1), "$top=1 ignored: {page}");
    assert!(data_dir.path().join("stela.db").is_file(), "no stela.db in the data dir");
}

/// Publishes `count` Observations to `datastream` over MQTT at QoS 1 and returns once the
/// broker has acknowledged (PUBACK) every one.
async fn publish_acknowledged(mqtt_url: &str, datastream: &str, count: u64) {
    let address = mqtt_url.strip_prefix("mqtt://").expect("mqtt:// URL");
    let (host, port) = address.rsplit_once(':').expect("host:port");
    let mut options = MqttOptions::new("durability", host, port.parse::<u16>().expect("port"));
    options.set_keep_alive(Duration::from_secs(30));
    let (client, mut eventloop) = AsyncClient::new(options, 1024);
    let topic = format!("v1.1/Datastreams({datastream})/Observations");
    let publisher = tokio::spawn(async move {
        for result in 0..count {
            let body = json!({"result": result, "phenomenonTime": "2026-01-01T00:00:00Z"});
            client
                .publish(topic.as_str(), QoS::AtLeastOnce, false, body.to_string())
                .await
                .expect("queue PUBLISH");
        }
        client
    });
    let mut acknowledged = 0;
    let deadline = Instant::now() + REPLAY_WAIT;
    while acknowledged < count {
        assert!(Instant::now() < deadline, "{acknowledged} of {count} messages acknowledged");
        match tokio::time::timeout(Duration::from_secs(10), eventloop.poll()).await {
            Ok(Ok(Event::Incoming(Packet::PubAck(_)))) => acknowledged += 1,
            Ok(Ok(_)) => {}
            Ok(Err(error)) => {
                panic!("mqtt connection failed after {acknowledged} PUBACKs: {error}")
            }
            Err(_) => panic!("no mqtt event for 10 s after {acknowledged} PUBACKs"),
        }
    }
    publisher.await.expect("publisher task");
}

/// Waits until `datastream` has at least `expected` Observations (a restarted server creates
/// its journal's messages in the background), then returns the count.
async fn count_once_created(server: &Server, datastream: &str, expected: u64) -> u64 {
    let deadline = Instant::now() + REPLAY_WAIT;
    loop {
        let count = count_observations(server, datastream).await;
        if count >= expected || Instant::now() >= deadline {
            return count;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A PUBACK is sent once the message is in the ingest journal, before its transaction: after
/// `kill -9` the restarted server creates what the journal holds and the database lacks,
/// each message once, and a second restart creates nothing again.
#[tokio::test]
async fn observations_acknowledged_over_mqtt_survive_sigkill_once_each() {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(data_dir.path());
    let datastream = create_datastream(&server).await;
    let mqtt_url = server.mqtt_url.clone().expect("the embedded broker runs");
    publish_acknowledged(&mqtt_url, &datastream, MQTT_OBSERVATIONS).await;
    server.kill_hard();

    let restarted = Server::start(data_dir.path());
    let count = count_once_created(&restarted, &datastream, MQTT_OBSERVATIONS).await;
    assert_eq!(count, MQTT_OBSERVATIONS, "after kill -9 and a restart");
    // Whatever the journal still holds is marked as created: nothing comes twice.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(count_observations(&restarted, &datastream).await, MQTT_OBSERVATIONS);
    restarted.kill_hard();

    let again = Server::start(data_dir.path());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(count_observations(&again, &datastream).await, MQTT_OBSERVATIONS, "second restart");
}

/// A journal the database has never heard of (here: the database was removed, the journal
/// kept) fed another database: nothing of it is created in the new one. It is set aside
/// (`mqtt-journal.orphaned-<seconds>`) and a new journal begun.
#[tokio::test]
async fn a_journal_that_fed_another_database_is_set_aside_not_replayed() {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(data_dir.path());
    let datastream = create_datastream(&server).await;
    let mqtt_url = server.mqtt_url.clone().expect("the embedded broker runs");
    publish_acknowledged(&mqtt_url, &datastream, 200).await;
    server.kill_hard();
    for file in ["stela.db", "stela.db-wal", "stela.db-shm"] {
        let _ = std::fs::remove_file(data_dir.path().join(file));
    }

    let fresh = Server::start(data_dir.path());
    // The same ids again, in a database that never saw the journal.
    assert_eq!(create_datastream(&fresh).await, datastream);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(count_observations(&fresh, &datastream).await, 0, "replayed into another database");
    let names: Vec<String> = std::fs::read_dir(data_dir.path())
        .expect("list the data directory")
        .map(|entry| entry.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().any(|name| name == "mqtt-journal"), "{names:?}");
    assert!(names.iter().any(|name| name.starts_with("mqtt-journal.orphaned-")), "{names:?}");
    assert!(fresh.stderr().contains("fed another database"), "{}", fresh.stderr());
}
