//! Query options: $top, $skip, $count, $orderby, $select, $expand, $filter, next links.

use reqwest::StatusCode;
use serde_json::{Value as Json, json};
use stela_server::ServerOptions;
use stela_service::ServiceOptions;

use crate::support::{Graph, TestServer, seed_graph};

/// Twelve Observations with results 1..12 on 2015-03-01..12, as in the OGC test suite.
async fn seed_observations(server: &TestServer) -> Graph {
    let g = seed_graph(server, "obs").await;
    for i in 1..=12 {
        server
            .create(
                &format!("Datastreams({})/Observations", g.datastream),
                json!({"result": i, "phenomenonTime": format!("2015-03-{i:02}T00:00:00Z")}),
            )
            .await;
    }
    g
}

fn results(json: &Json) -> Vec<i64> {
    json["value"].as_array().unwrap().iter().map(|o| o["result"].as_i64().unwrap()).collect()
}

#[tokio::test]
async fn top_skip_count_and_next_links() {
    let server = TestServer::start().await;
    seed_observations(&server).await;
    let json = server.get_ok("Observations?$top=5&$orderby=phenomenonTime").await;
    assert_eq!(results(&json), [1, 2, 3, 4, 5]);
    let next = json["@iot.nextLink"].as_str().unwrap().to_owned();
    assert!(json.get("@iot.count").is_none());
    let json = server.get_ok(&next).await;
    assert_eq!(results(&json), [6, 7, 8, 9, 10]);
    let json = server.get_ok(json["@iot.nextLink"].as_str().unwrap()).await;
    assert_eq!(results(&json), [11, 12]);
    assert!(json.get("@iot.nextLink").is_none(), "the last page has no next link");

    let json = server.get_ok("Observations?$top=12").await;
    assert_eq!(json["value"].as_array().unwrap().len(), 12);
    assert!(json.get("@iot.nextLink").is_none());
    let json = server.get_ok("Observations?$top=13").await;
    assert_eq!(json["value"].as_array().unwrap().len(), 12);
    let json = server.get_ok("Observations?$skip=12").await;
    assert_eq!(json["value"], json!([]));
    let json = server.get_ok("Observations?$skip=10&$count=true").await;
    assert_eq!(json["@iot.count"], json!(12));
    assert_eq!(json["value"].as_array().unwrap().len(), 2);
    let json = server.get_ok("Observations?$count=false").await;
    assert!(json.get("@iot.count").is_none());
    let json = server.get_ok("Observations?$top=0&$count=true").await;
    assert_eq!(
        (json["@iot.count"].as_i64(), json["value"].as_array().unwrap().len()),
        (Some(12), 0)
    );
}

#[tokio::test]
async fn next_link_keeps_every_other_option() {
    let server = TestServer::start_with(
        ServiceOptions { default_top: 4, max_top: 5, ..ServiceOptions::default() },
        ServerOptions::default(),
    )
    .await;
    seed_observations(&server).await;
    let json = server
        .get_ok("Observations?$filter=result gt 2&$orderby=result desc&$count=true&$select=result")
        .await;
    assert_eq!(results(&json), [12, 11, 10, 9]);
    assert_eq!(json["@iot.count"], json!(10));
    let next = json["@iot.nextLink"].as_str().unwrap();
    let json = server.get_ok(next).await;
    assert_eq!(results(&json), [8, 7, 6, 5]);
    assert_eq!(json["@iot.count"], json!(10));
    assert_eq!(json["value"][0], json!({"result": 8}), "$select is kept");
    // $top above the maximum is capped.
    let json = server.get_ok("Observations?$top=100").await;
    assert_eq!(json["value"].as_array().unwrap().len(), 5);
}

#[tokio::test]
async fn query_priority_order_of_the_ogc_suite() {
    let server = TestServer::start().await;
    seed_observations(&server).await;
    // A numeric result compared with a string compares as a string: "4".."9" > "3", "10".."12" not.
    let json = server.get_ok("Observations?$count=true&$top=1&$skip=2&$orderby=phenomenonTime asc&$filter=result gt '3'").await;
    assert_eq!(json["@iot.count"], json!(6));
    assert_eq!(results(&json), [6]);
}

