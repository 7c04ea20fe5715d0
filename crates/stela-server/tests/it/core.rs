//! Sensing core: service root, entities with their control information, resource paths.

use reqwest::StatusCode;
use serde_json::json;

use crate::support::{CORE_SETS, TestServer, seed_graph};

#[tokio::test]
async fn service_roots_list_every_entity_set() {
    let server = TestServer::start().await;
    for version in ["v1.1", "v1.0"] {
        let root = server.root.replace("v1.1", version);
        let json = server.get_ok(&root).await;
        let names: Vec<&str> =
            json["value"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
        assert_eq!(
            names,
            [
                "Things",
                "Locations",
                "HistoricalLocations",
                "Datastreams",
                "Sensors",
                "ObservedProperties",
                "Observations",
                "FeaturesOfInterest",
                "MultiDatastreams"
            ]
        );
        for set in json["value"].as_array().unwrap() {
            assert_eq!(set["url"], json!(format!("{root}/{}", set["name"].as_str().unwrap())));
        }
    }
    let json = server.get_ok(&server.root).await;
    let conformance = json["serverSettings"]["conformance"].as_array().unwrap();
    assert!(
        conformance.contains(&json!("http://www.opengis.net/spec/iot_sensing/1.1/req/datamodel"))
    );
    assert!(
        conformance.contains(&json!(
            "http://www.opengis.net/spec/iot_sensing/1.1/req/create-update-delete"
        ))
    );
}

#[tokio::test]
async fn every_entity_has_its_properties_and_control_information() {
    let server = TestServer::start().await;
    let graph = seed_graph(&server, "t1").await;
    server
        .create(
            &format!("Datastreams({})/Observations", graph.datastream),
            json!({"result": 21.5, "phenomenonTime": "2015-03-01T00:00:00Z"}),
        )
        .await;
    let expectations: [(&str, &[&str], &[&str]); 8] = [
        (
            "Things",
            &["name", "description", "properties"],
            &["Locations", "HistoricalLocations", "Datastreams"],
        ),
        (
            "Locations",
            &["name", "description", "encodingType", "location"],
            &["Things", "HistoricalLocations"],
        ),
        ("HistoricalLocations", &["time"], &["Thing", "Locations"]),
        (
            "Datastreams",
            &[
                "name",
                "description",
                "unitOfMeasurement",
                "observationType",
                "phenomenonTime",
                "observedArea",
            ],
            &["Thing", "Sensor", "ObservedProperty", "Observations"],
        ),
        ("Sensors", &["name", "description", "encodingType", "metadata"], &["Datastreams"]),
        ("ObservedProperties", &["name", "definition", "description"], &["Datastreams"]),
        (
            "Observations",
            &["phenomenonTime", "result", "resultTime"],
            &["Datastream", "FeatureOfInterest"],
        ),
        (
            "FeaturesOfInterest",
            &["name", "description", "encodingType", "feature"],
            &["Observations"],
        ),
    ];
    for (set, properties, relations) in expectations {
        let json = server.get_ok(set).await;
        let entities = json["value"].as_array().unwrap();
        assert_eq!(entities.len(), 1, "{set}: {json}");
        let entity = &entities[0];
        let id = entity["@iot.id"].as_i64().unwrap();
        assert_eq!(entity["@iot.selfLink"], json!(format!("{}/{set}({id})", server.root)));
        for property in properties {
            assert!(entity.get(*property).is_some(), "{set} lacks {property}: {entity}");
        }
        for relation in relations {
            assert_eq!(
                entity[format!("{relation}@iot.navigationLink")],
                json!(format!("{}/{set}({id})/{relation}", server.root)),
                "{set}"
            );
        }
        assert_eq!(&server.get_ok(&format!("{set}({id})")).await, entity);
    }
    let observation = &server.get_ok("Observations").await["value"][0];
    assert_eq!(observation["resultTime"], json!(null));
    assert_eq!(observation["result"], json!(21.5));
    assert_eq!(observation["phenomenonTime"], json!("2015-03-01T00:00:00Z"));
    let ds = server.get_ok(&format!("Datastreams({})", graph.datastream)).await;
    assert_eq!(ds["phenomenonTime"], json!("2015-03-01T00:00:00Z/2015-03-01T00:00:00Z"));
    assert_eq!(ds["observedArea"], json!({"type": "Point", "coordinates": [8.0, 50.0]}));
}

#[tokio::test]
async fn navigation_paths_of_any_depth() {
    let server = TestServer::start().await;
    let g = seed_graph(&server, "a").await;
    let other = seed_graph(&server, "b").await;
    let obs = server
        .create(&format!("Datastreams({})/Observations", g.datastream), json!({"result": 1}))
        .await;
    assert_eq!(server.ids(&format!("Things({})/Datastreams", g.thing)).await, [g.datastream]);
    assert_eq!(
        server.get_ok(&format!("Datastreams({})/Thing", g.datastream)).await["@iot.id"],
        json!(g.thing)
    );
    assert_eq!(
        server
            .ids(&format!("Things({})/Datastreams({})/Observations", g.thing, g.datastream))
            .await,
        [obs]
    );
    assert_eq!(
        server
            .get_ok(&format!("Observations({obs})/Datastream/Thing/Locations({})", g.location))
            .await["@iot.id"],
        json!(g.location)
    );
    assert_eq!(
        server
            .ids(&format!("Sensors({})/Datastreams({})/Thing/Datastreams", g.sensor, g.datastream))
            .await,
        [g.datastream]
    );
    // An id that exists but is not related as the path says.
    let reply = server
        .get(&format!("Things({})/Datastreams({})/Observations", g.thing, other.datastream))
        .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND, "{}", reply.text);
    assert!(reply.json["message"].as_str().unwrap().contains("related to Thing"), "{}", reply.text);
}

