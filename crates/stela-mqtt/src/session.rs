//! One client connection: the MQTT 3.1.1 session loop on rumqttc's packet codec.
//!
//! ```text
//!  socket ─► reader (this task) ──────────────────────────────────────────┐
//!             CONNECT → auth → CONNACK                                     │
//!             SUBSCRIBE → parse topic → Subscriptions → SUBACK ─┐          │
//!             PUBLISH → Ingest::submit ─┬─► ack queue ─► ack task ┤ control  │
//!                     (known at once, none queued) ───────────────┤          │
//!             PINGREQ → PINGRESP, PUBACK → inflight window ─────┤ channel  │
//!                                                               ▼          │
//!  notifier ─► ClientHandle::offer ─► bounded queue ─► writer task ─► socket
//! ```
//!
//! The writer sends control packets first, batches what is queued into one write, and
//! disconnects the client when a write blocks longer than `write_timeout`. The reader does
//! not wait for a create: it queues the message (waiting only while the broker's create queue
//! is full) and reads on, so that a client's messages are committed together in batches.
//! PUBACKs go in the order the PUBLISHes came, each once its message is durable (journaled, or
//! committed without a journal): through the ack task while earlier ones wait there, straight
//! to the writer otherwise. Any protocol
//! violation closes the connection (as MQTT requires); nothing a client sends can stop the
//! broker or other clients.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::BytesMut;
use rumqttc::mqttbytes::{self, QoS, v4::*};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::auth::{AuthDecision, ConnectRequest};
use crate::broker::Shared;
use crate::client::{ClientHandle, Closer, Inflight, Outgoing};
use crate::ingest::{Pending, Rejection, log_rejection};
use crate::metrics::bump;
use crate::payload::{entity_path, property_json, read_entity};
use crate::protocol::{Connect, ConnectAnswer, Control, Protocol, Refusal, RefusalKind};
use crate::topic::{TopicKind, parse_subscription};

/// Control packets (acks, pings) waiting for the writer.
const CONTROL_QUEUE: usize = 64;

/// QoS 2 packet ids awaiting PUBREL; more means a misbehaving client.
const MAX_AWAITING_RELEASE: usize = 1024;

/// Bytes gathered into one socket write.
const WRITE_BATCH_BYTES: usize = 64 * 1024;

/// Why a connection ended, for the debug log.
#[derive(Debug)]
enum End {
    Closed,
    Protocol(String),
    Io(std::io::Error),
}

pub(crate) async fn run(shared: Arc<Shared>, stream: TcpStream, peer: SocketAddr) {
    bump(&shared.metrics.connections);
    match serve(&shared, stream, peer).await {
        Ok(()) | Err(End::Closed) => tracing::debug!(%peer, "mqtt connection closed"),
        Err(End::Io(error)) => tracing::debug!(%peer, %error, "mqtt connection failed"),
        Err(End::Protocol(reason)) => {
            bump(&shared.metrics.rejected);
            tracing::warn!(%peer, %reason, "mqtt connection closed: protocol violation");
        }
    }
}

/// Reads until `buffer` holds one whole packet; returns an error for a malformed or
/// oversized one.
async fn fill_frame(
    reader: &mut OwnedReadHalf,
    buffer: &mut BytesMut,
    max: usize,
) -> Result<(), End> {
    loop {
        match mqttbytes::check(buffer.iter(), max) {
            Ok(_) => return Ok(()),
            Err(mqttbytes::Error::InsufficientBytes(more)) => {
                buffer.reserve(more.max(4096));
                let read = reader.read_buf(buffer).await.map_err(End::Io)?;
                if read == 0 {
                    return Err(End::Closed);
                }
            }
            Err(error) => return Err(End::Protocol(error.to_string())),
        }
    }
}

async fn read_packet(
    reader: &mut OwnedReadHalf,
    buffer: &mut BytesMut,
    max: usize,
    protocol: Protocol,
) -> Result<Packet, End> {
    fill_frame(reader, buffer, max).await?;
    protocol.read(buffer, max).map_err(End::Protocol)
}

/// The protocol level of a CONNECT frame at the start of `frame` (4 for MQTT 3.1.1).
fn connect_protocol_level(frame: &[u8]) -> Option<u8> {
    let mut index = 1;
    while frame.get(index)? & 0x80 != 0 {
        index += 1;
        if index > 4 {
            return None;
        }
    }
    index += 1;
    let name_len = usize::from(u16::from_be_bytes([*frame.get(index)?, *frame.get(index + 1)?]));
    frame.get(index + 2 + name_len).copied()
}

