//! Update (PATCH, PUT, JSON Patch) and delete with the cascades of the standard.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::support::{CORE_SETS, TestServer, datastream, location, seed_graph, sensor, thing};

#[tokio::test]
async fn patch_merges_and_keeps_the_rest() {
    let server = TestServer::start().await;
    let g = seed_graph(&server, "p").await;
    let reply = server
        .patch(&format!("Things({})", g.thing), json!({"description": "new", "@iot.id": 999}))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.json["description"], json!("new"));
    assert_eq!(reply.json["name"], json!("p"));
    assert_eq!(reply.json["@iot.id"], json!(g.thing));
    let reply = server
        .patch(
            &format!("Datastreams({})", g.datastream),
            json!({"unitOfMeasurement": {"name": "K", "symbol": "K", "definition": "x"}}),
        )
        .await;
    assert_eq!(reply.json["unitOfMeasurement"]["symbol"], json!("K"));
    assert_eq!(reply.json["name"], json!("p ds"));
    let obs = server
        .create(&format!("Datastreams({})/Observations", g.datastream), json!({"result": 1}))
        .await;
    let reply = server
        .patch(&format!("Observations({obs})"), json!({"phenomenonTime": "2010-01-01T00:00:00Z"}))
        .await;
    assert_eq!(reply.json["phenomenonTime"], json!("2010-01-01T00:00:00Z"));
    assert_eq!(reply.json["result"], json!(1));
    let ds = server.get_ok(&format!("Datastreams({})", g.datastream)).await;
    assert_eq!(
        ds["phenomenonTime"],
        json!("2010-01-01T00:00:00Z/2010-01-01T00:00:00Z"),
        "extents are recomputed"
    );
    // Re-linking a to-one relation by id.
    let other_sensor = server.create("Sensors", sensor("other")).await;
    let reply = server
        .patch(
            &format!("Datastreams({})", g.datastream),
            json!({"Sensor": {"@iot.id": other_sensor}}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(
        server.get_ok(&format!("Datastreams({})/Sensor", g.datastream)).await["@iot.id"],
        json!(other_sensor)
    );
}

#[tokio::test]
async fn patch_with_inline_entities_is_rejected() {
    let server = TestServer::start().await;
    let g = seed_graph(&server, "x").await;
    let cases = [
        (format!("Things({})", g.thing), json!({"Locations": [location("l", 1.0, 1.0)]})),
        (format!("Things({})", g.thing), json!({"Datastreams": [datastream("d")]})),
        (format!("Sensors({})", g.sensor), json!({"Datastreams": [datastream("d")]})),
        (format!("Datastreams({})", g.datastream), json!({"Sensor": sensor("s")})),
        (format!("Datastreams({})", g.datastream), json!({"Thing": thing("t")})),
        (format!("Datastreams({})", g.datastream), json!({"Observations": [{"result": 1}]})),
    ];
    for (path, body) in cases {
        let reply = server.patch(&path, body.clone()).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{path} {body}: {}", reply.text);
        assert!(reply.json["message"].as_str().unwrap().contains("@iot.id"), "{}", reply.text);
    }
    assert_eq!(server.ids("Sensors").await, [g.sensor]);
    assert_eq!(server.ids("Things").await, [g.thing]);
}

#[tokio::test]
async fn put_replaces_and_requires_mandatory_properties() {
    let server = TestServer::start().await;
    let g = seed_graph(&server, "put").await;
    let reply = server.put(&format!("Things({})", g.thing), json!({"name": "only name"})).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.text);
    assert!(reply.json["message"].as_str().unwrap().contains("description"));
    let reply =
        server.put(&format!("Things({})", g.thing), json!({"name": "n", "description": "d"})).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.json["name"], json!("n"));
    assert!(
        reply.json.get("properties").is_none(),
        "PUT resets properties that were not given: {}",
        reply.json
    );
}

#[tokio::test]
async fn json_patch_edits_properties() {
    let server = TestServer::start().await;
    let g = seed_graph(&server, "jp").await;
    let patch = json!([
        {"op": "add", "path": "/properties/colour", "value": "red"},
        {"op": "copy", "from": "/properties/colour", "path": "/properties/copy"},
        {"op": "move", "from": "/properties/owner", "path": "/properties/keeper"},
        {"op": "remove", "path": "/properties/copy"}
    ]);
    let reply = server
        .send(
            Method::PATCH,
            &format!("Things({})", g.thing),
            Some("application/json-patch+json"),
            Some(patch.to_string().into_bytes()),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.json["properties"], json!({"colour": "red", "keeper": "test"}));
    let bad = json!([{"op": "remove", "path": "/properties/nothing"}]);
    let reply = server
        .send(
            Method::PATCH,
            &format!("Things({})", g.thing),
            Some("application/json-patch+json"),
            Some(bad.to_string().into_bytes()),
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.text);
    let empty = server
        .send(
            Method::PATCH,
            &format!("Things({})", g.thing),
            Some("application/json-patch+json"),
            Some(b"[]".to_vec()),
        )
        .await;
    assert_eq!(empty.status, StatusCode::OK);
}

