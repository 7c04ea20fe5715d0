//! Create: POST, linking, deep insert, and the server's rules for FeaturesOfInterest,
//! HistoricalLocations and Datastream extents.

use reqwest::StatusCode;
use serde_json::json;

use crate::support::{
    TestServer, datastream, location, observed_property, seed_graph, sensor, thing,
};

#[tokio::test]
async fn create_each_type_and_link_by_id() {
    let server = TestServer::start().await;
    let thing_id = server.create("Things", thing("t")).await;
    let sensor_id = server.create("Sensors", sensor("s")).await;
    let op_id = server.create("ObservedProperties", observed_property("op")).await;
    let mut ds = datastream("ds");
    ds["Thing"] = json!({"@iot.id": thing_id});
    ds["Sensor"] = json!({"@iot.id": sensor_id});
    ds["ObservedProperty"] = json!({"@iot.id": op_id});
    let ds_id = server.create("Datastreams", ds).await;
    let foi = server
        .create(
            "FeaturesOfInterest",
            json!({"name": "f", "description": "d", "encodingType": "application/geo+json",
            "feature": {"type": "Point", "coordinates": [1.0, 2.0]}}),
        )
        .await;
    let obs = server
        .create("Observations", json!({"result": "high", "resultTime": "2020-01-01T10:00:00.5+02:00",
            "Datastream": {"@iot.id": ds_id}, "FeatureOfInterest": {"@iot.id": foi},
            "parameters": {"battery": 0.9}, "resultQuality": ["ok"], "validTime": "2020-01-01T00:00:00Z/2020-01-02T00:00:00Z"}))
        .await;
    let json = server.get_ok(&format!("Observations({obs})")).await;
    assert_eq!(json["result"], json!("high"));
    assert_eq!(json["resultTime"], json!("2020-01-01T08:00:00.500Z"));
    assert_eq!(json["validTime"], json!("2020-01-01T00:00:00Z/2020-01-02T00:00:00Z"));
    assert_eq!(json["parameters"], json!({"battery": 0.9}));
    assert_eq!(json["resultQuality"], json!(["ok"]));
    assert!(json["phenomenonTime"].is_string(), "phenomenonTime defaults to the server time");
    assert_eq!(
        server.get_ok(&format!("Observations({obs})/FeatureOfInterest")).await["@iot.id"],
        json!(foi)
    );
    let ds_json = server.get_ok(&format!("Datastreams({ds_id})")).await;
    assert_eq!(ds_json["resultTime"], json!("2020-01-01T08:00:00.500Z/2020-01-01T08:00:00.500Z"));
}

#[tokio::test]
async fn results_of_every_json_type_round_trip() {
    let server = TestServer::start().await;
    let g = seed_graph(&server, "r").await;
    for result in [
        json!(true),
        json!("text"),
        json!(42),
        json!(-1.25),
        json!({"a": [1, 2]}),
        json!([1, "x"]),
        json!(null),
        json!(12345678901234_i64),
    ] {
        let id = server
            .create(
                &format!("Datastreams({})/Observations", g.datastream),
                json!({"result": result}),
            )
            .await;
        assert_eq!(server.get_ok(&format!("Observations({id})")).await["result"], result);
    }
}

