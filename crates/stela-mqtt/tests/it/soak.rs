//! Soak: writers over MQTT at full speed for about 12 s, next to a stalled and a healthy
//! subscriber, with the broker's production defaults.
//!
//! ```text
//!  publishers ×4 (QoS 1) ──► v1.1/Datastreams(id)/Observations ──► creates ──► notifier
//!  stalled  (raw TCP, 4 KiB receive buffer, never reads) ◄── v1.1/Observations QoS 0 ──┤
//!  healthy  (rumqttc, reads everything)                  ◄── v1.1/Observations QoS 1 ──┘
//! ```
//!
//! What must hold:
//! - the writers' throughput in the second half is at least half that of the first (nothing
//!   piles up and slows them down);
//! - the healthy subscriber gets every notification, in commit order, none twice: the notifier,
//!   reading the entities of a whole batch of change events at once, keeps up with the writers
//!   (`events_lost` stays 0), and the slow-subscriber rule spares a client that reads;
//! - the stalled subscriber is counted in `/health` (dropped notifications or a slow
//!   disconnect) in both halves: it is still stalled at the end, and costs nothing;
//! - the resident memory grows by less than [`MAX_RSS_GROWTH`]. The server runs in this
//!   process, so it is read from `/proc/self/status`; the other tests of the binary, running
//!   alongside, count too, hence the generous bound.
//!
//! The publishers use QoS 1, whose window of unacknowledged messages (rumqttc's 100) is the
//! client side's flow control. At QoS 0 a client at full speed fills the socket buffers with
//! tens of thousands of messages while the broker reads only as fast as it creates (its
//! backpressure); rumqttc then gives up on a write after 5 s ("Flush timeout"), and the
//! buffered messages would take far longer than this test to drain.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use rumqttc::QoS;
use serde_json::{Value as Json, json};
use tokio::time::Instant;

use crate::support::{Peer, RawClient, TestServer, observation};

/// Publishing time of each half.
const HALF: Duration = Duration::from_secs(6);

/// Concurrent writers.
const PUBLISHERS: u32 = 4;

/// How much the resident set may grow during the run.
const MAX_RSS_GROWTH: u64 = 100 << 20;

/// 256 KiB updates that fill the stalled subscriber's socket buffers before the run.
const PREFILL_ROUNDS: u32 = 24;

/// How long the creates and notifications still in flight when publishing stops may take.
const DRAIN: Duration = Duration::from_secs(20);

/// The result that identifies message `seq` of `publisher`.
fn result_of(publisher: u32, seq: u32) -> f64 {
    f64::from(publisher) * 1e7 + f64::from(seq)
}

/// VmRSS of this process in bytes.
fn resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().strip_suffix("kB"))
        .and_then(|kib| kib.trim().parse::<u64>().ok())
        .map(|kib| kib * 1024)
        .expect("VmRSS in /proc/self/status")
}

/// Publishes Observations as fast as the broker acknowledges them until `stop_at`; returns
/// the peer (kept connected until its messages are all in) and how many it queued.
async fn publish_until(peer: Peer, topic: String, publisher: u32, stop_at: Instant) -> (Peer, u32) {
    let mut sent = 0;
    loop {
        let body = json!({
            "result": result_of(publisher, sent),
            "phenomenonTime": "2024-05-01T12:00:00Z",
        });
        if Instant::now() >= stop_at {
            return (peer, sent);
        }
        // rumqttc's request queue is bounded: this waits while the window is full. Not cut
        // short by a timeout: a publish dropped while waiting may still have been handed to
        // the event loop, and sent without being counted.
        match peer.client.publish(&topic, QoS::AtLeastOnce, false, body.to_string()).await {
            Ok(()) => sent += 1,
            Err(_) => {
                // The event loop ended; its error is among the peer's events.
                let mut peer = peer;
                while peer.message_within(Duration::from_secs(1)).await.is_some() {}
                panic!("publisher {publisher}'s connection ended");
            }
        }
    }
}

