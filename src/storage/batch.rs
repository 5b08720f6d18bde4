//! The inbound writer: customer messages committed in batches.
//!
//! Every webhook hands its message to one writer task per instance and waits for its outcome;
//! the writer takes every message waiting, commits them in one transaction
//! ([`Storage::receive_batch`]) and answers each only once the batch is durable. Under load a
//! batch forms while the previous one commits, so one commit (one sync to disk) serves many
//! webhooks; when idle a message is its own batch and waits for nobody.
//!
//! Order and locks: messages keep their arrival order per number (a stable sort by number), and
//! sorting by number makes every instance lock contacts in the same order, so two instances'
//! batches wait for each other instead of deadlocking. If a batch fails as a whole, its messages
//! are applied one by one, so one bad message cannot fail the others.

use super::{InboundOutcome, QueuedInbound, Storage, StorageError};
use tokio::sync::{mpsc, oneshot};
use tracing::warn;

/// The most messages committed together.
const MAX_BATCH: usize = 128;

type Reply = oneshot::Sender<Result<InboundOutcome, StorageError>>;

/// A handle on the writer task; cloning it is cheap. The task ends when every handle is dropped.
#[derive(Clone)]
pub struct InboundWriter {
    queue: mpsc::Sender<(QueuedInbound, Reply)>,
}

impl InboundWriter {
    /// Starts the writer task (on the current Tokio runtime).
    pub fn start(storage: Storage) -> InboundWriter {
        let (queue, waiting) = mpsc::channel(MAX_BATCH * 8);
        tokio::spawn(write_batches(storage, waiting));
        InboundWriter { queue }
    }

    /// Records the message and what it causes; answers once it is durable.
    pub async fn submit(&self, queued: QueuedInbound) -> Result<InboundOutcome, StorageError> {
        let (reply, outcome) = oneshot::channel();
        self.queue
            .send((queued, reply))
            .await
            .map_err(|_| StorageError::Corrupt("the inbound writer has stopped".into()))?;
        outcome
            .await
            .map_err(|_| StorageError::Corrupt("the inbound writer dropped a message".into()))?
    }
}

async fn write_batches(storage: Storage, mut waiting: mpsc::Receiver<(QueuedInbound, Reply)>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while waiting.recv_many(&mut batch, MAX_BATCH).await > 0 {
        batch.sort_by(|(a, _), (b, _)| {
            let number = |q: &QueuedInbound| q.new.from.as_ref().map(|p| p.as_e164().to_string());
            number(a).cmp(&number(b))
        });
        metrics::histogram!("hearback_inbound_batch_size").record(batch.len() as f64);
        let items: Vec<&QueuedInbound> = batch.iter().map(|(queued, _)| queued).collect();
        match storage.receive_batch(&items).await {
            Ok(outcomes) => {
                for ((_, reply), outcome) in batch.drain(..).zip(outcomes) {
                    let _ = reply.send(Ok(outcome));
                }
            }
            Err(e) => {
                if batch.len() > 1 {
                    warn!(error = %e, messages = batch.len(), "an inbound batch failed; applying its messages one by one");
                }
                for (queued, reply) in batch.drain(..) {
                    let outcome = storage
                        .receive_and_apply(
                            &queued.new.borrowed(),
                            queued.send_max_attempts,
                            &*queued.plan,
                        )
                        .await;
                    let _ = reply.send(outcome);
                }
            }
        }
    }
}