/// Sends the CONNACK of `answer`.
async fn connack(
    stream: &mut OwnedWriteHalf,
    protocol: Protocol,
    answer: ConnectAnswer,
    connect: Option<&Connect>,
    assigned: Option<&str>,
) -> Result<(), End> {
    let mut buffer = BytesMut::new();
    protocol.encode_connack(answer, connect, assigned, &mut buffer);
    stream.write_all(&buffer).await.map_err(End::Io)
}

async fn refuse(stream: &mut OwnedWriteHalf, protocol: Protocol, answer: ConnectAnswer) {
    let _ = connack(stream, protocol, answer, None, None).await;
}

async fn serve(shared: &Arc<Shared>, stream: TcpStream, peer: SocketAddr) -> Result<(), End> {
    let _ = stream.set_nodelay(true);
    let options = &shared.options;
    let (mut reader, mut writer) = stream.into_split();
    let mut buffer = BytesMut::with_capacity(4096);

    let first = tokio::time::timeout(options.connect_timeout, async {
        // The first byte tells whether this is MQTT at all: wait for nothing more otherwise.
        while buffer.is_empty() {
            if reader.read_buf(&mut buffer).await.map_err(End::Io)? == 0 {
                return Err(End::Closed);
            }
        }
        if buffer[0] != 0x10 {
            return Err(End::Protocol("the first packet is not CONNECT".into()));
        }
        fill_frame(&mut reader, &mut buffer, options.max_packet_bytes).await?;
        match connect_protocol_level(&buffer) {
            Some(level @ (4 | 5)) => Connect::read(&mut buffer, level, options.max_packet_bytes)
                .map(Some)
                .map_err(End::Protocol),
            _ => Ok(None),
        }
    })
    .await
    .map_err(|_| {
        End::Protocol(format!("no CONNECT within {} s", options.connect_timeout.as_secs()))
    })?;
    let Some(connect) = first? else {
        // MQTT 3.1 (level 3) or unknown: answered as MQTT 3.1.1 answers it.
        refuse(&mut writer, Protocol::V4, ConnectAnswer::UnsupportedProtocol).await;
        return Err(End::Protocol("unsupported MQTT protocol version; use 3.1.1 or 5".into()));
    };
    let protocol = connect.protocol;
    if connect.authentication_method.is_some() {
        refuse(&mut writer, protocol, ConnectAnswer::BadAuthenticationMethod).await;
        return Err(End::Protocol("enhanced authentication is not offered".into()));
    }

    // MQTT 5 lets the server name a client that gave no id; MQTT 3.1.1 only in a clean session.
    let assigned = connect.client_id.is_empty();
    let client_id = if assigned {
        if protocol == Protocol::V4 && !connect.clean_start {
            refuse(&mut writer, protocol, ConnectAnswer::BadClientId).await;
            return Err(End::Protocol("empty client id without clean session".into()));
        }
        format!("stela-anonymous-{}", shared.next_conn())
    } else {
        connect.client_id.clone()
    };
    let request = ConnectRequest {
        client_id: &client_id,
        username: connect.login.as_ref().map(|(username, _)| username.as_str()),
        password: connect.login.as_ref().map(|(_, password)| password.as_str()),
    };
    let principal = match shared.auth.authenticate(&request) {
        AuthDecision::Accept(principal) => principal,
        decision => {
            let answer = if decision == AuthDecision::NotAuthorized {
                ConnectAnswer::NotAuthorized
            } else {
                ConnectAnswer::BadCredentials
            };
            refuse(&mut writer, protocol, answer).await;
            bump(&shared.metrics.rejected);
            tracing::warn!(%peer, %client_id, "mqtt connection refused: bad credentials");
            return Ok(());
        }
    };
    if connect.has_will {
        tracing::debug!(%client_id, "mqtt last will ignored: the broker does not publish wills");
    }

    let conn = shared.next_conn();
    let closer = Arc::new(Closer::default());
    let (queue_tx, queue_rx) = mpsc::channel(options.client_queue.max(1));
    let handle =
        Arc::new(ClientHandle::new(conn, client_id.clone(), queue_tx, Arc::clone(&closer)));
    let previous = shared
        .clients
        .lock()
        .ok()
        .and_then(|mut clients| clients.insert(client_id.clone(), Arc::clone(&handle)));
    if let Some(previous) = previous {
        tracing::info!(%client_id, "mqtt client reconnected; closing its previous connection");
        previous.closer.close();
    }
    shared.metrics.clients.fetch_add(1, Ordering::Relaxed);
    tracing::debug!(%peer, %client_id, %principal, ?protocol, keep_alive = connect.keep_alive, "mqtt client connected");

    // The session is always clean: nothing is kept between connections (session present 0).
    let assigned_id = assigned.then_some(client_id.as_str());
    let accepted = ConnectAnswer::Accepted;
    let result = match connack(&mut writer, protocol, accepted, Some(&connect), assigned_id).await {
        Ok(()) => {
            // MQTT 5: no more QoS 1 notifications in flight than the client takes.
            let window = connect
                .receive_maximum
                .map_or(options.max_inflight, |most| options.max_inflight.min(usize::from(most)));
            let mut session = Session {
                shared: Arc::clone(shared),
                handle: Arc::clone(&handle),
                principal,
                protocol,
                topics: HashSet::new(),
                awaiting_release: HashSet::new(),
                inflight: Arc::new(Inflight::new(window)),
            };
            session.run(reader, writer, buffer, queue_rx, connect.keep_alive).await
        }
        Err(error) => Err(error),
    };

    closer.close();
    if let Ok(mut clients) = shared.clients.lock()
        && clients.get(&client_id).is_some_and(|current| current.conn == conn)
    {
        clients.remove(&client_id);
    }
    shared.metrics.clients.fetch_sub(1, Ordering::Relaxed);
    result
}

