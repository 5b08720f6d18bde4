//! What providers tell us: customer messages and delivery statuses, each recorded exactly once.
//!
//! A provider retries a webhook until it gets a 2xx, so the same message can arrive several
//! times, on one instance or several. The unique index on (channel, direction, provider message
//! id) decides: the first insert wins, every retry finds it and changes nothing. A consent change
//! (STOP, START) commits in the same transaction as the message that asked for it, with its
//! history row and its outbox event.

use super::{
    Advance, BeginWrite, ConversationView, Purpose, Storage, StorageError, apply_advance,
    insert_event, on_pool, queue_outgoing,
};
use crate::phone::Phone;
use crate::time::Timestamp;
use serde_json::{Value, json};
use sqlx::types::Json;

/// A consent change asked for by a keyword.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsentChange {
    OptedOut,
    OptedIn,
}

impl ConsentChange {
    fn as_str(self) -> &'static str {
        match self {
            ConsentChange::OptedOut => "opted_out",
            ConsentChange::OptedIn => "opted_in",
        }
    }
}

#[derive(Debug, Clone)]
pub struct NewInbound<'a> {
    pub channel: &'a str,
    pub provider_message_id: &'a str,
    /// Our number (or sender ID) the customer wrote to.
    pub to: &'a str,
    /// None when the sender is no valid phone number: the message is kept all the same.
    pub from: Option<&'a Phone>,
    pub body: &'a str,
    pub consent: Option<ConsentChange>,
    pub received_at: Timestamp,
}

/// A customer message that owns its data, for the batch writer.
#[derive(Debug, Clone)]
pub struct OwnedInbound {
    pub channel: String,
    pub provider_message_id: String,
    pub to: String,
    pub from: Option<Phone>,
    pub body: String,
    pub consent: Option<ConsentChange>,
    pub received_at: Timestamp,
}

impl OwnedInbound {
    pub fn borrowed(&self) -> NewInbound<'_> {
        NewInbound {
            channel: &self.channel,
            provider_message_id: &self.provider_message_id,
            to: &self.to,
            from: self.from.as_ref(),
            body: &self.body,
            consent: self.consent,
            received_at: self.received_at,
        }
    }
}

/// What decides what a message causes; called inside the transaction, possibly twice (a
/// failed batch is applied again message by message), so it must be pure.
pub type Planner = dyn Fn(&InboundContext) -> InboundPlan + Send + Sync;

/// A customer message and its planner, waiting for [`Storage::receive_batch`].
pub struct QueuedInbound {
    pub new: OwnedInbound,
    pub send_max_attempts: u32,
    pub plan: std::sync::Arc<Planner>,
}

/// What [`Storage::receive_and_apply`]'s plan sees.
#[derive(Debug, Clone, PartialEq)]
pub struct InboundContext {
    pub message_id: String,
    pub contact_id: Option<String>,
    pub contact_locale: Option<String>,
    /// Whether the number is opted out, this message's change included.
    pub opted_out: bool,
    pub consent_changed: Option<ConsentChange>,
    /// The open conversation on the number the customer wrote to.
    pub conversation: Option<ConversationView>,
}