#[tokio::test]
async fn deep_insert_creates_everything_and_links_it() {
    let server = TestServer::start().await;
    let g = seed_graph(&server, "deep").await;
    let ds = server
        .get_ok(&format!("Datastreams({})?$expand=Thing,Sensor,ObservedProperty", g.datastream))
        .await;
    assert_eq!(ds["Thing"]["name"], json!("deep"));
    assert_eq!(ds["Sensor"]["name"], json!("deep sensor"));
    assert_eq!(ds["ObservedProperty"]["name"], json!("deep op"));
    // Linking Locations to a Thing created a HistoricalLocation.
    let hl =
        server.get_ok(&format!("Things({})/HistoricalLocations?$expand=Locations", g.thing)).await;
    assert_eq!(hl["value"].as_array().unwrap().len(), 1);
    assert_eq!(hl["value"][0]["Locations"][0]["@iot.id"], json!(g.location));

    // An Observation with a nested Datastream with nested everything.
    let mut nested_ds = datastream("nested");
    nested_ds["Thing"] = json!({"@iot.id": g.thing});
    nested_ds["Sensor"] = sensor("nested sensor");
    nested_ds["ObservedProperty"] = json!({"@iot.id": g.observed_property});
    let obs = server
        .create("Observations", json!({"result": 3, "Datastream": nested_ds,
            "FeatureOfInterest": {"name": "f", "description": "d", "encodingType": "application/geo+json",
                                  "feature": {"type": "Point", "coordinates": [3.0, 4.0]}}}))
        .await;
    let back = server
        .get_ok(&format!(
            "Observations({obs})?$expand=Datastream($expand=Sensor),FeatureOfInterest"
        ))
        .await;
    assert_eq!(back["Datastream"]["name"], json!("nested"));
    assert_eq!(back["Datastream"]["Sensor"]["name"], json!("nested sensor"));
    assert_eq!(
        back["FeatureOfInterest"]["feature"],
        json!({"type": "Point", "coordinates": [3.0, 4.0]})
    );
}

#[tokio::test]
async fn failed_deep_insert_writes_nothing() {
    let server = TestServer::start().await;
    let mut body = thing("t");
    body["Locations"] = json!([location("l", 1.0, 2.0)]);
    let mut ds = datastream("ds");
    ds["Sensor"] = sensor("s");
    // The ObservedProperty is missing its definition.
    ds["ObservedProperty"] = json!({"name": "op", "description": "d"});
    body["Datastreams"] = json!([ds]);
    let reply = server.post("Things", body.clone()).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.text);
    assert!(reply.json["message"].as_str().unwrap().contains("definition"), "{}", reply.text);
    // A Datastream linking a Sensor that does not exist fails in the store, after the Thing
    // and Location rows were written: the transaction must roll them back.
    body["Datastreams"][0]["ObservedProperty"] = observed_property("op");
    body["Datastreams"][0]["Sensor"] = json!({"@iot.id": 999});
    let reply = server.post("Things", body).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.text);
    for set in [
        "Things",
        "Locations",
        "HistoricalLocations",
        "Datastreams",
        "Sensors",
        "ObservedProperties",
    ] {
        assert_eq!(server.ids(set).await, Vec::<i64>::new(), "{set} must be empty");
    }
}

