//! A real Stela (SQLite in a temporary directory, HTTP and the embedded broker on port 0), a
//! real MQTT client (rumqttc) to talk to it, and a hand-driven one for clients that misbehave.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rumqttc::mqttbytes::v4::{Connect, Packet, Subscribe};
use rumqttc::{
    AsyncClient, ConnectReturnCode, Event, Incoming, MqttOptions, Publish, QoS, SubscribeReasonCode,
};
use serde_json::{Value as Json, json};
use stela_mqtt::{AllowAll, Authenticator, Bridge, BridgeOptions, Broker, BrokerOptions, Metrics};
use stela_server::{HealthProvider, ServerOptions};
use stela_service::{Service, ServiceOptions};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{mpsc, watch};

/// How long a test waits for a message it expects.
pub const WAIT: Duration = Duration::from_secs(10);

/// How long a test waits to be sure that no message comes.
pub const QUIET: Duration = Duration::from_millis(500);

/// Stela with HTTP and the embedded broker; stopped when dropped.
pub struct TestServer {
    /// `http://127.0.0.1:<port>`
    pub http: String,
    pub mqtt_port: u16,
    pub metrics: Arc<Metrics>,
    http_client: reqwest::Client,
    shutdown: watch::Sender<bool>,
    _dir: tempfile::TempDir,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

async fn shutdown_future(mut receiver: watch::Receiver<bool>) {
    let _ = receiver.wait_for(|stop| *stop).await;
}

/// A fresh store and a bound HTTP listener with its base URL.
async fn open() -> (tempfile::TempDir, Service, tokio::net::TcpListener, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let service = Service::open_sqlite(&dir.path().join("stela.db"), ServiceOptions::default())
        .expect("open store");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind http");
    let http = format!("http://{}", listener.local_addr().expect("http address"));
    (dir, service, listener, http)
}

fn serve_http(
    service: Service,
    listener: tokio::net::TcpListener,
    endpoint: String,
    metrics: &Arc<Metrics>,
    shutdown: watch::Receiver<bool>,
) {
    let health: Arc<dyn HealthProvider> = metrics.clone();
    let options = ServerOptions {
        mqtt_endpoints: vec![endpoint],
        health: vec![health],
        ..ServerOptions::default()
    };
    tokio::spawn(async move {
        stela_server::run(listener, service, options, shutdown_future(shutdown))
            .await
            .expect("http server");
    });
}

fn http_client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().timeout(WAIT).build().expect("http client")
}

impl TestServer {
    pub async fn start() -> TestServer {
        TestServer::start_with(|_| {}, Arc::new(AllowAll)).await
    }

    /// Starts with broker options changed by `configure` and the given authenticator.
    pub async fn start_with(
        configure: impl FnOnce(&mut BrokerOptions),
        auth: Arc<dyn Authenticator>,
    ) -> TestServer {
        let (dir, service, http_listener, http) = open().await;
        let mqtt_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind mqtt");
        let mqtt_addr = mqtt_listener.local_addr().expect("mqtt address");
        let mut options = BrokerOptions::new(http.clone());
        // As `stela serve` runs it: creates acknowledged from the journal.
        options.journal_dir = Some(dir.path().join("mqtt-journal"));
        configure(&mut options);
        let broker = Broker::new(service.clone(), options, auth);
        let (shutdown, receiver) = watch::channel(false);
        let metrics = broker.metrics();
        tokio::spawn(broker.run(mqtt_listener, shutdown_future(receiver.clone())));
        serve_http(service, http_listener, format!("mqtt://{mqtt_addr}"), &metrics, receiver);
        TestServer {
            http,
            mqtt_port: mqtt_addr.port(),
            metrics,
            http_client: http_client(),
            shutdown,
            _dir: dir,
        }
    }

