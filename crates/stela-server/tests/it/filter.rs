//! The `$filter` language on a seeded graph: every operator and function, checked by the ids
//! (or names) it returns.

use serde_json::{Value as Json, json};

use crate::support::TestServer;

/// Two Things with Locations and Datastreams, and Observations of every result type.
async fn seed(server: &TestServer) {
    let graph = json!({
        "name": "Alpha", "description": "weather station",
        "properties": {"kind": "weather", "level": 3, "active": true, "tags": {"colour": "red"}},
        "Locations": [{"name": "roof", "description": "on the roof", "encodingType": "application/geo+json",
                       "location": {"type": "Point", "coordinates": [8.0, 50.0]}}],
        "Datastreams": [{"name": "temperature", "description": "air temperature",
            "observationType": "http://www.opengis.net/def/observationType/OGC-OM/2.0/OM_Measurement",
            "unitOfMeasurement": {"name": "degree Celsius", "symbol": "degC", "definition": "ucum:Cel"},
            "Sensor": {"name": "thermometer", "description": "PT100", "encodingType": "text/html", "metadata": "http://example.org/pt100"},
            "ObservedProperty": {"name": "temperature", "definition": "http://example.org/temperature", "description": "heat"}}]
    });
    server.create("Things", graph).await;
    let graph = json!({
        "name": "beta station", "description": "air quality",
        "properties": {"kind": "air", "level": 7},
        "Locations": [{"name": "street", "description": "by the street", "encodingType": "application/geo+json",
                       "location": {"type": "Point", "coordinates": [10.0, 52.0]}}],
        "Datastreams": [{"name": "pm10", "description": "particles",
            "observationType": "http://www.opengis.net/def/observationType/OGC-OM/2.0/OM_Measurement",
            "unitOfMeasurement": {"name": "microgram per cubic metre", "symbol": "ug/m3", "definition": "ucum:ug/m3"},
            "Sensor": {"name": "dust counter", "description": "optical", "encodingType": "text/html", "metadata": "http://example.org/dust"},
            "ObservedProperty": {"name": "pm10", "definition": "http://example.org/pm10", "description": "dust"}}]
    });
    server.create("Things", graph).await;
    for day in 1..=6 {
        server
            .create(
                "Datastreams(1)/Observations",
                json!({"result": day, "phenomenonTime": format!("2015-03-{day:02}T12:30:00Z"),
                "parameters": {"quality": if day % 2 == 0 { "good" } else { "bad" }, "n": day}}),
            )
            .await;
    }
    server
        .create(
            "Datastreams(1)/Observations",
            json!({"result": "high", "phenomenonTime": "2015-03-07T00:00:00Z"}),
        )
        .await;
    server
        .create(
            "Datastreams(1)/Observations",
            json!({"result": true, "phenomenonTime": "2015-03-08T00:00:00Z"}),
        )
        .await;
    server
        .create(
            "Datastreams(2)/Observations",
            json!({"result": 10.5, "phenomenonTime": "2015-03-01T00:00:00Z/2015-03-03T00:00:00Z",
            "resultTime": "2015-03-03T01:00:00Z"}),
        )
        .await;
    server
        .create(
            "Datastreams(2)/Observations",
            json!({"result": null, "phenomenonTime": "2015-04-01T00:00:00Z"}),
        )
        .await;
}

fn ids(json: &Json) -> Vec<i64> {
    let mut ids: Vec<i64> =
        json["value"].as_array().unwrap().iter().map(|e| e["@iot.id"].as_i64().unwrap()).collect();
    ids.sort_unstable();
    ids
}

async fn check(server: &TestServer, set: &str, filter: &str, expected: &[i64]) {
    let url = format!("{set}?$filter={}", filter.replace('+', "%2B").replace('&', "%26"));
    let json = server.get_ok(&url).await;
    assert_eq!(ids(&json), expected, "{set} $filter={filter}");
}

#[tokio::test]
async fn comparison_logic_and_arithmetic() {
    let server = TestServer::start().await;
    seed(&server).await;
    // Observations 1..6: results 1..6; 7: "high"; 8: true; 9: 10.5 (interval); 10: null.
    check(&server, "Observations", "result eq 3", &[3]).await;
    check(&server, "Observations", "result ne 3 and result le 4", &[1, 2, 4]).await;
    check(&server, "Observations", "result gt 5", &[6, 9]).await;
    check(&server, "Observations", "result ge 6 or result lt 2", &[1, 6, 9]).await;
    check(&server, "Observations", "result eq 'high'", &[7]).await;
    check(&server, "Observations", "result eq true", &[8]).await;
    check(&server, "Observations", "result eq null", &[10]).await;
    check(&server, "Observations", "result ne null and result gt '5'", &[6, 7, 8]).await;
    check(&server, "Observations", "not (result lt 5) and result le 6", &[5, 6]).await;
    check(&server, "Observations", "result add 1 eq 3", &[2]).await;
    check(&server, "Observations", "result sub 1 eq 3", &[4]).await;
    check(&server, "Observations", "result mul 2 eq 8", &[4]).await;
    check(&server, "Observations", "result div 2 eq 1.5", &[3]).await;
    check(&server, "Observations", "result mod 2 eq 1 and result lt 7", &[1, 3, 5]).await;
    check(&server, "Observations", "-result eq -2", &[2]).await;
    check(&server, "Observations", "result add 2 mul 3 eq 7", &[1]).await;
    check(&server, "Observations", "(result add 2) mul 3 eq 9", &[1]).await;
    check(&server, "Observations", "result eq 1 or result eq 2 and result eq 3", &[1]).await;
    check(&server, "Observations", "result in (1, 4, 'high')", &[1, 4, 7]).await;
    check(&server, "Observations", "id le 2", &[1, 2]).await;
    check(&server, "Things", "@iot.id eq 2", &[2]).await;
}

