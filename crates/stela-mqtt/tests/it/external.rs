//! External broker mode against a real Mosquitto.
//!
//! Run only when `STELA_TEST_MQTT_URL` names a broker (e.g. `mqtt://127.0.0.1:1883`); skipped
//! with a note otherwise. The restart test starts its own `mosquitto` on a free port (the
//! binary is looked up as `STELA_TEST_MOSQUITTO`, then on PATH, then `/usr/sbin/mosquitto`).

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rumqttc::{AsyncClient, MqttOptions, QoS};
use serde_json::{Value as Json, json};
use stela_mqtt::{Metrics, parse_broker_url};

use crate::support::{Peer, TestServer, WAIT, observation};

/// The broker under test, or `None` (with a printed note) when the tests are not configured.
fn broker_url(test: &str) -> Option<String> {
    match std::env::var("STELA_TEST_MQTT_URL") {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            eprintln!(
                "note: {test} skipped; set STELA_TEST_MQTT_URL=mqtt://127.0.0.1:1883 to run it against Mosquitto"
            );
            None
        }
    }
}

/// A name no other run uses (shared subscription group, client ids).
fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    format!("{prefix}-{}-{nanos}", std::process::id())
}

async fn wait_for_state(server: &TestServer, state: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let health = server.health().await;
        if health["mqtt"]["state"] == state {
            return;
        }
        assert!(Instant::now() < deadline, "the bridge did not become {state}: {health}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Messages on `topic` until one carries a self link (a notification, not a device's create
/// request, which travels on the same topic).
async fn notification(peer: &mut Peer, topic: &str) -> Json {
    loop {
        let (received, payload) = peer.message().await;
        if received == topic && payload.get("@iot.selfLink").is_some() {
            return payload;
        }
    }
}

#[tokio::test]
async fn external_broker_carries_creates_and_notifications() {
    let Some(url) = broker_url("external_broker_carries_creates_and_notifications") else { return };
    let (host, port) = parse_broker_url(&url).expect("STELA_TEST_MQTT_URL is mqtt://host:port");
    let group = unique("stela-test");
    let server = TestServer::start_bridge(&url, |options| {
        options.client_id = unique("stela-bridge");
        options.shared_group = Some(group.clone());
    })
    .await;
    wait_for_state(&server, "connected").await;
    let fixture = server.fixture().await;

    let on_datastream = format!("v1.1/Datastreams({})/Observations", fixture.datastream);
    let mut dashboard =
        Peer::connect_to(&host, port, &unique("dashboard"), None).await.expect("connect");
    dashboard.subscribe(&on_datastream, QoS::AtLeastOnce).await;
    let device = Peer::connect_to(&host, port, &unique("device"), None).await.expect("connect");
    device.publish(&on_datastream, QoS::AtLeastOnce, observation(12.5).to_string()).await;

    server
        .wait_for("the Observation published on the broker", |m| Metrics::get(&m.created) == 1)
        .await;
    let listed = server
        .get(&format!("Datastreams({})/Observations?$select=result", fixture.datastream))
        .await;
    assert_eq!(listed["value"], json!([{"result": 12.5}]));
    let payload = notification(&mut dashboard, &on_datastream).await;
    let id = payload["@iot.id"].as_i64().expect("id");
    assert_eq!(payload, server.get(&format!("Observations({id})")).await);

    // Changes made over HTTP are published on the broker too, and are not created again.
    let second = server.post(&on_datastream["v1.1/".len()..], &observation(13.5)).await;
    let payload = notification(&mut dashboard, &on_datastream).await;
    assert_eq!(payload, server.get(&format!("Observations({second})")).await);
    // Invalid messages on the broker are rejected and counted; nothing is created.
    device.publish(&on_datastream, QoS::AtLeastOnce, b"not json".to_vec()).await;
    server.wait_for("the rejection", |m| Metrics::get(&m.rejected) == 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(server.count(|m| &m.created), 1);
    let health = server.health().await;
    assert_eq!(health["mqtt"]["mode"], "external");
    assert_eq!(health["mqtt"]["endpoint"], url);
    assert_eq!(health["status"], "ok");
}

/// The `mosquitto` executable.
fn mosquitto_binary() -> String {
    if let Ok(path) = std::env::var("STELA_TEST_MOSQUITTO")
        && !path.is_empty()
    {
        return path;
    }
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join("mosquitto"))
        .find(|candidate| candidate.is_file());
    match on_path {
        Some(path) => path.display().to_string(),
        None => "/usr/sbin/mosquitto".to_owned(),
    }
}

/// A Mosquitto of this test's own on `port`.
struct OwnBroker {
    child: Child,
}

impl OwnBroker {
    async fn start(port: u16) -> OwnBroker {
        let binary = mosquitto_binary();
        let child = Command::new(&binary)
            .arg("-p")
            .arg(port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| {
                panic!("cannot start {binary} (set STELA_TEST_MOSQUITTO): {error}")
            });
        let deadline = Instant::now() + WAIT;
        while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            assert!(Instant::now() < deadline, "mosquitto did not listen on {port}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        OwnBroker { child }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for OwnBroker {
    fn drop(&mut self) {
        self.kill();
    }
}

#[tokio::test]
async fn external_broker_restart_during_publishing_is_survived() {
    if broker_url("external_broker_restart_during_publishing_is_survived").is_none() {
        return;
    }
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
        probe.local_addr().expect("address").port()
    };
    let mut broker = OwnBroker::start(port).await;
    let url = format!("mqtt://127.0.0.1:{port}");
    let server = TestServer::start_bridge(&url, |options| {
        options.reconnect_delay = Duration::from_millis(200);
    })
    .await;
    wait_for_state(&server, "connected").await;
    let fixture = server.fixture().await;

    // A device that publishes every 20 ms throughout, reconnecting like real devices do.
    let running = Arc::new(AtomicBool::new(true));
    let mut options = MqttOptions::new("restart-device", "127.0.0.1", port);
    options.set_keep_alive(Duration::from_secs(5));
    let (device, mut eventloop) = AsyncClient::new(options, 64);
    let device_loop = tokio::spawn(async move {
        loop {
            if eventloop.poll().await.is_err() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    });
    let topic = format!("v1.1/Datastreams({})/Observations", fixture.datastream);
    let publisher = {
        let running = Arc::clone(&running);
        tokio::spawn(async move {
            let mut value = 0.0;
            while running.load(Ordering::Relaxed) {
                value += 1.0;
                let _ = device.try_publish(
                    topic.as_str(),
                    QoS::AtMostOnce,
                    false,
                    observation(value).to_string(),
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };

    server.wait_for("Observations before the restart", |m| Metrics::get(&m.created) >= 5).await;
    broker.kill();
    wait_for_state(&server, "reconnecting").await;
    // HTTP keeps working while the broker is away.
    server
        .post(&format!("Datastreams({})/Observations", fixture.datastream), &observation(-1.0))
        .await;
    let before_restart = server.count(|m| &m.created);

    let _broker = OwnBroker::start(port).await;
    wait_for_state(&server, "connected").await;
    assert_eq!(server.health().await["mqtt"]["reconnects"], 1);
    server
        .wait_for("Observations after the restart", |m| {
            Metrics::get(&m.created) >= before_restart + 5
        })
        .await;
    running.store(false, Ordering::Relaxed);
    let _ = publisher.await;
    device_loop.abort();
}
