//! Starting a server on port 0 and talking to it.

use reqwest::{Method, StatusCode};
use serde_json::{Value as Json, json};
use stela_server::ServerOptions;
use stela_service::{Service, ServiceOptions};
use stela_store::test_database::TestDatabase;

/// The entity sets of the Sensing core (those the OGC suite probes one by one).
pub const CORE_SETS: [&str; 8] = [
    "Things",
    "Locations",
    "HistoricalLocations",
    "Datastreams",
    "Sensors",
    "ObservedProperties",
    "Observations",
    "FeaturesOfInterest",
];

/// A running server with its own data directory; stopped when dropped.
pub struct TestServer {
    /// `http://127.0.0.1:<port>/v1.1`
    pub root: String,
    client: reqwest::Client,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    _dir: tempfile::TempDir,
    /// Dropped after the server: the PostgreSQL database of this test, if any.
    _database: Option<TestDatabase>,
}

/// A response: status, `Location` header, JSON body (`Null` when empty or not JSON), raw text.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub location: Option<String>,
    pub json: Json,
    pub text: String,
}

impl TestServer {
    pub async fn start() -> TestServer {
        TestServer::start_with(ServiceOptions::default(), ServerOptions::default()).await
    }

    pub async fn start_with(
        service_options: ServiceOptions,
        server_options: ServerOptions,
    ) -> TestServer {
        // The suite runs on SQLite, or on PostgreSQL with STELA_TEST_STORE=postgres.
        let database = if std::env::var("STELA_TEST_STORE").as_deref() == Ok("postgres") {
            let server = TestDatabase::server()
                .expect("STELA_TEST_STORE=postgres needs STELA_TEST_PG_URL (a PostgreSQL server)");
            Some(TestDatabase::create(&server).expect("test database"))
        } else {
            None
        };
        TestServer::start_on(database, service_options, server_options).await
    }

