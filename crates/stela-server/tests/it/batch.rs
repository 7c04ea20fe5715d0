//! `$batch`: the multipart examples of SensorThings 1.1 (18-088 §11.2.1, §11.2.2), change sets
//! that commit or roll back as one, Content-ID references, URL forms, the JSON form of
//! OData 4.01 (atomicityGroup, dependsOn, references), limits and malformed bodies.

use reqwest::StatusCode;
use serde_json::{Value as Json, json};
use stela_log::{Checkpoint, VerifierKey};
use stela_model::EntityType;
use stela_server::ServerOptions;
use stela_service::{ChangeKind, Service, ServiceOptions};

use crate::support::{TestServer, observed_property, seed_graph, sensor, thing};

/// The boundaries of the standard's examples.
const BATCH: &str = "batch_36522ad7-fc75-4b56-8c71-56071383e77b";
const CHANGESET: &str = "changeset_77162fcd-b8da-41ac-a9f8-9357efbbd";

/// A batch response: status, Content-Type, body.
struct BatchReply {
    status: StatusCode,
    content_type: String,
    text: String,
}

impl BatchReply {
    fn json(&self) -> Json {
        serde_json::from_str(&self.text).unwrap_or(Json::Null)
    }

    fn parts(&self) -> Vec<Part> {
        assert_eq!(self.status, StatusCode::OK, "{}", self.text);
        let boundary = boundary_of(&self.content_type);
        parse_parts(&self.text, &boundary)
    }

    fn error_message(&self) -> String {
        self.json()["message"].as_str().unwrap_or_default().to_owned()
    }
}

async fn post_batch(
    server: &TestServer,
    content_type: &str,
    body: impl Into<String>,
) -> BatchReply {
    post_batch_to(&server.url("$batch"), content_type, body).await
}

async fn post_batch_to(url: &str, content_type: &str, body: impl Into<String>) -> BatchReply {
    let response = reqwest::Client::new()
        .post(url)
        .header("content-type", content_type)
        .body(body.into())
        .send()
        .await
        .expect("batch request");
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let text = response.text().await.expect("body");
    BatchReply { status, content_type, text }
}

async fn post_multipart(
    server: &TestServer,
    boundary: &str,
    body: impl Into<String>,
) -> BatchReply {
    post_batch(server, &format!("multipart/mixed;boundary={boundary}"), body).await
}

/// One part of a multipart batch response.
#[derive(Debug)]
enum Part {
    /// An `application/http` part: its Content-ID, the response status, headers and body.
    Http { content_id: Option<String>, status: u16, headers: Vec<(String, String)>, body: String },
    /// A change set: its parts.
    ChangeSet(Vec<Part>),
}

impl Part {
    fn http(&self) -> (Option<&str>, u16, &str) {
        match self {
            Part::Http { content_id, status, body, .. } => (content_id.as_deref(), *status, body),
            Part::ChangeSet(_) => panic!("expected an application/http part, got {self:?}"),
        }
    }

    fn status(&self) -> u16 {
        self.http().1
    }

    fn json(&self) -> Json {
        serde_json::from_str(self.http().2).unwrap_or(Json::Null)
    }

    fn header(&self, name: &str) -> Option<&str> {
        match self {
            Part::Http { headers, .. } => {
                headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
            }
            Part::ChangeSet(_) => None,
        }
    }

    fn change_set(&self) -> &[Part] {
        match self {
            Part::ChangeSet(parts) => parts,
            Part::Http { .. } => panic!("expected a change set, got {self:?}"),
        }
    }
}

fn boundary_of(content_type: &str) -> String {
    let (_, boundary) = content_type.split_once("boundary=").expect("a boundary");
    boundary.trim().trim_matches('"').to_owned()
}

/// Parses a multipart response as the server writes it (CRLF line ends).
fn parse_parts(text: &str, boundary: &str) -> Vec<Part> {
    let delimiter = format!("--{boundary}");
    let close = format!("--{boundary}--");
    assert!(text.starts_with(&format!("{delimiter}\r\n")), "{text}");
    assert!(text.trim_end().ends_with(&close), "{text}");
    let inner = &text[..text.rfind(&close).expect("closing delimiter")];
    inner
        .split(&format!("{delimiter}\r\n"))
        .skip(1)
        .map(|chunk| {
            let chunk = chunk.strip_suffix("\r\n").unwrap_or(chunk);
            let (head, content) = chunk.split_once("\r\n\r\n").expect("part headers");
            let headers = header_lines(head);
            let content_type = find(&headers, "content-type").expect("part Content-Type");
            if content_type.starts_with("multipart/mixed") {
                Part::ChangeSet(parse_parts(content, &boundary_of(&content_type)))
            } else {
                assert_eq!(content_type, "application/http");
                assert_eq!(find(&headers, "content-transfer-encoding").as_deref(), Some("binary"));
                let (response_head, body) = content.split_once("\r\n\r\n").expect("response head");
                let (status_line, response_headers) =
                    response_head.split_once("\r\n").unwrap_or((response_head, ""));
                let mut words = status_line.split(' ');
                assert_eq!(words.next(), Some("HTTP/1.1"), "{status_line}");
                let status: u16 = words.next().expect("status").parse().expect("status code");
                let headers_of_response = header_lines(response_headers);
                let length: usize =
                    find(&headers_of_response, "content-length").expect("length").parse().unwrap();
                assert_eq!(length, body.len(), "Content-Length of {body}");
                Part::Http {
                    content_id: find(&headers, "content-id"),
                    status,
                    headers: headers_of_response,
                    body: body.to_owned(),
                }
            }
        })
        .collect()
}

fn header_lines(head: &str) -> Vec<(String, String)> {
    head.split("\r\n")
        .filter(|line| !line.is_empty())
        .map(|line| {
            let (name, value) = line.split_once(':').expect("header line");
            (name.trim().to_owned(), value.trim().to_owned())
        })
        .collect()
}