/// What a customer message causes, besides being kept.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InboundPlan {
    /// The engine's decision for the open conversation.
    pub advance: Option<Advance>,
    /// Answers to keywords, sent from the number the customer wrote to.
    pub replies: Vec<(Purpose, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InboundOutcome {
    /// A provider retry: nothing changed.
    Duplicate,
    Stored {
        message_id: String,
        contact_id: Option<String>,
        /// The consent change this message made; None when there was none to make (a second
        /// STOP from a number already opted out changes nothing and earns no second confirmation).
        consent_changed: Option<ConsentChange>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ContactRecord {
    pub id: String,
    pub phone: String,
    pub opted_out_at: Option<Timestamp>,
    /// `ok`, or what a provider said about the number: `invalid`, `landline`, `unreachable`.
    pub number_status: String,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct MessageRecord {
    pub id: String,
    pub direction: String,
    pub channel: String,
    pub provider_message_id: Option<String>,
    pub body: String,
    pub status: String,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct OutboxRecord {
    pub seq: i64,
    pub event_id: String,
    pub event_type: String,
    pub contact_id: Option<String>,
    pub occurred_at: Timestamp,
    pub payload: Json<Value>,
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ConsentRecord {
    pub change: String,
    pub source: String,
    pub at: Timestamp,
}

/// A delivery status as the provider reported it, normalised.
#[derive(Debug, Clone)]
pub struct NewStatus<'a> {
    pub channel: &'a str,
    pub provider_message_id: &'a str,
    /// One of the `messages.status` values: sent, delivered, failed_temporary, failed_permanent …
    pub status: &'a str,
    pub error_code: Option<&'a str>,
    /// What a permanent failure says about the number: `invalid`, `landline`, `unreachable`.
    pub number_status: Option<&'static str>,
    pub received_at: Timestamp,
}

/// Records one customer message and what it causes, through `$tx` (a write transaction of
/// either backend); evaluates to the outcome. A duplicate returns early, having changed nothing
/// but the contact's (idempotent) upsert. Shared by the single and the batched paths.
/// Creates or finds a contact by phone and returns (id, opted_out_at, locale), locking its row.
const CONTACT_UPSERT: &str = "INSERT INTO contacts (id, phone, created_at, updated_at) VALUES ($1, $2, $3, $3) \
     ON CONFLICT (phone) DO UPDATE SET phone = excluded.phone RETURNING id, opted_out_at, locale";

macro_rules! apply_inbound {
    ($tx:ident, $new:expr, $max:expr, $plan:expr) => {
        async {
            let new: &NewInbound<'_> = $new;
            let message_id = uuid::Uuid::now_v7().to_string();
            let now = new.received_at;
            let contact: Option<(String, Option<Timestamp>, Option<String>)> = match new.from {
                    None => None,
                    Some(phone) => {
                        // One statement creates or finds the contact; on PostgreSQL its
                        // `DO UPDATE` also locks the row, which orders one number's messages
                        // across instances (SQLite's writers already take turns).
                        Some(
                            sqlx::query_as(CONTACT_UPSERT)
                                .bind(uuid::Uuid::now_v7().to_string())
                                .bind(phone.as_e164())
                                .bind(now)
                                .fetch_one(&mut *$tx)
                                .await?,
                        )
                    }
                };
                let contact_id = contact.as_ref().map(|(id, _, _)| id.clone());
                let conversation: Option<ConversationView> = match &contact_id {
                    None => None,
                    Some(contact_id) => {
                        sqlx::query_as(
                            "SELECT c.id, c.invitation_id, i.event_id, c.flow_id, c.contact_id, c.channel, c.sender, c.state, c.version \
                             FROM conversations c JOIN invitations i ON i.id = c.invitation_id \
                             WHERE c.contact_id = $1 AND c.channel = $2 AND c.sender = $3 AND c.status = 'open'",
                        )
                        .bind(contact_id)
                        .bind(new.channel)
                        .bind(new.to)
                        .fetch_optional(&mut *$tx)
                        .await?
                    }
                };
                let inserted: Option<String> = sqlx::query_scalar(
                    "INSERT INTO messages (id, conversation_id, contact_id, direction, channel, sender, provider_message_id, body, status, created_at, updated_at) \
                     VALUES ($1, $2, $3, 'inbound', $4, $5, $6, $7, 'received', $8, $8) \
                     ON CONFLICT (channel, direction, provider_message_id) WHERE provider_message_id IS NOT NULL DO NOTHING \
                     RETURNING id",
                )
                .bind(&message_id)
                .bind(conversation.as_ref().map(|c| &c.id))
                .bind(&contact_id)
                .bind(new.channel)
                .bind(new.to)
                .bind(new.provider_message_id)
                .bind(new.body)
                .bind(now)
                .fetch_optional(&mut *$tx)
                .await?;
                if inserted.is_none() {
                    return Ok(InboundOutcome::Duplicate);
                }
                let mut consent_changed = None;
                let mut opted_out = contact.as_ref().is_some_and(|(_, at, _)| at.is_some());
                if let (Some(change), Some((contact_id, opted_out_at, _)), Some(phone)) =
                    (new.consent, &contact, new.from)
                {
                    let applies = match change {
                        ConsentChange::OptedOut => opted_out_at.is_none(),
                        ConsentChange::OptedIn => opted_out_at.is_some(),
                    };
                    if applies {
                        let opted_out_at = (change == ConsentChange::OptedOut).then_some(now);
                        opted_out = opted_out_at.is_some();
                        sqlx::query(
                            "UPDATE contacts SET opted_out_at = $1, updated_at = $2 WHERE id = $3",
                        )
                        .bind(opted_out_at)
                        .bind(now)
                        .bind(contact_id)
                        .execute(&mut *$tx)
                        .await?;
                        let source = format!("sms:{}", new.channel);
                        sqlx::query("INSERT INTO contact_consents (contact_id, change, source, at) VALUES ($1, $2, $3, $4)")
                            .bind(contact_id)
                            .bind(change.as_str())
                            .bind(&source)
                            .bind(now)
                            .execute(&mut *$tx)
                            .await?;
                        let data = json!({
                            "contact": { "id": contact_id, "phone": phone.as_e164() },
                            "channel": new.channel,
                            "source": source,
                            "message_id": message_id,
                        });
                        insert_event!(
                            $tx,
                            format!("contact.{}", change.as_str()),
                            contact_id,
                            &data,
                            now
                        );
                        consent_changed = Some(change);
                    }
                }
                let context = InboundContext {
                    message_id: message_id.clone(),
                    contact_id: contact_id.clone(),
                    contact_locale: contact.as_ref().and_then(|(_, _, locale)| locale.clone()),
                    opted_out,
                    consent_changed,
                    conversation,
                };
                let plan = ($plan)(&context);
                if let (Some(advance), Some(view)) = (&plan.advance, &context.conversation) {
                    apply_advance!(
                        $tx,
                        view,
                        advance,
                        Some(message_id.as_str()),
                        $max,
                        now
                    );
                }
                if let Some(contact_id) = &contact_id {
                    for (purpose, body) in &plan.replies {
                        queue_outgoing!($tx, conversation: None::<&str>, contact: contact_id,
                            channel: new.channel, sender: new.to, purpose: *purpose,
                            body: body, max_attempts: $max, now: now);
                    }
                }
            Ok::<InboundOutcome, StorageError>(InboundOutcome::Stored {
                message_id,
                contact_id,
                consent_changed,
            })
        }
        .await
    };
}

impl Storage {
    /// Records one customer message; see the module doc for the exactly-once rule. Nothing else
    /// happens: for a message that moves a conversation, see [`Storage::receive_and_apply`].
    pub async fn receive_inbound(
        &self,
        new: &NewInbound<'_>,
    ) -> Result<InboundOutcome, StorageError> {
        self.receive_and_apply(new, 1, |_| InboundPlan::default())
            .await
    }

    /// Records one customer message and, in the same transaction, what it causes: `plan` sees
    /// the contact and its open conversation on the number the customer wrote to (after this
    /// message's consent change) and returns the engine's decision and the replies to queue.
    /// A provider retry (the same provider message id) changes nothing and does not call `plan`.
    pub async fn receive_and_apply<P>(
        &self,
        new: &NewInbound<'_>,
        send_max_attempts: u32,
        plan: P,
    ) -> Result<InboundOutcome, StorageError>
    where
        P: FnOnce(&InboundContext) -> InboundPlan + Send,
    {
        let _writing = self.writing().await;
        on_pool!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            let outcome = apply_inbound!(tx, new, send_max_attempts, plan)?;
            match outcome {
                InboundOutcome::Duplicate => tx.rollback().await?,
                InboundOutcome::Stored { .. } => tx.commit().await?,
            }
            Ok(outcome)
        })
    }

    /// Records several customer messages, each as [`Storage::receive_and_apply`] would, in one
    /// transaction: one commit (one sync to disk) for the batch. In the order given, so one
    /// number's messages apply one after the other. All or nothing: on an error nothing is kept,
    /// and the caller may apply the messages one by one.
    pub async fn receive_batch(
        &self,
        batch: &[&QueuedInbound],
    ) -> Result<Vec<InboundOutcome>, StorageError> {
        let _writing = self.writing().await;
        on_pool!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            let mut outcomes = Vec::with_capacity(batch.len());
            for queued in batch {
                let new = queued.new.borrowed();
                let plan = &*queued.plan;
                outcomes.push(apply_inbound!(tx, &new, queued.send_max_attempts, plan)?);
            }
            tx.commit().await?;
            Ok(outcomes)
        })
    }

    pub async fn contact_by_phone(
        &self,
        phone: &Phone,
    ) -> Result<Option<ContactRecord>, StorageError> {
        Ok(on_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT id, phone, opted_out_at, number_status, created_at FROM contacts WHERE phone = $1",
            )
            .bind(phone.as_e164())
            .fetch_optional(pool)
            .await
        })?)
    }

    /// A contact's messages, oldest first.
    pub async fn contact_messages(
        &self,
        contact_id: &str,
    ) -> Result<Vec<MessageRecord>, StorageError> {
        Ok(on_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT id, direction, channel, provider_message_id, body, status, created_at FROM messages \
                 WHERE contact_id = $1 ORDER BY created_at, id",
            )
            .bind(contact_id)
            .fetch_all(pool)
            .await
        })?)
    }

    /// A contact's opt-out and opt-in history, oldest first.
    pub async fn contact_consents(
        &self,
        contact_id: &str,
    ) -> Result<Vec<ConsentRecord>, StorageError> {
        Ok(on_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT change, source, at FROM contact_consents WHERE contact_id = $1 ORDER BY id",
            )
            .bind(contact_id)
            .fetch_all(pool)
            .await
        })?)
    }

    /// Outbox events after `after_seq`, in commit order.
    pub async fn outbox_after(
        &self,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<OutboxRecord>, StorageError> {
        Ok(on_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT seq, event_id, event_type, contact_id, occurred_at, payload FROM outbox \
                 WHERE seq > $1 ORDER BY seq LIMIT $2",
            )
            .bind(after_seq)
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await
        })?)
    }

    /// How many statuses were kept for one provider message (for inspection and tests).
    pub async fn status_count(
        &self,
        channel: &str,
        provider_message_id: &str,
    ) -> Result<u64, StorageError> {
        let count: i64 = on_pool!(self, |pool| {
            sqlx::query_scalar("SELECT COUNT(*) FROM message_statuses WHERE channel = $1 AND provider_message_id = $2")
                .bind(channel)
                .bind(provider_message_id)
                .fetch_one(pool)
                .await
        })?;
        Ok(u64::try_from(count).unwrap_or(0))
    }
}