    /// A server on the given PostgreSQL database, or on SQLite when `None`.
    pub async fn start_on(
        database: Option<TestDatabase>,
        service_options: ServiceOptions,
        server_options: ServerOptions,
    ) -> TestServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let service = match &database {
            Some(database) => Service::open(database.url(), dir.path(), service_options)
                .expect("open PostgreSQL store"),
            None => Service::open_sqlite(&dir.path().join("stela.db"), service_options)
                .expect("open store"),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let shutdown = async move {
                let _ = rx.await;
            };
            stela_server::run(listener, service, server_options, shutdown).await.expect("server");
        });
        TestServer {
            root: format!("http://{address}/v1.1"),
            client: reqwest::Client::new(),
            shutdown: Some(tx),
            _dir: dir,
            _database: database,
        }
    }

    /// The absolute URL of a path below the service root (`Things(1)`), or an absolute URL.
    pub fn url(&self, path: &str) -> String {
        if path.starts_with("http") { path.to_owned() } else { format!("{}/{}", self.root, path) }
    }

    pub async fn send(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> Reply {
        let mut request = self.client.request(method, self.url(path));
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        if let Some(body) = body {
            request = request.body(body);
        }
        let response = request.send().await.expect("request");
        let status = response.status();
        let location =
            response.headers().get("location").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let text = response.text().await.expect("body");
        let json = serde_json::from_str(&text).unwrap_or(Json::Null);
        Reply { status, location, json, text }
    }

    /// GET of a URL relative to the server (e.g. `/log/tile/0/000`), as raw bytes.
    pub async fn get_bytes(&self, path: &str) -> (StatusCode, Vec<u8>, Option<String>) {
        let base = self.root.trim_end_matches("/v1.1");
        let response = self.client.get(format!("{base}{path}")).send().await.expect("request");
        let status = response.status();
        let cache = response
            .headers()
            .get("cache-control")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        (status, response.bytes().await.expect("body").to_vec(), cache)
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.send(Method::GET, path, None, None).await
    }

    pub async fn get_ok(&self, path: &str) -> Json {
        let reply = self.get(path).await;
        assert_eq!(reply.status, StatusCode::OK, "GET {path}: {}", reply.text);
        reply.json
    }

    pub async fn post(&self, path: &str, body: Json) -> Reply {
        self.send(Method::POST, path, Some("application/json"), Some(body.to_string().into_bytes()))
            .await
    }

    /// POSTs and expects 201; returns the new id.
    pub async fn create(&self, path: &str, body: Json) -> i64 {
        let reply = self.post(path, body).await;
        assert_eq!(reply.status, StatusCode::CREATED, "POST {path}: {}", reply.text);
        let location = reply.location.expect("Location header");
        let id = reply.json["@iot.id"].as_i64().expect("@iot.id");
        assert!(location.ends_with(&format!("({id})")), "{location}");
        id
    }

    pub async fn patch(&self, path: &str, body: Json) -> Reply {
        self.send(
            Method::PATCH,
            path,
            Some("application/json"),
            Some(body.to_string().into_bytes()),
        )
        .await
    }

    pub async fn put(&self, path: &str, body: Json) -> Reply {
        self.send(Method::PUT, path, Some("application/json"), Some(body.to_string().into_bytes()))
            .await
    }

    pub async fn delete(&self, path: &str) -> Reply {
        self.send(Method::DELETE, path, None, None).await
    }

    /// The ids of a collection's `value`.
    pub async fn ids(&self, path: &str) -> Vec<i64> {
        let json = self.get_ok(path).await;
        json["value"]
            .as_array()
            .expect("value")
            .iter()
            .map(|e| e["@iot.id"].as_i64().expect("id"))
            .collect()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

pub fn thing(name: &str) -> Json {
    json!({"name": name, "description": format!("{name} description"), "properties": {"owner": "test"}})
}

pub fn location(name: &str, lon: f64, lat: f64) -> Json {
    json!({"name": name, "description": "a place", "encodingType": "application/geo+json",
           "location": {"type": "Point", "coordinates": [lon, lat]}})
}

pub fn sensor(name: &str) -> Json {
    json!({"name": name, "description": "a sensor", "encodingType": "application/pdf", "metadata": "http://example.org/s.pdf"})
}

pub fn observed_property(name: &str) -> Json {
    json!({"name": name, "definition": format!("http://example.org/{name}"), "description": "a phenomenon"})
}

pub fn datastream(name: &str) -> Json {
    json!({"name": name, "description": "a datastream",
           "observationType": "http://www.opengis.net/def/observationType/OGC-OM/2.0/OM_Measurement",
           "unitOfMeasurement": {"name": "degree Celsius", "symbol": "degC", "definition": "http://unitsofmeasure.org/ucum.html#para-30"}})
}

/// Ids of a Thing with one Location and one Datastream (with its Sensor and ObservedProperty).
#[derive(Debug, Clone, Copy)]
pub struct Graph {
    pub thing: i64,
    pub location: i64,
    pub datastream: i64,
    pub sensor: i64,
    pub observed_property: i64,
}

/// Creates a Thing with a Location and a Datastream by one deep insert.
pub async fn seed_graph(server: &TestServer, name: &str) -> Graph {
    let mut body = thing(name);
    body["Locations"] = json!([location(&format!("{name} place"), 8.0, 50.0)]);
    let mut ds = datastream(&format!("{name} ds"));
    ds["Sensor"] = sensor(&format!("{name} sensor"));
    ds["ObservedProperty"] = observed_property(&format!("{name} op"));
    body["Datastreams"] = json!([ds]);
    let thing = server.create("Things", body).await;
    let location = server.ids(&format!("Things({thing})/Locations")).await[0];
    let datastream = server.ids(&format!("Things({thing})/Datastreams")).await[0];
    let sensor = server.get_ok(&format!("Datastreams({datastream})/Sensor")).await["@iot.id"]
        .as_i64()
        .expect("id");
    let observed_property =
        server.get_ok(&format!("Datastreams({datastream})/ObservedProperty")).await["@iot.id"]
            .as_i64()
            .expect("id");
    Graph { thing, location, datastream, sensor, observed_property }
}