fn find(headers: &[(String, String)], name: &str) -> Option<String> {
    headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone())
}

/// Things named "Thing 0" … "Thing 5" with `properties/int` 8 … 13 (as FROST's BatchTests).
async fn six_things(server: &TestServer) -> Vec<i64> {
    let mut ids = Vec::new();
    for i in 0..6 {
        let body = json!({"name": format!("Thing {i}"), "description": "It's a thing.",
                          "properties": {"int": i + 8}});
        ids.push(server.create("Things", body).await);
    }
    ids
}

/// The id at the end of a Location (`…/Things(7)`).
fn id_in(location: &str) -> i64 {
    let open = location.rfind('(').expect("(");
    location[open + 1..location.len() - 1].parse().expect("numeric id")
}

#[tokio::test]
async fn standard_example_11_2_1_query_change_set_and_query_of_a_missing_entity() {
    let server = TestServer::start().await;
    let things = six_things(&server).await;
    let first = things[0];
    // 18-088 §11.2.1 with real bodies (as FROST-Server's BatchTests test01).
    let body = format!(
        "--{BATCH}\r\n\
         Content-Type: application/http\r\n\
         \r\n\
         GET /v1.1/Things({first})?$select=name HTTP/1.1\r\n\
         Host: localhost\r\n\
         \r\n\
         \r\n\
         --{BATCH}\r\n\
         Content-Type: multipart/mixed;boundary={CHANGESET}\r\n\
         \r\n\
         --{CHANGESET}\r\n\
         Content-Type: application/http\r\n\
         Content-ID: 1\r\n\
         \r\n\
         POST /v1.1/Things HTTP/1.1\r\n\
         Host: localhost\r\n\
         Content-Type: application/json\r\n\
         Content-Length: 36\r\n\
         \r\n\
         {{\"name\":\"New\",\"description\":\"Thing\"}}\r\n\
         --{CHANGESET}\r\n\
         Content-Type: application/http\r\n\
         Content-ID: 2\r\n\
         \r\n\
         PATCH /v1.1/Things({first}) HTTP/1.1\r\n\
         Host: localhost\r\n\
         Content-Type: application/json\r\n\
         Content-Length: 18\r\n\
         \r\n\
         {{\"name\":\"Patched\"}}\r\n\
         --{CHANGESET}--\r\n\
         --{BATCH}\r\n\
         Content-Type: application/http\r\n\
         \r\n\
         GET /v1.1/Things(424242) HTTP/1.1\r\n\
         Host: localhost\r\n\
         \r\n\
         \r\n\
         --{BATCH}--"
    );
    let reply = post_multipart(&server, BATCH, body).await;
    assert!(reply.content_type.starts_with("multipart/mixed; boundary="), "{}", reply.content_type);
    let parts = reply.parts();
    assert_eq!(parts.len(), 3, "{}", reply.text);

    assert_eq!(parts[0].http().0, None);
    assert_eq!(parts[0].status(), 200);
    assert_eq!(parts[0].header("content-type"), Some("application/json"));
    assert_eq!(parts[0].json(), json!({"name": "Thing 0"}));

    let change_set = parts[1].change_set();
    assert_eq!(change_set.len(), 2);
    assert_eq!(change_set[0].http().0, Some("1"));
    assert_eq!(change_set[0].status(), 201);
    let location = change_set[0].header("location").expect("Location").to_owned();
    let created = id_in(&location);
    assert_eq!(location, format!("{}/Things({created})", server.root));
    assert_eq!(change_set[0].json()["name"], "New");
    assert_eq!(change_set[1].http().0, Some("2"));
    assert_eq!(change_set[1].status(), 200);
    assert_eq!(change_set[1].json()["name"], "Patched");

    assert_eq!(parts[2].status(), 404);
    assert_eq!(parts[2].json()["code"], 404);

    assert_eq!(server.get_ok(&format!("Things({first})")).await["name"], "Patched");
    assert_eq!(server.get_ok(&format!("Things({created})")).await["description"], "Thing");
}

#[tokio::test]
async fn standard_example_11_2_2_references_new_entities_in_a_change_set() {
    let server = TestServer::start().await;
    let things = six_things(&server).await;
    let op = server.create("ObservedProperties", observed_property("temperature")).await;
    // 18-088 §11.2.2 as FROST-Server's BatchTests test02: the Datastream refers to the Sensor
    // created before it in its body, as "$sensor1".
    let sensor = "{\r\n  \"name\": \"DS18B20\",\r\n  \"description\": \"DS18B20 is an air temperature sensor\",\r\n  \"encodingType\": \"application/pdf\",\r\n  \"metadata\": \"http://datasheets.maxim-ic.com/en/ds/DS18B20.pdf\"\r\n}";
    let datastream = format!(
        "{{\r\n  \"name\": \"Temperature Thing 5\",\r\n  \"description\": \"The temperature of thing 5\",\r\n  \"unitOfMeasurement\": {{\r\n    \"name\": \"degree Celsius\",\r\n    \"symbol\": \"°C\",\r\n    \"definition\": \"http://unitsofmeasure.org/ucum.html#para-30\"\r\n  }},\n  \"observationType\": \"http://www.opengis.net/def/observationType/OGCOM/2.0/OM_Measurement\",\r\n  \"ObservedProperty\": {{\"@iot.id\": {op}}},\r\n  \"Sensor\": {{\"@iot.id\": \"$sensor1\"}}\r\n}}"
    );
    let body = format!(
        "--{BATCH}\r\n\
         Content-Type: multipart/mixed;boundary={CHANGESET}\r\n\
         \r\n\
         --{CHANGESET}\r\n\
         Content-Type: application/http\r\n\
         Content-ID: sensor1\r\n\
         \r\n\
         POST /v1.1/Sensors HTTP/1.1\r\n\
         Host: localhost\r\n\
         Content-Type: application/json\r\n\
         Content-Length: {}\r\n\
         \r\n\
         {sensor}\r\n\
         --{CHANGESET}\r\n\
         Content-Type: application/http\r\n\
         Content-ID: any\r\n\
         \r\n\
         POST /v1.1/Things({})/Datastreams HTTP/1.1\r\n\
         Host: localhost\r\n\
         Content-Type: application/json\r\n\
         Content-Length: {}\r\n\
         \r\n\
         {datastream}\r\n\
         --{CHANGESET}--\r\n\
         --{BATCH}--",
        sensor.len(),
        things[0],
        datastream.len(),
    );
    let reply = post_multipart(&server, BATCH, body).await;
    let parts = reply.parts();
    assert_eq!(parts.len(), 1, "{}", reply.text);
    let change_set = parts[0].change_set();
    assert_eq!(change_set[0].http().0, Some("sensor1"));
    assert_eq!(change_set[0].status(), 201, "{:?}", change_set[0]);
    assert_eq!(change_set[1].http().0, Some("any"));
    assert_eq!(change_set[1].status(), 201, "{:?}", change_set[1]);
    let sensor_id = id_in(change_set[0].header("location").expect("Location"));
    let datastream_id = id_in(change_set[1].header("location").expect("Location"));
    assert_eq!(
        change_set[1].header("location"),
        Some(format!("{}/Datastreams({datastream_id})", server.root).as_str())
    );
    let linked = server.get_ok(&format!("Datastreams({datastream_id})/Sensor")).await;
    assert_eq!(linked["@iot.id"], sensor_id);
    assert_eq!(linked["name"], "DS18B20");
    let owner = server.get_ok(&format!("Datastreams({datastream_id})/Thing")).await;
    assert_eq!(owner["@iot.id"], things[0]);
}

