//! Receiving updates (A.8): every topic form, payloads equal to HTTP's JSON.

use rumqttc::{QoS, SubscribeReasonCode};
use serde_json::json;

use crate::support::{Peer, TestServer, observation};

#[tokio::test]
async fn set_topic_delivers_new_entities_exactly_as_http_renders_them() {
    let server = TestServer::start().await;
    let mut peer = Peer::connect(&server, "set-topic").await;
    assert_eq!(
        peer.subscribe("v1.1/Things", QoS::AtLeastOnce).await,
        SubscribeReasonCode::Success(QoS::AtLeastOnce)
    );

    let fixture = server.fixture().await;
    let (topic, payload) = peer.message().await;
    assert_eq!(topic, "v1.1/Things");
    assert_eq!(payload, server.get(&format!("Things({})", fixture.thing)).await);
    assert!(
        payload["Datastreams@iot.navigationLink"]
            .as_str()
            .is_some_and(|link| link.starts_with(&server.http))
    );
    // One Thing was created (with its Location and Datastream): one message.
    peer.assert_quiet().await;
}

#[tokio::test]
async fn entity_topic_delivers_every_update() {
    let server = TestServer::start().await;
    let fixture = server.fixture().await;
    let mut peer = Peer::connect(&server, "entity-topic").await;
    peer.subscribe(&format!("v1.1/Things({})", fixture.thing), QoS::AtMostOnce).await;

    server
        .patch(
            &format!("Things({})", fixture.thing),
            &json!({"description": "moved to the garden"}),
        )
        .await;
    let (topic, payload) = peer.message().await;
    assert_eq!(topic, format!("v1.1/Things({})", fixture.thing));
    assert_eq!(payload["description"], "moved to the garden");
    assert_eq!(payload, server.get(&format!("Things({})", fixture.thing)).await);

    // Other entities of the set are not this topic's business.
    let other = server.post("Things", &json!({"name": "other", "description": "x"})).await;
    server.patch(&format!("Things({other})"), &json!({"name": "renamed"})).await;
    peer.assert_quiet().await;
}

#[tokio::test]
async fn property_topic_delivers_only_changes_of_that_property() {
    let server = TestServer::start().await;
    let fixture = server.fixture().await;
    let mut peer = Peer::connect(&server, "property-topic").await;
    let topic = format!("v1.1/Things({})/name", fixture.thing);
    peer.subscribe(&topic, QoS::AtLeastOnce).await;

    server
        .patch(
            &format!("Things({})", fixture.thing),
            &json!({"description": "only the description"}),
        )
        .await;
    server.patch(&format!("Things({})", fixture.thing), &json!({"name": "weather station"})).await;
    peer.assert_quiet().await;

    server.patch(&format!("Things({})", fixture.thing), &json!({"name": "roof station"})).await;
    let (received_topic, payload) = peer.message().await;
    assert_eq!(received_topic, topic);
    assert_eq!(payload, json!({"name": "roof station"}));
    assert_eq!(payload, server.get(&format!("Things({})/name", fixture.thing)).await);
}

#[tokio::test]
async fn navigation_topic_delivers_new_related_entities_only() {
    let server = TestServer::start().await;
    let fixture = server.fixture().await;
    let other = server.second_datastream(&fixture).await;
    let mut peer = Peer::connect(&server, "navigation-topic").await;
    let topic = format!("v1.1/Datastreams({})/Observations", fixture.datastream);
    peer.subscribe(&topic, QoS::AtLeastOnce).await;
    let mut deep = Peer::connect(&server, "deep-navigation-topic").await;
    let deep_topic =
        format!("v1.1/Things({})/Datastreams({})/Observations", fixture.thing, fixture.datastream);
    deep.subscribe(&deep_topic, QoS::AtMostOnce).await;

    server.post(&format!("Datastreams({other})/Observations"), &observation(55.0)).await;
    let id = server
        .post(&format!("Datastreams({})/Observations", fixture.datastream), &observation(21.5))
        .await;

    let (received_topic, payload) = peer.message().await;
    assert_eq!(received_topic, topic);
    let expected = server.get(&format!("Observations({id})")).await;
    assert_eq!(payload, expected);
    peer.assert_quiet().await;
    let (received_topic, payload) = deep.message().await;
    assert_eq!(received_topic, deep_topic);
    assert_eq!(payload, expected);
    deep.assert_quiet().await;
}