/// One part of a concatenated SMS, as received.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct MessagePart {
    pub provider_message_id: String,
    /// The customer's number, as the provider wrote it.
    pub sender: String,
    /// Our number the customer wrote to.
    pub recipient: String,
    pub reference: String,
    pub part_index: i32,
    pub part_total: i32,
    pub body: String,
}

impl Storage {
    /// Keeps one part of a concatenated SMS (a provider retry of a part counts once) and returns
    /// every part of that message received so far, this one included. The parts stay until
    /// [`Storage::forget_message_parts`] is called after the whole message is recorded, so a
    /// crash in between loses nothing: the next retry of any part completes it again.
    pub async fn store_message_part(
        &self,
        channel: &str,
        part: &MessagePart,
        now: Timestamp,
    ) -> Result<Vec<MessagePart>, StorageError> {
        let _writing = self.writing().await;
        // Two parts arriving at once on PostgreSQL would each see only itself and neither would
        // complete the message: the parts of one message take a transaction lock in turn.
        let lock = self.key_lock();
        let key = format!("parts:{channel}:{}:{}", part.sender, part.reference);
        on_pool!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            if let Some(lock) = lock {
                sqlx::query(lock).bind(&key).execute(&mut *tx).await?;
            }
            sqlx::query(
                "INSERT INTO message_parts (channel, sender, reference, part_index, part_total, provider_message_id, \
                 recipient, body, received_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                 ON CONFLICT (channel, sender, reference, part_index) DO NOTHING",
            )
            .bind(channel)
            .bind(&part.sender)
            .bind(&part.reference)
            .bind(part.part_index)
            .bind(part.part_total)
            .bind(&part.provider_message_id)
            .bind(&part.recipient)
            .bind(&part.body)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            let parts = sqlx::query_as(
                "SELECT provider_message_id, sender, recipient, reference, part_index, part_total, body \
                 FROM message_parts WHERE channel = $1 AND sender = $2 AND reference = $3 ORDER BY part_index",
            )
            .bind(channel)
            .bind(&part.sender)
            .bind(&part.reference)
            .fetch_all(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(parts)
        })
    }

    /// Parts of messages whose last part arrived before `before` and that are still incomplete,
    /// with their channel and arrival time, grouped by message.
    pub async fn stale_message_parts(
        &self,
        before: Timestamp,
    ) -> Result<Vec<(String, Timestamp, MessagePart)>, StorageError> {
        #[derive(sqlx::FromRow)]
        struct Row {
            channel: String,
            received_at: Timestamp,
            #[sqlx(flatten)]
            part: MessagePart,
        }
        let rows: Vec<Row> = on_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT p.channel, p.received_at, p.provider_message_id, p.sender, p.recipient, p.reference, \
                 p.part_index, p.part_total, p.body FROM message_parts p \
                 WHERE NOT EXISTS (SELECT 1 FROM message_parts q WHERE q.channel = p.channel \
                   AND q.sender = p.sender AND q.reference = p.reference AND q.received_at >= $1) \
                 ORDER BY p.channel, p.sender, p.reference, p.part_index",
            )
            .bind(before)
            .fetch_all(pool)
            .await
        })?;
        Ok(rows
            .into_iter()
            .map(|r| (r.channel, r.received_at, r.part))
            .collect())
    }

    /// Drops the parts of a message once the whole message is recorded.
    pub async fn forget_message_parts(
        &self,
        channel: &str,
        sender: &str,
        reference: &str,
    ) -> Result<(), StorageError> {
        let _writing = self.writing().await;
        on_pool!(self, |pool| {
            sqlx::query(
                "DELETE FROM message_parts WHERE channel = $1 AND sender = $2 AND reference = $3",
            )
            .bind(channel)
            .bind(sender)
            .bind(reference)
            .execute(pool)
            .await
            .map(|_| ())
        })?;
        Ok(())
    }
}