struct Session {
    shared: Arc<Shared>,
    handle: Arc<ClientHandle>,
    principal: String,
    protocol: Protocol,
    /// Topics this connection subscribed to, removed from the index when it ends.
    topics: HashSet<String>,
    /// QoS 2 packet ids processed and awaiting PUBREL (duplicates are not created twice).
    awaiting_release: HashSet<u16>,
    inflight: Arc<Inflight>,
}

/// A create in progress and the acknowledgement to send once it is done.
struct PendingAck {
    topic: String,
    outcome: Pending,
    ack: Option<Control>,
}

/// The reading side's way to acknowledge: through the ack task while earlier acknowledgements
/// wait there for their creates (PUBACKs go in PUBLISH order), straight to the writer when none
/// does and the outcome is known at once (a journaled message's), with no task in between.
struct Acks {
    queue: mpsc::Sender<PendingAck>,
    /// Acknowledgements handed to the ack task and not yet sent to the writer.
    waiting: Arc<AtomicUsize>,
    /// Refused messages of the connection, for the log's rate limit.
    rejected: Arc<AtomicU64>,
}

impl Acks {
    async fn send(
        &self,
        pending: PendingAck,
        control: &mpsc::Sender<Control>,
        client_id: &str,
    ) -> Result<(), End> {
        let PendingAck { topic, outcome, ack } = pending;
        match outcome {
            // Only this task adds to `waiting`, and the ack task takes one off after sending:
            // at 0, everything queued before is with the writer already.
            Pending::Done(result) if self.waiting.load(Ordering::Acquire) == 0 => {
                let ack = refuse_ack(ack, result, &topic, client_id, &self.rejected);
                match ack {
                    Some(ack) => control.send(ack).await.map_err(|_| End::Closed),
                    None => Ok(()),
                }
            }
            outcome => {
                self.waiting.fetch_add(1, Ordering::AcqRel);
                let pending = PendingAck { topic, outcome, ack };
                self.queue.send(pending).await.map_err(|_| End::Closed)
            }
        }
    }
}

