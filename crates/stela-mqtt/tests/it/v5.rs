//! MQTT 5 clients (rumqttc's v5 client): accepted, told in the CONNACK what the broker does not
//! do, and told why a message or a subscription is refused (reason codes and reason strings),
//! where MQTT 3.1.1 can only acknowledge and log.

use std::time::Duration;

use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{
    ConnAck, ConnectReturnCode, Filter, Packet, PubAck, PubAckReason, Publish, SubAck,
    SubscribeReasonCode, UnsubAckReason,
};
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use serde_json::{Value as Json, json};
use stela_mqtt::Metrics;
use tokio::sync::mpsc;

use crate::support::{TestServer, WAIT, observation};

/// An MQTT 5 client and what its event loop received.
struct Peer5 {
    client: AsyncClient,
    incoming: mpsc::UnboundedReceiver<Result<Packet, String>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Peer5 {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Peer5 {
    /// Connects as `client_id` (empty: the broker assigns one) with `configure`d options.
    async fn connect(
        server: &TestServer,
        client_id: &str,
        configure: impl FnOnce(&mut MqttOptions),
    ) -> (Peer5, ConnAck) {
        let mut options = MqttOptions::new(client_id, "127.0.0.1", server.mqtt_port);
        options.set_keep_alive(Duration::from_secs(30));
        configure(&mut options);
        let (client, mut eventloop) = AsyncClient::new(options, 64);
        let (sender, incoming) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                let event = match eventloop.poll().await {
                    Ok(Event::Incoming(packet)) => Ok(packet),
                    Ok(Event::Outgoing(_)) => continue,
                    Err(error) => Err(error.to_string()),
                };
                let failed = event.is_err();
                if sender.send(event).is_err() || failed {
                    return;
                }
            }
        });
        let mut peer = Peer5 { client, incoming, task };
        match peer.next().await {
            Packet::ConnAck(ack) => (peer, ack),
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    async fn next(&mut self) -> Packet {
        match tokio::time::timeout(WAIT, self.incoming.recv()).await {
            Ok(Some(Ok(packet))) => packet,
            Ok(Some(Err(error))) => panic!("mqtt 5 client failed: {error}"),
            Ok(None) => panic!("mqtt 5 event loop ended"),
            Err(_) => panic!("no packet within {WAIT:?}"),
        }
    }

    async fn suback(&mut self) -> SubAck {
        match self.next().await {
            Packet::SubAck(ack) => ack,
            other => panic!("expected SUBACK, got {other:?}"),
        }
    }

    /// Publishes at QoS 1 and returns the PUBACK, and a notification that came before it.
    async fn publish(
        &mut self,
        topic: &str,
        payload: impl Into<Vec<u8>>,
    ) -> (PubAck, Vec<Publish>) {
        let payload: Vec<u8> = payload.into();
        self.client.publish(topic, QoS::AtLeastOnce, false, payload).await.expect("queue PUBLISH");
        let mut notifications = Vec::new();
        loop {
            match self.next().await {
                Packet::PubAck(ack) => return (ack, notifications),
                Packet::Publish(publish) => notifications.push(publish),
                other => panic!("expected PUBACK, got {other:?}"),
            }
        }
    }

    async fn notification(&mut self) -> (String, Json) {
        match self.next().await {
            Packet::Publish(publish) => (
                String::from_utf8(publish.topic.to_vec()).expect("UTF-8 topic"),
                serde_json::from_slice(&publish.payload).expect("JSON payload"),
            ),
            other => panic!("expected a notification, got {other:?}"),
        }
    }
}

fn reason_string(ack: &PubAck) -> String {
    ack.properties.as_ref().and_then(|p| p.reason_string.clone()).unwrap_or_default()
}

#[tokio::test]
async fn an_mqtt5_client_is_told_what_the_broker_does_not_do_and_gets_an_assigned_id() {
    let server = TestServer::start().await;
    let (_peer, connack) = Peer5::connect(&server, "", |_| {}).await;
    assert_eq!(connack.code, ConnectReturnCode::Success);
    assert!(!connack.session_present);
    let properties = connack.properties.expect("CONNACK properties");
    let assigned = properties.assigned_client_identifier.expect("an assigned client id");
    assert!(assigned.starts_with("stela-anonymous-"), "{assigned}");
    assert_eq!(properties.retain_available, Some(0));
    assert_eq!(properties.shared_subscription_available, Some(0));
    assert_eq!(properties.subscription_identifiers_available, Some(0));
    // Topic Alias Maximum left out: 0, no aliases.
    assert_eq!(properties.topic_alias_max, None);

    // A session asked to outlive the connection is told it does not.
    let (_kept, connack) = Peer5::connect(&server, "wants-a-session", |options| {
        options.set_clean_start(false);
        options.set_session_expiry_interval(Some(3600));
    })
    .await;
    assert_eq!(connack.code, ConnectReturnCode::Success);
    assert!(!connack.session_present);
    assert_eq!(connack.properties.and_then(|p| p.session_expiry_interval), Some(0));
}

#[tokio::test]
async fn an_mqtt5_client_subscribes_creates_and_is_told_why_a_message_is_refused() {
    let server = TestServer::start().await;
    let fixture = server.fixture().await;
    let on_datastream = format!("v1.1/Datastreams({})/Observations", fixture.datastream);
    let (mut peer, _) = Peer5::connect(&server, "v5-device", |_| {}).await;

    peer.client
        .subscribe_many([
            Filter::new(on_datastream.clone(), QoS::AtLeastOnce),
            Filter::new("v1.1/Nonsense", QoS::AtMostOnce),
        ])
        .await
        .expect("queue SUBSCRIBE");
    let suback = peer.suback().await;
    assert_eq!(
        suback.return_codes,
        [SubscribeReasonCode::Success(QoS::AtLeastOnce), SubscribeReasonCode::TopicFilterInvalid]
    );
    let reason = suback.properties.and_then(|p| p.reason_string).unwrap_or_default();
    assert!(reason.contains("Nonsense"), "{reason}");

    // Created, acknowledged with Success, and notified to the subscription.
    let (ack, mut notifications) =
        peer.publish(&on_datastream, observation(21.5).to_string()).await;
    assert_eq!(ack.reason, PubAckReason::Success, "{ack:?}");
    let (topic, payload) = match notifications.pop() {
        Some(publish) => (
            String::from_utf8(publish.topic.to_vec()).expect("UTF-8"),
            serde_json::from_slice::<Json>(&publish.payload).expect("JSON"),
        ),
        None => peer.notification().await,
    };
    assert_eq!(topic, on_datastream);
    assert_eq!(payload["result"], 21.5);

    // Refused before the journal: the reason code and string say why.
    let (ack, _) = peer.publish(&on_datastream, "{not json").await;
    assert_eq!(ack.reason, PubAckReason::PayloadFormatInvalid, "{ack:?}");
    assert!(reason_string(&ack).contains("not JSON"), "{ack:?}");
    let (ack, _) = peer.publish("v1.1/Things", json!({"name": "t"}).to_string()).await;
    assert_eq!(ack.reason, PubAckReason::TopicNameInvalid, "{ack:?}");
    let bad_time = json!({"result": 1, "phenomenonTime": "yesterday"});
    let (ack, _) = peer.publish(&on_datastream, bad_time.to_string()).await;
    assert_eq!(ack.reason, PubAckReason::ImplementationSpecificError, "{ack:?}");
    assert!(reason_string(&ack).contains("phenomenonTime"), "{ack:?}");
    assert_eq!(server.count(|m| &m.rejected), 3 + 1, "three messages and one subscription");

    // Refused at its commit (an unknown Datastream): acknowledged once journaled, as MQTT
    // acknowledges delivery, then counted and logged.
    let (ack, _) =
        peer.publish("v1.1/Datastreams(999999)/Observations", observation(1.0).to_string()).await;
    assert_eq!(ack.reason, PubAckReason::Success, "{ack:?}");
    server.wait_for("the refusal at the commit", |m| Metrics::get(&m.rejected) == 5).await;

    peer.client.unsubscribe(on_datastream.clone()).await.expect("queue UNSUBSCRIBE");
    match peer.next().await {
        Packet::UnsubAck(ack) => assert_eq!(ack.reasons, [UnsubAckReason::Success]),
        other => panic!("expected UNSUBACK, got {other:?}"),
    }
    peer.client.unsubscribe(on_datastream).await.expect("queue UNSUBSCRIBE");
    match peer.next().await {
        Packet::UnsubAck(ack) => assert_eq!(ack.reasons, [UnsubAckReason::NoSubscriptionExisted]),
        other => panic!("expected UNSUBACK, got {other:?}"),
    }
}

/// A notification larger than the client's Maximum Packet Size is dropped (and counted), as
/// MQTT 5 requires; smaller ones still come.
#[tokio::test]
async fn notifications_larger_than_an_mqtt5_clients_maximum_packet_size_are_dropped() {
    let server = TestServer::start().await;
    let fixture = server.fixture().await;
    let thing = format!("Things({})", fixture.thing);
    let (mut peer, _) = Peer5::connect(&server, "small-packets", |options| {
        options.set_max_packet_size(Some(2048));
    })
    .await;
    peer.client.subscribe(format!("v1.1/{thing}"), QoS::AtMostOnce).await.expect("SUBSCRIBE");
    assert_eq!(peer.suback().await.return_codes, [SubscribeReasonCode::Success(QoS::AtMostOnce)]);

    server.patch(&thing, &json!({"properties": {"blob": "x".repeat(4096)}})).await;
    server.wait_for("the dropped notification", |m| Metrics::get(&m.dropped) == 1).await;
    server.patch(&thing, &json!({"properties": {"small": true}})).await;
    let (topic, payload) = peer.notification().await;
    assert_eq!(topic, format!("v1.1/{thing}"));
    assert_eq!(payload["properties"]["small"], true);
}

/// The client's Receive Maximum bounds the QoS 1 notifications the broker keeps
/// unacknowledged with it: the next comes when one is acknowledged.
#[tokio::test]
async fn an_mqtt5_clients_receive_maximum_bounds_its_unacknowledged_notifications() {
    let server = TestServer::start().await;
    let fixture = server.fixture().await;
    let on_datastream = format!("Datastreams({})/Observations", fixture.datastream);
    let (mut peer, _) = Peer5::connect(&server, "two-at-a-time", |options| {
        options.set_receive_maximum(Some(2)).set_manual_acks(true);
    })
    .await;
    peer.client.subscribe(format!("v1.1/{on_datastream}"), QoS::AtLeastOnce).await.expect("SUB");
    assert_eq!(peer.suback().await.return_codes, [SubscribeReasonCode::Success(QoS::AtLeastOnce)]);
    for result in 0..4 {
        server.post(&on_datastream, &observation(f64::from(result))).await;
    }
    let mut unacknowledged = Vec::new();
    for _ in 0..2 {
        match peer.next().await {
            Packet::Publish(publish) => unacknowledged.push(publish),
            other => panic!("expected a notification, got {other:?}"),
        }
    }
    let quiet = tokio::time::timeout(Duration::from_millis(500), peer.incoming.recv()).await;
    assert!(quiet.is_err(), "a third notification beyond the Receive Maximum: {quiet:?}");
    peer.client.ack(&unacknowledged[0]).await.expect("queue PUBACK");
    match peer.next().await {
        Packet::Publish(publish) => {
            let payload: Json = serde_json::from_slice(&publish.payload).expect("JSON");
            assert_eq!(payload["result"], 2.0);
        }
        other => panic!("expected the third notification, got {other:?}"),
    }
}
