//! The DataArray extension (`$resultFormat=dataArray`, `CreateObservations`) and the GeoJSON and
//! CSV result formats.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::support::{TestServer, observed_property, seed_graph};

#[tokio::test]
async fn create_observations_in_bulk_with_per_row_errors() {
    let server = TestServer::start().await;
    let g = seed_graph(&server, "da").await;
    let humidity = server.create("ObservedProperties", observed_property("humidity")).await;
    let md = server
        .create("MultiDatastreams", json!({"name": "m", "description": "d",
            "unitOfMeasurements": [{"name": "a", "symbol": "a", "definition": "a"}, {"name": "b", "symbol": "b", "definition": "b"}],
            "multiObservationDataTypes": ["x", "y"], "Thing": {"@iot.id": g.thing}, "Sensor": {"@iot.id": g.sensor},
            "ObservedProperties": [{"@iot.id": g.observed_property}, {"@iot.id": humidity}]}))
        .await;
    let foi = server
        .create(
            "FeaturesOfInterest",
            json!({"name": "f", "description": "d", "encodingType": "application/geo+json",
            "feature": {"type": "Point", "coordinates": [1, 2]}}),
        )
        .await;
    let body = json!([
        {"Datastream": {"@iot.id": g.datastream}, "components": ["phenomenonTime", "result", "FeatureOfInterest/id"],
         "dataArray@iot.count": 3,
         "dataArray": [["2020-01-01T00:00:00Z", 20, foi], ["not a time", 21, foi], ["2020-01-01T00:02:00Z", 22, foi]]},
        {"MultiDatastream": {"@iot.id": md}, "components": ["phenomenonTime", "result"],
         "dataArray": [["2020-01-01T00:00:00Z", [1, 2]], ["2020-01-01T00:01:00Z", [1]], ["2020-01-01T00:02:00Z"]]}
    ]);
    let reply = server.post("CreateObservations", body).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    let urls = reply.json.as_array().unwrap();
    assert_eq!(urls.len(), 6);
    let errors: Vec<usize> =
        urls.iter().enumerate().filter(|(_, u)| *u == "error").map(|(i, _)| i).collect();
    assert_eq!(errors, [1, 4, 5]);
    let first = urls[0].as_str().unwrap();
    assert!(first.starts_with(&format!("{}/Observations(", server.root)), "{first}");
    assert_eq!(server.get_ok(first).await["result"], json!(20));
    assert_eq!(server.get_ok(&format!("{first}/FeatureOfInterest")).await["@iot.id"], json!(foi));
    assert_eq!(server.get_ok(urls[3].as_str().unwrap()).await["result"], json!([1, 2]));
    assert_eq!(server.ids("Observations").await.len(), 3);

    for (bad, expected) in [
        (json!({"Datastream": {"@iot.id": 1}}), "JSON array"),
        (json!([{"components": ["result"], "dataArray": []}]), "group 0: needs exactly one of"),
        (
            json!([{"Datastream": {"@iot.id": 1}, "components": ["id"], "dataArray": []}]),
            "'id' cannot be a component",
        ),
        (
            json!([{"Datastream": {"@iot.id": 1}, "components": ["result"], "dataArray@iot.count": 2, "dataArray": [[1]]}]),
            "'dataArray@iot.count' is 2",
        ),
    ] {
        let reply = server.post("CreateObservations", bad).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.text);
        assert!(reply.json["message"].as_str().unwrap().contains(expected), "{}", reply.text);
    }
    assert_eq!(server.get("CreateObservations").await.status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn read_observations_as_data_arrays() {
    let server = TestServer::start().await;
    let g = seed_graph(&server, "read").await;
    let other = seed_graph(&server, "other").await;
    for i in 0..3 {
        server
            .create(
                &format!("Datastreams({})/Observations", g.datastream),
                json!({"result": i, "phenomenonTime": format!("2020-01-01T00:0{i}:00Z")}),
            )
            .await;
    }
    server
        .create(
            &format!("Datastreams({})/Observations", other.datastream),
            json!({"result": 9, "phenomenonTime": "2020-01-02T00:00:00Z"}),
        )
        .await;
    let json = server
        .get_ok("Observations?$resultFormat=dataArray&$select=id,phenomenonTime,result&$count=true")
        .await;
    assert_eq!(json["@iot.count"], json!(4));
    let groups = json["value"].as_array().unwrap();
    assert_eq!(groups.len(), 2);
    assert_eq!(
        groups[0]["Datastream@iot.navigationLink"],
        json!(format!("{}/Datastreams({})", server.root, g.datastream))
    );
    assert_eq!(groups[0]["components"], json!(["id", "phenomenonTime", "result"]));
    assert_eq!(groups[0]["dataArray@iot.count"], json!(3));
    assert_eq!(groups[0]["dataArray"][1], json!([2, "2020-01-01T00:01:00Z", 1]));
    assert_eq!(groups[1]["dataArray"], json!([[4, "2020-01-02T00:00:00Z", 9]]));
    let json = server
        .get_ok(&format!(
            "Datastreams({})/Observations?$resultFormat=dataArray&$top=2&$select=result",
            g.datastream
        ))
        .await;
    assert_eq!(json["value"][0]["dataArray"], json!([[0], [1]]));
    let next = json["@iot.nextLink"].as_str().unwrap().to_owned();
    assert!(next.contains("$resultFormat=dataArray"), "{next}");
    assert_eq!(server.get_ok(&next).await["value"][0]["dataArray"], json!([[2]]));
    let json = server
        .get_ok("Observations?$resultFormat=dataArray&$select=result,FeatureOfInterest/id&$top=1")
        .await;
    assert!(json["value"][0]["dataArray"][0][1].is_i64());
    for bad in [
        "Things?$resultFormat=dataArray",
        "Observations?$resultFormat=dataArray&$select=name",
        "Observations?$resultFormat=XML",
    ] {
        assert_eq!(server.get(bad).await.status, StatusCode::BAD_REQUEST, "{bad}");
    }
}

#[tokio::test]
async fn geojson_and_csv() {
    let server = TestServer::start().await;
    let g = seed_graph(&server, "fmt").await;
    let reply = server.get("Locations?$resultFormat=GeoJSON").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json["type"], json!("FeatureCollection"));
    assert_eq!(
        reply.json["features"][0]["geometry"],
        json!({"type": "Point", "coordinates": [8.0, 50.0]})
    );
    assert_eq!(reply.json["features"][0]["properties"]["name"], json!("fmt place"));
    let reply = server.get("Things?$resultFormat=GeoJSON&$expand=Locations").await;
    assert_eq!(reply.json["features"][0]["geometry"]["type"], json!("Point"));
    let reply = server
        .send(Method::GET, "Things?$resultFormat=CSV&$select=id,name,properties", None, None)
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let lines: Vec<&str> = reply.text.lines().collect();
    assert_eq!(lines[0], "@iot.selfLink,@iot.id,name,properties/owner");
    assert_eq!(lines[1], format!("{}/Things({}),{},fmt,test", server.root, g.thing, g.thing));
    assert_eq!(
        server.get(&format!("Things({})?$resultFormat=CSV", g.thing)).await.status,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn a_thousand_rows_round_trip() {
    let server = TestServer::start().await;
    let g = seed_graph(&server, "round").await;
    let rows: Vec<serde_json::Value> = (0..1000)
        .map(|i| {
            json!([
                format!("2021-01-01T{:02}:{:02}:{:02}Z", i / 3600, (i / 60) % 60, i % 60),
                i as f64 / 4.0
            ])
        })
        .collect();
    let body = json!([{"Datastream": {"@iot.id": g.datastream}, "components": ["phenomenonTime", "result"],
                       "dataArray@iot.count": 1000, "dataArray": rows}]);
    let reply = server.post("CreateObservations", body).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    assert!(
        reply
            .json
            .as_array()
            .unwrap()
            .iter()
            .all(|url| url.as_str().unwrap().contains("/Observations("))
    );
    let json = server
        .get_ok(&format!(
            "Datastreams({})/Observations?$resultFormat=dataArray&$select=phenomenonTime,result&$orderby=phenomenonTime&$top=1000",
            g.datastream
        ))
        .await;
    assert_eq!(json["value"][0]["dataArray@iot.count"], json!(1000));
    assert_eq!(json["value"][0]["dataArray"], json!(rows));
}
