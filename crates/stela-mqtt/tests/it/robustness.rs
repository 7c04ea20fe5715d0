//! Slow and stalled subscribers, keep-alive, malformed packets, MQTT 5, credentials, health.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rumqttc::QoS;
use rumqttc::mqttbytes::v4::{Connect, Packet};
use serde_json::json;
use stela_mqtt::{AllowAll, Metrics, StaticCredentials};

use crate::support::{Peer, RawClient, TestServer, encode, observation};

#[tokio::test]
async fn a_stalled_subscriber_neither_blocks_writers_nor_other_subscribers() {
    let server = TestServer::start_with(
        |options| {
            options.client_queue = 4;
            options.write_timeout = Duration::from_secs(3);
        },
        Arc::new(AllowAll),
    )
    .await;
    let fixture = server.fixture().await;
    let topic = format!("v1.1/Things({})", fixture.thing);
    let mut stalled = RawClient::connect(server.mqtt_port, "stalled", 0).await;
    stalled.subscribe(&topic, QoS::AtMostOnce).await;
    let mut dashboard = Peer::connect(&server, "dashboard").await;
    dashboard.subscribe(&topic, QoS::AtLeastOnce).await;

    // 30 updates of a 256 KiB entity: far more than the stalled client's buffers hold.
    let blob = "x".repeat(256 * 1024);
    for round in 0..30 {
        let started = Instant::now();
        server
            .patch(
                &format!("Things({})", fixture.thing),
                &json!({"description": format!("round {round}"), "properties": {"blob": blob}}),
            )
            .await;
        assert!(started.elapsed() < Duration::from_secs(5), "a write waited for a subscriber");
    }
    for round in 0..30 {
        let (_, payload) = dashboard.message().await;
        assert_eq!(payload["description"], format!("round {round}"), "in order, none lost");
    }
    server.wait_for("dropped notifications", |m| Metrics::get(&m.dropped) > 0).await;
    server
        .wait_for("the stalled client's disconnection", |m| Metrics::get(&m.slow_disconnects) == 1)
        .await;
    let health = server.health().await;
    assert!(health["mqtt"]["dropped"].as_u64().is_some_and(|dropped| dropped > 0), "{health}");
    assert_eq!(health["mqtt"]["clients"], 1, "{health}");
    drop(stalled);
}

#[tokio::test]
async fn a_qos1_subscriber_that_never_acknowledges_is_disconnected() {
    let server = TestServer::start_with(
        |options| {
            options.client_queue = 32;
            options.max_inflight = 2;
        },
        Arc::new(AllowAll),
    )
    .await;
    let fixture = server.fixture().await;
    let mut silent = RawClient::connect(server.mqtt_port, "never-acks", 0).await;
    silent.subscribe("v1.1/Observations", QoS::AtLeastOnce).await;
    let mut dashboard = Peer::connect(&server, "dashboard").await;
    dashboard.subscribe("v1.1/Observations", QoS::AtLeastOnce).await;

    // Two unacknowledged, 32 queued: the 35th notification finds the queue full.
    for value in 0..40 {
        server
            .post(
                &format!("Datastreams({})/Observations", fixture.datastream),
                &observation(f64::from(value)),
            )
            .await;
    }
    for value in 0..40 {
        let (_, payload) = dashboard.message().await;
        assert_eq!(payload["result"], f64::from(value));
    }
    silent.expect_closed().await;
    assert_eq!(server.count(|m| &m.slow_disconnects), 1);
    assert_eq!(server.count(|m| &m.dropped), 0);
}

#[tokio::test]
async fn keep_alive_expiry_closes_a_silent_connection() {
    let server = TestServer::start().await;
    let mut silent = RawClient::connect(server.mqtt_port, "silent", 1).await;
    let started = Instant::now();
    silent.expect_closed().await;
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(1400),
        "closed after {elapsed:?}, before 1.5 keep-alive periods"
    );

    // A client that pings stays.
    let mut pinging = RawClient::connect(server.mqtt_port, "pinging", 1).await;
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(600)).await;
        pinging.send(&[0xC0, 0x00]).await;
        assert!(matches!(pinging.packet().await, Some(Packet::PingResp)));
    }
}

