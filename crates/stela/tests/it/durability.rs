//! Durability: every Observation acknowledged with 201 survives `kill -9` and a restart.

use serde_json::{Value, json};

use crate::support::{Server, created_key, http_client, key_of};

/// How many Observations are posted, one request each, before the hard kill.
const OBSERVATIONS: u64 = 200;

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

#[tokio::test]
async fn acknowledged_observations_survive_sigkill() {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let client = http_client();
    let server = Server::start(data_dir.path());

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
    let datastream = key_of(&datastreams["value"][0]["@iot.id"]);

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