async fn count(server: &TestServer, set: &str) -> usize {
    server.ids(set).await.len()
}

#[tokio::test]
async fn delete_cascades_as_the_standard_says() {
    let server = TestServer::start().await;
    // Thing → Datastreams (→ Observations) and HistoricalLocations; Locations, Sensors,
    // ObservedProperties and FeaturesOfInterest stay.
    let g = seed_graph(&server, "d").await;
    server
        .create(&format!("Datastreams({})/Observations", g.datastream), json!({"result": 1}))
        .await;
    let reply = server.delete(&format!("Things({})", g.thing)).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(server.get(&format!("Things({})", g.thing)).await.status, StatusCode::NOT_FOUND);
    assert_eq!(
        [
            count(&server, "Datastreams").await,
            count(&server, "Observations").await,
            count(&server, "HistoricalLocations").await
        ],
        [0, 0, 0]
    );
    assert_eq!(
        [
            count(&server, "Locations").await,
            count(&server, "Sensors").await,
            count(&server, "ObservedProperties").await,
            count(&server, "FeaturesOfInterest").await
        ],
        [1, 1, 1, 1]
    );

    // Location → its HistoricalLocations.
    let g = seed_graph(&server, "l").await;
    assert_eq!(server.delete(&format!("Locations({})", g.location)).await.status, StatusCode::OK);
    assert_eq!(
        server.ids(&format!("Things({})/HistoricalLocations", g.thing)).await,
        Vec::<i64>::new()
    );
    assert_eq!(server.ids(&format!("Things({})/Datastreams", g.thing)).await, [g.datastream]);

    // Datastream → Observations.
    let g = seed_graph(&server, "ds").await;
    let obs = server
        .create(&format!("Datastreams({})/Observations", g.datastream), json!({"result": 1}))
        .await;
    assert_eq!(
        server.delete(&format!("Datastreams({})", g.datastream)).await.status,
        StatusCode::OK
    );
    assert_eq!(server.get(&format!("Observations({obs})")).await.status, StatusCode::NOT_FOUND);
    assert_eq!(server.get(&format!("Things({})", g.thing)).await.status, StatusCode::OK);

    // Sensor → Datastreams; ObservedProperty → Datastreams.
    let g = seed_graph(&server, "s").await;
    assert_eq!(server.delete(&format!("Sensors({})", g.sensor)).await.status, StatusCode::OK);
    assert_eq!(
        server.get(&format!("Datastreams({})", g.datastream)).await.status,
        StatusCode::NOT_FOUND
    );
    let g = seed_graph(&server, "op").await;
    assert_eq!(
        server.delete(&format!("ObservedProperties({})", g.observed_property)).await.status,
        StatusCode::OK
    );
    assert_eq!(
        server.get(&format!("Datastreams({})", g.datastream)).await.status,
        StatusCode::NOT_FOUND
    );

    // FeatureOfInterest → Observations.
    let g = seed_graph(&server, "f").await;
    let obs = server
        .create(&format!("Datastreams({})/Observations", g.datastream), json!({"result": 1}))
        .await;
    let foi = server.get_ok(&format!("Observations({obs})/FeatureOfInterest")).await["@iot.id"]
        .as_i64()
        .unwrap();
    assert_eq!(server.delete(&format!("FeaturesOfInterest({foi})")).await.status, StatusCode::OK);
    assert_eq!(server.get(&format!("Observations({obs})")).await.status, StatusCode::NOT_FOUND);
    assert_eq!(server.get(&format!("Datastreams({})", g.datastream)).await.status, StatusCode::OK);

    // Observation and HistoricalLocation → nothing else.
    let g = seed_graph(&server, "o").await;
    let obs = server
        .create(&format!("Datastreams({})/Observations", g.datastream), json!({"result": 1}))
        .await;
    assert_eq!(server.delete(&format!("Observations({obs})")).await.status, StatusCode::OK);
    assert_eq!(server.get(&format!("Datastreams({})", g.datastream)).await.status, StatusCode::OK);
    let hl = server.ids(&format!("Things({})/HistoricalLocations", g.thing)).await[0];
    assert_eq!(server.delete(&format!("HistoricalLocations({hl})")).await.status, StatusCode::OK);
    assert_eq!(server.ids(&format!("Things({})/Locations", g.thing)).await, [g.location]);
}

#[tokio::test]
async fn delete_of_a_missing_entity_is_404() {
    let server = TestServer::start().await;
    for set in CORE_SETS {
        let reply = server.delete(&format!("{set}(9223372036854775807)")).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{set}");
    }
}