impl Session {
    async fn run(
        &mut self,
        mut reader: OwnedReadHalf,
        writer: OwnedWriteHalf,
        mut buffer: BytesMut,
        queue: mpsc::Receiver<Outgoing>,
        keep_alive: u16,
    ) -> Result<(), End> {
        let closer = Arc::clone(&self.handle.closer);
        let (control_tx, control_rx) = mpsc::channel::<Control>(CONTROL_QUEUE);
        let writer_task = tokio::spawn(write_loop(
            Arc::clone(&self.shared),
            self.protocol,
            writer,
            control_rx,
            queue,
            Arc::clone(&self.inflight),
            Arc::clone(&self.handle),
        ));
        let (ack_tx, ack_rx) =
            mpsc::channel::<PendingAck>(self.shared.options.max_pending_creates.max(1));
        let acks = Acks {
            queue: ack_tx,
            waiting: Arc::new(AtomicUsize::new(0)),
            rejected: Arc::new(AtomicU64::new(0)),
        };
        let ack_task = tokio::spawn(ack_loop(
            ack_rx,
            control_tx.clone(),
            self.handle.client_id.clone(),
            Arc::clone(&acks.waiting),
            Arc::clone(&acks.rejected),
        ));

        // MQTT 3.1.1 §3.1.2.10: one and a half keep-alive periods without a packet end it.
        let idle_limit =
            (keep_alive > 0).then(|| Duration::from_millis(u64::from(keep_alive) * 1500));
        let max = self.shared.options.max_packet_bytes;
        let result = loop {
            let deadline = idle_limit.map(|limit| Instant::now() + limit);
            let packet = tokio::select! {
                biased;
                () = closer.closed() => break Ok(()),
                packet = read_with_deadline(&mut reader, &mut buffer, max, self.protocol, deadline) => packet,
            };
            let packet = match packet {
                Ok(packet) => packet,
                Err(end) => break Err(end),
            };
            match self.handle_packet(packet, &control_tx, &acks).await {
                Ok(true) => {}
                Ok(false) => break Ok(()),
                Err(end) => break Err(end),
            }
        };

        closer.close();
        drop(acks);
        // Creates already started finish (their Observations are committed either way).
        let _ = ack_task.await;
        let _ = writer_task.await;
        if let Ok(mut subscriptions) = self.shared.subscriptions.lock() {
            for topic in &self.topics {
                subscriptions.unsubscribe(topic, self.handle.conn);
            }
            self.shared.metrics.topics.store(subscriptions.topic_count() as u64, Ordering::Relaxed);
        }
        result
    }

    /// Handles one packet; `Ok(false)` ends the session cleanly (DISCONNECT).
    async fn handle_packet(
        &mut self,
        packet: Packet,
        control: &mpsc::Sender<Control>,
        acks: &Acks,
    ) -> Result<bool, End> {
        let send =
            |packet: Control| async move { control.send(packet).await.map_err(|_| End::Closed) };
        match packet {
            Packet::Publish(publish) => self.handle_publish(publish, control, acks).await?,
            Packet::Subscribe(subscribe) => {
                let granted = self.handle_subscribe(&subscribe).await;
                send(Control::SubAck { pkid: subscribe.pkid, granted }).await?;
            }
            Packet::Unsubscribe(unsubscribe) => {
                let mut existed = Vec::with_capacity(unsubscribe.topics.len());
                if let Ok(mut subscriptions) = self.shared.subscriptions.lock() {
                    for topic in &unsubscribe.topics {
                        let subscribed = self.topics.remove(topic);
                        if subscribed {
                            subscriptions.unsubscribe(topic, self.handle.conn);
                        }
                        existed.push(subscribed);
                    }
                    self.shared
                        .metrics
                        .topics
                        .store(subscriptions.topic_count() as u64, Ordering::Relaxed);
                }
                existed.resize(unsubscribe.topics.len(), false);
                send(Control::UnsubAck { pkid: unsubscribe.pkid, existed }).await?;
            }
            Packet::PubAck(ack) => self.inflight.release(ack.pkid),
            Packet::PubRel(release) => {
                self.awaiting_release.remove(&release.pkid);
                send(Control::PubComp { pkid: release.pkid }).await?;
            }
            // The broker never sends QoS 2, so these acknowledge nothing; ignore them.
            Packet::PubRec(_) | Packet::PubComp(_) => {}
            Packet::PingReq => send(Control::PingResp).await?,
            Packet::Disconnect => return Ok(false),
            Packet::Connect(_) => return Err(End::Protocol("second CONNECT".into())),
            Packet::ConnAck(_) | Packet::SubAck(_) | Packet::UnsubAck(_) | Packet::PingResp => {
                return Err(End::Protocol("a server-to-client packet sent by the client".into()));
            }
        }
        Ok(true)
    }

