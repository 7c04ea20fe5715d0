//! A burst of QoS 1 Observations from several clients at once: creates are committed in
//! batches and notifications read in batches, and nothing may be lost on the way.
//!
//! ```text
//!  publishers ×4, 1,500 each, QoS 1 (rumqttc window of 100) ──► v1.1/Datastreams(id)/Observations
//!     every PUBACK counted ◄── broker (once journaled, or without a journal after the commit)
//!  subscriber (QoS 1) ◄── v1.1/Observations and v1.1/Datastreams(id)/Observations
//! ```
//!
//! The subscriber's queue holds the whole burst, so that the slow-subscriber rule (tested in
//! `robustness` and `soak`) cannot drop anything: every loss would be the server's.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, Outgoing, QoS};
use serde_json::json;
use stela_mqtt::Metrics;
use tokio::sync::Notify;

use crate::support::{Peer, TestServer, WAIT, observation};

const PUBLISHERS: u64 = 4;
const PER_PUBLISHER: u64 = 1_500;
const TOTAL: u64 = PUBLISHERS * PER_PUBLISHER;

/// The result that identifies message `seq` of `publisher`.
fn result_of(publisher: u64, seq: u64) -> u64 {
    publisher * 1_000_000 + seq
}

/// Acknowledgements a publisher received, and the packet ids it sent (in order), checked
/// against each other at the end.
#[derive(Default)]
struct Acks {
    received: AtomicU64,
    done: Notify,
    /// Packet ids in the order the PUBLISHes went out and the PUBACKs came in.
    order: std::sync::Mutex<(Vec<u16>, Vec<u16>)>,
}

/// Connects a publisher whose event loop counts PUBACKs.
async fn publisher(server: &TestServer, name: &str, acks: Arc<Acks>) -> AsyncClient {
    let mut options = MqttOptions::new(name, "127.0.0.1", server.mqtt_port);
    options.set_keep_alive(Duration::from_secs(30));
    let (client, mut eventloop) = AsyncClient::new(options, 256);
    let (connected_tx, connected) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let mut connected_tx = Some(connected_tx);
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Incoming::ConnAck(_))) => {
                    if let Some(tx) = connected_tx.take() {
                        let _ = tx.send(());
                    }
                }
                Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
                    acks.order.lock().expect("ack log").0.push(pkid);
                }
                Ok(Event::Incoming(Incoming::PubAck(ack))) => {
                    acks.order.lock().expect("ack log").1.push(ack.pkid);
                    if acks.received.fetch_add(1, Ordering::SeqCst) + 1 == PER_PUBLISHER {
                        acks.done.notify_one();
                    }
                }
                Ok(_) => {}
                // The connection ends with the test; before that, missing PUBACKs fail it.
                Err(_) => return,
            }
        }
    });
    tokio::time::timeout(WAIT, connected).await.expect("CONNACK in time").expect("connected");
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_qos1_observations_from_several_clients_is_acknowledged_stored_and_notified() {
    burst(true).await;
}

/// Without a journal, a PUBACK follows the commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_journal_a_burst_is_acknowledged_once_committed() {
    burst(false).await;
}

