//! What the broker holds of one connected client: its bounded notification queue, the switch
//! that closes it, and its window of unacknowledged QoS 1 notifications.
//!
//! The slow-subscriber rule lives in [`ClientHandle::offer`]: delivery never waits. When a
//! client's queue is full, a QoS 0 notification is dropped (and counted); a QoS 1 notification
//! cannot be dropped, so the client is disconnected (and counted). Writers and other
//! subscribers never wait for a slow client.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use rumqttc::QoS;
use tokio::sync::Notify;
use tokio::sync::mpsc::{self, error::TrySendError};

use crate::metrics::{Metrics, bump};

/// A notification on its way to one client.
#[derive(Debug, Clone)]
pub(crate) struct Outgoing {
    pub topic: Arc<str>,
    pub payload: Bytes,
    pub qos: QoS,
}

/// A one-way switch that ends a session; every task of the session watches it.
#[derive(Debug, Default)]
pub(crate) struct Closer {
    closed: AtomicBool,
    notify: Notify,
}

impl Closer {
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Completes once [`Closer::close`] has been called.
    pub async fn closed(&self) {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.is_closed() {
                return;
            }
            notified.await;
        }
    }
}

/// The broker's handle on a connected client.
#[derive(Debug)]
pub(crate) struct ClientHandle {
    /// Serial number of the connection (client ids can be reused by a later connection).
    pub conn: u64,
    pub client_id: String,
    queue: mpsc::Sender<Outgoing>,
    pub closer: Arc<Closer>,
    /// Set while notifications are being dropped, so that the log says so once per episode.
    dropping: AtomicBool,
}

impl ClientHandle {
    pub fn new(
        conn: u64,
        client_id: String,
        queue: mpsc::Sender<Outgoing>,
        closer: Arc<Closer>,
    ) -> ClientHandle {
        ClientHandle { conn, client_id, queue, closer, dropping: AtomicBool::new(false) }
    }

    /// Queues `message` without waiting; applies the slow-subscriber rule when the queue is
    /// full.
    pub fn offer(&self, message: Outgoing, metrics: &Metrics) {
        match self.queue.try_send(message) {
            Ok(()) => {
                self.dropping.store(false, Ordering::Relaxed);
            }
            Err(TrySendError::Full(message)) if message.qos == QoS::AtMostOnce => {
                bump(&metrics.dropped);
                if !self.dropping.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        client_id = %self.client_id,
                        topic = %message.topic,
                        "mqtt subscriber is not keeping up; dropping its QoS 0 notifications"
                    );
                }
            }
            Err(TrySendError::Full(message)) => {
                if !self.closer.is_closed() {
                    bump(&metrics.slow_disconnects);
                    tracing::warn!(
                        client_id = %self.client_id,
                        topic = %message.topic,
                        "mqtt subscriber is not keeping up with QoS 1 notifications; disconnecting it"
                    );
                    self.closer.close();
                }
            }
            Err(TrySendError::Closed(_)) => {}
        }
    }
}

/// Packet ids of QoS 1 notifications sent and not yet acknowledged, at most `max`.
#[derive(Debug)]
pub(crate) struct Inflight {
    state: Mutex<InflightState>,
    room: Notify,
    max: usize,
}

#[derive(Debug, Default)]
struct InflightState {
    last: u16,
    pending: HashSet<u16>,
}

impl Inflight {
    pub fn new(max: usize) -> Inflight {
        Inflight {
            state: Mutex::new(InflightState::default()),
            room: Notify::new(),
            max: max.clamp(1, 65_000),
        }
    }

    pub fn has_room(&self) -> bool {
        self.state.lock().map(|state| state.pending.len() < self.max).unwrap_or(false)
    }

    /// A fresh packet id, or `None` when the window is full.
    pub fn take(&self) -> Option<u16> {
        let mut state = self.state.lock().ok()?;
        if state.pending.len() >= self.max {
            return None;
        }
        loop {
            state.last = state.last.wrapping_add(1);
            let candidate = state.last;
            if candidate != 0 && !state.pending.contains(&candidate) {
                state.pending.insert(candidate);
                return Some(candidate);
            }
        }
    }

    /// A PUBACK arrived; unknown ids are ignored.
    pub fn release(&self, pkid: u16) {
        let released =
            self.state.lock().map(|mut state| state.pending.remove(&pkid)).unwrap_or(false);
        if released {
            self.room.notify_one();
        }
    }

    /// Completes when the window has room.
    pub async fn wait_room(&self) {
        loop {
            let notified = self.room.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.has_room() {
                return;
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inflight_window_is_bounded_and_ids_are_reused() {
        let inflight = Inflight::new(2);
        let first = inflight.take().expect("room");
        let second = inflight.take().expect("room");
        assert_ne!(first, second);
        assert!(!inflight.has_room());
        assert_eq!(inflight.take(), None);
        inflight.release(999);
        assert!(!inflight.has_room());
        inflight.release(first);
        assert!(inflight.has_room());
    }

    #[tokio::test]
    async fn full_queues_drop_qos0_and_disconnect_qos1() {
        let metrics = Metrics::new("embedded");
        let (sender, _receiver) = mpsc::channel(1);
        let closer = Arc::new(Closer::default());
        let client = ClientHandle::new(1, "slow".into(), sender, Arc::clone(&closer));
        let message = |qos| Outgoing {
            topic: Arc::from("v1.1/Things"),
            payload: Bytes::from_static(b"{}"),
            qos,
        };
        client.offer(message(QoS::AtMostOnce), &metrics);
        client.offer(message(QoS::AtMostOnce), &metrics);
        client.offer(message(QoS::AtMostOnce), &metrics);
        assert_eq!(Metrics::get(&metrics.dropped), 2);
        assert!(!closer.is_closed());
        client.offer(message(QoS::AtLeastOnce), &metrics);
        assert_eq!(Metrics::get(&metrics.slow_disconnects), 1);
        assert!(closer.is_closed());
        closer.closed().await;
    }
}
