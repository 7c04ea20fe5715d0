//! MultiDatastream: array-valued Observations with ordered ObservedProperties.

use reqwest::StatusCode;
use serde_json::{Value as Json, json};

use crate::support::{TestServer, observed_property, seed_graph, sensor};

fn multi_datastream(thing: i64, sensor_id: i64, properties: Json) -> Json {
    json!({
        "name": "weather", "description": "temperature and humidity",
        "unitOfMeasurements": [
            {"name": "degree Celsius", "symbol": "degC", "definition": "ucum:Cel"},
            {"name": "percent", "symbol": "%", "definition": "ucum:%"}
        ],
        "multiObservationDataTypes": [
            "http://www.opengis.net/def/observationType/OGC-OM/2.0/OM_Measurement",
            "http://www.opengis.net/def/observationType/OGC-OM/2.0/OM_Measurement"
        ],
        "Thing": {"@iot.id": thing}, "Sensor": {"@iot.id": sensor_id},
        "ObservedProperties": properties
    })
}

#[tokio::test]
async fn create_read_and_validate() {
    let server = TestServer::start().await;
    let g = seed_graph(&server, "md").await;
    let humidity = server.create("ObservedProperties", observed_property("humidity")).await;
    // Linked in this order: humidity (newer id) first, then the temperature property.
    let body = multi_datastream(
        g.thing,
        g.sensor,
        json!([{"@iot.id": humidity}, {"@iot.id": g.observed_property}]),
    );
    let md = server.create("MultiDatastreams", body.clone()).await;
    let json = server.get_ok(&format!("MultiDatastreams({md})")).await;
    assert_eq!(
        json["observationType"],
        json!("http://www.opengis.net/def/observationType/OGC-OM/2.0/OM_ComplexObservation")
    );
    assert_eq!(json["unitOfMeasurements"][1]["symbol"], json!("%"));
    for relation in ["Thing", "Sensor", "ObservedProperties", "Observations"] {
        assert!(json[format!("{relation}@iot.navigationLink")].is_string(), "{relation}");
    }
    assert_eq!(server.ids(&format!("Things({})/MultiDatastreams", g.thing)).await, [md]);
    assert_eq!(server.ids(&format!("Sensors({})/MultiDatastreams", g.sensor)).await, [md]);
    assert_eq!(server.ids(&format!("ObservedProperties({humidity})/MultiDatastreams")).await, [md]);
    // The ObservedProperties come in the order of the result arrays, not by id.
    let ops = server.get_ok(&format!("MultiDatastreams({md})/ObservedProperties")).await;
    let order: Vec<i64> =
        ops["value"].as_array().unwrap().iter().map(|o| o["@iot.id"].as_i64().unwrap()).collect();
    assert_eq!(order, [humidity, g.observed_property]);
    let expanded = server
        .get_ok(&format!("MultiDatastreams({md})?$expand=ObservedProperties($select=name)"))
        .await;
    assert_eq!(expanded["ObservedProperties"], json!([{"name": "humidity"}, {"name": "md op"}]));

    // Arrays that do not match the ObservedProperties, or a wrong observationType.
    let mut bad = body.clone();
    bad["unitOfMeasurements"] = json!([{"name": "x", "symbol": "x", "definition": "x"}]);
    let reply = server.post("MultiDatastreams", bad).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.text);
    assert!(
        reply.json["message"].as_str().unwrap().contains(
            "'unitOfMeasurements' has 1 items but the MultiDatastream has 2 ObservedProperties"
        ),
        "{}",
        reply.text
    );
    let mut bad = body.clone();
    bad["observationType"] =
        json!("http://www.opengis.net/def/observationType/OGC-OM/2.0/OM_Measurement");
    assert_eq!(server.post("MultiDatastreams", bad).await.status, StatusCode::BAD_REQUEST);
    let mut bad = body.clone();
    bad["ObservedProperties"] = json!([]);
    assert_eq!(server.post("MultiDatastreams", bad).await.status, StatusCode::BAD_REQUEST);
    assert_eq!(server.ids("MultiDatastreams").await, [md]);

    // Observations: array results of the right length, one parent only.
    let path = format!("MultiDatastreams({md})/Observations");
    let obs = server
        .create(&path, json!({"result": [21.5, 60], "phenomenonTime": "2020-01-01T00:00:00Z"}))
        .await;
    assert_eq!(
        server.get_ok(&format!("Observations({obs})/MultiDatastream")).await["@iot.id"],
        json!(md)
    );
    assert_eq!(
        server.get(&format!("Observations({obs})/Datastream")).await.status,
        StatusCode::NOT_FOUND
    );
    for (result, expected) in [(json!([1]), "has 1 values"), (json!(3), "an array of 2 values")] {
        let reply = server.post(&path, json!({"result": result})).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.text);
        assert!(reply.json["message"].as_str().unwrap().contains(expected), "{}", reply.text);
    }
    let reply = server
        .post("Observations", json!({"result": [1, 2], "Datastream": {"@iot.id": g.datastream}, "MultiDatastream": {"@iot.id": md}}))
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(reply.json["message"].as_str().unwrap().contains("not both"), "{}", reply.text);
    let reply = server.patch(&format!("Observations({obs})"), json!({"result": [1, 2, 3]})).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.text);
    let md_json = server.get_ok(&format!("MultiDatastreams({md})")).await;
    assert_eq!(md_json["phenomenonTime"], json!("2020-01-01T00:00:00Z/2020-01-01T00:00:00Z"));
    let filtered = server.get_ok("Observations?$filter=MultiDatastream/name eq 'weather'").await;
    assert_eq!(filtered["value"].as_array().unwrap().len(), 1);
    let filtered = server.get_ok("Observations?$filter=result/1 eq 60").await;
    assert_eq!(filtered["value"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn deep_insert_and_cascades() {
    let server = TestServer::start().await;
    let g = seed_graph(&server, "cascade").await;
    let mut body = multi_datastream(
        g.thing,
        g.sensor,
        json!([observed_property("a"), observed_property("b")]),
    );
    body["Sensor"] = sensor("new sensor");
    body["Observations"] = json!([{"result": [1, 2]}, {"result": [3, 4]}]);
    let md = server.create("MultiDatastreams", body.clone()).await;
    let observations = server.ids(&format!("MultiDatastreams({md})/Observations")).await;
    assert_eq!(observations.len(), 2);
    let ops = server.ids(&format!("MultiDatastreams({md})/ObservedProperties")).await;
    // Deleting one of its ObservedProperties deletes the MultiDatastream and its Observations.
    assert_eq!(
        server.delete(&format!("ObservedProperties({})", ops[0])).await.status,
        StatusCode::OK
    );
    assert_eq!(server.get(&format!("MultiDatastreams({md})")).await.status, StatusCode::NOT_FOUND);
    assert_eq!(
        server.get(&format!("Observations({})", observations[0])).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(server.get(&format!("ObservedProperties({})", ops[1])).await.status, StatusCode::OK);

    let reply = server
        .post(
            "MultiDatastreams",
            multi_datastream(g.thing, g.sensor, json!([{"@iot.id": g.observed_property}])),
        )
        .await;
    assert_eq!(
        reply.status,
        StatusCode::BAD_REQUEST,
        "2 units for 1 ObservedProperty: {}",
        reply.text
    );
    let md = server
        .create("MultiDatastreams", {
            let mut b = multi_datastream(
                g.thing,
                g.sensor,
                json!([{"@iot.id": g.observed_property}, observed_property("c")]),
            );
            b["Observations"] = json!([{"result": [5, 6]}]);
            b
        })
        .await;
    assert_eq!(server.delete(&format!("Sensors({})", g.sensor)).await.status, StatusCode::OK);
    assert_eq!(server.get(&format!("MultiDatastreams({md})")).await.status, StatusCode::NOT_FOUND);

    let g = seed_graph(&server, "thing").await;
    let md = server
        .create(
            "MultiDatastreams",
            multi_datastream(
                g.thing,
                g.sensor,
                json!([{"@iot.id": g.observed_property}, observed_property("d")]),
            ),
        )
        .await;
    let obs = server
        .create(&format!("MultiDatastreams({md})/Observations"), json!({"result": [1, 1]}))
        .await;
    assert_eq!(server.delete(&format!("Things({})", g.thing)).await.status, StatusCode::OK);
    assert_eq!(server.get(&format!("MultiDatastreams({md})")).await.status, StatusCode::NOT_FOUND);
    assert_eq!(server.get(&format!("Observations({obs})")).await.status, StatusCode::NOT_FOUND);
}