    /// Starts in external broker mode, connected to `broker_url`.
    pub async fn start_bridge(
        broker_url: &str,
        configure: impl FnOnce(&mut BridgeOptions),
    ) -> TestServer {
        let (dir, service, http_listener, http) = open().await;
        let mut options = BridgeOptions::new(broker_url, http.clone());
        options.journal_dir = Some(dir.path().join("mqtt-journal"));
        configure(&mut options);
        let bridge = Bridge::new(service.clone(), options).expect("valid broker URL");
        let (shutdown, receiver) = watch::channel(false);
        let metrics = bridge.metrics();
        tokio::spawn(bridge.run(shutdown_future(receiver.clone())));
        serve_http(service, http_listener, broker_url.to_owned(), &metrics, receiver);
        TestServer { http, mqtt_port: 0, metrics, http_client: http_client(), shutdown, _dir: dir }
    }

    /// `http://127.0.0.1:<port>/v1.1/<path>`
    pub fn url(&self, path: &str) -> String {
        format!("{}/v1.1/{path}", self.http)
    }

    pub async fn get(&self, path: &str) -> Json {
        self.get_url(&self.url(path)).await
    }

    pub async fn get_url(&self, url: &str) -> Json {
        let response = self.http_client.get(url).send().await.expect("GET");
        assert!(response.status().is_success(), "GET {url}: {}", response.status());
        response.json().await.expect("JSON body")
    }

    /// POSTs `body` to `path` and returns the id of the created entity.
    pub async fn post(&self, path: &str, body: &Json) -> i64 {
        let response = self.http_client.post(self.url(path)).json(body).send().await.expect("POST");
        let status = response.status();
        let json: Json = response.json().await.expect("JSON body");
        assert_eq!(status.as_u16(), 201, "POST {path}: {json}");
        json["@iot.id"].as_i64().expect("@iot.id")
    }

    pub async fn patch(&self, path: &str, body: &Json) {
        let response =
            self.http_client.patch(self.url(path)).json(body).send().await.expect("PATCH");
        let status = response.status();
        assert!(
            status.is_success(),
            "PATCH {path}: {status} {}",
            response.text().await.unwrap_or_default()
        );
    }

    /// A Thing with a Location and a Datastream (with Sensor and ObservedProperty).
    pub async fn fixture(&self) -> Fixture {
        let thing = self
            .post(
                "Things",
                &json!({
                    "name": "weather station",
                    "description": "on the roof",
                    "Locations": [{
                        "name": "roof",
                        "description": "the roof",
                        "encodingType": "application/geo+json",
                        "location": {"type": "Point", "coordinates": [7.1, 50.7]}
                    }],
                    "Datastreams": [{
                        "name": "air temperature",
                        "description": "2 m above the roof",
                        "unitOfMeasurement": {"name": "degree Celsius", "symbol": "°C", "definition": "http://unitsofmeasure.org/ucum.html#para-30"},
                        "observationType": "http://www.opengis.net/def/observationType/OGC-OM/2.0/OM_Measurement",
                        "Sensor": {"name": "PT100", "description": "thermometer", "encodingType": "application/pdf", "metadata": "http://example.org/pt100.pdf"},
                        "ObservedProperty": {"name": "air temperature", "definition": "http://example.org/air_temperature", "description": "temperature of the air"}
                    }]
                }),
            )
            .await;
        let datastreams = self.get(&format!("Things({thing})/Datastreams")).await;
        let datastream = datastreams["value"][0]["@iot.id"].as_i64().expect("datastream id");
        Fixture { thing, datastream }
    }

    /// A second Datastream on the fixture's Thing.
    pub async fn second_datastream(&self, fixture: &Fixture) -> i64 {
        self.post(
            &format!("Things({})/Datastreams", fixture.thing),
            &json!({
                "name": "humidity",
                "description": "relative humidity",
                "unitOfMeasurement": {"name": "percent", "symbol": "%", "definition": "http://unitsofmeasure.org/ucum.html#para-29"},
                "observationType": "http://www.opengis.net/def/observationType/OGC-OM/2.0/OM_Measurement",
                "Sensor": {"name": "HYT", "description": "hygrometer", "encodingType": "application/pdf", "metadata": "http://example.org/hyt.pdf"},
                "ObservedProperty": {"name": "humidity", "definition": "http://example.org/humidity", "description": "relative humidity"}
            }),
        )
        .await
    }

    pub async fn health(&self) -> Json {
        self.get_url(&format!("{}/health", self.http)).await
    }