#[tokio::test]
async fn post_to_a_navigation_collection_links_implicitly() {
    let server = TestServer::start().await;
    let g = seed_graph(&server, "nav").await;
    let mut ds = datastream("second");
    ds["Sensor"] = json!({"@iot.id": g.sensor});
    ds["ObservedProperty"] = json!({"@iot.id": g.observed_property});
    let ds2 = server.create(&format!("Things({})/Datastreams", g.thing), ds).await;
    assert_eq!(
        server.get_ok(&format!("Datastreams({ds2})/Thing")).await["@iot.id"],
        json!(g.thing)
    );
    let obs = server
        .create(
            &format!("Things({})/Datastreams({ds2})/Observations", g.thing),
            json!({"result": 5}),
        )
        .await;
    assert_eq!(
        server.get_ok(&format!("Observations({obs})/Datastream")).await["@iot.id"],
        json!(ds2)
    );
    // A Datastream of another Thing in the path is an error, and nothing is created.
    let other = seed_graph(&server, "other").await;
    let reply = server
        .post(
            &format!("Things({})/Datastreams({})/Observations", g.thing, other.datastream),
            json!({"result": 1}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND, "{}", reply.text);
    assert_eq!(server.ids("Observations").await, [obs]);
}

#[tokio::test]
async fn feature_of_interest_is_generated_from_the_location_and_reused() {
    let server = TestServer::start().await;
    let g = seed_graph(&server, "foi").await;
    let path = format!("Datastreams({})/Observations", g.datastream);
    let first = server.create(&path, json!({"result": 1})).await;
    let second = server.create(&path, json!({"result": 2})).await;
    let foi1 = server.get_ok(&format!("Observations({first})/FeatureOfInterest")).await;
    let foi2 = server.get_ok(&format!("Observations({second})/FeatureOfInterest")).await;
    assert_eq!(foi1["@iot.id"], foi2["@iot.id"]);
    assert_eq!(foi1["feature"], json!({"type": "Point", "coordinates": [8.0, 50.0]}));
    assert_eq!(server.ids("FeaturesOfInterest").await.len(), 1);
    // The Location moves: a new feature is generated.
    let reply = server
        .patch(
            &format!("Locations({})", g.location),
            json!({"location": {"type": "Point", "coordinates": [9.0, 51.0]}}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let third = server.create(&path, json!({"result": 3})).await;
    let foi3 = server.get_ok(&format!("Observations({third})/FeatureOfInterest")).await;
    assert_ne!(foi3["@iot.id"], foi1["@iot.id"]);
    assert_eq!(foi3["feature"], json!({"type": "Point", "coordinates": [9.0, 51.0]}));
    // A deleted generated feature is generated again.
    assert_eq!(
        server.delete(&format!("FeaturesOfInterest({})", foi3["@iot.id"])).await.status,
        StatusCode::OK
    );
    let fourth = server.create(&path, json!({"result": 4})).await;
    assert!(
        server.get_ok(&format!("Observations({fourth})/FeatureOfInterest")).await["@iot.id"]
            .is_i64()
    );
}

#[tokio::test]
async fn observation_without_feature_or_location_is_rejected() {
    let server = TestServer::start().await;
    let mut body = thing("no place");
    let mut ds = datastream("ds");
    ds["Sensor"] = sensor("s");
    ds["ObservedProperty"] = observed_property("op");
    body["Datastreams"] = json!([ds]);
    let thing_id = server.create("Things", body).await;
    let ds_id = server.ids(&format!("Things({thing_id})/Datastreams")).await[0];
    let reply =
        server.post(&format!("Datastreams({ds_id})/Observations"), json!({"result": 1})).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(reply.json["message"].as_str().unwrap().contains("no Location"), "{}", reply.text);
    let reply = server.post("Observations", json!({"result": 1})).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(reply.json["message"].as_str().unwrap().contains("Datastream"), "{}", reply.text);
    assert_eq!(server.ids("Observations").await, Vec::<i64>::new());
}

#[tokio::test]
async fn historical_locations_follow_the_things_locations() {
    let server = TestServer::start().await;
    let g = seed_graph(&server, "hl").await;
    let before = server.ids(&format!("Things({})/HistoricalLocations", g.thing)).await;
    assert_eq!(before.len(), 1);
    // A new Location posted under the Thing becomes its Location, with a HistoricalLocation.
    let new_location =
        server.create(&format!("Things({})/Locations", g.thing), location("new", 1.0, 1.0)).await;
    assert_eq!(server.ids(&format!("Things({})/Locations", g.thing)).await, [new_location]);
    assert_eq!(server.ids(&format!("Things({})/HistoricalLocations", g.thing)).await.len(), 2);

    // A HistoricalLocation by hand with a later time moves the Thing; an older one does not.
    let hl = server
        .create("HistoricalLocations", json!({"time": "2100-01-01T00:00:00Z", "Thing": {"@iot.id": g.thing}, "Locations": [{"@iot.id": g.location}]}))
        .await;
    assert_eq!(server.ids(&format!("Things({})/Locations", g.thing)).await, [g.location]);
    assert_eq!(server.ids(&format!("HistoricalLocations({hl})/Locations")).await, [g.location]);
    server
        .create("HistoricalLocations", json!({"time": "2000-01-01T00:00:00Z", "Thing": {"@iot.id": g.thing}, "Locations": [{"@iot.id": new_location}]}))
        .await;
    assert_eq!(server.ids(&format!("Things({})/Locations", g.thing)).await, [g.location]);

    // PATCHing a Thing's Locations replaces them and records the move.
    let count = server.ids(&format!("Things({})/HistoricalLocations", g.thing)).await.len();
    let reply = server
        .patch(&format!("Things({})", g.thing), json!({"Locations": [{"@iot.id": new_location}]}))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(server.ids(&format!("Things({})/Locations", g.thing)).await, [new_location]);
    assert_eq!(
        server.ids(&format!("Things({})/HistoricalLocations", g.thing)).await.len(),
        count + 1
    );
}

#[tokio::test]
async fn a_thing_with_two_locations_keeps_both() {
    let server = TestServer::start().await;
    let mut body = thing("two");
    body["Locations"] = json!([location("a", 1.0, 1.0), location("b", 2.0, 2.0)]);
    let id = server.create("Things", body).await;
    assert_eq!(server.ids(&format!("Things({id})/Locations")).await.len(), 2);
    let hl = server.get_ok(&format!("Things({id})/HistoricalLocations?$expand=Locations")).await;
    assert_eq!(hl["value"].as_array().unwrap().len(), 1);
    assert_eq!(hl["value"][0]["Locations"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn datastream_extents_follow_observations() {
    let server = TestServer::start().await;
    let g = seed_graph(&server, "ext").await;
    let path = format!("Datastreams({})/Observations", g.datastream);
    server.create(&path, json!({"result": 1, "phenomenonTime": "2020-01-02T00:00:00Z", "resultTime": "2020-01-02T00:00:01Z"})).await;
    let last = server
        .create(
            &path,
            json!({"result": 2, "phenomenonTime": "2020-01-03T00:00:00Z/2020-01-04T00:00:00Z"}),
        )
        .await;
    let ds = server.get_ok(&format!("Datastreams({})", g.datastream)).await;
    assert_eq!(ds["phenomenonTime"], json!("2020-01-02T00:00:00Z/2020-01-04T00:00:00Z"));
    assert_eq!(ds["resultTime"], json!("2020-01-02T00:00:01Z/2020-01-02T00:00:01Z"));
    assert_eq!(server.delete(&format!("Observations({last})")).await.status, StatusCode::OK);
    let ds = server.get_ok(&format!("Datastreams({})", g.datastream)).await;
    assert_eq!(ds["phenomenonTime"], json!("2020-01-02T00:00:00Z/2020-01-02T00:00:00Z"));
}

/// The position of the FeatureOfInterest a new Observation of `g`'s Datastream gets, created
/// through the bulk path (`CreateObservations`, as MQTT batches are) or by a single POST.
async fn generated_position(server: &TestServer, datastream: i64, bulk: bool) -> serde_json::Value {
    let obs = if bulk {
        let reply = server
            .post(
                "CreateObservations",
                json!([{"Datastream": {"@iot.id": datastream}, "components": ["result"],
                        "dataArray": [[1]]}]),
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
        let link = reply.json[0].as_str().expect("a link to the Observation");
        let id = link.rsplit_once('(').and_then(|(_, id)| id.strip_suffix(')')).expect("id");
        id.parse::<i64>().expect("a number")
    } else {
        server
            .create(&format!("Datastreams({datastream})/Observations"), json!({"result": 1}))
            .await
    };
    server.get_ok(&format!("Observations({obs})/FeatureOfInterest")).await["feature"]["coordinates"]
        .clone()
}

/// The generated Feature of a Datastream is remembered from one write to the next (the
/// writer's cache); every change of what it depends on must make the next Observation look
/// again.
#[tokio::test]
async fn generated_feature_follows_every_move_across_transactions() {
    let server = TestServer::start().await;
    let g = seed_graph(&server, "moves").await;
    let other = seed_graph(&server, "other").await;
    let ds = g.datastream;
    for bulk in [false, true] {
        assert_eq!(generated_position(&server, ds, bulk).await, json!([8.0, 50.0]));
    }
    // The other Thing moves; this Datastream goes over to it.
    let far = server.create("Locations", location("far", 3.0, 4.0)).await;
    let reply = server
        .patch(&format!("Things({})", other.thing), json!({"Locations": [{"@iot.id": far}]}))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let reply = server
        .patch(&format!("Datastreams({ds})"), json!({"Thing": {"@iot.id": other.thing}}))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(generated_position(&server, ds, true).await, json!([3.0, 4.0]));
    // Back to the first Thing by a relink: a new Thing taking the Datastream over.
    let mut body = thing("taker");
    body["Locations"] = json!([location("taker place", 5.0, 6.0)]);
    body["Datastreams"] = json!([{"@iot.id": ds}]);
    let taker = server.create("Things", body).await;
    assert_eq!(generated_position(&server, ds, true).await, json!([5.0, 6.0]));
    // A Location posted under the Thing.
    server.create(&format!("Things({taker})/Locations"), location("posted", 7.0, 8.0)).await;
    assert_eq!(generated_position(&server, ds, false).await, json!([7.0, 8.0]));
    // A HistoricalLocation by hand, the Thing's latest.
    server
        .create(
            "HistoricalLocations",
            json!({"time": "2100-01-01T00:00:00Z", "Thing": {"@iot.id": taker},
                   "Locations": [{"@iot.id": far}]}),
        )
        .await;
    assert_eq!(generated_position(&server, ds, true).await, json!([3.0, 4.0]));
    // The Location moves.
    let reply = server
        .patch(
            &format!("Locations({far})"),
            json!({"location": {"type": "Point", "coordinates": [9.0, 9.5]}}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(generated_position(&server, ds, true).await, json!([9.0, 9.5]));
    // The generated Feature is deleted (with its Observations).
    let feature = server
        .get_ok(&format!(
            "Datastreams({ds})/Observations?$top=1&$orderby=id desc&$expand=FeatureOfInterest"
        ))
        .await["value"][0]["FeatureOfInterest"]["@iot.id"]
        .as_i64()
        .expect("id");
    assert_eq!(
        server.delete(&format!("FeaturesOfInterest({feature})")).await.status,
        StatusCode::OK
    );
    assert_eq!(generated_position(&server, ds, true).await, json!([9.0, 9.5]));
    // The Location is deleted: nothing to generate a Feature from any more.
    assert_eq!(server.delete(&format!("Locations({far})")).await.status, StatusCode::OK);
    let reply = server.post(&format!("Datastreams({ds})/Observations"), json!({"result": 1})).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.text);
    assert!(reply.json["message"].as_str().unwrap().contains("no Location"), "{}", reply.text);
}

async fn observed_area(server: &TestServer, datastream: i64) -> serde_json::Value {
    server.get_ok(&format!("Datastreams({datastream})")).await["observedArea"].clone()
}

/// The observed area is widened from positions the writer remembers as inside it; a Feature
/// that moves, or one outside the area, must still change it in later transactions.
#[tokio::test]
async fn observed_area_follows_features_across_transactions() {
    let server = TestServer::start().await;
    let g = seed_graph(&server, "area").await;
    let ds = g.datastream;
    for bulk in [false, true, true] {
        generated_position(&server, ds, bulk).await;
    }
    assert_eq!(
        observed_area(&server, ds).await,
        json!({"type": "Point", "coordinates": [8.0, 50.0]})
    );
    let feature = |x: f64, y: f64| {
        json!({"name": "f", "description": "d", "encodingType": "application/geo+json",
               "feature": {"type": "Point", "coordinates": [x, y]}})
    };
    let outside = server.create("FeaturesOfInterest", feature(10.0, 50.0)).await;
    let observe = |feature: i64| {
        json!([{"Datastream": {"@iot.id": ds}, "components": ["result", "FeatureOfInterest/id"],
                "dataArray": [[1, feature]]}])
    };
    let reply = server.post("CreateObservations", observe(outside)).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    assert_eq!(
        observed_area(&server, ds).await,
        json!({"type": "Polygon", "coordinates": [[[8.0, 50.0], [10.0, 50.0], [8.0, 50.0]]]})
    );
    // The Feature moves away: the area is recomputed, and new Observations of it (now
    // remembered as inside) keep it.
    let reply = server
        .patch(
            &format!("FeaturesOfInterest({outside})"),
            json!({"feature": {"type": "Point", "coordinates": [8.0, 52.0]}}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let moved = observed_area(&server, ds).await;
    assert_eq!(
        moved,
        json!({"type": "Polygon", "coordinates": [[[8.0, 50.0], [8.0, 52.0], [8.0, 50.0]]]})
    );
    let reply = server.post("CreateObservations", observe(outside)).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    assert_eq!(observed_area(&server, ds).await, moved);
    // A third position outside: the area grows again.
    let third = server.create("FeaturesOfInterest", feature(9.0, 51.0)).await;
    let reply = server.post("CreateObservations", observe(third)).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    assert_eq!(observed_area(&server, ds).await["type"], json!("Polygon"));
    assert_ne!(observed_area(&server, ds).await, moved);
}