#[tokio::test]
async fn content_id_references_in_urls_and_absolute_paths() {
    let server = TestServer::start().await;
    let g = seed_graph(&server, "ref").await;
    let mut datastream = crate::support::datastream("via reference");
    datastream["Thing"] = json!({"@iot.id": g.thing});
    datastream["ObservedProperty"] = json!({"@iot.id": g.observed_property});
    // `$sensor1/Datastreams`: the collection below the Sensor the change set just created.
    let body = format!(
        "--b\r\nContent-Type: multipart/mixed; boundary=cs\r\n\r\n\
         --cs\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\nContent-ID: sensor1\r\n\r\n\
         POST Sensors HTTP/1.1\r\nContent-Type: application/json\r\n\r\n{}\r\n\
         --cs\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\nContent-ID: ds\r\n\r\n\
         POST $sensor1/Datastreams HTTP/1.1\r\nContent-Type: application/json\r\n\r\n{}\r\n\
         --cs\r\nContent-Type: application/http\r\nContent-ID: obs\r\n\r\n\
         POST /v1.1/$ds/Observations HTTP/1.1\r\nContent-Type: application/json\r\n\r\n{}\r\n\
         --cs--\r\n\
         --b\r\nContent-Type: application/http\r\n\r\n\
         GET $ds/Observations HTTP/1.1\r\n\r\n\r\n\
         --b\r\nContent-Type: application/http\r\n\r\n\
         GET $nobody/Observations HTTP/1.1\r\n\r\n\r\n\
         --b--\r\n",
        sensor("referenced"),
        datastream,
        json!({"result": 21.5}),
    );
    let reply = post_multipart(&server, "b", body).await;
    let parts = reply.parts();
    let change_set = parts[0].change_set();
    assert!(change_set.iter().all(|p| p.status() == 201), "{change_set:?}");
    let sensor_id = id_in(change_set[0].header("location").expect("Location"));
    let datastream_id = id_in(change_set[1].header("location").expect("Location"));
    let sensor_of = server.get_ok(&format!("Datastreams({datastream_id})/Sensor")).await;
    assert_eq!(sensor_of["@iot.id"], sensor_id);
    // A reference outside the change set that created the entity resolves too.
    assert_eq!(parts[1].status(), 200);
    assert_eq!(parts[1].json()["value"][0]["result"], 21.5);
    assert_eq!(parts[2].status(), 404);
    assert!(parts[2].json()["message"].as_str().unwrap_or_default().contains("'$nobody'"));
}