/// What the healthy subscriber received, `(@iot.id, result)` in arrival order, until `stop`.
async fn receive_until(
    mut peer: Peer,
    stop: Arc<AtomicBool>,
    received: Arc<AtomicU64>,
) -> Vec<(i64, f64)> {
    let mut seen = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let Some(publish) = peer.message_within(Duration::from_millis(100)).await else {
            continue;
        };
        assert_eq!(publish.topic, "v1.1/Observations");
        let payload: Json = serde_json::from_slice(&publish.payload).expect("a JSON payload");
        let id = payload["@iot.id"].as_i64().expect("@iot.id");
        let result = payload["result"].as_f64().expect("a numeric result");
        seen.push((id, result));
        received.fetch_add(1, Ordering::Relaxed);
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_keep_their_pace_and_memory_stays_bounded_next_to_a_stalled_subscriber() {
    let server = TestServer::start().await;
    let fixture = server.fixture().await;
    let on_datastream = format!("Datastreams({})/Observations", fixture.datastream);

    // Subscribers first, so that they see every Observation.
    let mut stalled = RawClient::connect(server.mqtt_port, "soak-stalled", 0).await;
    stalled.subscribe("v1.1/Observations", QoS::AtMostOnce).await;
    // Its socket buffers (the server's send buffer grows to 4 MiB on loopback) are filled up
    // front with updates of a large Thing, so that its queue fills after about a thousand
    // Observations however slowly the machine runs, not after several thousand more.
    let thing = format!("Things({})", fixture.thing);
    stalled.subscribe(&format!("v1.1/{thing}"), QoS::AtMostOnce).await;
    let blob = "x".repeat(256 * 1024);
    for round in 0..PREFILL_ROUNDS {
        server.patch(&thing, &json!({"properties": {"round": round, "blob": blob}})).await;
    }
    let mut healthy = Peer::connect(&server, "soak-healthy").await;
    healthy.subscribe("v1.1/Observations", QoS::AtLeastOnce).await;
    // The first Observation generates the FeatureOfInterest: done now, every change event of
    // the run is an Observation's creation.
    server.post(&on_datastream, &observation(-1.0)).await;
    assert_eq!(healthy.message().await.1["result"], -1.0);
    let stop_receiving = Arc::new(AtomicBool::new(false));
    let received = Arc::new(AtomicU64::new(0));
    let receiver =
        tokio::spawn(receive_until(healthy, Arc::clone(&stop_receiving), Arc::clone(&received)));
    let mut publishers = Vec::new();
    for publisher in 0..PUBLISHERS {
        publishers.push(Peer::connect(&server, &format!("soak-publisher-{publisher}")).await);
    }

    let rss_start = resident_bytes();
    let rss_peak = Arc::new(AtomicU64::new(rss_start));
    let stop_sampling = Arc::new(AtomicBool::new(false));
    let sampler = tokio::spawn({
        let (peak, stop) = (Arc::clone(&rss_peak), Arc::clone(&stop_sampling));
        async move {
            while !stop.load(Ordering::Relaxed) {
                peak.fetch_max(resident_bytes(), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    });

    // Publishing, two halves.
    let created = |server: &TestServer| server.count(|m| &m.created);
    let dropped = |server: &TestServer| server.count(|m| &m.dropped);
    let lost = |server: &TestServer| server.count(|m| &m.events_lost);
    let halfway = Instant::now() + HALF;
    let stop_at = halfway + HALF;
    let created_at_start = created(&server);
    let topic = format!("v1.1/{on_datastream}");
    let writers: Vec<_> = (0..PUBLISHERS)
        .zip(publishers)
        .map(|(publisher, peer)| {
            tokio::spawn(publish_until(peer, topic.clone(), publisher, stop_at))
        })
        .collect();
    tokio::time::sleep_until(halfway).await;
    let (created_at_half, dropped_at_half, lost_at_half) =
        (created(&server), dropped(&server), lost(&server));
    let mut peers = Vec::new();
    let mut sent = Vec::new();
    for writer in writers {
        let (peer, count) = writer.await.expect("publisher task");
        peers.push(peer);
        sent.push(count);
    }
    let (created_at_end, dropped_at_end) = (created(&server), dropped(&server));
    let first_half = created_at_half - created_at_start;
    let second_half = created_at_end - created_at_half;

    // Everything queued gets created, and every creation reaches the healthy subscriber or is
    // counted as lost by the notifier.
    let total: u64 = sent.iter().map(|&count| u64::from(count)).sum();
    let accounted = |server: &TestServer| received.load(Ordering::Relaxed) + lost(server);
    let drain_deadline = Instant::now() + DRAIN;
    while (created(&server) < total || accounted(&server) < total) && !receiver.is_finished() {
        assert!(
            Instant::now() < drain_deadline,
            "{DRAIN:?} after publishing stopped: {} of {total} Observations created, {} received \
             by the healthy subscriber; health: {}",
            created(&server),
            received.load(Ordering::Relaxed),
            server.health().await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let drained_after = stop_at.elapsed();
    stop_receiving.store(true, Ordering::Relaxed);
    let seen = receiver.await.expect("healthy subscriber task");
    stop_sampling.store(true, Ordering::Relaxed);
    sampler.await.expect("memory sampler");
    let rss_peak = rss_peak.load(Ordering::Relaxed).max(resident_bytes());
    let health = server.health().await;
    let mqtt = &health["mqtt"];
    let lost_at_end = lost(&server);
    println!(
        "soak: {total} Observations from {PUBLISHERS} publishers ({sent:?}): {first_half} created \
         in the first {HALF:?}, {second_half} in the second, all in {drained_after:?} after \
         publishing stopped; healthy subscriber: {} received, {lost_at_end} lost by the notifier \
         ({lost_at_half} of them in the first half); VmRSS {} MiB at the start, {} MiB at the \
         peak; /health mqtt: {mqtt}",
        seen.len(),
        rss_start >> 20,
        rss_peak >> 20,
    );

    // The writers.
    assert!(first_half > 0, "no Observation was created in the first half; health: {health}");
    assert!(
        second_half * 2 >= first_half,
        "the writers slowed down: {second_half} Observations created in the second {HALF:?}, \
         {first_half} in the first; health: {health}"
    );
    assert_eq!(created(&server), total, "not as many created as published: {health}");
    assert_eq!(server.count(|m| &m.rejected), 0, "{health}");
    let over_http = server.get(&format!("{on_datastream}?$count=true&$top=0")).await;
    assert_eq!(over_http["@iot.count"].as_u64(), Some(total + 1), "{over_http}");

    // The healthy subscriber: in commit order (ascending ids: one writer thread assigns them),
    // each once, only Observations that were published, and none missing. The notifier reads
    // per batch of change events, so it keeps up with writers committing thousands of
    // Observations per transaction and loses nothing.
    assert_eq!(lost_at_end, 0, "the notifier fell behind the writers; health: {health}");
    if let Some(pair) = seen.windows(2).find(|pair| pair[0].0 >= pair[1].0) {
        panic!("out of commit order: Observation {} arrived before {}", pair[0].0, pair[1].0);
    }
    let published: HashSet<u64> = (0..PUBLISHERS)
        .zip(&sent)
        .flat_map(|(publisher, &count)| (0..count).map(move |seq| result_of(publisher, seq) as u64))
        .collect();
    if let Some(&(id, result)) =
        seen.iter().find(|&&(_, result)| !published.contains(&(result as u64)))
    {
        panic!("Observation {id} with result {result} was not published in this run");
    }
    assert_eq!(
        seen.len() as u64 + lost_at_end,
        total,
        "the healthy subscriber received {} of {total} notifications: the others were dropped \
         for it; health: {health}",
        seen.len()
    );

    // The stalled subscriber cost nothing but was noticed, in both halves.
    let slow_disconnects = server.count(|m| &m.slow_disconnects);
    assert!(
        dropped_at_half > 0 || slow_disconnects > 0,
        "the stalled subscriber was neither dropped from nor disconnected in the first half; \
         health: {health}"
    );
    assert!(
        dropped_at_end > dropped_at_half || slow_disconnects > 0,
        "the stalled subscriber was neither dropped from nor disconnected in the second half; \
         health: {health}"
    );
    assert!(
        mqtt["dropped"].as_u64().is_some_and(|count| count > 0)
            || mqtt["slow_disconnects"].as_u64().is_some_and(|count| count > 0),
        "/health counts nothing for the stalled subscriber: {health}"
    );

    assert!(
        rss_peak.saturating_sub(rss_start) < MAX_RSS_GROWTH,
        "resident memory grew from {} MiB to {} MiB (bound: {} MiB more)",
        rss_start >> 20,
        rss_peak >> 20,
        MAX_RSS_GROWTH >> 20
    );
    drop(peers);
    drop(stalled);
}
