//! The audit queue: handlers hand events to a background writer instead of
//! writing SQLite on the request path.
//!
//! Issued headers, the most frequent event, are not queued one by one. They
//! are counted in memory per API token and data source, and the writer turns
//! each counter into one event whose detail carries the `count`. Other events
//! go through a bounded queue. The writer takes every queued event at once and
//! merges identical ones (same actor, action, data source, outcome and
//! detail) the same way.
//!
//! When the queue is full (the disk cannot keep up), an event is dropped,
//! counted in `authcfg_audit_events_dropped_total` and logged at warn level,
//! so that a slow disk degrades auditing instead of stalling every request.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use authcfg_model::AuditOutcome;
use authcfg_store::{NewAuditEvent, Store};
use tokio::sync::{mpsc, oneshot, Notify};

/// Events that may wait in the queue before new ones are dropped.
const QUEUE_CAPACITY: usize = 16 * 1024;

/// Events taken from the queue for one blocking write at most: all of them.
const BATCH_SIZE: usize = QUEUE_CAPACITY;

/// A batch of at least this many events (counted headers included) means the
/// service is under load.
const BUSY_BATCH: u64 = 64;

/// Pause of the writer after a batch written under load. At 100,000 queued
/// events per second, 5,000 arrive meanwhile, well below the queue capacity.
const BUSY_PAUSE: std::time::Duration = std::time::Duration::from_millis(50);

/// How long after its last write the writer looks at the issued counters
/// again, to drop the pairs that stayed idle and free their memory.
const PRUNE_AFTER: std::time::Duration = std::time::Duration::from_secs(5);

enum Message {
    Event(NewAuditEvent),
    Flush(oneshot::Sender<()>),
}

/// The sending side of the audit queue. Cheap to clone.
#[derive(Clone, Debug)]
pub struct AuditQueue {
    sender: mpsc::Sender<Message>,
    dropped: Arc<AtomicU64>,
    issued: Arc<IssuedCounters>,
}

/// Headers issued since the writer last ran, by API token id and data source.
#[derive(Debug, Default)]
struct IssuedCounters {
    counts: RwLock<HashMap<String, HashMap<String, AtomicU64>>>,
    /// True while a count waits for the writer, so that only the first
    /// increment after a write wakes it.
    pending: AtomicBool,
    wake: Notify,
}

impl IssuedCounters {
    fn add(&self, actor: &str, datasource: &str) {
        let counted = {
            let counts = self.counts.read().unwrap_or_else(PoisonError::into_inner);
            match counts
                .get(actor)
                .and_then(|by_name| by_name.get(datasource))
            {
                Some(counter) => {
                    counter.fetch_add(1, Ordering::Relaxed);
                    true
                }
                None => false,
            }
        };
        if !counted {
            let mut counts = self.counts.write().unwrap_or_else(PoisonError::into_inner);
            counts
                .entry(actor.to_owned())
                .or_default()
                .entry(datasource.to_owned())
                .or_default()
                .fetch_add(1, Ordering::Relaxed);
        }

        if !self.pending.swap(true, Ordering::AcqRel) {
            self.wake.notify_one();
        }
    }

    /// Turns the counts into events, resets them to zero and returns the
    /// events with the number of headers they count.
    ///
    /// Pairs that issued nothing since the previous call are dropped, so
    /// that the map contains only the pairs in use. A pair that comes back is
    /// added again by [`IssuedCounters::add`].
    fn take(&self) -> (Vec<NewAuditEvent>, u64) {
        self.pending.store(false, Ordering::Release);
        let mut events = Vec::new();
        let mut total = 0;
        let mut idle = Vec::new();
        {
            let counts = self.counts.read().unwrap_or_else(PoisonError::into_inner);
            for (actor, by_name) in counts.iter() {
                for (datasource, counter) in by_name {
                    let count = counter.swap(0, Ordering::Relaxed);
                    total += count;
                    if count == 0 {
                        idle.push((actor.clone(), datasource.clone()));
                        continue;
                    }
                    let detail = (count > 1).then(|| serde_json::json!({ "count": count }));
                    events.push(event(
                        actor,
                        ISSUE_ACTION,
                        Some(datasource),
                        AuditOutcome::Success,
                        detail,
                    ));
                }
            }
        }

        if !idle.is_empty() {
            // Increments happen under the read lock, so an idle counter that
            // is still zero here has nothing left to write.
            let mut counts = self.counts.write().unwrap_or_else(PoisonError::into_inner);
            for (actor, datasource) in idle {
                if let Some(by_name) = counts.get_mut(&actor) {
                    if by_name
                        .get(&datasource)
                        .is_some_and(|counter| counter.load(Ordering::Relaxed) == 0)
                    {
                        by_name.remove(&datasource);
                    }
                    if by_name.is_empty() {
                        counts.remove(&actor);
                    }
                }
            }
        }
        (events, total)
    }