#[tokio::test]
async fn properties_values_and_refs() {
    let server = TestServer::start().await;
    let g = seed_graph(&server, "p").await;
    assert_eq!(server.get_ok(&format!("Things({})/name", g.thing)).await, json!({"name": "p"}));
    let reply = server.get(&format!("Things({})/name/$value", g.thing)).await;
    assert_eq!((reply.status, reply.text.as_str()), (StatusCode::OK, "p"));
    let reply = server.get(&format!("Locations({})/location/$value", g.location)).await;
    assert_eq!(reply.json, json!({"type": "Point", "coordinates": [8.0, 50.0]}));
    assert!(reply.text.starts_with('{'));
    let reply =
        server.get(&format!("Datastreams({})/unitOfMeasurement/$value", g.datastream)).await;
    assert!(reply.text.starts_with('{'), "{}", reply.text);
    let refs = server.get_ok(&format!("Things({})/Datastreams/$ref", g.thing)).await;
    assert_eq!(
        refs,
        json!({"value": [{"@iot.selfLink": format!("{}/Datastreams({})", server.root, g.datastream)}]})
    );
    let one = server.get_ok(&format!("Datastreams({})/Sensor/$ref", g.datastream)).await;
    assert_eq!(one, json!({"@iot.selfLink": format!("{}/Sensors({})", server.root, g.sensor)}));
    let all = server.get_ok("Things/$ref").await;
    assert_eq!(all["value"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn missing_things_are_404_with_a_json_body() {
    let server = TestServer::start().await;
    for set in CORE_SETS {
        let reply = server.get(&format!("{set}(9223372036854775807)")).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{set}");
        assert_eq!(reply.json["code"], json!(404));
        assert!(reply.json["message"].is_string());
    }
    for path in ["Thingz", "Things(1)/Sensor", "Things(abc)"] {
        let reply = server.get(path).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{path}: {}", reply.text);
        assert_eq!(reply.json["code"], json!(404), "{path}");
    }
    let reply = server.get(&server.root.replace("v1.1", "v2.0")).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
}
