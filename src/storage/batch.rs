//! The inbound writer: customer messages committed in batches.
//!
//! Every webhook hands its message to one writer task and waits for its outcome; the writer
//! takes every message waiting, applies them in one transaction ([`Storage::receive_batch`]: a
//! fixed number of set-based statements, however many messages) and answers each only once the
//! batch is durable. Under load a batch forms while the previous one commits, so one commit (one
//! sync to disk) and a handful of statements serve many webhooks; when idle a message is its own
//! batch and waits for nobody.
//!
//! PostgreSQL can run several writers (`database.inbound_writers`, one by default): each batch
//! waits for its round trips and its commit, and other writers' batches overlap that wait, at
//! the price of smaller batches and more sessions at once (docs/PERFORMANCE.md). A number
//! always goes to the same writer (they are chosen by a hash of the number), so one number's
//! messages stay in arrival order. SQLite writes one transaction at a time and has one writer.
//!
//! Order: a batch is applied in arrival order, so one number's messages apply one after the
//! other; across instances (PostgreSQL) the contact rows the batch locks keep them in turn. If a
//! batch fails as a whole, its messages are applied one by one, so one bad message cannot fail
//! the others.

use super::{InboundOutcome, QueuedInbound, Storage, StorageError};
use crate::config::DatabaseKind;
use crate::jobs::JobHandover;
use futures::FutureExt;
use std::hash::BuildHasher;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};
use tracing::warn;

/// The most messages committed together.
const MAX_BATCH: usize = 128;

type Reply = oneshot::Sender<Result<InboundOutcome, StorageError>>;

/// A handle on the writers; cloning it is cheap. The writer tasks end when every handle is
/// dropped.
#[derive(Clone)]
pub struct InboundWriter {
    queues: Arc<[mpsc::Sender<(QueuedInbound, Reply)>]>,
    shards: std::collections::hash_map::RandomState,
}

impl InboundWriter {
    /// Starts the writer tasks (on the current Tokio runtime): `postgres_writers` of them on
    /// PostgreSQL (`database.inbound_writers`), one on SQLite.
    ///
    /// With a `handover` (the texts lane's), the answers' send jobs are written claimed in that
    /// lane's name and handed to it once their batch commits: they go out without waiting for
    /// the lane's next claim.
    pub fn start(
        storage: Storage,
        postgres_writers: u32,
        handover: Option<JobHandover>,
    ) -> InboundWriter {
        let writers = match storage.kind() {
            DatabaseKind::Sqlite => 1,
            DatabaseKind::Postgres => usize::try_from(postgres_writers).unwrap_or(1).max(1),
        };
        let queues = (0..writers)
            .map(|_| {
                let (queue, waiting) = mpsc::channel(MAX_BATCH * 8);
                tokio::spawn(write_batches(storage.clone(), waiting, handover.clone()));
                queue
            })
            .collect();
        InboundWriter {
            queues,
            shards: Default::default(),
        }
    }

    /// Records the message and what it causes; answers once it is durable.
    pub async fn submit(&self, queued: QueuedInbound) -> Result<InboundOutcome, StorageError> {
        // One number, one writer: its messages stay in order. A message from no valid number
        // has no order to keep.
        let key = match &queued.new.from {
            Some(phone) => phone.as_e164(),
            None => &queued.new.provider_message_id,
        };
        let shard = self.shards.hash_one(key) as usize % self.queues.len();
        let (reply, outcome) = oneshot::channel();
        self.queues[shard]
            .send((queued, reply))
            .await
            .map_err(|_| StorageError::Corrupt("the inbound writer has stopped".into()))?;
        outcome
            .await
            .map_err(|_| StorageError::Corrupt("the inbound writer dropped a message".into()))?
    }
}

fn panicked() -> StorageError {
    StorageError::Corrupt("applying this message panicked; see the logs".into())
}

async fn write_batches(
    storage: Storage,
    mut waiting: mpsc::Receiver<(QueuedInbound, Reply)>,
    handover: Option<JobHandover>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while waiting.recv_many(&mut batch, MAX_BATCH).await > 0 {
        metrics::histogram!("hearback_inbound_batch_size").record(batch.len() as f64);
        let items: Vec<&QueuedInbound> = batch.iter().map(|(queued, _)| queued).collect();
        let lease = handover.as_ref().map(JobHandover::lease);
        // A panic (a bug in the engine on one input) must not stop the writer: it fails that
        // batch, and then only the message that causes it.
        let attempt = AssertUnwindSafe(storage.receive_batch(&items, lease.as_ref()))
            .catch_unwind()
            .await
            .unwrap_or_else(|_| Err(panicked()));
        match attempt {
            Ok(applied) => {
                if let (Some(handover), Some(lease)) = (&handover, &lease) {
                    handover.hand_over(lease, applied.claimed, applied.left_pending);
                }
                for ((_, reply), outcome) in batch.drain(..).zip(applied.outcomes) {
                    let _ = reply.send(Ok(outcome));
                }
            }
            Err(e) => {
                if batch.len() > 1 {
                    warn!(error = %e, messages = batch.len(), "an inbound batch failed; applying its messages one by one");
                }
                for (queued, reply) in batch.drain(..) {
                    let outcome = AssertUnwindSafe(storage.receive_and_apply(
                        &queued.new.borrowed(),
                        queued.send_max_attempts,
                        &*queued.plan,
                    ))
                    .catch_unwind()
                    .await
                    .unwrap_or_else(|_| Err(panicked()));
                    let _ = reply.send(outcome);
                }
                // Applied one by one, the answers were written pending: later ones wait for the
                // claims to take them rather than overtake them.
                if let (Some(handover), Some(lease)) = (&handover, &lease) {
                    handover.hand_over(lease, Vec::new(), 1);
                }
            }
        }
    }
}