    /// Returns true when the counters contain at least one (API token, data
    /// source) pair.
    fn has_pairs(&self) -> bool {
        !self
            .counts
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .is_empty()
    }

    /// Returns the number of (API token, data source) pairs held.
    #[cfg(test)]
    fn pairs(&self) -> usize {
        self.counts
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .map(HashMap::len)
            .sum()
    }
}

/// Action of an issued header.
pub const ISSUE_ACTION: &str = "authorization.issue";

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
        let issued = Arc::new(IssuedCounters::default());
        let writer = run_writer(store, receiver, Arc::clone(&issued), Arc::clone(&dropped));
        (
            Self {
                sender,
                dropped,
                issued,
            },
            writer,
        )
    }

    /// Counts a header issued to `actor` for `datasource`, without allocating
    /// once the pair has been seen.
    pub fn record_issued(&self, actor: &str, datasource: &str) {
        self.issued.add(actor, datasource);
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

/// The fields that make two events identical.
type EventKey = (String, String, Option<String>, AuditOutcome, Option<String>);

/// Merges identical events, keeping the order of first occurrence. A merged
/// event's detail gets a `count` member with the number of events it stands for.
fn coalesce(events: Vec<NewAuditEvent>) -> Vec<NewAuditEvent> {
    let mut positions: HashMap<EventKey, usize> = HashMap::new();
    let mut merged: Vec<(NewAuditEvent, u64)> = Vec::new();
    for event in events {
        let key = (
            event.actor.clone(),
            event.action.clone(),
            event.datasource.clone(),
            event.outcome,
            event.detail.as_ref().map(ToString::to_string),
        );
        match positions.get(&key) {
            Some(&position) => merged[position].1 += 1,
            None => {
                positions.insert(key, merged.len());
                merged.push((event, 1));
            }
        }
    }

    merged
        .into_iter()
        .map(|(mut event, count)| {
            if count > 1 {
                let mut detail = match event.detail.take() {
                    Some(serde_json::Value::Object(map)) => map,
                    Some(other) => {
                        let mut map = serde_json::Map::new();
                        map.insert("detail".to_owned(), other);
                        map
                    }
                    None => serde_json::Map::new(),
                };
                detail.insert("count".to_owned(), serde_json::Value::from(count));
                event.detail = Some(serde_json::Value::Object(detail));
            }
            event
        })
        .collect()
}

async fn run_writer(
    store: Store,
    mut receiver: mpsc::Receiver<Message>,
    issued: Arc<IssuedCounters>,
    dropped: Arc<AtomicU64>,
) {
    loop {
        // Pairs stay until a pass finds them idle, so without traffic one
        // more pass comes after PRUNE_AFTER to drop them.
        let has_pairs = issued.has_pairs();
        let first = tokio::select! {
            message = receiver.recv() => match message {
                Some(message) => Some(message),
                None => break,
            },
            () = issued.wake.notified() => None,
            () = tokio::time::sleep(PRUNE_AFTER), if has_pairs => None,
        };

        let mut events = Vec::new();
        let mut flushes = Vec::new();
        let mut next = first.or_else(|| receiver.try_recv().ok());
        while let Some(message) = next.take() {
            match message {
                Message::Event(event) => events.push(event),
                Message::Flush(done) => flushes.push(done),
            }
            if events.len() < BATCH_SIZE {
                next = receiver.try_recv().ok();
            }
        }

        let (counted, issued_total) = issued.take();
        let received = u64::try_from(events.len()).unwrap_or(u64::MAX) + issued_total;
        events.extend(counted);
        if !events.is_empty() {
            let events = coalesce(events);
            let store = store.clone();
            let failed = tokio::task::spawn_blocking(move || {
                // One transaction for the batch; when it fails, each event
                // is written alone, so that one bad event loses only itself.
                if store.record_audits(&events).is_ok() {
                    return 0;
                }
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
        let flushed = !flushes.is_empty();
        for done in flushes {
            let _ = done.send(());
        }

        // Under load, let events pile up for a moment so that the next batch
        // merges more of them. A batch with a flush request skips the pause.
        if received >= BUSY_BATCH && !flushed {
            tokio::time::sleep(BUSY_PAUSE).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_counters_become_events() {
        let counters = IssuedCounters::default();
        counters.add("tok_a", "crm");
        counters.add("tok_a", "crm");
        counters.add("tok_b", "crm");

        let (mut events, total) = counters.take();
        events.sort_by(|left, right| left.actor.cmp(&right.actor));
        let (again, _) = counters.take();

        assert_eq!(total, 3);
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].actor, "tok_a");
        assert_eq!(events[0].action, ISSUE_ACTION);
        assert_eq!(events[0].detail, Some(serde_json::json!({ "count": 2 })));
        assert_eq!(events[1].actor, "tok_b");
        assert_eq!(events[1].detail, None);
        assert!(again.is_empty());
    }

    #[test]
    fn idle_issued_pairs_are_dropped() {
        let counters = IssuedCounters::default();
        counters.add("tok_a", "crm");
        counters.add("tok_a", "billing");
        let _ = counters.take();
        assert_eq!(counters.pairs(), 2, "pairs used since the last take stay");

        counters.add("tok_a", "crm");
        let (events, total) = counters.take();

        assert_eq!(total, 1);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].datasource.as_deref(), Some("crm"));
        assert_eq!(
            counters.pairs(),
            1,
            "billing issued nothing since the last take"
        );
        let _ = counters.take();
        assert_eq!(counters.pairs(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn writer_drops_idle_pairs_without_traffic() {
        let (_dir, store) = crate::test_support::open_store();
        let (queue, writer) = AuditQueue::new(store.clone());
        let writer = tokio::spawn(writer);

        // One pass writes the count and keeps the pair. Yielding, unlike
        // sleeping, does not move the paused clock.
        queue.record_issued("tok_a", "crm");
        while store.list_audit(None, None, 10).unwrap().items.is_empty() {
            tokio::task::yield_now().await;
        }
        assert_eq!(queue.issued.pairs(), 1, "the pair is kept after its write");

        // Paused time advances on its own while every task waits. Without
        // the timed pass, the writer would wait for traffic and keep the pair.
        tokio::time::sleep(PRUNE_AFTER * 3).await;
        assert_eq!(queue.issued.pairs(), 0, "the idle pair was not dropped");
        writer.abort();
    }

    #[test]
    fn coalesce_merges_identical_events() {
        let issue = event(
            "tok_a",
            "authorization.issue",
            Some("crm"),
            AuditOutcome::Success,
            None,
        );
        let other = event(
            "tok_b",
            "authorization.issue",
            Some("crm"),
            AuditOutcome::Success,
            None,
        );
        let failed = event(
            "tok_a",
            "authorization.issue",
            Some("crm"),
            AuditOutcome::Failure,
            Some(serde_json::json!({ "upstream_status": 401 })),
        );

        let merged = coalesce(vec![
            issue.clone(),
            other.clone(),
            issue.clone(),
            failed.clone(),
            failed,
            issue,
        ]);

        assert_eq!(merged.len(), 3);
        assert_eq!(merged[0].actor, "tok_a");
        assert_eq!(merged[0].detail, Some(serde_json::json!({ "count": 3 })));
        assert_eq!(merged[1], other);
        assert_eq!(
            merged[2].detail,
            Some(serde_json::json!({ "upstream_status": 401, "count": 2 }))
        );
    }
}