#[tokio::test]
async fn a_failing_request_rolls_back_its_change_set_and_says_which_failed() {
    let server = TestServer::start().await;
    let key = log_key(&server).await;
    let existing = server.create("Things", thing("existing")).await;
    let size_before = log_size(&server, &key).await;
    let body = format!(
        "--b\r\nContent-Type: multipart/mixed; boundary=cs\r\n\r\n\
         --cs\r\nContent-Type: application/http\r\nContent-ID: 1\r\n\r\n\
         POST Things HTTP/1.1\r\nContent-Type: application/json\r\n\r\n{}\r\n\
         --cs\r\nContent-Type: application/http\r\nContent-ID: 2\r\n\r\n\
         PATCH Things({existing}) HTTP/1.1\r\nContent-Type: application/json\r\n\r\n{}\r\n\
         --cs\r\nContent-Type: application/http\r\nContent-ID: 3\r\n\r\n\
         POST Things HTTP/1.1\r\nContent-Type: application/json\r\n\r\n{}\r\n\
         --cs\r\nContent-Type: application/http\r\nContent-ID: 4\r\n\r\n\
         DELETE Things({existing}) HTTP/1.1\r\n\r\n\r\n\
         --cs--\r\n\
         --b\r\nContent-Type: application/http\r\n\r\n\
         POST Things HTTP/1.1\r\nContent-Type: application/json\r\n\r\n{}\r\n\
         --b--\r\n",
        thing("rolled back"),
        json!({"name": "renamed"}),
        json!({"name": "no description"}),
        thing("after the change set"),
    );
    let reply = post_multipart(&server, "b", body).await;
    let parts = reply.parts();
    assert_eq!(parts.len(), 2, "{}", reply.text);
    // The failed change set is one response: the failing request's, with its Content-ID.
    let (content_id, status, _) = parts[0].http();
    assert_eq!((content_id, status), (Some("3"), 400));
    let message = parts[0].json()["message"].as_str().unwrap_or_default().to_owned();
    assert!(message.contains("part 3 (Content-ID 3) failed"), "{message}");
    assert!(message.contains("nothing of its change set was written"), "{message}");
    assert!(message.contains("missing mandatory property 'description'"), "{message}");
    // The request after the change set still runs.
    assert_eq!(parts[1].status(), 201);
    let after = id_in(parts[1].header("location").expect("Location"));

    let names: Vec<String> = server.get_ok("Things?$orderby=id").await["value"]
        .as_array()
        .expect("value")
        .iter()
        .map(|t| t["name"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(names, ["existing", "after the change set"]);
    assert_eq!(server.ids("Things?$orderby=id").await, [existing, after]);
    // The rolled-back writes left no log entry; the one request that ran left one.
    assert_eq!(log_size(&server, &key).await, size_before + 1);
}

#[tokio::test]
async fn change_sets_hold_writes_only() {
    let server = TestServer::start().await;
    let body = "--b\r\nContent-Type: multipart/mixed; boundary=cs\r\n\r\n\
         --cs\r\nContent-Type: application/http\r\nContent-ID: 1\r\n\r\n\
         POST Things HTTP/1.1\r\nContent-Type: application/json\r\n\r\n{\"name\":\"a\",\"description\":\"b\"}\r\n\
         --cs\r\nContent-Type: application/http\r\nContent-ID: 2\r\n\r\n\
         GET Things HTTP/1.1\r\n\r\n\r\n\
         --cs--\r\n--b--\r\n";
    let parts = post_multipart(&server, "b", body).await.parts();
    assert_eq!(parts[0].http().0, Some("2"));
    assert_eq!(parts[0].status(), 400);
    assert!(parts[0].json()["message"].as_str().unwrap_or_default().contains("writes only"));
    assert_eq!(server.ids("Things").await, Vec::<i64>::new());
}

#[tokio::test]
async fn writes_of_a_batch_are_logged_and_published_like_single_requests() {
    let server = TestServer::start().await;
    let key = log_key(&server).await;
    let before = log_size(&server, &key).await;
    let body = format!(
        "--b\r\nContent-Type: multipart/mixed; boundary=cs\r\n\r\n\
         --cs\r\nContent-Type: application/http\r\nContent-ID: t\r\n\r\n\
         POST Things HTTP/1.1\r\nContent-Type: application/json\r\n\r\n{}\r\n\
         --cs\r\nContent-Type: application/http\r\nContent-ID: p\r\n\r\n\
         PATCH $t HTTP/1.1\r\nContent-Type: application/json\r\n\r\n{}\r\n\
         --cs--\r\n--b--\r\n",
        thing("logged"),
        json!({"description": "patched"}),
    );
    let parts = post_multipart(&server, "b", body).await.parts();
    let change_set = parts[0].change_set();
    assert_eq!(change_set[1].status(), 200);
    assert_eq!(change_set[1].json()["description"], "patched");
    let id = id_in(change_set[0].header("location").expect("Location"));
    assert_eq!(log_size(&server, &key).await, before + 2);
    let receipt = server.get(&format!("Things({id})/$receipt")).await;
    assert_eq!(receipt.status, StatusCode::OK, "{}", receipt.text);
}

#[tokio::test]
async fn change_events_follow_a_committed_change_set_and_never_a_rolled_back_one() {
    let dir = tempfile::tempdir().expect("temp dir");
    let service = Service::open_sqlite(&dir.path().join("stela.db"), ServiceOptions::default())
        .expect("open store");
    let mut events = service.subscribe();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/v1.1/$batch", listener.local_addr().expect("address"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.await;
        };
        stela_server::run(listener, service, ServerOptions::default(), shutdown).await
    });
    let change_set = |second: Json| {
        format!(
            "--b\r\nContent-Type: multipart/mixed; boundary=cs\r\n\r\n\
             --cs\r\nContent-Type: application/http\r\nContent-ID: t\r\n\r\n\
             POST Things HTTP/1.1\r\nContent-Type: application/json\r\n\r\n{}\r\n\
             --cs\r\nContent-Type: application/http\r\nContent-ID: p\r\n\r\n\
             PATCH $t HTTP/1.1\r\nContent-Type: application/json\r\n\r\n{second}\r\n\
             --cs--\r\n--b--\r\n",
            thing("evented"),
        )
    };
    let mut replies = Vec::new();
    for second in [json!({"name": 5}), json!({"name": "renamed"})] {
        let reply = post_batch_to(&url, "multipart/mixed; boundary=b", change_set(second)).await;
        replies.push(reply.parts());
    }
    assert_eq!(replies[0][0].status(), 400);
    let committed = replies[1][0].change_set();
    let id = id_in(committed[0].header("location").expect("Location"));
    let mut received = Vec::new();
    while let Ok(event) = events.try_recv() {
        received.push(event);
    }
    // Only the second change set committed; its events name its Thing alone.
    assert!(!received.is_empty());
    assert_eq!(received[0].kind, ChangeKind::Created);
    assert_eq!(received.iter().filter(|e| e.kind == ChangeKind::Created).count(), 1);
    assert!(received.iter().all(|e| e.ty == EntityType::Thing && e.id == id), "{received:?}");
    let _ = stop.send(());
}