#[tokio::test]
async fn select_topics_deliver_the_selected_members() {
    let server = TestServer::start().await;
    let fixture = server.fixture().await;
    let mut peer = Peer::connect(&server, "select-topic").await;
    let set_topic = "v1.1/Observations?$select=result,phenomenonTime";
    let nav_topic =
        format!("v1.1/Datastreams({})/Observations?$select=id,result", fixture.datastream);
    peer.subscribe(set_topic, QoS::AtLeastOnce).await;
    peer.subscribe(&nav_topic, QoS::AtLeastOnce).await;

    let id = server
        .post(&format!("Datastreams({})/Observations", fixture.datastream), &observation(7.25))
        .await;
    let mut received = [peer.message().await, peer.message().await];
    received.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(received[0].0, nav_topic);
    assert_eq!(received[0].1, server.get(&format!("Observations({id})?$select=id,result")).await);
    assert_eq!(received[1].0, set_topic);
    assert_eq!(received[1].1, json!({"phenomenonTime": "2024-05-01T12:00:00Z", "result": 7.25}));
    assert_eq!(
        received[1].1,
        server.get(&format!("Observations({id})?$select=result,phenomenonTime")).await
    );
}

#[tokio::test]
async fn v1_0_topics_carry_v1_0_links() {
    let server = TestServer::start().await;
    let fixture = server.fixture().await;
    let mut peer = Peer::connect(&server, "v10-topic").await;
    peer.subscribe("v1.0/Observations", QoS::AtLeastOnce).await;
    peer.subscribe("v1.1/Observations", QoS::AtLeastOnce).await;

    let id = server
        .post(&format!("Datastreams({})/Observations", fixture.datastream), &observation(1.0))
        .await;
    let mut received = [peer.message().await, peer.message().await];
    received.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(received[0].0, "v1.0/Observations");
    assert_eq!(
        received[0].1,
        server.get_url(&format!("{}/v1.0/Observations({id})", server.http)).await
    );
    assert!(
        received[0].1["@iot.selfLink"]
            .as_str()
            .is_some_and(|link| link.contains("/v1.0/Observations("))
    );
    assert_eq!(received[1].0, "v1.1/Observations");
    assert_eq!(received[1].1, server.get(&format!("Observations({id})")).await);
}

#[tokio::test]
async fn unsubscribe_stops_notifications_and_invalid_topics_are_refused() {
    let server = TestServer::start().await;
    let fixture = server.fixture().await;
    let mut peer = Peer::connect(&server, "unsubscribe").await;
    for refused in [
        "v1.1/#",
        "v1.1/+/Observations",
        "sensors/temperature",
        "v1.1/Thingz",
        "v1.1/Things?$filter=id eq 1",
    ] {
        assert_eq!(
            peer.subscribe(refused, QoS::AtMostOnce).await,
            SubscribeReasonCode::Failure,
            "{refused}"
        );
    }
    assert_eq!(server.count(|m| &m.rejected), 5);

    peer.subscribe("v1.1/Observations", QoS::AtMostOnce).await;
    server
        .post(&format!("Datastreams({})/Observations", fixture.datastream), &observation(1.0))
        .await;
    peer.message().await;
    peer.unsubscribe("v1.1/Observations").await;
    server
        .post(&format!("Datastreams({})/Observations", fixture.datastream), &observation(2.0))
        .await;
    peer.assert_quiet().await;
    assert_eq!(server.health().await["mqtt"]["topics"], 0);
}

#[tokio::test]
async fn server_settings_advertise_the_mqtt_endpoint() {
    let server = TestServer::start().await;
    let root = server.get_url(&format!("{}/v1.1", server.http)).await;
    let settings = &root["serverSettings"];
    let endpoint = json!([format!("mqtt://127.0.0.1:{}", server.mqtt_port)]);
    for class in [
        "http://www.opengis.net/spec/iot_sensing/1.1/req/create-observations-via-mqtt/observations-creation",
        "http://www.opengis.net/spec/iot_sensing/1.1/req/receive-updates-via-mqtt/receive-updates",
    ] {
        assert!(
            settings["conformance"].as_array().is_some_and(|list| list.contains(&json!(class))),
            "{class}"
        );
        assert_eq!(settings[class]["endpoints"], endpoint);
    }
}
