//! What providers tell us: customer messages and delivery statuses, each recorded exactly once.
//!
//! A provider retries a webhook until it gets a 2xx, so the same message can arrive several
//! times, on one instance or several. The unique index on (channel, direction, provider message
//! id) decides: the first insert wins, every retry finds it and changes nothing. A consent change
//! (STOP, START) commits in the same transaction as the message that asked for it, with its
//! history row and its outbox event.

use super::bulk::{self, BulkWrite};
use super::cases::{ActiveCase, CaseInput, NewAlert};
use super::contacts::block_new_contacts;
use super::{
    Advance, BeginWrite, ConversationStatus, ConversationView, Purpose, Storage, StorageError,
    Timing, WriteSet, fetch_by_ids, flush_writes, insert_new_cases, on_pool,
};
use crate::phone::Phone;
use crate::time::Timestamp;
use serde_json::{Value, json};
use sqlx::types::Json;
use std::collections::{HashMap, HashSet};

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
    /// The customer's case that is not closed yet, if any.
    pub case: Option<ActiveCase>,
}

/// What a customer message causes, besides being kept.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InboundPlan {
    /// The engine's decision for the open conversation.
    pub advance: Option<Advance>,
    /// Answers to keywords, sent from the number the customer wrote to.
    pub replies: Vec<(Purpose, String)>,
    /// Alerts the step raised: the first opens a case unless the customer has one, which the
    /// others join.
    pub alerts: Vec<NewAlert>,
    /// What the message is to the customer's case, when no survey takes it.
    pub case: Option<CaseInput>,
}

/// What [`Storage::receive_batch`] did: an outcome per message, in order, and the send jobs it
/// wrote claimed under its lease.
#[derive(Debug)]
pub struct InboundBatch {
    pub outcomes: Vec<InboundOutcome>,
    pub claimed: Vec<super::ClaimedJob>,
    /// Send jobs due now that the lease had no room for: written pending, for the claims (those
    /// through a channel it leaves to the claims are not counted).
    pub left_pending: usize,
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

/// A contact as a batch reads it: id, phone, opted out at, locale, created at.
type StoredContact = (String, String, Option<Timestamp>, Option<String>, Timestamp);

/// A customer message to apply, and what decides its effects.
struct Applying<'a> {
    new: NewInbound<'a>,
    send_max_attempts: u32,
    plan: &'a (dyn Fn(&InboundContext) -> InboundPlan + Send + Sync),
}

/// A contact as a batch sees it, its consent changes applied as they happen.
struct ContactState {
    id: String,
    opted_out_at: Option<Timestamp>,
    locale: Option<String>,
}

/// A customer message to insert.
pub(crate) struct ReceivedRow<'a> {
    /// Its place among the outcomes.
    pub(crate) outcome: usize,
    pub(crate) id: String,
    pub(crate) conversation_id: Option<String>,
    pub(crate) contact_id: Option<String>,
    pub(crate) case_id: Option<String>,
    pub(crate) new: &'a NewInbound<'a>,
}

/// A consent change to record: the contact's new state and its history row.
struct ConsentRow {
    contact_id: String,
    change: ConsentChange,
    opted_out_at: Option<Timestamp>,
    source: String,
    at: Timestamp,
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
        P: Fn(&InboundContext) -> InboundPlan + Send + Sync,
    {
        let applying = [Applying {
            new: new.clone(),
            send_max_attempts,
            plan: &plan,
        }];
        let mut applied = self.apply_inbound(&applying, None).await?;
        applied
            .outcomes
            .pop()
            .ok_or_else(|| StorageError::Corrupt("a message had no outcome".into()))
    }

    /// Records several customer messages, each as [`Storage::receive_and_apply`] would, in one
    /// transaction: one commit (one sync to disk) for the batch. In the order given, so one
    /// number's messages apply one after the other. All or nothing: on an error nothing is kept,
    /// and the caller may apply the messages one by one.
    ///
    /// With a `lease`, the answers' send jobs are written claimed under it and returned, for the
    /// caller to run at once (`jobs::JobHandover`); without one they are pending, for a claim.
    pub async fn receive_batch(
        &self,
        batch: &[&QueuedInbound],
        lease: Option<&super::JobLease>,
    ) -> Result<InboundBatch, StorageError> {
        let applying: Vec<Applying<'_>> = batch
            .iter()
            .map(|queued| Applying {
                new: queued.new.borrowed(),
                send_max_attempts: queued.send_max_attempts,
                plan: &*queued.plan,
            })
            .collect();
        self.apply_inbound(&applying, lease).await
    }