#[tokio::test]
async fn malformed_packets_close_only_their_own_connection() {
    let server = TestServer::start().await;
    let fixture = server.fixture().await;
    let mut subscriber = Peer::connect(&server, "bystander").await;
    subscriber.subscribe("v1.1/Observations", QoS::AtLeastOnce).await;

    // Not MQTT at all.
    let mut garbage = RawClient::open(server.mqtt_port).await;
    garbage.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    garbage.expect_closed().await;
    // A reserved packet type after a good CONNECT.
    let mut reserved = RawClient::connect(server.mqtt_port, "reserved", 0).await;
    reserved.send(&[0xF0, 0x00]).await;
    reserved.expect_closed().await;
    // A packet larger than the limit is refused before it is read.
    let mut huge = RawClient::connect(server.mqtt_port, "huge", 0).await;
    huge.send(&[0x30, 0xFF, 0xFF, 0xFF, 0x7F]).await;
    huge.expect_closed().await;
    // A second CONNECT.
    let mut twice = RawClient::connect(server.mqtt_port, "twice", 0).await;
    twice.send(&encode(&Packet::Connect(Connect::new("twice")))).await;
    twice.expect_closed().await;

    server
        .post(&format!("Datastreams({})/Observations", fixture.datastream), &observation(3.0))
        .await;
    let (_, payload) = subscriber.message().await;
    assert_eq!(payload["result"], 3.0);
    assert!(server.count(|m| &m.rejected) >= 4);
}

#[tokio::test]
async fn mqtt31_connects_are_refused_with_unacceptable_protocol_version() {
    let server = TestServer::start().await;
    // CONNECT, MQTT 3.1 ("MQIsdp", level 3), clean session, keep-alive 60, client id "a". (MQTT
    // 5 is spoken: see `v5`.)
    let v31: [u8; 17] =
        [0x10, 15, 0, 6, b'M', b'Q', b'I', b's', b'd', b'p', 3, 0x02, 0, 60, 0, 1, b'a'];
    let mut client = RawClient::open(server.mqtt_port).await;
    client.send(&v31).await;
    match client.packet().await {
        Some(Packet::ConnAck(ack)) => {
            assert_eq!(ack.code, rumqttc::ConnectReturnCode::RefusedProtocolVersion)
        }
        other => panic!("expected CONNACK 1, got {other:?}"),
    }
    client.expect_closed().await;
}

#[tokio::test]
async fn configured_credentials_switch_anonymous_access_off() {
    let server =
        TestServer::start_with(|_| {}, Arc::new(StaticCredentials::new("device", "s3cret"))).await;
    let port = server.mqtt_port;
    let anonymous =
        Peer::connect_to("127.0.0.1", port, "anonymous", None).await.err().expect("refused");
    assert!(anonymous.contains("BadUserNamePassword"), "{anonymous}");
    let wrong = Peer::connect_to("127.0.0.1", port, "wrong", Some(("device", "guess")))
        .await
        .err()
        .expect("refused");
    assert!(wrong.contains("BadUserNamePassword"), "{wrong}");
    let mut device = Peer::connect_to("127.0.0.1", port, "device", Some(("device", "s3cret")))
        .await
        .expect("accepted");
    assert_eq!(
        device.subscribe("v1.1/Things", QoS::AtMostOnce).await,
        rumqttc::SubscribeReasonCode::Success(QoS::AtMostOnce)
    );
    assert_eq!(server.count(|m| &m.rejected), 2);
}

#[tokio::test]
async fn health_reports_the_broker() {
    let server = TestServer::start().await;
    let _peer = Peer::connect(&server, "watcher").await;
    let health = server.health().await;
    assert_eq!(health["status"], "ok");
    let mqtt = &health["mqtt"];
    assert_eq!(mqtt["mode"], "embedded");
    assert_eq!(mqtt["state"], "running");
    assert_eq!(mqtt["endpoint"], format!("mqtt://127.0.0.1:{}", server.mqtt_port));
    assert_eq!(mqtt["clients"], 1);
    for counter in [
        "messages_in",
        "messages_out",
        "observations_created",
        "rejected",
        "dropped",
        "slow_disconnects",
        "events_lost",
    ] {
        assert_eq!(mqtt[counter], 0, "{counter}");
    }
}

#[tokio::test]
async fn a_reconnecting_client_id_takes_over_the_session() {
    let server = TestServer::start().await;
    let mut first = RawClient::connect(server.mqtt_port, "same-id", 0).await;
    let _second = RawClient::connect(server.mqtt_port, "same-id", 0).await;
    first.expect_closed().await;
    server.wait_for("one client", |m| Metrics::get(&m.clients) == 1).await;
}