#[tokio::test]
async fn times_and_intervals() {
    let server = TestServer::start().await;
    seed(&server).await;
    check(
        &server,
        "Observations",
        "phenomenonTime gt 2015-03-05T00:00:00Z and phenomenonTime lt 2015-03-31T00:00:00Z",
        &[5, 6, 7, 8],
    )
    .await;
    check(&server, "Observations", "phenomenonTime eq 2015-03-02T12:30:00Z", &[2]).await;
    check(&server, "Observations", "phenomenonTime eq 2015-03-02T14:30:00+02:00", &[2]).await;
    // An interval is after an instant when it starts after it, before when it ends before it.
    check(&server, "Observations", "phenomenonTime lt 2015-03-02T00:00:00Z", &[1]).await;
    check(&server, "Observations", "phenomenonTime le 2015-03-03T00:00:00Z", &[1, 2, 9]).await;
    check(
        &server,
        "Observations",
        "phenomenonTime ge 2015-03-01T00:00:00Z and phenomenonTime lt 2015-03-02T00:00:00Z",
        &[1],
    )
    .await;
    check(&server, "Observations", "resultTime ge 2015-03-03T00:00:00Z", &[9]).await;
    check(&server, "Observations", "resultTime eq null and result eq 1", &[1]).await;
    check(
        &server,
        "Observations",
        "year(phenomenonTime) eq 2015 and month(phenomenonTime) eq 4",
        &[10],
    )
    .await;
    check(&server, "Observations", "day(phenomenonTime) eq 3", &[3]).await;
    check(&server, "Observations", "hour(phenomenonTime) eq 12 and minute(phenomenonTime) eq 30 and second(phenomenonTime) eq 0 and result eq 1", &[1]).await;
    check(&server, "Observations", "fractionalseconds(phenomenonTime) eq 0 and result eq 2", &[2])
        .await;
    check(&server, "Observations", "date(phenomenonTime) eq 2015-03-04", &[4]).await;
    check(&server, "Observations", "time(phenomenonTime) eq 12:30:00 and result le 2", &[1, 2])
        .await;
    check(&server, "Observations", "totaloffsetminutes(phenomenonTime) eq 0 and result eq 1", &[1])
        .await;
    check(&server, "Observations", "phenomenonTime lt now() and phenomenonTime gt mindatetime() and phenomenonTime lt maxdatetime() and result eq 1", &[1]).await;
    check(
        &server,
        "Observations",
        "phenomenonTime add duration'P1D' eq 2015-03-02T12:30:00Z",
        &[1],
    )
    .await;
    // An interval comparison used as a value keeps its own precedence (no interval is after
    // itself, Observation 9's included).
    check(
        &server,
        "Observations",
        "(phenomenonTime gt phenomenonTime) eq false",
        &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10],
    )
    .await;
    check(&server, "Observations", "before(phenomenonTime, 2015-03-02T00:00:00Z)", &[1]).await;
    check(&server, "Observations", "during(phenomenonTime, 2015-03-31T00:00:00Z)", &[]).await;
    check(&server, "Observations", "overlaps(phenomenonTime, 2015-03-02T00:00:00Z)", &[9]).await;
    check(
        &server,
        "Datastreams",
        "phenomenonTime ge 2015-03-01T00:00:00Z and phenomenonTime le 2015-03-08T00:00:00Z",
        &[1],
    )
    .await;
}