    /// Applies customer messages in one transaction with a fixed number of statements, however
    /// many messages: the contacts are found or created (and, on PostgreSQL, locked) together,
    /// what is already stored and which conversations are open is read together, each message is
    /// then planned in memory in the order given — a message sees what the ones before it changed
    /// (a STOP, a conversation's new state or its end) — and what they all change is written with
    /// one statement per table ([`WriteSet`]).
    async fn apply_inbound(
        &self,
        applying: &[Applying<'_>],
        lease: Option<&super::JobLease>,
    ) -> Result<InboundBatch, StorageError> {
        let _writing = self.writing().await;
        on_pool!(self, |pool| {
            let mut tx = pool.begin_write().await?;

            // Each number once, in phone order. Its contact is locked on PostgreSQL (one number's
            // messages then apply one after the other across instances), always in phone order
            // and by one statement, so that two batches, or a batch and an intake, cannot
            // deadlock. When every number has a contact — a customer answering — a locking read
            // does it and writes nothing; otherwise one upsert creates the missing contacts and
            // locks the others, as it did for every message before (it wrote a new version of
            // each contact's row: docs/PERFORMANCE.md, run K).
            // Each number with the id its contact gets if it is new.
            let mut numbers: Vec<(&str, Timestamp, String)> = applying
                .iter()
                .filter_map(|a| {
                    a.new.from.map(|phone| {
                        let id = uuid::Uuid::now_v7().to_string();
                        (phone.as_e164(), a.new.received_at, id)
                    })
                })
                .collect();
            numbers.sort_by(|a, b| a.0.cmp(b.0));
            numbers.dedup_by(|a, b| a.0 == b.0);
            let phones: Vec<&str> = numbers.iter().map(|(phone, ..)| *phone).collect();
            let select = "SELECT id, phone, opted_out_at, locale, created_at FROM contacts \
                          WHERE phone";
            let locked = format!(" ORDER BY phone{}", self.row_lock());
            let known: Vec<StoredContact> = fetch_by_ids!(tx, select, &phones, "");
            let mut rows: Vec<StoredContact> = if known.len() != phones.len() {
                Vec::new()
            } else if self.row_lock().is_empty() {
                // SQLite: this write transaction holds the database already.
                known
            } else {
                fetch_by_ids!(tx, select, &phones, &locked)
            };
            // A number without a contact (or one erased between the two reads): the upsert
            // intake uses creates the missing contacts and locks every one, in phone order.
            let mut blocked = HashSet::new();
            if rows.len() != phones.len() {
                let upserted: Vec<bulk::ContactRow<'_>> = numbers
                    .iter()
                    .map(|(phone, at, id)| (id.as_str(), *phone, None, *at))
                    .collect();
                tx.upsert_contacts(&upserted).await?;
                rows = fetch_by_ids!(tx, select, &phones, &locked);
                // The contacts created here have the id they were given. A number erased after
                // it opted out starts opted out again: its texts are kept, but start no survey
                // and earn no second opt-out confirmation.
                let read: HashSet<&str> = rows.iter().map(|row| row.0.as_str()).collect();
                let created: Vec<(String, String, Timestamp, Timestamp)> = numbers
                    .iter()
                    .filter(|(_, _, id)| read.contains(id.as_str()))
                    .map(|(phone, at, id)| (id.clone(), phone.to_string(), *at, *at))
                    .collect();
                blocked = block_new_contacts!(tx, self, &created);
            }
            let mut contacts: HashMap<String, ContactState> = HashMap::with_capacity(rows.len());
            for (id, phone, opted_out_at, locale, created_at) in rows {
                let opted_out_at = opted_out_at.or(blocked.contains(&id).then_some(created_at));
                contacts.insert(
                    phone,
                    ContactState {
                        id,
                        opted_out_at,
                        locale,
                    },
                );
            }

            // What providers sent before: a retry is recognised by its channel and message id.
            // (The provider's id leads the unique index: an `IN` list on it is an index
            // condition; the channel is matched here.)
            let provider_ids: Vec<&str> =
                applying.iter().map(|a| a.new.provider_message_id).collect();
            let rows: Vec<(String, String)> = fetch_by_ids!(
                tx,
                "SELECT channel, provider_message_id FROM messages WHERE provider_message_id",
                &provider_ids,
                " AND direction = 'inbound'"
            );
            let mut stored: HashSet<(String, String)> = rows.into_iter().collect();

            // The open conversations of these contacts, by (contact, channel, our number). A
            // survey whose first message has not gone out yet (its invitation is still
            // `scheduled`: a delay, the window) cannot be answered: the customer has not seen it.
            let contact_ids: Vec<&str> = contacts.values().map(|c| c.id.as_str()).collect();
            let views: Vec<ConversationView> = fetch_by_ids!(
                tx,
                "SELECT c.id, c.invitation_id, i.event_id, c.flow_id, c.contact_id, c.channel, c.sender, c.state, c.version, i.unit_id \
                 FROM conversations c JOIN invitations i ON i.id = c.invitation_id \
                 WHERE c.status = 'open' AND i.status NOT IN ('scheduled', 'held') AND c.contact_id",
                &contact_ids,
                ""
            );
            let mut open: HashMap<(String, String, String), ConversationView> = views
                .into_iter()
                .map(|view| {
                    (
                        (
                            view.contact_id.clone(),
                            view.channel.clone(),
                            view.sender.clone(),
                        ),
                        view,
                    )
                })
                .collect();

            // Their cases that are not closed: a text no survey takes goes to the case's thread,
            // and a new alert joins it.
            let rows: Vec<ActiveCase> = fetch_by_ids!(
                tx,
                "SELECT id, contact_id, channel, sender, status, follow_up, \
                 CASE WHEN follow_up = 'asked' THEN EXISTS (SELECT 1 FROM messages m \
                   WHERE m.case_id = cases.id AND m.direction = 'outbound' AND m.unprompted \
                   AND m.created_at >= cases.resolved_at AND m.status IN ('sent', 'delivered', 'unknown')) \
                 ELSE FALSE END AS follow_up_out, priority, sla_due_at FROM cases \
                 WHERE status <> 'closed' AND contact_id",
                &contact_ids,
                ""
            );
            let mut cases: HashMap<String, ActiveCase> = rows
                .into_iter()
                .map(|c| (c.contact_id.clone(), c))
                .collect();

            let mut received: Vec<ReceivedRow<'_>> = Vec::with_capacity(applying.len());
            let mut consents: Vec<ConsentRow> = Vec::new();
            let mut writes = WriteSet::default();
            let mut outcomes = Vec::with_capacity(applying.len());
            for a in applying {
                let new = &a.new;
                let now = new.received_at;
                if !stored.insert((new.channel.to_string(), new.provider_message_id.to_string())) {
                    outcomes.push(InboundOutcome::Duplicate);
                    continue;
                }
                let mut contact = match new.from {
                    None => None,
                    Some(phone) => Some(contacts.get_mut(phone.as_e164()).ok_or_else(|| {
                        StorageError::Corrupt("a number of the batch has no contact row".into())
                    })?),
                };
                let conversation_key = contact
                    .as_ref()
                    .map(|c| (c.id.clone(), new.channel.to_string(), new.to.to_string()));
                let conversation = conversation_key
                    .as_ref()
                    .and_then(|key| open.get(key).cloned());
                let message_id = uuid::Uuid::now_v7().to_string();
                received.push(ReceivedRow {
                    outcome: outcomes.len(),
                    id: message_id.clone(),
                    conversation_id: conversation.as_ref().map(|c| c.id.clone()),
                    contact_id: contact.as_ref().map(|c| c.id.clone()),
                    case_id: None,
                    new,
                });
                let mut consent_changed = None;
                if let (Some(change), Some(contact), Some(phone)) =
                    (new.consent, contact.as_deref_mut(), new.from)
                {
                    let applies = match change {
                        ConsentChange::OptedOut => contact.opted_out_at.is_none(),
                        ConsentChange::OptedIn => contact.opted_out_at.is_some(),
                    };
                    if applies {
                        contact.opted_out_at = (change == ConsentChange::OptedOut).then_some(now);
                        let source = format!("sms:{}", new.channel);
                        let data = json!({
                            "contact": { "id": contact.id, "phone": phone.as_e164() },
                            "channel": new.channel,
                            "source": source,
                            "message_id": message_id,
                        });
                        writes.event(
                            format!("contact.{}", change.as_str()),
                            Some(&contact.id),
                            data,
                            now,
                        );
                        consents.push(ConsentRow {
                            contact_id: contact.id.clone(),
                            change,
                            opted_out_at: contact.opted_out_at,
                            source,
                            at: now,
                        });
                        consent_changed = Some(change);
                    }
                }
                let context = InboundContext {
                    message_id,
                    contact_id: contact.as_ref().map(|c| c.id.clone()),
                    contact_locale: contact.as_ref().and_then(|c| c.locale.clone()),
                    opted_out: contact.as_ref().is_some_and(|c| c.opted_out_at.is_some()),
                    consent_changed,
                    conversation,
                    case: context_case(&cases, contact.as_deref()),
                };
                let plan = (a.plan)(&context);
                if let (Some(advance), Some(view), Some(key)) =
                    (&plan.advance, &context.conversation, &conversation_key)
                {
                    writes.advance(
                        view,
                        advance,
                        Some(&context.message_id),
                        a.send_max_attempts,
                        now,
                        now,
                    );
                    // The next message of this number sees the conversation as this one left it.
                    if advance.status == ConversationStatus::Open {
                        if let Some(open_view) = open.get_mut(key) {
                            open_view.state = Json(advance.state.clone());
                            open_view.version += 1;
                        }
                    } else {
                        open.remove(key);
                    }
                }
                // After the answers: an alert follows the answer that raised it.
                if let Some(contact_id) = &context.contact_id {
                    let message = received.last_mut().expect("pushed above");
                    message.case_id = super::cases::apply_case_effects(
                        &mut writes,
                        &mut cases,
                        contact_id,
                        &context,
                        &plan,
                        (new.channel, new.to, new.body),
                        now,
                    );
                }
                if let Some(contact_id) = &context.contact_id {
                    for (purpose, body) in &plan.replies {
                        writes.outgoing(
                            None,
                            contact_id,
                            (new.channel, new.to),
                            *purpose,
                            body,
                            a.send_max_attempts,
                            Timing::reply(now),
                        );
                    }
                }
                outcomes.push(InboundOutcome::Stored {
                    message_id: context.message_id,
                    contact_id: context.contact_id,
                    consent_changed,
                });
            }
            if received.is_empty() {
                // Only provider retries: nothing to keep.
                tx.rollback().await?;
                return Ok(InboundBatch {
                    outcomes,
                    claimed: Vec::new(),
                    left_pending: 0,
                });
            }

            // Consent changes are rare (STOP, START): a statement each, in order.
            for consent in &consents {
                sqlx::query("UPDATE contacts SET opted_out_at = $1, updated_at = $2 WHERE id = $3")
                    .bind(consent.opted_out_at)
                    .bind(consent.at)
                    .bind(&consent.contact_id)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("INSERT INTO contact_consents (contact_id, change, source, at) VALUES ($1, $2, $3, $4)")
                    .bind(&consent.contact_id)
                    .bind(consent.change.as_str())
                    .bind(&consent.source)
                    .bind(consent.at)
                    .execute(&mut *tx)
                    .await?;
            }
            insert_new_cases!(tx, &writes);
            let inserted: Vec<String> = tx.insert_received(&received).await?;
            if inserted.len() != received.len() {
                let inserted: HashSet<&str> = inserted.iter().map(String::as_str).collect();
                for row in received
                    .iter()
                    .filter(|r| !inserted.contains(r.id.as_str()))
                {
                    if row.contact_id.is_some() {
                        // The contact's lock orders its messages: this cannot happen, and if it
                        // does, nothing is kept and the provider's retry applies it.
                        return Err(StorageError::Conflict(
                            "a message of this batch was stored by another writer at the same time",
                        ));
                    }
                    // A message from no valid number (no contact to lock, nothing else written
                    // for it), stored by another instance at the same instant: a retry.
                    outcomes[row.outcome] = InboundOutcome::Duplicate;
                }
            }
            writes.lease = lease.cloned();
            let several_instances = super::several_instances(&tx);
            if let Some(lease) = writes
                .lease
                .as_mut()
                .filter(|lease| lease.most > 0 && several_instances)
            {
                // Contacts with an earlier text that another instance left to the claims
                // (through a channel it does not hold, or for lack of room): their new texts wait
                // behind it rather than overtake it. Read under the contacts' locks, so every
                // such text committed before this batch is seen. One instance alone needs no
                // such read: its handover room hands nothing over while a text it left to the
                // claims waits (`jobs::JobHandover`).
                let mut contacts: Vec<&str> = writes
                    .jobs
                    .iter()
                    .filter(|job| job.due_now)
                    .filter_map(|job| job.contact_id.as_deref())
                    .collect();
                contacts.sort_unstable();
                contacts.dedup();
                let behind: Vec<(String,)> = fetch_by_ids!(
                    tx,
                    format!(
                        "SELECT DISTINCT m.contact_id FROM messages m \
                         JOIN jobs j ON j.unique_key = '{}:' || m.id \
                         WHERE m.status = 'queued' AND j.state = 'pending' AND m.contact_id",
                        super::SEND_JOB
                    ),
                    &contacts,
                    ""
                );
                lease.not_to = behind.into_iter().map(|(contact,)| contact).collect();
            }
            let claimed = flush_writes!(tx, &writes);
            tx.commit().await?;
            // Jobs due now that the lease could have taken had it had the room.
            let could_claim = writes.lease.as_ref().map_or(0, |lease| {
                writes
                    .jobs
                    .iter()
                    .filter(|job| {
                        job.due_now
                            && !lease
                                .leaves_to_claims(job.channel.as_deref(), job.contact_id.as_deref())
                    })
                    .count()
            });
            Ok(InboundBatch {
                outcomes,
                left_pending: could_claim.saturating_sub(claimed.len()),
                claimed,
            })
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

/// What a planner sees of the customer's case.
fn context_case(
    cases: &HashMap<String, ActiveCase>,
    contact: Option<&ContactState>,
) -> Option<ActiveCase> {
    contact.and_then(|c| cases.get(&c.id).cloned())
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