#[tokio::test]
async fn urls_relative_absolute_and_percent_encoded() {
    let server = TestServer::start().await;
    let things = six_things(&server).await;
    // As FROST-Server's BatchTests test03 to test05.
    let root = &server.root;
    let body = format!(
        "--batch_test\r\nContent-Type: application/http\r\n\r\n\
         GET Things?$filter=properties/int%20eq%2010&$select=name HTTP/1.1\r\n\r\n\r\n\
         --batch_test\r\nContent-Type: application/http\r\n\r\n\
         GET {root}/Things?$filter=properties/int%20eq%2011&$select=name HTTP/1.1\r\n\r\n\r\n\
         --batch_test\r\nContent-Type: application/http\r\n\r\n\
         GET /v1.1/Things?$filter=name%20eq%20%27Thing%204%27&$select=name HTTP/1.1\r\n\r\n\r\n\
         --batch_test\r\nContent-Type: application/http\r\n\r\n\
         GET Things%28{}%29?$select=name HTTP/1.1\r\n\r\n\r\n\
         --batch_test\r\nContent-Type: application/http\r\n\r\n\
         GET /v1.0/Things({})?$select=name\r\nHost: elsewhere\r\n\r\n\r\n\
         --batch_test\r\nContent-Type: application/http\r\n\r\n\
         GET /v9.9/Things HTTP/1.1\r\n\r\n\r\n\
         --batch_test--",
        things[5], things[1],
    );
    let reply = post_multipart(&server, "batch_test", body).await;
    let parts = reply.parts();
    let bodies: Vec<Json> = parts.iter().map(Part::json).collect();
    assert_eq!(bodies[0], json!({"value": [{"name": "Thing 2"}]}));
    assert_eq!(bodies[1], json!({"value": [{"name": "Thing 3"}]}));
    assert_eq!(bodies[2], json!({"value": [{"name": "Thing 4"}]}));
    assert_eq!(bodies[3], json!({"name": "Thing 5"}));
    assert_eq!(bodies[4], json!({"name": "Thing 1"}));
    assert_eq!(parts[5].status(), 404);

    // Links follow the batch request's host, not a Host inside a part.
    let body = "--b\r\nContent-Type: application/http\r\n\r\n\
                GET Things?$top=1 HTTP/1.1\r\nHost: elsewhere.example\r\n\r\n\r\n--b--";
    let parts = post_multipart(&server, "b", body).await.parts();
    let link = parts[0].json()["value"][0]["@iot.selfLink"].as_str().unwrap_or_default().to_owned();
    assert!(link.starts_with(&server.root), "{link}");
}

#[tokio::test]
async fn public_url_prefix_in_absolute_urls() {
    let options = ServerOptions {
        public_url: Some("https://example.org/sta".into()),
        ..ServerOptions::default()
    };
    let server = TestServer::start_with(ServiceOptions::default(), options).await;
    let id = server.create("Things", thing("public")).await;
    let body = format!(
        "--b\r\nContent-Type: application/http\r\n\r\n\
         GET https://example.org/sta/v1.1/Things({id})?$select=name HTTP/1.1\r\n\r\n\r\n\
         --b\r\nContent-Type: application/http\r\n\r\n\
         GET /sta/v1.1/Things({id})?$select=name HTTP/1.1\r\n\r\n\r\n--b--"
    );
    let parts = post_multipart(&server, "b", body).await.parts();
    assert_eq!(parts[0].json(), json!({"name": "public"}));
    assert_eq!(parts[1].json(), json!({"name": "public"}));
}

#[tokio::test]
async fn json_batch_with_an_atomicity_group() {
    let server = TestServer::start().await;
    let things = six_things(&server).await;
    let first = things[0];
    // As FROST-Server's BatchTests test06 (docs/extensions/JsonBatchRequest.md).
    let body = json!({"requests": [
        {"id": "0", "method": "get", "url": format!("Things({first})?$select=name")},
        {"id": "1", "atomicityGroup": "group1", "method": "post", "url": "Things",
         "body": {"name": "New", "description": "Thing"}},
        {"id": "2", "atomicityGroup": "group1", "method": "patch", "url": format!("Things({first})"),
         "body": {"name": "Json Patched"}},
        {"id": "3", "method": "get", "url": "Things(null)"},
    ]});
    let reply = post_batch(&server, "application/json", body.to_string()).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert!(reply.content_type.starts_with("application/json"));
    let responses = reply.json()["responses"].as_array().cloned().unwrap_or_default();
    assert_eq!(responses.len(), 4, "{}", reply.text);
    assert_eq!(responses[0], json!({"id": "0", "status": 200, "body": {"name": "Thing 0"}}));
    assert_eq!(responses[1]["id"], "1");
    assert_eq!(responses[1]["atomicityGroup"], "group1");
    assert_eq!(responses[1]["status"], 201);
    let location = responses[1]["location"].as_str().unwrap_or_default().to_owned();
    assert_eq!(responses[1]["headers"]["location"], location);
    let created = id_in(&location);
    assert_eq!(location, format!("{}/Things({created})", server.root));
    assert_eq!(responses[1]["body"]["@iot.id"], created);
    assert_eq!(responses[2]["status"], 200);
    assert_eq!(responses[2]["body"]["name"], "Json Patched");
    assert_eq!(responses[3]["id"], "3");
    assert_eq!(responses[3]["status"], 404);
    assert_eq!(responses[3]["body"]["code"], 404);
    assert_eq!(server.get_ok(&format!("Things({first})")).await["name"], "Json Patched");
}

