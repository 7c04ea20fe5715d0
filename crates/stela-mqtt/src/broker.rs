//! The embedded broker: accept loop, shared state, shutdown.

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use stela_service::Service;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use crate::auth::Authenticator;
use crate::client::ClientHandle;
use crate::ingest::Ingest;
use crate::metrics::{Metrics, MqttState};
use crate::subscriptions::Subscriptions;
use crate::{notifier, session};

/// Settings of the embedded broker. [`BrokerOptions::new`] gives the defaults.
#[derive(Debug, Clone)]
pub struct BrokerOptions {
    /// Base URL of the HTTP API (e.g. `http://127.0.0.1:8080`) for the links in payloads;
    /// the same base HTTP uses, so that payloads equal HTTP's JSON.
    pub http_base_url: String,
    /// Largest packet accepted from a client; larger ones close the connection.
    pub max_packet_bytes: usize,
    /// Notifications queued per client; beyond it the slow-subscriber rule applies. Room for
    /// a few of the writer's MQTT batches (`ingest::MAX_BATCH`, up to 4,096 creates committed
    /// at once, their notifications arriving together), so that a client that reads is not
    /// taken for a slow one by a burst.
    pub client_queue: usize,
    /// QoS 1 notifications sent to a client and not yet acknowledged. The window caps a
    /// subscriber's rate at one window per round trip: with 64, a client that read everything
    /// was held to about 13,000 notifications/s once a loaded machine's round trip reached
    /// 5 ms, fell behind the writers and was disconnected as slow. A pending packet id costs
    /// a few bytes.
    pub max_inflight: usize,
    /// Creates from one client queued or committing before the broker stops reading from it
    /// (the depth of its pipeline: its PUBACKs wait for their commits, its reading does not).
    pub max_pending_creates: usize,
    /// Open connections; further ones are refused.
    pub max_connections: usize,
    /// How long a new connection may take to send CONNECT.
    pub connect_timeout: Duration,
    /// How long one write to a client may block before the client is disconnected as slow.
    pub write_timeout: Duration,
    /// Directory of the ingest journal: messages that create Observations are acknowledged
    /// once written there and created in large transactions (see the `journal` module). `None`
    /// acknowledges each after its commit.
    pub journal_dir: Option<PathBuf>,
}

impl BrokerOptions {
    pub fn new(http_base_url: impl Into<String>) -> BrokerOptions {
        BrokerOptions {
            http_base_url: http_base_url.into(),
            max_packet_bytes: 1024 * 1024,
            client_queue: 16_384,
            max_inflight: 256,
            max_pending_creates: 64,
            max_connections: 10_000,
            connect_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(30),
            journal_dir: None,
        }
    }
}

/// State shared by the accept loop, the sessions and the notifier.
#[derive(Debug)]
pub(crate) struct Shared {
    pub service: Service,
    pub options: BrokerOptions,
    pub auth: Arc<dyn Authenticator>,
    pub metrics: Arc<Metrics>,
    pub subscriptions: Mutex<Subscriptions<Arc<ClientHandle>>>,
    /// Connected clients by client id (a new CONNECT with the same id takes over).
    pub clients: Mutex<HashMap<String, Arc<ClientHandle>>>,
    pub ingest: Ingest,
    next_conn: AtomicU64,
}

impl Shared {
    pub fn next_conn(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed) + 1
    }
}

/// The embedded MQTT 3.1.1 and 5 broker of the SensorThings MQTT extension.
#[derive(Debug, Clone)]
pub struct Broker {
    shared: Arc<Shared>,
}

impl Broker {
    pub fn new(service: Service, options: BrokerOptions, auth: Arc<dyn Authenticator>) -> Broker {
        let metrics = Arc::new(Metrics::new("embedded"));
        let ingest =
            Ingest::new(service.clone(), Arc::clone(&metrics), options.journal_dir.clone());
        Broker {
            shared: Arc::new(Shared {
                service,
                options,
                auth,
                metrics,
                subscriptions: Mutex::new(Subscriptions::default()),
                clients: Mutex::new(HashMap::new()),
                ingest,
                next_conn: AtomicU64::new(0),
            }),
        }
    }

    /// Counters and state; also the `/health` report (`HealthProvider`).
    pub fn metrics(&self) -> Arc<Metrics> {
        Arc::clone(&self.shared.metrics)
    }

    /// Serves MQTT on `listener` until `shutdown` completes, then closes every connection.
    pub async fn run(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send,
    ) -> std::io::Result<()> {
        let shared = self.shared;
        let local = listener.local_addr()?;
        shared.metrics.set_endpoint(format!("mqtt://{local}"));
        shared.metrics.set_state(MqttState::Running);
        let notifier = tokio::spawn(notifier::run(Arc::clone(&shared), shared.service.subscribe()));
        let batcher = shared.ingest.start().await;
        let mut sessions = JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        if sessions.len() >= shared.options.max_connections {
                            crate::metrics::bump(&shared.metrics.rejected);
                            tracing::warn!(%peer, limit = shared.options.max_connections, "mqtt connection refused: too many connections");
                            continue;
                        }
                        sessions.spawn(session::run(Arc::clone(&shared), stream, peer));
                    }
                    Err(error) => {
                        // Usually out of file descriptors; pause instead of spinning.
                        tracing::warn!(%error, "mqtt accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
            }
        }
        let clients: Vec<Arc<ClientHandle>> = match shared.clients.lock() {
            Ok(clients) => clients.values().cloned().collect(),
            Err(_) => Vec::new(),
        };
        for client in clients {
            client.closer.close();
        }
        let drained = tokio::time::timeout(Duration::from_secs(5), async {
            while sessions.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            sessions.abort_all();
        }
        notifier.abort();
        // Every session has ended (and awaited its creates): nothing is left to batch.
        if let Some(batcher) = batcher {
            batcher.abort();
        }
        shared.metrics.set_state(MqttState::Stopped);
        tracing::info!("mqtt broker stopped");
        Ok(())
    }
}