    pub fn count(&self, counter: impl Fn(&Metrics) -> &std::sync::atomic::AtomicU64) -> u64 {
        Metrics::get(counter(&self.metrics))
    }

    /// Waits until `condition` holds for the metrics; panics after [`WAIT`].
    pub async fn wait_for(&self, what: &str, condition: impl Fn(&Metrics) -> bool) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while !condition(&self.metrics) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}; health: {}",
                self.health().await
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Ids of the fixture's entities.
#[derive(Debug, Clone, Copy)]
pub struct Fixture {
    pub thing: i64,
    pub datastream: i64,
}

/// An Observation body.
pub fn observation(result: f64) -> Json {
    json!({"result": result, "phenomenonTime": "2024-05-01T12:00:00Z"})
}

/// What the test client's event loop saw.
#[derive(Debug)]
enum PeerEvent {
    ConnAck(ConnectReturnCode),
    SubAck(Vec<SubscribeReasonCode>),
    UnsubAck,
    Publish(Publish),
    Failed(String),
}

/// An MQTT client (rumqttc, MQTT 3.1.1) connected to a broker.
pub struct Peer {
    pub client: AsyncClient,
    events: mpsc::UnboundedReceiver<PeerEvent>,
    publishes: VecDeque<Publish>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Peer {
    /// Connects to the embedded broker of `server`.
    pub async fn connect(server: &TestServer, client_id: &str) -> Peer {
        Peer::connect_to("127.0.0.1", server.mqtt_port, client_id, None).await.expect("connect")
    }

    /// Connects; `Err` holds the refusal.
    pub async fn connect_to(
        host: &str,
        port: u16,
        client_id: &str,
        credentials: Option<(&str, &str)>,
    ) -> Result<Peer, String> {
        let mut options = MqttOptions::new(client_id, host, port);
        options.set_keep_alive(Duration::from_secs(5)).set_max_packet_size(16 << 20, 16 << 20);
        if let Some((username, password)) = credentials {
            options.set_credentials(username, password);
        }
        let (client, mut eventloop) = AsyncClient::new(options, 256);
        let (sender, events) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                let event = match eventloop.poll().await {
                    Ok(Event::Incoming(Incoming::ConnAck(ack))) => PeerEvent::ConnAck(ack.code),
                    Ok(Event::Incoming(Incoming::SubAck(ack))) => {
                        PeerEvent::SubAck(ack.return_codes)
                    }
                    Ok(Event::Incoming(Incoming::UnsubAck(_))) => PeerEvent::UnsubAck,
                    Ok(Event::Incoming(Incoming::Publish(publish))) => PeerEvent::Publish(publish),
                    Ok(_) => continue,
                    Err(error) => {
                        let _ = sender.send(PeerEvent::Failed(error.to_string()));
                        return;
                    }
                };
                if sender.send(event).is_err() {
                    return;
                }
            }
        });
        let mut peer = Peer { client, events, publishes: VecDeque::new(), task };
        match peer.next_event().await {
            PeerEvent::ConnAck(ConnectReturnCode::Success) => Ok(peer),
            other => Err(format!("{other:?}")),
        }
    }

    async fn next_event(&mut self) -> PeerEvent {
        match tokio::time::timeout(WAIT, self.events.recv()).await {
            Ok(Some(event)) => event,
            Ok(None) => PeerEvent::Failed("event loop ended".into()),
            Err(_) => PeerEvent::Failed("timed out".into()),
        }
    }

    /// Subscribes and returns the broker's answer for the topic.
    pub async fn subscribe(&mut self, topic: &str, qos: QoS) -> SubscribeReasonCode {
        self.client.subscribe(topic, qos).await.expect("queue SUBSCRIBE");
        loop {
            match self.next_event().await {
                PeerEvent::SubAck(codes) => return codes[0],
                PeerEvent::Publish(publish) => self.publishes.push_back(publish),
                other => panic!("expected SUBACK for {topic}, got {other:?}"),
            }
        }
    }

    pub async fn unsubscribe(&mut self, topic: &str) {
        self.client.unsubscribe(topic).await.expect("queue UNSUBSCRIBE");
        loop {
            match self.next_event().await {
                PeerEvent::UnsubAck => return,
                PeerEvent::Publish(publish) => self.publishes.push_back(publish),
                other => panic!("expected UNSUBACK for {topic}, got {other:?}"),
            }
        }
    }

    pub async fn publish(&self, topic: &str, qos: QoS, payload: impl Into<Vec<u8>>) {
        self.client.publish(topic, qos, false, payload).await.expect("queue PUBLISH");
    }

    /// The next message within `wait`, if any.
    pub async fn message_within(&mut self, wait: Duration) -> Option<Publish> {
        if let Some(publish) = self.publishes.pop_front() {
            return Some(publish);
        }
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(PeerEvent::Publish(publish))) => return Some(publish),
                Ok(Some(PeerEvent::Failed(error))) => panic!("mqtt client failed: {error}"),
                Ok(Some(_)) => continue,
                Ok(None) | Err(_) => return None,
            }
        }
    }

    /// The next message as `(topic, JSON)`; panics when none comes.
    pub async fn message(&mut self) -> (String, Json) {
        let publish = self.message_within(WAIT).await.expect("a message within the wait");
        let json = serde_json::from_slice(&publish.payload).expect("the payload is JSON");
        (publish.topic, json)
    }

    /// Asserts that no message comes for a while.
    pub async fn assert_quiet(&mut self) {
        if let Some(publish) = self.message_within(QUIET).await {
            panic!(
                "unexpected message on {}: {}",
                publish.topic,
                String::from_utf8_lossy(&publish.payload)
            );
        }
    }
}