#[tokio::test]
async fn json_batch_references_in_bodies_and_urls() {
    let server = TestServer::start().await;
    let things = six_things(&server).await;
    let op = server.create("ObservedProperties", observed_property("temperature")).await;
    let mut datastream = crate::support::datastream("Temperature Thing 5");
    datastream["ObservedProperty"] = json!({"@iot.id": op});
    datastream["Sensor"] = json!({"@iot.id": "$sensor1"});
    // As FROST-Server's BatchTests test07, then a reference in a URL (outside the group).
    let body = json!({"requests": [
        {"id": "sensor1", "atomicityGroup": "group1", "method": "post", "url": "Sensors",
         "body": sensor("DS18B20")},
        {"id": "any", "atomicityGroup": "group1", "method": "post",
         "url": format!("Things({})/Datastreams", things[0]), "body": datastream},
        {"id": "obs", "method": "post", "url": "$any/Observations", "dependsOn": ["group1"],
         "body": {"result": 3, "FeatureOfInterest": {"name": "here", "description": "a place",
                  "encodingType": "application/geo+json",
                  "feature": {"type": "Point", "coordinates": [8.0, 50.0]}}}},
        {"id": "read", "method": "get", "url": "$sensor1/Datastreams?$select=name",
         "dependsOn": ["obs"]},
    ]});
    let reply = post_batch(&server, "application/json", body.to_string()).await;
    let responses = reply.json()["responses"].as_array().cloned().unwrap_or_default();
    assert_eq!(responses.len(), 4, "{}", reply.text);
    let statuses: Vec<&Json> = responses.iter().map(|r| &r["status"]).collect();
    assert_eq!(statuses, [&json!(201), &json!(201), &json!(201), &json!(200)], "{}", reply.text);
    let sensor_id = id_in(responses[0]["location"].as_str().unwrap_or_default());
    let datastream_id = id_in(responses[1]["location"].as_str().unwrap_or_default());
    assert_eq!(
        server.get_ok(&format!("Datastreams({datastream_id})/Sensor")).await["@iot.id"],
        sensor_id
    );
    assert_eq!(responses[3]["body"], json!({"value": [{"name": "Temperature Thing 5"}]}));
    assert_eq!(server.ids(&format!("Datastreams({datastream_id})/Observations")).await.len(), 1);
}

#[tokio::test]
async fn json_batch_failed_group_rolls_back_and_fails_its_dependents() {
    let server = TestServer::start().await;
    let body = json!({"requests": [
        {"id": "a", "atomicityGroup": "g", "method": "post", "url": "Things", "body": thing("a")},
        {"id": "b", "atomicityGroup": "g", "method": "post", "url": "Things",
         "body": {"name": "no description"}},
        {"id": "c", "atomicityGroup": "g", "method": "post", "url": "Things", "body": thing("c")},
        {"id": "d", "method": "post", "url": "Things", "body": thing("d"), "dependsOn": ["g"]},
        {"id": "e", "method": "post", "url": "Things", "body": thing("e"), "dependsOn": ["d"]},
        {"id": "f", "method": "post", "url": "Things", "body": thing("f")},
    ]});
    let reply = post_batch(&server, "application/json", body.to_string()).await;
    let responses = reply.json()["responses"].as_array().cloned().unwrap_or_default();
    let statuses: Vec<u64> = responses.iter().map(|r| r["status"].as_u64().unwrap_or(0)).collect();
    assert_eq!(statuses, [424, 400, 424, 424, 424, 201], "{}", reply.text);
    let message =
        |i: usize| responses[i]["body"]["message"].as_str().unwrap_or_default().to_owned();
    assert!(message(0).contains("rolled back"), "{}", message(0));
    assert!(message(1).contains("requests[1] (id 'b') failed"), "{}", message(1));
    assert!(message(1).contains("atomicity group 'g'"), "{}", message(1));
    assert!(message(2).contains("was not run"), "{}", message(2));
    assert!(message(3).contains("'g', which it depends on, failed"), "{}", message(3));
    assert_eq!(responses[0]["atomicityGroup"], "g");
    let names: Vec<Json> = server.get_ok("Things").await["value"]
        .as_array()
        .expect("value")
        .iter()
        .map(|t| t["name"].clone())
        .collect();
    assert_eq!(names, [json!("f")]);
}

#[tokio::test]
async fn too_many_requests_or_too_large_a_body_is_413_and_writes_nothing() {
    let options =
        ServerOptions { max_batch_requests: 2, max_body_bytes: 2048, ..ServerOptions::default() };
    let server = TestServer::start_with(ServiceOptions::default(), options).await;
    let post = |name: &str| {
        format!(
            "--b\r\nContent-Type: application/http\r\n\r\nPOST Things HTTP/1.1\r\n\
             Content-Type: application/json\r\n\r\n{}\r\n",
            thing(name)
        )
    };
    let three = format!("{}{}{}--b--", post("1"), post("2"), post("3"));
    let reply = post_multipart(&server, "b", three).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", reply.text);
    assert!(reply.error_message().contains("the batch has 3 requests; at most 2"));
    let requests: Vec<Json> = (0..3)
        .map(
            |i| json!({"id": i.to_string(), "method": "post", "url": "Things", "body": thing("x")}),
        )
        .collect();
    let reply =
        post_batch(&server, "application/json", json!({"requests": requests}).to_string()).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", reply.text);
    // A change set counts each of its requests.
    let change_set = format!(
        "--b\r\nContent-Type: multipart/mixed; boundary=cs\r\n\r\n{}{}{}--cs--\r\n--b--",
        post("1").replace("--b\r\n", "--cs\r\n"),
        post("2").replace("--b\r\n", "--cs\r\n"),
        post("3").replace("--b\r\n", "--cs\r\n"),
    );
    let reply = post_multipart(&server, "b", change_set).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", reply.text);

    let large = format!("{}{}--b--", post("1"), post(&"x".repeat(3000)));
    let reply = post_multipart(&server, "b", large).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", reply.text);
    assert_eq!(server.ids("Things").await, Vec::<i64>::new());

    let two = format!("{}{}--b--", post("1"), post("2"));
    let parts = post_multipart(&server, "b", two).await.parts();
    assert_eq!(parts.iter().map(Part::status).collect::<Vec<_>>(), [201, 201]);
}

