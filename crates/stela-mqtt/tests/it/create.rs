//! Creating Observations over MQTT (A.7), checked over HTTP; invalid messages.

use rumqttc::QoS;
use serde_json::json;

use crate::support::{Peer, TestServer, observation};

#[tokio::test]
async fn observations_published_on_each_create_topic_are_created() {
    let server = TestServer::start().await;
    let fixture = server.fixture().await;
    let feature = server
        .post(
            "FeaturesOfInterest",
            &json!({
                "name": "garden", "description": "the garden", "encodingType": "application/geo+json",
                "feature": {"type": "Point", "coordinates": [7.2, 50.8]}
            }),
        )
        .await;
    let device = Peer::connect(&server, "device").await;
    let mut with_datastream = observation(1.5);
    with_datastream["Datastream"] = json!({"@iot.id": fixture.datastream});
    device.publish("v1.1/Observations", QoS::AtLeastOnce, with_datastream.to_string()).await;
    device
        .publish(
            &format!("v1.1/Datastreams({})/Observations", fixture.datastream),
            QoS::AtMostOnce,
            observation(2.5).to_string(),
        )
        .await;
    let mut with_feature = observation(3.5);
    with_feature["Datastream"] = json!({"@iot.id": fixture.datastream});
    device
        .publish(
            &format!("v1.1/FeaturesOfInterest({feature})/Observations"),
            QoS::AtLeastOnce,
            with_feature.to_string(),
        )
        .await;
    device
        .publish(
            &format!("v1.0/Datastreams({})/Observations", fixture.datastream),
            QoS::AtLeastOnce,
            observation(4.5).to_string(),
        )
        .await;
    server.wait_for("four Observations", |m| stela_mqtt::Metrics::get(&m.created) == 4).await;

    let listed = server
        .get(&format!(
            "Datastreams({})/Observations?$orderby=result&$select=result",
            fixture.datastream
        ))
        .await;
    assert_eq!(
        listed["value"],
        json!([{"result": 1.5}, {"result": 2.5}, {"result": 3.5}, {"result": 4.5}])
    );
    let of_feature =
        server.get(&format!("FeaturesOfInterest({feature})/Observations?$select=result")).await;
    assert_eq!(of_feature["value"], json!([{"result": 3.5}]));
    // The server rules of HTTP apply: the others got a FeatureOfInterest from the Location.
    let generated = server
        .get(&format!(
            "Datastreams({})/Observations?$filter=result eq 2.5&$expand=FeatureOfInterest",
            fixture.datastream
        ))
        .await;
    assert_eq!(
        generated["value"][0]["FeatureOfInterest"]["feature"],
        json!({"type": "Point", "coordinates": [7.1, 50.7]})
    );
    assert_eq!(server.count(|m| &m.messages_in), 4);
    assert_eq!(server.count(|m| &m.rejected), 0);
}

#[tokio::test]
async fn observations_created_over_mqtt_are_notified_to_subscribers() {
    let server = TestServer::start().await;
    let fixture = server.fixture().await;
    let mut subscriber = Peer::connect(&server, "dashboard").await;
    let topic = format!("v1.1/Datastreams({})/Observations", fixture.datastream);
    subscriber.subscribe(&topic, QoS::AtLeastOnce).await;
    let device = Peer::connect(&server, "device").await;
    device.publish(&topic, QoS::AtLeastOnce, observation(19.0).to_string()).await;

    let (received_topic, payload) = subscriber.message().await;
    assert_eq!(received_topic, topic);
    assert_eq!(payload["result"], 19.0);
    let id = payload["@iot.id"].as_i64().expect("an id");
    assert_eq!(payload, server.get(&format!("Observations({id})")).await);
    // The device's own message is not echoed as such: only the created entity is published.
    subscriber.assert_quiet().await;
}

#[tokio::test]
async fn invalid_messages_are_rejected_counted_and_the_broker_keeps_serving() {
    let server = TestServer::start().await;
    let fixture = server.fixture().await;
    let device = Peer::connect(&server, "sloppy-device").await;
    let on_datastream = format!("v1.1/Datastreams({})/Observations", fixture.datastream);
    let invalid: [(&str, &[u8]); 7] = [
        (on_datastream.as_str(), b"not json at all"),
        (on_datastream.as_str(), b"[1, 2, 3]"),
        (on_datastream.as_str(), br#"{"phenomenonTime": "2024-05-01T12:00:00Z"}"#),
        (on_datastream.as_str(), br#"{"result": 1, "phenomenonTime": "yesterday"}"#),
        ("v1.1/Datastreams(999)/Observations", br#"{"result": 1}"#),
        ("v1.1/Things", br#"{"name": "a", "description": "b"}"#),
        ("devices/42/temperature", b"21.5"),
    ];
    for (topic, payload) in invalid {
        device.publish(topic, QoS::AtLeastOnce, payload.to_vec()).await;
    }
    device.publish(&on_datastream, QoS::AtLeastOnce, observation(8.0).to_string()).await;
    server
        .wait_for("one creation and seven rejections", |m| {
            stela_mqtt::Metrics::get(&m.created) == 1 && stela_mqtt::Metrics::get(&m.rejected) == 7
        })
        .await;
    let listed = server
        .get(&format!("Datastreams({})/Observations?$select=result", fixture.datastream))
        .await;
    assert_eq!(listed["value"], json!([{"result": 8.0}]));
    assert_eq!(server.get("Things?$count=true&$top=0").await["@iot.count"], 1);

    // The same connection still works.
    device.publish(&on_datastream, QoS::AtMostOnce, observation(9.0).to_string()).await;
    server.wait_for("the second creation", |m| stela_mqtt::Metrics::get(&m.created) == 2).await;
    let health = server.health().await;
    assert_eq!(health["mqtt"]["rejected"], 7);
    assert_eq!(health["mqtt"]["observations_created"], 2);
    assert_eq!(health["mqtt"]["messages_in"], 9);
    assert_eq!(health["status"], "ok");
}

/// A journal directory that cannot be created (here a file is in the way) is reported, and the
/// broker goes on acknowledging each create after its commit.
#[tokio::test]
async fn a_journal_that_cannot_be_opened_leaves_creates_acknowledged_after_their_commit() {
    let in_the_way = tempfile::NamedTempFile::new().expect("temp file");
    let path = in_the_way.path().join("mqtt-journal");
    let server = TestServer::start_with(
        move |options| options.journal_dir = Some(path),
        std::sync::Arc::new(stela_mqtt::AllowAll),
    )
    .await;
    let fixture = server.fixture().await;
    let device = Peer::connect(&server, "device").await;
    let topic = format!("v1.1/Datastreams({})/Observations", fixture.datastream);
    device.publish(&topic, QoS::AtLeastOnce, observation(1.0).to_string()).await;
    server.wait_for("the Observation", |m| stela_mqtt::Metrics::get(&m.created) == 1).await;
    assert_eq!(server.count(|m| &m.journaled), 0);
    assert_eq!(server.count(|m| &m.rejected), 0);
}