    async fn handle_publish(
        &mut self,
        publish: Publish,
        control: &mpsc::Sender<Control>,
        acks: &Acks,
    ) -> Result<(), End> {
        bump(&self.shared.metrics.messages_in);
        let ack = match publish.qos {
            QoS::AtMostOnce => None,
            QoS::AtLeastOnce => Some(Control::PubAck { pkid: publish.pkid, refusal: None }),
            QoS::ExactlyOnce => {
                if self.awaiting_release.contains(&publish.pkid) {
                    // A retransmission of a message already processed: acknowledge only.
                    let outcome = Pending::Done(Ok(0));
                    let ack = Some(Control::PubRec { pkid: publish.pkid, refusal: None });
                    let pending = PendingAck { topic: publish.topic, outcome, ack };
                    return acks.send(pending, control, &self.handle.client_id).await;
                }
                if self.awaiting_release.len() >= MAX_AWAITING_RELEASE {
                    return Err(End::Protocol("too many QoS 2 messages without PUBREL".into()));
                }
                self.awaiting_release.insert(publish.pkid);
                Some(Control::PubRec { pkid: publish.pkid, refusal: None })
            }
        };
        let ingest = &self.shared.ingest;
        let outcome = if self.shared.auth.may_publish(&self.principal, &publish.topic) {
            // Waits only while the create queue is full: the backpressure of a flood.
            ingest.submit(&publish.topic, &publish.payload).await
        } else {
            Pending::Done(Err(ingest.reject(Rejection::NotAuthorized)))
        };
        let pending = PendingAck { topic: publish.topic, outcome, ack };
        acks.send(pending, control, &self.handle.client_id).await
    }

    async fn handle_subscribe(&mut self, subscribe: &Subscribe) -> Vec<Result<QoS, Refusal>> {
        let mut codes = Vec::with_capacity(subscribe.filters.len());
        for filter in &subscribe.filters {
            let parsed = match parse_subscription(&filter.path) {
                Err(error) => Err(Refusal { kind: RefusalKind::TopicInvalid, reason: error.0 }),
                Ok(_) if !self.shared.auth.may_subscribe(&self.principal, &filter.path) => {
                    let reason = format!("'{}': not authorised", filter.path);
                    Err(Refusal { kind: RefusalKind::NotAuthorized, reason })
                }
                Ok(topic) => Ok(topic),
            };
            let topic = match parsed {
                Ok(topic) => topic,
                Err(refusal) => {
                    bump(&self.shared.metrics.rejected);
                    tracing::warn!(client_id = %self.handle.client_id, reason = %refusal.reason, "mqtt subscription refused");
                    codes.push(Err(refusal));
                    continue;
                }
            };
            // QoS 2 is granted as QoS 1: notifications are idempotent entity states.
            let qos =
                if filter.qos == QoS::AtMostOnce { QoS::AtMostOnce } else { QoS::AtLeastOnce };
            let property = match topic.kind {
                TopicKind::Property(ty, id, index) => Some((ty, id, index)),
                _ => None,
            };
            let is_new = match self.shared.subscriptions.lock() {
                Ok(mut subscriptions) => {
                    let is_new = subscriptions.subscribe(
                        &filter.path,
                        topic,
                        self.handle.conn,
                        Arc::clone(&self.handle),
                        qos,
                    );
                    self.shared
                        .metrics
                        .topics
                        .store(subscriptions.topic_count() as u64, Ordering::Relaxed);
                    is_new
                }
                Err(_) => false,
            };
            self.topics.insert(filter.path.clone());
            if is_new && let Some((ty, id, index)) = property {
                // Property topics publish changes only: remember the value now.
                if let Ok(Some(entity)) =
                    read_entity(&self.shared.service, entity_path(ty, id), Default::default()).await
                {
                    let json = property_json(&entity, index);
                    let value = json
                        .as_object()
                        .and_then(|o| o.values().next())
                        .cloned()
                        .unwrap_or_default();
                    if let Ok(mut subscriptions) = self.shared.subscriptions.lock() {
                        subscriptions.initial_value(&filter.path, value);
                    }
                }
            }
            codes.push(Ok(qos));
        }
        codes
    }
}

async fn read_with_deadline(
    reader: &mut OwnedReadHalf,
    buffer: &mut BytesMut,
    max: usize,
    protocol: Protocol,
    deadline: Option<Instant>,
) -> Result<Packet, End> {
    let read = read_packet(reader, buffer, max, protocol);
    match deadline {
        None => read.await,
        Some(deadline) => tokio::time::timeout_at(deadline, read).await.map_err(|_| {
            End::Protocol("keep-alive expired: no packet within 1.5 keep-alive periods".into())
        })?,
    }
}