#[tokio::test]
async fn malformed_multipart_bodies_are_400_naming_the_part() {
    let server = TestServer::start().await;
    let ok_post = format!(
        "--b\r\nContent-Type: application/http\r\n\r\nPOST Things HTTP/1.1\r\n\
         Content-Type: application/json\r\n\r\n{}\r\n",
        thing("never written")
    );
    let cases: Vec<(String, &str)> = vec![
        ("no delimiter at all".into(), "no line starts with '--b'"),
        (
            format!(
                "{ok_post}--b\r\nContent-Type: application/http\r\n\r\nGET Things HTTP/1.1\r\n\r\n"
            ),
            "closing delimiter '--b--'",
        ),
        (
            format!("{ok_post}--b\r\n\r\nGET Things HTTP/1.1\r\n\r\n\r\n--b--"),
            "part 2: no Content-Type",
        ),
        (
            format!("{ok_post}--b\r\nContent-Type: text/plain\r\n\r\nhello\r\n--b--"),
            "part 2: unsupported Content-Type 'text/plain'",
        ),
        (
            format!("{ok_post}--b\r\nGET Things HTTP/1.1\r\n\r\n\r\n--b--"),
            "part 2: malformed MIME headers",
        ),
        (
            format!("{ok_post}--b\r\nContent-Type: application/http\r\n\r\nGET\r\n\r\n\r\n--b--"),
            "part 2: malformed HTTP request",
        ),
        (
            format!(
                "{ok_post}--b\r\nContent-Type: application/http\r\n\r\nPOST Things HTTP/1.1\r\nContent-Length: 99\r\n\r\n{{}}\r\n--b--"
            ),
            "part 2: Content-Length is 99, but the part holds 2 bytes",
        ),
        (
            format!(
                "{ok_post}--b\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: base64\r\n\r\nR0VU\r\n--b--"
            ),
            "part 2: Content-Transfer-Encoding 'base64'",
        ),
        (
            format!("{ok_post}--b\r\nContent-Type: multipart/mixed\r\n\r\n--cs--\r\n--b--"),
            "part 2: the change set has no boundary",
        ),
        (
            format!(
                "{ok_post}--b\r\nContent-Type: multipart/mixed; boundary=cs\r\n\r\n--cs\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n--x--\r\n--cs--\r\n--b--"
            ),
            "change set in part 2, part 1: change sets cannot be nested",
        ),
        (
            format!(
                "{ok_post}--b\r\nContent-Type: multipart/mixed; boundary=cs\r\n\r\n--cs\r\nContent-Type: application/http\r\n\r\nPOST Things HTTP/1.1\r\n\r\n{{}}\r\n--b--"
            ),
            "part 2: the change set: it does not end with the closing delimiter '--cs--'",
        ),
        (
            "--b\r\nContent-Type: application/http\r\nContent-ID: 1\r\n\r\nGET Things HTTP/1.1\r\n\r\n\r\n--b\r\nContent-Type: application/http\r\nContent-ID: 1\r\n\r\nGET Things HTTP/1.1\r\n\r\n\r\n--b--".into(),
            "part 2 (Content-ID 1): Content-ID '1' is used by an earlier part",
        ),
    ];
    for (body, expected) in cases {
        let reply = post_multipart(&server, "b", body.clone()).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{body}: {}", reply.text);
        let message = reply.error_message();
        assert!(message.contains(expected), "{body}: expected '{expected}' in '{message}'");
    }
    // The batch itself.
    let reply = post_batch(&server, "multipart/mixed", ok_post.clone()).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(reply.error_message().contains("boundary"));
    let reply = post_batch(&server, "text/plain", ok_post).await;
    assert_eq!(reply.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let get = reqwest::Client::new().get(server.url("$batch")).send().await.expect("GET");
    assert_eq!(get.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(server.ids("Things").await, Vec::<i64>::new());
}

#[tokio::test]
async fn malformed_json_batches_are_400_naming_the_request() {
    let server = TestServer::start().await;
    let post = json!({"id": "ok", "method": "post", "url": "Things", "body": thing("never")});
    let cases: Vec<(String, &str)> = vec![
        ("{\"requests\": [".into(), "malformed JSON batch: EOF"),
        (json!({"calls": []}).to_string(), "expected an object with a 'requests' array"),
        (json!({"requests": [post, 7]}).to_string(), "requests[1]: expected an object"),
        (json!({"requests": [post, {"method": "get", "url": "Things"}]}).to_string(), "requests[1]: missing member 'id'"),
        (json!({"requests": [post, {"id": "x", "url": "Things"}]}).to_string(), "requests[1] (id 'x'): missing member 'method'"),
        (json!({"requests": [post, {"id": "x", "method": "get"}]}).to_string(), "requests[1] (id 'x'): missing member 'url'"),
        (json!({"requests": [post, {"id": "x", "method": "g e t", "url": "Things"}]}).to_string(), "'g e t' is not an HTTP method"),
        (json!({"requests": [post, {"id": "ok", "method": "get", "url": "Things"}]}).to_string(), "requests[1] (id 'ok'): the id is used by an earlier request"),
        (json!({"requests": [post, {"id": "x", "method": "get", "url": "Things", "dependsOn": ["later"]}]}).to_string(), "dependsOn names 'later'"),
        (json!({"requests": [post, {"id": "x", "method": "get", "url": "Things", "headers": []}]}).to_string(), "'headers' must be an object"),
        (json!({"requests": [
            {"id": "1", "atomicityGroup": "g", "method": "post", "url": "Things", "body": thing("1")},
            {"id": "2", "method": "get", "url": "Things"},
            {"id": "3", "atomicityGroup": "g", "method": "post", "url": "Things", "body": thing("3")},
        ]}).to_string(), "requests[2] (id '3'): the requests of atomicityGroup 'g' must be adjacent"),
    ];
    for (body, expected) in cases {
        let reply = post_batch(&server, "application/json", body.clone()).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{body}: {}", reply.text);
        let message = reply.error_message();
        assert!(message.contains(expected), "{body}: expected '{expected}' in '{message}'");
    }
    assert_eq!(server.ids("Things").await, Vec::<i64>::new());
}

async fn log_key(server: &TestServer) -> VerifierKey {
    let (status, bytes, _) = server.get_bytes("/log/key").await;
    assert_eq!(status, StatusCode::OK);
    VerifierKey::parse(String::from_utf8(bytes).expect("text").trim()).expect("key")
}

async fn log_size(server: &TestServer, key: &VerifierKey) -> u64 {
    let (status, bytes, _) = server.get_bytes("/log/checkpoint").await;
    assert_eq!(status, StatusCode::OK);
    let note = String::from_utf8(bytes).expect("text");
    let opened = stela_log::open_note(&note, std::slice::from_ref(key)).expect("signed note");
    Checkpoint::parse(&opened.text).expect("checkpoint").size
}

/// POSTs that follow each other in a JSON batch are written in one bulk transaction; each
/// still answers exactly as the same request sent alone (status, body, Location), failures
/// included, and a request referring to an earlier one of the batch sees it.
#[tokio::test]
async fn posts_in_a_row_answer_as_the_same_requests_sent_alone() {
    let alone = TestServer::start().await;
    let batched = TestServer::start().await;
    let g = seed_graph(&alone, "bulk").await;
    assert_eq!(seed_graph(&batched, "bulk").await.datastream, g.datastream);
    let ds = g.datastream;
    let mut requests: Vec<(String, Json)> = Vec::new();
    for i in 0..300 {
        let body = match i {
            // Refused: no such Datastream; a result the log cannot hold; not an Observation.
            7 => json!({"result": 7, "Datastream": {"@iot.id": 999}}),
            8 => json!({"result": 9_007_199_254_740_993_u64, "Datastream": {"@iot.id": ds}}),
            9 => json!({"result": 9, "Datastream": {"@iot.id": ds}, "bogus": 1}),
            _ => json!({"phenomenonTime": format!("2020-01-01T00:{:02}:{:02}Z", i / 60, i % 60),
                        "result": i, "Datastream": {"@iot.id": ds}}),
        };
        requests.push(("Observations".to_owned(), body));
    }
    // Other paths and types in the same row.
    requests.push((
        format!("Datastreams({ds})/Observations"),
        json!({"result": "via path", "phenomenonTime": "2021-01-01T00:00:00Z"}),
    ));
    requests.push(("Things".into(), thing("made in bulk")));
    requests.push(("Things(424242)/Datastreams".into(), json!({"name": "x"})));
    let mut batch: Vec<Json> = requests
        .iter()
        .enumerate()
        .map(|(i, (url, body))| {
            json!({"id": format!("r{i}"), "method": "post", "url": url,
                   "headers": {"content-type": "application/json"}, "body": body})
        })
        .collect();
    // A request referring to one of the row ends it and sees what the row created.
    batch.push(json!({"id": "last", "method": "get", "url": "$r301"}));
    let reply =
        post_batch(&batched, "application/json", json!({"requests": batch}).to_string()).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let responses = reply.json()["responses"].as_array().unwrap().clone();
    assert_eq!(responses.len(), requests.len() + 1);
    let same_links = |value: &Json, server: &TestServer| -> Json {
        serde_json::from_str(&value.to_string().replace(&server.root, "ROOT")).unwrap()
    };
    for (index, ((url, body), answer)) in requests.iter().zip(&responses).enumerate() {
        let expected = alone.post(url, body.clone()).await;
        assert_eq!(answer["status"], json!(expected.status.as_u16()), "request {index}: {answer}");
        assert_eq!(
            same_links(&answer["body"], &batched),
            same_links(&expected.json, &alone),
            "request {index}"
        );
        assert_eq!(
            answer["location"].as_str().map(|l| l.replace(&batched.root, "ROOT")),
            expected.location.map(|l| l.replace(&alone.root, "ROOT")),
            "request {index}"
        );
    }
    let failed: Vec<usize> = responses
        .iter()
        .enumerate()
        .filter(|(_, r)| r["status"].as_u64().is_some_and(|s| s >= 400))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(failed, [7, 8, 9, 302]);
    let last = responses.last().unwrap();
    assert_eq!(last["status"], json!(200), "{last}");
    assert_eq!(last["body"]["name"], json!("made in bulk"));
    assert_eq!(batched.ids("Observations").await, alone.ids("Observations").await);
    // The row was one transaction: its entries share their commit time.
    let committed_at = |reply: Json| -> String {
        let entry = reply["entries"][0]["entry"].as_str().unwrap().to_owned();
        serde_json::from_str::<Json>(&entry).unwrap()["committed_at"].as_str().unwrap().to_owned()
    };
    let first = responses[0]["body"]["@iot.id"].as_i64().unwrap();
    let later = responses[299]["body"]["@iot.id"].as_i64().unwrap();
    assert_eq!(
        committed_at(batched.get_ok(&format!("Observations({first})/$receipt")).await),
        committed_at(batched.get_ok(&format!("Observations({later})/$receipt")).await)
    );
}

/// In a row of POSTs, a request may name (by id) an entity created by an earlier one of the
/// row, as it could were they sent one by one.
#[tokio::test]
async fn a_post_in_a_row_sees_what_the_posts_before_it_created() {
    let server = TestServer::start().await;
    let batch = json!({"requests": [
        {"id": "a", "method": "post", "url": "Things", "body": thing("first")},
        {"id": "b", "method": "post", "url": "Things(1)/Datastreams", "body": {
            "name": "d", "description": "d", "observationType": "x", "unitOfMeasurement": {},
            "Sensor": sensor("s"), "ObservedProperty": observed_property("p")}},
        {"id": "c", "method": "post", "url": "Datastreams(1)/Observations",
         "body": {"result": 1, "FeatureOfInterest": {"name": "f", "description": "d",
            "encodingType": "application/geo+json", "feature": {"type": "Point", "coordinates": [1, 2]}}}},
        {"id": "d", "method": "post", "url": "Datastreams(1)/Observations",
         "body": {"result": 2, "FeatureOfInterest": {"@iot.id": 1}}}
    ]});
    let reply = post_batch(&server, "application/json", batch.to_string()).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let statuses: Vec<Json> =
        reply.json()["responses"].as_array().unwrap().iter().map(|r| r["status"].clone()).collect();
    assert_eq!(statuses, [json!(201), json!(201), json!(201), json!(201)], "{}", reply.text);
    assert_eq!(server.get_ok("Datastreams(1)/Thing").await["name"], json!("first"));
    assert_eq!(server.ids("Datastreams(1)/Observations").await.len(), 2);
}
