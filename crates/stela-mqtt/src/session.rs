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
use crate::topic::{TopicKind, parse_subscription};

/// Largest packet the broker writes (a notification of a big entity).
const MAX_OUTGOING_PACKET: usize = 256 * 1024 * 1024;

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
) -> Result<Packet, End> {
    fill_frame(reader, buffer, max).await?;
    Packet::read(buffer, max).map_err(|error| End::Protocol(error.to_string()))
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

async fn write_now(stream: &mut OwnedWriteHalf, packet: &Packet) -> Result<(), End> {
    let mut buffer = BytesMut::new();
    packet.write(&mut buffer, MAX_OUTGOING_PACKET).map_err(|e| End::Protocol(e.to_string()))?;
    stream.write_all(&buffer).await.map_err(End::Io)
}

async fn refuse(stream: &mut OwnedWriteHalf, code: ConnectReturnCode) {
    let _ = write_now(stream, &Packet::ConnAck(ConnAck::new(code, false))).await;
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
        if connect_protocol_level(&buffer).is_some_and(|level| level != 4) {
            return Ok(None);
        }
        Packet::read(&mut buffer, options.max_packet_bytes)
            .map(Some)
            .map_err(|e| End::Protocol(e.to_string()))
    })
    .await
    .map_err(|_| {
        End::Protocol(format!("no CONNECT within {} s", options.connect_timeout.as_secs()))
    })?;
    let connect = match first? {
        Some(Packet::Connect(connect)) => connect,
        None => {
            // MQTT 5 or 3.1: this broker speaks MQTT 3.1.1 only.
            refuse(&mut writer, ConnectReturnCode::RefusedProtocolVersion).await;
            return Err(End::Protocol("unsupported MQTT protocol version; use MQTT 3.1.1".into()));
        }
        Some(other) => return Err(End::Protocol(format!("expected CONNECT, got {other:?}"))),
    };

    let client_id = if connect.client_id.is_empty() {
        if !connect.clean_session {
            refuse(&mut writer, ConnectReturnCode::BadClientId).await;
            return Err(End::Protocol("empty client id without clean session".into()));
        }
        format!("stela-anonymous-{}", shared.next_conn())
    } else {
        connect.client_id.clone()
    };
    let request = ConnectRequest {
        client_id: &client_id,
        username: connect.login.as_ref().map(|login| login.username.as_str()),
        password: connect.login.as_ref().map(|login| login.password.as_str()),
    };
    let principal = match shared.auth.authenticate(&request) {
        AuthDecision::Accept(principal) => principal,
        decision => {
            let code = if decision == AuthDecision::NotAuthorized {
                ConnectReturnCode::NotAuthorized
            } else {
                ConnectReturnCode::BadUserNamePassword
            };
            refuse(&mut writer, code).await;
            bump(&shared.metrics.rejected);
            tracing::warn!(%peer, %client_id, "mqtt connection refused: bad credentials");
            return Ok(());
        }
    };
    if connect.last_will.is_some() {
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
    tracing::debug!(%peer, %client_id, %principal, keep_alive = connect.keep_alive, "mqtt client connected");

    // The session is always clean: nothing is kept between connections (session present 0).
    let result = match write_now(
        &mut writer,
        &Packet::ConnAck(ConnAck::new(ConnectReturnCode::Success, false)),
    )
    .await
    {
        Ok(()) => {
            let mut session = Session {
                shared: Arc::clone(shared),
                handle: Arc::clone(&handle),
                principal,
                topics: HashSet::new(),
                awaiting_release: HashSet::new(),
                inflight: Arc::new(Inflight::new(options.max_inflight)),
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
    ack: Option<Packet>,
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
        control: &mpsc::Sender<Packet>,
        client_id: &str,
    ) -> Result<(), End> {
        let PendingAck { topic, outcome, ack } = pending;
        match outcome {
            // Only this task adds to `waiting`, and the ack task takes one off after sending:
            // at 0, everything queued before is with the writer already.
            Pending::Done(result) if self.waiting.load(Ordering::Acquire) == 0 => {
                if let Err(rejection) = result {
                    let count = self.rejected.fetch_add(1, Ordering::Relaxed) + 1;
                    log_rejection(client_id, &topic, &rejection, count);
                }
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
        let (control_tx, control_rx) = mpsc::channel::<Packet>(CONTROL_QUEUE);
        let writer_task = tokio::spawn(write_loop(
            Arc::clone(&self.shared),
            writer,
            control_rx,
            queue,
            Arc::clone(&self.inflight),
            Arc::clone(&closer),
            self.handle.client_id.clone(),
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
                packet = read_with_deadline(&mut reader, &mut buffer, max, deadline) => packet,
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
        control: &mpsc::Sender<Packet>,
        acks: &Acks,
    ) -> Result<bool, End> {
        let send =
            |packet: Packet| async move { control.send(packet).await.map_err(|_| End::Closed) };
        match packet {
            Packet::Publish(publish) => self.handle_publish(publish, control, acks).await?,
            Packet::Subscribe(subscribe) => {
                let codes = self.handle_subscribe(&subscribe).await;
                send(Packet::SubAck(SubAck::new(subscribe.pkid, codes))).await?;
            }
            Packet::Unsubscribe(unsubscribe) => {
                if let Ok(mut subscriptions) = self.shared.subscriptions.lock() {
                    for topic in &unsubscribe.topics {
                        if self.topics.remove(topic) {
                            subscriptions.unsubscribe(topic, self.handle.conn);
                        }
                    }
                    self.shared
                        .metrics
                        .topics
                        .store(subscriptions.topic_count() as u64, Ordering::Relaxed);
                }
                send(Packet::UnsubAck(UnsubAck::new(unsubscribe.pkid))).await?;
            }
            Packet::PubAck(ack) => self.inflight.release(ack.pkid),
            Packet::PubRel(release) => {
                self.awaiting_release.remove(&release.pkid);
                send(Packet::PubComp(PubComp::new(release.pkid))).await?;
            }
            // The broker never sends QoS 2, so these acknowledge nothing; ignore them.
            Packet::PubRec(_) | Packet::PubComp(_) => {}
            Packet::PingReq => send(Packet::PingResp).await?,
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
        control: &mpsc::Sender<Packet>,
        acks: &Acks,
    ) -> Result<(), End> {
        bump(&self.shared.metrics.messages_in);
        let ack = match publish.qos {
            QoS::AtMostOnce => None,
            QoS::AtLeastOnce => Some(Packet::PubAck(PubAck::new(publish.pkid))),
            QoS::ExactlyOnce => {
                if self.awaiting_release.contains(&publish.pkid) {
                    // A retransmission of a message already processed: acknowledge only.
                    let outcome = Pending::Done(Ok(0));
                    let ack = Some(Packet::PubRec(PubRec::new(publish.pkid)));
                    let pending = PendingAck { topic: publish.topic, outcome, ack };
                    return acks.send(pending, control, &self.handle.client_id).await;
                }
                if self.awaiting_release.len() >= MAX_AWAITING_RELEASE {
                    return Err(End::Protocol("too many QoS 2 messages without PUBREL".into()));
                }
                self.awaiting_release.insert(publish.pkid);
                Some(Packet::PubRec(PubRec::new(publish.pkid)))
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

    async fn handle_subscribe(&mut self, subscribe: &Subscribe) -> Vec<SubscribeReasonCode> {
        let mut codes = Vec::with_capacity(subscribe.filters.len());
        for filter in &subscribe.filters {
            let parsed = parse_subscription(&filter.path).and_then(|topic| {
                if self.shared.auth.may_subscribe(&self.principal, &filter.path) {
                    Ok(topic)
                } else {
                    Err(crate::topic::TopicError(format!("'{}': not authorised", filter.path)))
                }
            });
            let topic = match parsed {
                Ok(topic) => topic,
                Err(error) => {
                    bump(&self.shared.metrics.rejected);
                    tracing::warn!(client_id = %self.handle.client_id, reason = %error, "mqtt subscription refused");
                    codes.push(SubscribeReasonCode::Failure);
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
            codes.push(SubscribeReasonCode::Success(qos));
        }
        codes
    }
}

async fn read_with_deadline(
    reader: &mut OwnedReadHalf,
    buffer: &mut BytesMut,
    max: usize,
    deadline: Option<Instant>,
) -> Result<Packet, End> {
    match deadline {
        None => read_packet(reader, buffer, max).await,
        Some(deadline) => tokio::time::timeout_at(deadline, read_packet(reader, buffer, max))
            .await
            .map_err(|_| {
                End::Protocol("keep-alive expired: no packet within 1.5 keep-alive periods".into())
            })?,
    }
}

/// Sends the acknowledgements in the order the messages came, each once its create is done.
async fn ack_loop(
    mut pending: mpsc::Receiver<PendingAck>,
    control: mpsc::Sender<Packet>,
    client_id: String,
    waiting: Arc<AtomicUsize>,
    rejected: Arc<AtomicU64>,
) {
    while let Some(PendingAck { topic, outcome, ack }) = pending.recv().await {
        if let Err(rejection) = outcome.outcome().await {
            let count = rejected.fetch_add(1, Ordering::Relaxed) + 1;
            log_rejection(&client_id, &topic, &rejection, count);
        }
        // MQTT 3.1.1 has no negative acknowledgement: refused messages are acknowledged too,
        // otherwise the client would resend them forever.
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
    mut writer: OwnedWriteHalf,
    mut control: mpsc::Receiver<Packet>,
    mut queue: mpsc::Receiver<Outgoing>,
    inflight: Arc<Inflight>,
    closer: Arc<Closer>,
    client_id: String,
) {
    let mut buffer = BytesMut::with_capacity(8 * 1024);
    loop {
        buffer.clear();
        let room = inflight.has_room();
        tokio::select! {
            biased;
            () = closer.closed() => break,
            packet = control.recv() => match packet {
                Some(packet) => encode(&packet, &mut buffer),
                None => break,
            },
            () = inflight.wait_room(), if !room => continue,
            message = queue.recv(), if room => match message {
                Some(message) => encode_notification(&shared, message, &inflight, &mut buffer),
                None => break,
            },
        }
        while buffer.len() < WRITE_BATCH_BYTES {
            if let Ok(packet) = control.try_recv() {
                encode(&packet, &mut buffer);
            } else if inflight.has_room()
                && let Ok(message) = queue.try_recv()
            {
                encode_notification(&shared, message, &inflight, &mut buffer);
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

fn encode(packet: &Packet, buffer: &mut BytesMut) {
    if let Err(error) = packet.write(buffer, MAX_OUTGOING_PACKET) {
        tracing::error!(%error, "mqtt packet could not be encoded");
    }
}

fn encode_notification(
    shared: &Shared,
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
    let publish = Publish {
        dup: false,
        qos: message.qos,
        retain: false,
        topic: message.topic.to_string(),
        pkid,
        payload: message.payload,
    };
    encode(&Packet::Publish(publish), buffer);
    bump(&shared.metrics.messages_out);
}