/// The acknowledgement for a message whose create ended with `outcome`: a refusal is counted
/// and logged, and carried in the acknowledgement (an MQTT 5 reason code). MQTT 3.1.1 has no
/// negative acknowledgement: refused messages are acknowledged too, otherwise the client would
/// resend them forever.
fn refuse_ack(
    ack: Option<Control>,
    outcome: Result<i64, Rejection>,
    topic: &str,
    client_id: &str,
    rejected: &AtomicU64,
) -> Option<Control> {
    match outcome {
        Ok(_) => ack,
        Err(rejection) => {
            let count = rejected.fetch_add(1, Ordering::Relaxed) + 1;
            log_rejection(client_id, topic, &rejection, count);
            ack.map(|ack| ack.refused(Refusal::of(&rejection)))
        }
    }
}

/// Sends the acknowledgements in the order the messages came, each once its create is done.
async fn ack_loop(
    mut pending: mpsc::Receiver<PendingAck>,
    control: mpsc::Sender<Control>,
    client_id: String,
    waiting: Arc<AtomicUsize>,
    rejected: Arc<AtomicU64>,
) {
    while let Some(PendingAck { topic, outcome, ack }) = pending.recv().await {
        let ack = refuse_ack(ack, outcome.outcome().await, &topic, &client_id, &rejected);
        if let Some(ack) = ack
            && control.send(ack).await.is_err()
        {
            // The writer is gone; keep draining so that started creates are awaited.
        }
        waiting.fetch_sub(1, Ordering::AcqRel);
    }
}

async fn write_loop(
    shared: Arc<Shared>,
    protocol: Protocol,
    mut writer: OwnedWriteHalf,
    mut control: mpsc::Receiver<Control>,
    mut queue: mpsc::Receiver<Outgoing>,
    inflight: Arc<Inflight>,
    handle: Arc<ClientHandle>,
) {
    let (closer, client_id) = (&handle.closer, &handle.client_id);
    let mut buffer = BytesMut::with_capacity(8 * 1024);
    loop {
        buffer.clear();
        let room = inflight.has_room();
        tokio::select! {
            biased;
            () = closer.closed() => break,
            packet = control.recv() => match packet {
                Some(packet) => protocol.encode(&packet, &mut buffer),
                None => break,
            },
            () = inflight.wait_room(), if !room => continue,
            message = queue.recv(), if room => match message {
                Some(message) => {
                    encode_notification(&shared, protocol, message, &inflight, &mut buffer);
                }
                None => break,
            },
        }
        while buffer.len() < WRITE_BATCH_BYTES {
            if let Ok(packet) = control.try_recv() {
                protocol.encode(&packet, &mut buffer);
            } else if inflight.has_room()
                && let Ok(message) = queue.try_recv()
            {
                encode_notification(&shared, protocol, message, &inflight, &mut buffer);
            } else {
                break;
            }
        }
        if buffer.is_empty() {
            continue;
        }
        match tokio::time::timeout(shared.options.write_timeout, writer.write_all(&buffer)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => break,
            Err(_) => {
                bump(&shared.metrics.slow_disconnects);
                tracing::warn!(%client_id, timeout_s = shared.options.write_timeout.as_secs_f32(), "mqtt client stopped reading; disconnecting it");
                break;
            }
        }
    }
    closer.close();
}

fn encode_notification(
    shared: &Shared,
    protocol: Protocol,
    message: Outgoing,
    inflight: &Inflight,
    buffer: &mut BytesMut,
) {
    let pkid = match message.qos {
        QoS::AtMostOnce => 0,
        _ => match inflight.take() {
            Some(pkid) => pkid,
            // Cannot happen: the caller checked for room and only this task takes ids.
            None => return,
        },
    };
    if protocol.encode_publish(&message.topic, message.qos, pkid, message.payload, buffer) {
        bump(&shared.metrics.messages_out);
    } else {
        // Larger than the client's Maximum Packet Size (MQTT 5): dropped, as MQTT 5 requires.
        if message.qos != QoS::AtMostOnce {
            inflight.release(pkid);
        }
        bump(&shared.metrics.dropped);
        tracing::debug!(topic = %message.topic, "mqtt notification larger than the client takes; dropped");
    }
}
