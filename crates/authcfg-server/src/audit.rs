//! The audit queue: handlers hand events to a background writer instead of
//! writing SQLite on the request path.
//!
//! The queue is bounded. When it is full (the disk cannot keep up), an event
//! is dropped, counted in `authcfg_audit_events_dropped_total` and logged at
//! warn level, so that a slow disk degrades auditing instead of stalling every
//! request.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use authcfg_model::AuditOutcome;
use authcfg_store::{NewAuditEvent, Store};
use tokio::sync::{mpsc, oneshot};

/// Events that may wait in the queue before new ones are dropped.
const QUEUE_CAPACITY: usize = 16 * 1024;

/// Events written by one blocking call at most.
const BATCH_SIZE: usize = 256;

enum Message {
    Event(NewAuditEvent),
    Flush(oneshot::Sender<()>),
}

/// The sending side of the audit queue. Cheap to clone.
#[derive(Clone, Debug)]
pub struct AuditQueue {
    sender: mpsc::Sender<Message>,
    dropped: Arc<AtomicU64>,
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Message::Event(event) => f.debug_tuple("Event").field(&event.action).finish(),
            Message::Flush(_) => f.write_str("Flush"),
        }
    }
}

/// Builds an audit event.
pub fn event(
    actor: &str,
    action: &str,
    datasource: Option<&str>,
    outcome: AuditOutcome,
    detail: Option<serde_json::Value>,
) -> NewAuditEvent {
    NewAuditEvent {
        actor: actor.to_owned(),
        action: action.to_owned(),
        datasource: datasource.map(str::to_owned),
        outcome,
        detail,
    }
}

impl AuditQueue {
    /// Creates the queue and returns it with the writer future, which the
    /// caller spawns on the runtime; the writer ends when every sender is dropped.
    pub fn new(store: Store) -> (Self, impl std::future::Future<Output = ()>) {
        let (sender, receiver) = mpsc::channel(QUEUE_CAPACITY);
        let dropped = Arc::new(AtomicU64::new(0));
        let writer = run_writer(store, receiver, Arc::clone(&dropped));
        (Self { sender, dropped }, writer)
    }

    /// Queues an event without waiting.
    pub fn record(&self, event: NewAuditEvent) {
        if let Err(error) = self.sender.try_send(Message::Event(event)) {
            let total = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            // Log the first drop and then every thousandth, so that a stalled
            // disk does not also flood the log.
            if total == 1 || total % 1000 == 0 {
                let reason = match error {
                    mpsc::error::TrySendError::Full(_) => "the audit queue is full",
                    mpsc::error::TrySendError::Closed(_) => "the audit writer has stopped",
                };
                tracing::warn!(dropped_total = total, reason, "audit event dropped");
            }
        }
    }

    /// Waits until every event queued before this call is written.
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.sender.send(Message::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }

    /// Returns the number of events dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

async fn run_writer(store: Store, mut receiver: mpsc::Receiver<Message>, dropped: Arc<AtomicU64>) {
    while let Some(first) = receiver.recv().await {
        let mut events = Vec::new();
        let mut flushes = Vec::new();
        let mut next = Some(first);
        while let Some(message) = next.take() {
            match message {
                Message::Event(event) => events.push(event),
                Message::Flush(done) => flushes.push(done),
            }
            if events.len() < BATCH_SIZE {
                next = receiver.try_recv().ok();
            }
        }

        if !events.is_empty() {
            let store = store.clone();
            let failed = tokio::task::spawn_blocking(move || {
                let mut failed = 0_u64;
                for event in &events {
                    if let Err(error) = store.record_audit(event) {
                        failed += 1;
                        tracing::error!(action = %event.action, error = %error, "failed to write an audit event");
                    }
                }
                failed
            })
            .await
            .unwrap_or_else(|error| {
                tracing::error!(error = %error, "the audit writer task failed");
                0
            });
            dropped.fetch_add(failed, Ordering::Relaxed);
        }
        for done in flushes {
            let _ = done.send(());
        }
    }
}