/// One MQTT packet as bytes.
pub fn encode(packet: &Packet) -> Vec<u8> {
    let mut buffer = BytesMut::new();
    packet.write(&mut buffer, usize::MAX).expect("encode");
    buffer.to_vec()
}

/// A hand-driven MQTT connection, for clients that misbehave on purpose.
pub struct RawClient {
    stream: TcpStream,
    buffer: BytesMut,
}

impl RawClient {
    /// Connects with a small receive buffer (so that a client that stops reading is felt
    /// quickly) and does not send CONNECT yet.
    pub async fn open(port: u16) -> RawClient {
        let socket = TcpSocket::new_v4().expect("socket");
        socket.set_recv_buffer_size(4096).expect("small receive buffer");
        let stream = socket.connect(([127, 0, 0, 1], port).into()).await.expect("connect");
        RawClient { stream, buffer: BytesMut::new() }
    }

    /// Opens and completes CONNECT/CONNACK.
    pub async fn connect(port: u16, client_id: &str, keep_alive: u16) -> RawClient {
        let mut client = RawClient::open(port).await;
        let mut connect = Connect::new(client_id);
        connect.keep_alive = keep_alive;
        client.send(&encode(&Packet::Connect(connect))).await;
        match client.packet().await {
            Some(Packet::ConnAck(ack)) => assert_eq!(ack.code, rumqttc::ConnectReturnCode::Success),
            other => panic!("expected CONNACK, got {other:?}"),
        }
        client
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
    }

    pub async fn subscribe(&mut self, topic: &str, qos: QoS) {
        self.send(&encode(&Packet::Subscribe(Subscribe::new(topic, qos)))).await;
        match self.packet().await {
            Some(Packet::SubAck(_)) => {}
            other => panic!("expected SUBACK, got {other:?}"),
        }
    }

    /// The next packet, or `None` when the server closed the connection.
    pub async fn packet(&mut self) -> Option<Packet> {
        loop {
            match Packet::read(&mut self.buffer, usize::MAX) {
                Ok(packet) => return Some(packet),
                Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => {}
                Err(error) => panic!("malformed packet from the broker: {error}"),
            }
            let read = tokio::time::timeout(WAIT, self.stream.read_buf(&mut self.buffer))
                .await
                .expect("the broker answers or closes in time");
            match read {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    /// Reads (and discards) until the server closes the connection; panics if it does not
    /// within the wait.
    pub async fn expect_closed(&mut self) {
        let deadline = Instant::now() + WAIT;
        while self.packet().await.is_some() {
            assert!(Instant::now() < deadline, "the broker did not close the connection");
        }
    }
}