async fn burst(journal: bool) {
    let server = TestServer::start_with(
        |options| {
            options.client_queue = 4 * TOTAL as usize;
            options.max_inflight = 1_000;
            if !journal {
                options.journal_dir = None;
            }
        },
        Arc::new(stela_mqtt::AllowAll),
    )
    .await;
    let fixture = server.fixture().await;
    let on_datastream = format!("v1.1/Datastreams({})/Observations", fixture.datastream);
    let mut subscriber = Peer::connect(&server, "burst-subscriber").await;
    subscriber.subscribe("v1.1/Observations", QoS::AtLeastOnce).await;
    subscriber.subscribe(&on_datastream, QoS::AtLeastOnce).await;
    // The first Observation generates the FeatureOfInterest, so that every change of the burst
    // is an Observation's creation.
    server.post(&on_datastream["v1.1/".len()..], &observation(-1.0)).await;
    for _ in 0..2 {
        assert_eq!(subscriber.message().await.1["result"], -1.0);
    }

    let mut clients = Vec::new();
    for p in 0..PUBLISHERS {
        let acks = Arc::new(Acks::default());
        let client = publisher(&server, &format!("burst-publisher-{p}"), Arc::clone(&acks)).await;
        clients.push((p, client, acks));
    }
    let sending: Vec<_> = clients
        .iter()
        .map(|(p, client, _)| {
            let (p, client, topic) = (*p, client.clone(), on_datastream.clone());
            tokio::spawn(async move {
                for seq in 0..PER_PUBLISHER {
                    let body = json!({
                        "result": result_of(p, seq),
                        "phenomenonTime": "2024-05-01T12:00:00Z",
                    });
                    client
                        .publish(&topic, QoS::AtLeastOnce, false, body.to_string())
                        .await
                        .expect("queue PUBLISH");
                }
            })
        })
        .collect();
    for task in sending {
        task.await.expect("publishing task");
    }

    // Every message acknowledged, each PUBACK in the order of its PUBLISH.
    for (p, _, acks) in &clients {
        if acks.received.load(Ordering::SeqCst) < PER_PUBLISHER {
            tokio::time::timeout(WAIT * 3, acks.done.notified())
                .await
                .unwrap_or_else(|_| panic!("publisher {p} not acknowledged in time"));
        }
        assert_eq!(acks.received.load(Ordering::SeqCst), PER_PUBLISHER, "publisher {p}");
        let (sent, acknowledged) = &*acks.order.lock().expect("ack log");
        assert_eq!(acknowledged, sent, "publisher {p}: PUBACKs out of PUBLISH order");
    }
    if journal {
        // Acknowledged means journaled; the creates follow.
        assert_eq!(server.count(|m| &m.journaled), TOTAL);
        server
            .wait_for("every journaled message created", |m| Metrics::get(&m.created) == TOTAL)
            .await;
    } else {
        // Acknowledged means committed: all are there, at once.
        assert_eq!(server.count(|m| &m.journaled), 0);
        assert_eq!(server.count(|m| &m.created), TOTAL);
    }
    assert_eq!(server.count(|m| &m.rejected), 0);
    let stored = server
        .get(&format!("Datastreams({})/Observations?$count=true&$top=0", fixture.datastream))
        .await;
    assert_eq!(stored["@iot.count"], TOTAL + 1);

    // Every Observation notified once on each topic, in commit order, as HTTP renders it.
    let mut seen: HashMap<String, Vec<(i64, u64)>> = HashMap::new();
    for _ in 0..2 * TOTAL {
        let (topic, payload) = subscriber.message().await;
        let id = payload["@iot.id"].as_i64().expect("@iot.id");
        let result = payload["result"].as_u64().expect("a published result");
        seen.entry(topic).or_default().push((id, result));
    }
    subscriber.assert_quiet().await;
    let published: BTreeSet<u64> =
        (0..PUBLISHERS).flat_map(|p| (0..PER_PUBLISHER).map(move |s| result_of(p, s))).collect();
    for topic in ["v1.1/Observations", on_datastream.as_str()] {
        let notified = seen.remove(topic).unwrap_or_default();
        assert_eq!(notified.len() as u64, TOTAL, "{topic}");
        assert!(
            notified.windows(2).all(|pair| pair[0].0 < pair[1].0),
            "{topic}: not in commit order"
        );
        let results: BTreeSet<u64> = notified.iter().map(|&(_, result)| result).collect();
        assert_eq!(results, published, "{topic}");
    }
    assert!(seen.is_empty(), "notifications on other topics: {:?}", seen.keys());
    // Each publisher's Observations were committed in the order it published them.
    let by_id = server
        .get(&format!(
            "Datastreams({})/Observations?$orderby=id&$select=result&$top=10000",
            fixture.datastream
        ))
        .await;
    let results: Vec<u64> = by_id["value"]
        .as_array()
        .expect("a page")
        .iter()
        .filter_map(|o| o["result"].as_u64())
        .collect();
    for p in 0..PUBLISHERS {
        let own: Vec<u64> = results.iter().copied().filter(|r| r / 1_000_000 == p).collect();
        let expected: Vec<u64> = (0..PER_PUBLISHER).map(|s| result_of(p, s)).collect();
        assert_eq!(own, expected, "publisher {p}'s Observations out of order");
    }
    let health = server.health().await;
    assert_eq!(health["mqtt"]["events_lost"], 0, "{health}");
    assert_eq!(health["mqtt"]["dropped"], 0, "{health}");
    assert_eq!(health["mqtt"]["slow_disconnects"], 0, "{health}");
    assert_eq!(health["mqtt"]["observations_created"], TOTAL, "{health}");
    assert_eq!(health["mqtt"]["messages_in"], TOTAL, "{health}");
}