#[tokio::test]
async fn strings_and_math() {
    let server = TestServer::start().await;
    seed(&server).await;
    check(&server, "Things", "substringof('station', name)", &[2]).await;
    check(&server, "Things", "contains(description, 'quality')", &[2]).await;
    check(&server, "Things", "startswith(name, 'Al')", &[1]).await;
    check(&server, "Things", "endswith(name, 'tion')", &[2]).await;
    check(&server, "Things", "length(name) eq 5", &[1]).await;
    check(&server, "Things", "indexof(name, 'station') eq 5", &[2]).await;
    check(&server, "Things", "substring(name, 1) eq 'lpha'", &[1]).await;
    check(&server, "Things", "substring(name, 0, 4) eq 'beta'", &[2]).await;
    check(&server, "Things", "tolower(name) eq 'alpha'", &[1]).await;
    check(&server, "Things", "toupper(name) eq 'BETA STATION'", &[2]).await;
    check(&server, "Things", "trim(concat(' ', name)) eq 'Alpha'", &[1]).await;
    check(
        &server,
        "Things",
        "concat(concat(name, '-'), description) eq 'Alpha-weather station'",
        &[1],
    )
    .await;
    check(&server, "Things", "name eq 'O''Neil' or name eq 'Alpha'", &[1]).await;
    check(&server, "Observations", "round(result div 4) eq 1 and result lt 7", &[2, 3, 4, 5]).await;
    check(&server, "Observations", "floor(result) eq 10", &[9]).await;
    check(&server, "Observations", "ceiling(result) eq 11", &[9]).await;
}

#[tokio::test]
async fn paths_through_relations_and_into_json() {
    let server = TestServer::start().await;
    seed(&server).await;
    check(&server, "Observations", "Datastream/Thing/name eq 'beta station'", &[9, 10]).await;
    check(&server, "Things", "Locations/name eq 'roof'", &[1]).await;
    check(&server, "Things", "Datastreams/Observations/result eq 10.5", &[2]).await;
    check(&server, "Things", "Datastreams/ObservedProperty/name eq 'pm10'", &[2]).await;
    check(&server, "Datastreams", "Thing/Datastreams/Sensor/name eq 'thermometer'", &[1]).await;
    check(&server, "Things", "properties/kind eq 'air'", &[2]).await;
    check(&server, "Things", "properties/level gt 5", &[2]).await;
    check(&server, "Things", "properties/active eq true", &[1]).await;
    check(&server, "Things", "properties/tags/colour eq 'red'", &[1]).await;
    check(&server, "Things", "properties/missing eq null", &[1, 2]).await;
    check(&server, "Datastreams", "unitOfMeasurement/symbol eq 'degC'", &[1]).await;
    check(&server, "Observations", "parameters/quality eq 'good'", &[2, 4, 6]).await;
    check(&server, "Observations", "parameters/n ge 5", &[5, 6]).await;
    check(&server, "Things", "Datastreams/any(d: d/name eq 'pm10')", &[2]).await;
    check(&server, "Things", "Datastreams/Observations/any(o: o/result eq 'high')", &[1]).await;
    check(
        &server,
        "Datastreams",
        "Observations/all(o: o/phenomenonTime lt 2015-03-05T00:00:00Z)",
        &[],
    )
    .await;
    check(&server, "Things", "Datastreams/any()", &[1, 2]).await;
}

#[tokio::test]
async fn spatial_functions() {
    let server = TestServer::start().await;
    seed(&server).await;
    let square = "geography'POLYGON((7 49, 9 49, 9 51, 7 51, 7 49))'";
    check(&server, "Locations", &format!("st_within(location, {square})"), &[1]).await;
    check(&server, "Locations", &format!("st_intersects(location, {square})"), &[1]).await;
    check(&server, "Locations", &format!("geo.intersects(location, {square})"), &[1]).await;
    check(&server, "Locations", &format!("st_disjoint(location, {square})"), &[2]).await;
    check(&server, "Locations", &format!("st_contains({square}, location)"), &[1]).await;
    check(&server, "Locations", "st_equals(location, geography'POINT(10 52)')", &[2]).await;
    check(&server, "Locations", "st_touches(location, geography'LINESTRING(10 52, 11 53)')", &[2])
        .await;
    check(&server, "Locations", "st_crosses(geography'LINESTRING(7 50, 9 50)', location)", &[])
        .await;
    check(&server, "Locations", &format!("st_overlaps(location, {square})"), &[]).await;
    check(&server, "Locations", &format!("st_relate(location, {square}, 'T********')"), &[1]).await;
    check(&server, "Locations", "geo.distance(location, geography'POINT(8 50.01)') lt 2000", &[1])
        .await;
    check(&server, "Locations", "geo.length(geography'LINESTRING(0 0, 0 1)') gt 111000", &[1, 2])
        .await;
    check(&server, "FeaturesOfInterest", &format!("st_within(feature, {square})"), &[1]).await;
    check(&server, "Datastreams", &format!("st_intersects(observedArea, {square})"), &[1]).await;
    check(&server, "Things", &format!("st_within(Locations/location, {square})"), &[1]).await;
    let json =
        server.get_ok("Locations?$orderby=geo.distance(location, geography'POINT(10 52)')").await;
    assert_eq!(json["value"][0]["name"], json!("street"));
    let reply = server.get("Locations?$filter=st_within(location, geography'POLYGON((0 0')").await;
    assert_eq!(reply.status, reqwest::StatusCode::BAD_REQUEST, "{}", reply.text);
}