#[tokio::test]
async fn orderby_select_and_filters_on_properties() {
    let server = TestServer::start().await;
    let g = seed_observations(&server).await;
    assert_eq!(
        results(&server.get_ok("Observations?$orderby=result desc&$top=3").await),
        [12, 11, 10]
    );
    let json = server
        .get_ok("Observations?$filter=result ge 5 and result lt 8 or result eq 12&$orderby=result")
        .await;
    assert_eq!(results(&json), [5, 6, 7, 12]);
    let json = server.get_ok("Observations?$filter=not (result le 10)&$orderby=result").await;
    assert_eq!(results(&json), [11, 12]);
    let json = server
        .get_ok("Observations?$filter=phenomenonTime ge 2015-03-10T00:00:00Z&$orderby=result")
        .await;
    assert_eq!(results(&json), [10, 11, 12]);
    let json = server.get_ok("Observations?$filter=result mul 2 eq 8").await;
    assert_eq!(results(&json), [4]);
    let json = server.get_ok("Observations?$filter=day(phenomenonTime) eq 7").await;
    assert_eq!(results(&json), [7]);
    let json = server
        .get_ok(&format!(
            "Things?$filter=startswith(name, 'ob') and Datastreams/id eq {}",
            g.datastream
        ))
        .await;
    assert_eq!(json["value"].as_array().unwrap().len(), 1);
    let json = server.get_ok("Things?$filter=properties/owner eq 'test'").await;
    assert_eq!(json["value"].as_array().unwrap().len(), 1);
    let json = server
        .get_ok("Datastreams?$filter=unitOfMeasurement/symbol eq 'degC' and Thing/name eq 'obs'")
        .await;
    assert_eq!(json["value"].as_array().unwrap().len(), 1);
    let json =
        server.get_ok("Observations?$filter=Datastream/Thing/Locations/name eq 'nowhere'").await;
    assert_eq!(json["value"], json!([]));

    let json = server.get_ok(&format!("Things({})?$select=name,id", g.thing)).await;
    assert_eq!(
        json,
        json!({"@iot.selfLink": format!("{}/Things({})", server.root, g.thing), "@iot.id": g.thing, "name": "obs"})
    );
    let json = server.get_ok("Things?$select=description,Datastreams").await;
    let thing = &json["value"][0];
    assert_eq!(thing.as_object().unwrap().len(), 2, "{thing}");
    assert!(thing["Datastreams@iot.navigationLink"].is_string());
}

#[tokio::test]
async fn expand_to_any_depth_with_nested_options() {
    let server = TestServer::start().await;
    let g = seed_observations(&server).await;
    let json = server
        .get_ok("Things?$expand=Datastreams($select=name;$expand=Observations($orderby=result desc;$top=2;$count=true;$select=result))")
        .await;
    let ds = &json["value"][0]["Datastreams"][0];
    assert_eq!(ds["name"], json!("obs ds"));
    assert_eq!(ds["Observations@iot.count"], json!(12));
    assert_eq!(ds["Observations"], json!([{"result": 12}, {"result": 11}]));
    assert!(ds["Observations@iot.nextLink"].as_str().unwrap().contains("$skip=2"));
    let json = server
        .get_ok(&format!(
            "Datastreams({})?$expand=Observations/FeatureOfInterest,Thing/Locations",
            g.datastream
        ))
        .await;
    assert_eq!(json["Observations"].as_array().unwrap().len(), 12);
    assert!(json["Observations"][0]["FeatureOfInterest"]["feature"].is_object());
    assert_eq!(json["Thing"]["Locations"][0]["@iot.id"], json!(g.location));
    assert!(
        json["Thing"]["Datastreams@iot.navigationLink"].is_string(),
        "non-expanded relations keep their links"
    );
    let json = server.get_ok("Datastreams?$expand=Observations($filter=result gt 10)").await;
    assert_eq!(json["value"][0]["Observations"].as_array().unwrap().len(), 2);
    let reply = server.get("Things?$expand=Datastreams($expand=Nothing)").await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn deep_pages_continue_by_keyset() {
    let server = TestServer::start().await;
    let g = seed_observations(&server).await;
    let json = server
        .get_ok(&format!(
            "Datastreams({})/Observations?$orderby=phenomenonTime desc&$top=5&$count=true",
            g.datastream
        ))
        .await;
    assert_eq!(results(&json), [12, 11, 10, 9, 8]);
    let next = json["@iot.nextLink"].as_str().unwrap().to_owned();
    assert!(next.contains("$skiptoken="), "{next}");
    assert!(!next.contains("$skip="), "{next}");
    let json = server.get_ok(&next).await;
    assert_eq!(results(&json), [7, 6, 5, 4, 3]);
    assert_eq!(json["@iot.count"], json!(12));
    let json = server.get_ok(json["@iot.nextLink"].as_str().unwrap()).await;
    assert_eq!(results(&json), [2, 1]);
    assert!(json.get("@iot.nextLink").is_none());
    let reply = server.get("Observations?$skiptoken=garbage").await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.text);
    let reply = server.get(&next.replace("phenomenonTime%20desc", "result")).await;
    assert_eq!(
        reply.status,
        StatusCode::BAD_REQUEST,
        "a token of another order is refused: {}",
        reply.text
    );
}
