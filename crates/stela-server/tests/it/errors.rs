//! Bad input: each case gets its status and a JSON body naming the problem; nothing is written.

use reqwest::{Method, StatusCode};
use serde_json::json;
use stela_server::ServerOptions;
use stela_service::ServiceOptions;

use crate::support::{TestServer, seed_graph};

#[tokio::test]
async fn bad_bodies_are_400_naming_the_field() {
    let server = TestServer::start().await;
    let g = seed_graph(&server, "e").await;
    let obs_path = format!("Datastreams({})/Observations", g.datastream);
    let cases: Vec<(String, String, &str)> = vec![
        ("Things".into(), "{\"name\": \"x\",".into(), "malformed JSON"),
        ("Things".into(), "[1, 2]".into(), "expected a JSON object"),
        ("Things".into(), json!({"name": "x"}).to_string(), "missing mandatory property 'description' of Thing"),
        ("Things".into(), json!({"name": "x", "description": "d", "size": 3}).to_string(), "unknown property 'size' of Thing (at /size)"),
        ("Things".into(), json!({"name": 1, "description": "d"}).to_string(), "'name' must be a string (at /name)"),
        ("Things".into(), json!({"name": "x", "description": "d", "properties": [1]}).to_string(), "'properties' must be a JSON object"),
        ("Things".into(), json!({"name": "x", "description": "d", "Datastreams": {}}).to_string(), "'Datastreams' must be an array"),
        (
            "Locations".into(),
            json!({"name": "l", "description": "d", "encodingType": "application/geo+json", "location": {"type": "Pointy", "coordinates": [1, 2]}}).to_string(),
            "'location' is not valid GeoJSON",
        ),
        (obs_path.clone(), json!({"result": 1, "phenomenonTime": "yesterday"}).to_string(), "'phenomenonTime': 'yesterday' is not an ISO 8601"),
        (obs_path.clone(), json!({"result": 1, "resultTime": "2020-01-01T00:00:00Z/2019-01-01T00:00:00Z"}).to_string(), "'resultTime': '2020-01-01T00:00:00Z/2019-01-01T00:00:00Z' is not an ISO 8601 date-time"),
        (obs_path.clone(), json!({"phenomenonTime": "2020-01-01T00:00:00Z"}).to_string(), "missing mandatory property 'result' of Observation"),
        (obs_path.clone(), json!({"result": 1, "validTime": "2020-01-02T00:00:00Z/2020-01-01T00:00:00Z"}).to_string(), "ends before it starts"),
        ("Observations".into(), json!({"result": 1, "Datastream": {"@iot.id": 424242}}).to_string(), "no Datastream with id 424242"),
        ("Observations".into(), json!({"result": 1, "Datastream": {"@iot.id": "one"}}).to_string(), "'@iot.id' must be an integer"),
        ("Datastreams".into(), json!({"name": "d", "description": "d", "observationType": "x", "unitOfMeasurement": {}, "Sensor": {"@iot.id": g.sensor}, "ObservedProperty": {"@iot.id": g.observed_property}}).to_string(), "missing relation 'Thing'"),
        ("Datastreams".into(), json!({"name": "d", "description": "d", "observationType": "x", "unitOfMeasurement": {}, "Thing": {"@iot.id": g.thing}, "ObservedProperty": {"@iot.id": g.observed_property}}).to_string(), "missing relation 'Sensor'"),
        ("Datastreams".into(), json!({"name": "d", "description": "d", "observationType": "x", "unitOfMeasurement": {}, "Thing": {"@iot.id": g.thing}, "Sensor": {"@iot.id": g.sensor}}).to_string(), "missing relation 'ObservedProperty'"),
    ];
    for (path, body, expected) in cases {
        let reply = server
            .send(Method::POST, &path, Some("application/json"), Some(body.clone().into_bytes()))
            .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{path} {body}: {}", reply.text);
        assert_eq!(reply.json["code"], json!(400));
        let message = reply.json["message"].as_str().unwrap_or_default();
        assert!(message.contains(expected), "{path} {body}: expected '{expected}' in '{message}'");
    }
    assert_eq!(server.ids("Things").await, [g.thing]);
    assert_eq!(server.ids("Locations").await, [g.location]);
    assert_eq!(server.ids("Datastreams").await, [g.datastream]);
    assert_eq!(server.ids("Observations").await, Vec::<i64>::new());
}

#[tokio::test]
async fn media_type_method_and_size_errors() {
    let server = TestServer::start_with(
        ServiceOptions::default(),
        ServerOptions { max_body_bytes: 1024, public_url: None, ..ServerOptions::default() },
    )
    .await;
    let reply = server.send(Method::POST, "Things", Some("text/plain"), Some(b"{}".to_vec())).await;
    assert_eq!(reply.status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{}", reply.text);
    assert_eq!(reply.json["code"], json!(415));
    let reply = server
        .send(
            Method::POST,
            "Things",
            Some("application/x-www-form-urlencoded"),
            Some(b"a=b".to_vec()),
        )
        .await;
    assert_eq!(reply.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let big = json!({"name": "x".repeat(2000), "description": "d"}).to_string();
    let reply =
        server.send(Method::POST, "Things", Some("application/json"), Some(big.into_bytes())).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", reply.text);
    assert_eq!(reply.json["code"], json!(413));
    let id = server.create("Things", json!({"name": "t", "description": "d"})).await;
    for (method, path) in [
        (Method::POST, format!("Things({id})")),
        (Method::PATCH, "Things".to_string()),
        (Method::PUT, "Things".to_string()),
        (Method::DELETE, "Things".to_string()),
        (Method::DELETE, format!("Things({id})/name")),
        (Method::OPTIONS, format!("Things({id})")),
    ] {
        let reply = server
            .send(method.clone(), &path, Some("application/json"), Some(b"{}".to_vec()))
            .await;
        assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}: {}", reply.text);
        assert_eq!(reply.json["code"], json!(405));
    }
    let reply = server
        .send(Method::POST, &server.root.clone(), Some("application/json"), Some(b"{}".to_vec()))
        .await;
    assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(server.ids("Things").await, [id]);
}

#[tokio::test]
async fn bad_queries_are_400_with_a_position() {
    let server = TestServer::start().await;
    seed_graph(&server, "q").await;
    let cases = [
        ("Things?$top=-1", "$top"),
        ("Things?$top=abc", "$top"),
        ("Things?$count=yes", "$count"),
        ("Things?$filter=name eq 'a' and (", "$filter"),
        ("Things?$filter=name eq 'unterminated", "$filter"),
        ("Things?$filter=colour eq 'red'", "no property or relation 'colour'"),
        ("Things?$orderby=colour", "no property or relation 'colour'"),
        ("Things?$select=colour", "no property or relation 'colour'"),
        ("Things?$expand=Sensors", "no relation 'Sensors'"),
        ("Things?$filter=name eq 1", "cannot be compared"),
        ("Observations?$filter=phenomenonTime gt 'x'", "date-time literal"),
    ];
    for (path, expected) in cases {
        let reply = server.get(path).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{path}: {}", reply.text);
        let message = reply.json["message"].as_str().unwrap_or_default();
        assert!(message.contains(expected), "{path}: expected '{expected}' in '{message}'");
    }
    let reply = server.get("Things?$filter=name eq 'a' and (").await;
    let message = reply.json["message"].as_str().unwrap();
    assert!(message.contains(" at "), "the message names a position: {message}");
    let reply = server.get("Things?$unknownoption=1").await;
    assert!(
        reply.status == StatusCode::BAD_REQUEST || reply.status == StatusCode::NOT_IMPLEMENTED,
        "{}",
        reply.text
    );
}

#[tokio::test]
async fn numbers_the_log_cannot_hold_exactly_are_400() {
    let server = TestServer::start().await;
    let g = seed_graph(&server, "big").await;
    let reply = server
        .send(
            Method::POST,
            &format!("Datastreams({})/Observations", g.datastream),
            Some("application/json"),
            Some(br#"{"result": 9007199254740993}"#.to_vec()),
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.text);
    assert!(
        reply.json["message"].as_str().unwrap().contains("cannot be logged exactly"),
        "{}",
        reply.text
    );
    assert_eq!(server.ids("Observations").await, Vec::<i64>::new());
}
