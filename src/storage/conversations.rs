//! Invitations, conversations and what they send: every change of a conversation commits in one
//! transaction with its answers, its outbox events, its outgoing messages and their send jobs.
//!
//! The engine's decisions come in as plain data ([`Opening`], [`Advance`]): storage never knows a
//! flow. Per-contact ordering comes from a lock on the contact's row (PostgreSQL `FOR NO KEY UPDATE`;
//! SQLite has one writer at a time), taken before the conversation is read, so two messages from
//! one number are applied one after the other on one instance or several; the conversation's
//! `version` is checked on update all the same.

use super::{BeginWrite, Storage, StorageError, WriteSet, flush_writes, on_pool};
use crate::phone::Phone;
use crate::time::Timestamp;
use serde_json::Value;
use sqlx::types::Json;

/// The job kind that sends one outgoing message.
pub const SEND_JOB: &str = "sms.send";
/// The job kind that closes a conversation still open when its flow's `expire_after` is up.
pub const EXPIRE_JOB: &str = "conversation.expire";
/// The job kind that reminds a customer who has not answered (the flow's `reminder`).
pub const REMIND_JOB: &str = "conversation.remind";

/// Why an outgoing message exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Survey,
    /// The one message an opted-out number still receives.
    OptOutConfirmation,
    OptInConfirmation,
    Help,
}

impl Purpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Survey => "survey",
            Purpose::OptOutConfirmation => "opt_out_confirmation",
            Purpose::OptInConfirmation => "opt_in_confirmation",
            Purpose::Help => "help",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConversationStatus {
    Open,
    Completed,
    Expired,
}

impl ConversationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ConversationStatus::Open => "open",
            ConversationStatus::Completed => "completed",
            ConversationStatus::Expired => "expired",
        }
    }
}

/// One answer to store, as the engine recorded it.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAnswer {
    pub question_id: String,
    /// `nps`, `csat`, `ces`, `yesno`, `choice` or `text`.
    pub kind: &'static str,
    pub score: Option<i32>,
    /// The yes/no value or the choice's key.
    pub choice: Option<String>,
    /// An open answer, or the comment that came with a score.
    pub text: Option<String>,
}

/// An event of the public contract, for the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub event_type: &'static str,
    pub data: Value,
}

/// What the engine decided for a conversation after one input.
#[derive(Debug, Clone, PartialEq)]
pub struct Advance {
    pub state: Value,
    pub status: ConversationStatus,
    pub answers: Vec<NewAnswer>,
    pub events: Vec<NewEvent>,
    /// Texts to send, in order.
    pub messages: Vec<String>,
}

/// A conversation as the engine needs it.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct ConversationView {
    pub id: String,
    pub invitation_id: String,
    pub event_id: String,
    pub flow_id: String,
    pub contact_id: String,
    pub channel: String,
    pub sender: String,
    pub state: Json<Value>,
    pub version: i64,
}

/// An invitation to store; `opening` is the engine's first step, computed by the caller.
#[derive(Debug, Clone)]
pub struct NewInvitation<'a> {
    /// The integration that sent it (its API key id): event ids are unique per source.
    pub source: &'a str,
    pub event_id: &'a str,
    /// SHA-256 of the request as received: the same event id with another payload is a conflict.
    pub payload_hash: [u8; 32],
    pub flow_id: &'a str,
    pub phone: &'a Phone,
    pub locale: Option<&'a str>,
    pub variables: &'a Value,
    pub channel: &'a str,
    pub sender: &'a str,
    pub opening: Advance,
    pub send_max_attempts: u32,
    /// When the first question goes out (its send job is due then).
    pub send_at: Timestamp,
    /// When the conversation closes if it is still open (the flow's `expire_after`).
    pub expires_at: Timestamp,
    /// When a customer who has not answered is reminded (the flow's `reminder`), if ever.
    pub remind_at: Option<Timestamp>,
    /// The frequency cap, `[from, until)`: declined when the contact has a survey (scheduled or
    /// sent, any flow) due within it. `None`: no cap.
    pub surveyed_within: Option<(Timestamp, Timestamp)>,
    pub now: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct InvitationRecord {
    pub id: String,
    pub event_id: String,
    pub flow_id: String,
    pub channel: Option<String>,
    pub status: String,
    pub status_reason: Option<String>,
    pub send_at: Option<Timestamp>,
    pub created_at: Timestamp,
    pub conversation_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InvitationOutcome {
    Created(InvitationRecord),
    /// The same event, sent again: the invitation it made the first time.
    Existing(InvitationRecord),
}

const INVITATION_COLUMNS: &str = "i.id, i.event_id, i.flow_id, i.channel, i.status, i.status_reason, i.send_at, i.created_at, \
     (SELECT c.id FROM conversations c WHERE c.invitation_id = i.id) AS conversation_id";

/// Appends one event of the public contract to the outbox, through `$tx`.
macro_rules! insert_event {
    ($tx:expr, $event_type:expr, $contact:expr, $data:expr, $now:expr) => {{
        let mut writes = $crate::storage::WriteSet::default();
        let contact: &str = $contact;
        writes.event(
            $event_type,
            Some(contact),
            serde_json::Value::clone($data),
            $now,
        );
        $crate::storage::flush_writes!($tx, &writes);
    }};
}
pub(crate) use insert_event;

impl Storage {
    /// Records an invitation and starts its conversation: the first question is queued for its
    /// send time. Idempotent on (source, event id); declined, and kept as such, for an opted-out
    /// number, one that already has an open conversation on this sender, or one surveyed within
    /// the frequency cap.
    pub async fn start_invitation(
        &self,
        new: &NewInvitation<'_>,
    ) -> Result<InvitationOutcome, StorageError> {
        let _writing = self.writing().await;
        let now = new.now;
        let lock = self.row_lock();
        on_pool!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            let existing: Option<(Vec<u8>,)> = sqlx::query_as(
                "SELECT payload_hash FROM invitations WHERE source = $1 AND event_id = $2",
            )
            .bind(new.source)
            .bind(new.event_id)
            .fetch_optional(&mut *tx)
            .await?;
            if existing.is_some() {
                tx.rollback().await?;
                return self.existing_invitation(new).await;
            }
            sqlx::query(
                "INSERT INTO contacts (id, phone, locale, created_at, updated_at) VALUES ($1, $2, $3, $4, $4) \
                 ON CONFLICT (phone) DO NOTHING",
            )
            .bind(uuid::Uuid::now_v7().to_string())
            .bind(new.phone.as_e164())
            .bind(new.locale)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            let (contact_id, opted_out_at): (String, Option<Timestamp>) = sqlx::query_as(&format!(
                "SELECT id, opted_out_at FROM contacts WHERE phone = $1{lock}"
            ))
            .bind(new.phone.as_e164())
            .fetch_one(&mut *tx)
            .await?;
            let open: Option<String> = sqlx::query_scalar(
                "SELECT id FROM conversations WHERE contact_id = $1 AND channel = $2 AND sender = $3 AND status = 'open'",
            )
            .bind(&contact_id)
            .bind(new.channel)
            .bind(new.sender)
            .fetch_optional(&mut *tx)
            .await?;
            let recent: Option<String> = match new.surveyed_within {
                None => None,
                Some((from, until)) => {
                    sqlx::query_scalar(
                        "SELECT id FROM invitations WHERE contact_id = $1 AND status IN ('scheduled', 'sent') \
                         AND COALESCE(send_at, created_at) >= $2 AND COALESCE(send_at, created_at) < $3 LIMIT 1",
                    )
                    .bind(&contact_id)
                    .bind(from)
                    .bind(until)
                    .fetch_optional(&mut *tx)
                    .await?
                }
            };
            let declined = if opted_out_at.is_some() {
                Some("opted_out")
            } else if open.is_some() {
                Some("open_conversation")
            } else if recent.is_some() {
                Some("frequency_cap")
            } else {
                None
            };
            let invitation_id = uuid::Uuid::now_v7().to_string();
            let (status, send_at) = match declined {
                Some(_) => ("declined", None),
                None => ("scheduled", Some(new.send_at)),
            };
            let inserted = sqlx::query(
                "INSERT INTO invitations (id, source, event_id, payload_hash, flow_id, contact_id, channel, locale, \
                 variables, status, status_reason, send_at, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13) \
                 ON CONFLICT (source, event_id) DO NOTHING",
            )
            .bind(&invitation_id)
            .bind(new.source)
            .bind(new.event_id)
            .bind(new.payload_hash.as_slice())
            .bind(new.flow_id)
            .bind(&contact_id)
            .bind(new.channel)
            .bind(new.locale)
            .bind(sqlx::types::Json(new.variables))
            .bind(status)
            .bind(declined)
            .bind(send_at)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if inserted == 0 {
                // The same event, sent twice at once: the other request committed first.
                tx.rollback().await?;
                return self.existing_invitation(new).await;
            }
            let mut conversation_id = None;
            if declined.is_none() {
                let id = uuid::Uuid::now_v7().to_string();
                sqlx::query(
                    "INSERT INTO conversations (id, invitation_id, contact_id, channel, sender, flow_id, state, status, \
                     version, started_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, 'open', 0, $8, $8)",
                )
                .bind(&id)
                .bind(&invitation_id)
                .bind(&contact_id)
                .bind(new.channel)
                .bind(new.sender)
                .bind(new.flow_id)
                .bind(sqlx::types::Json(&new.opening.state))
                .bind(now)
                .execute(&mut *tx)
                .await?;
                let view = ConversationView {
                    id: id.clone(),
                    invitation_id: invitation_id.clone(),
                    event_id: new.event_id.to_string(),
                    flow_id: new.flow_id.to_string(),
                    contact_id: contact_id.clone(),
                    channel: new.channel.to_string(),
                    sender: new.sender.to_string(),
                    state: Json(new.opening.state.clone()),
                    version: 0,
                };
                let mut writes = WriteSet::default();
                writes.advance(
                    &view,
                    &new.opening,
                    None,
                    new.send_max_attempts,
                    now,
                    new.send_at,
                );
                writes.job(
                    EXPIRE_JOB,
                    &id,
                    serde_json::json!({ "conversation_id": id }),
                    new.expires_at,
                    new.send_max_attempts,
                    now,
                );
                if let Some(remind_at) = new.remind_at {
                    // The flow and the number's country, for the window when it runs late.
                    writes.job(
                        REMIND_JOB,
                        &id,
                        serde_json::json!({
                            "conversation_id": id,
                            "flow": new.flow_id,
                            "country": new.phone.country(),
                        }),
                        remind_at,
                        new.send_max_attempts,
                        now,
                    );
                }
                flush_writes!(tx, &writes);
                conversation_id = Some(id);
            }
            tx.commit().await?;
            Ok(InvitationOutcome::Created(InvitationRecord {
                id: invitation_id,
                event_id: new.event_id.to_string(),
                flow_id: new.flow_id.to_string(),
                channel: Some(new.channel.to_string()),
                status: status.to_string(),
                status_reason: declined.map(str::to_string),
                send_at,
                created_at: now,
                conversation_id,
            }))
        })
    }

    /// The invitation an event already made, or a conflict when its payload differs.
    async fn existing_invitation(
        &self,
        new: &NewInvitation<'_>,
    ) -> Result<InvitationOutcome, StorageError> {
        let hash: Vec<u8> = on_pool!(self, |pool| {
            sqlx::query_scalar(
                "SELECT payload_hash FROM invitations WHERE source = $1 AND event_id = $2",
            )
            .bind(new.source)
            .bind(new.event_id)
            .fetch_one(pool)
            .await
        })?;
        if hash.as_slice() != new.payload_hash.as_slice() {
            return Err(StorageError::Conflict(
                "an invitation with this event_id and a different payload exists",
            ));
        }
        let record = self
            .invitation_by_event(new.source, new.event_id)
            .await?
            .ok_or(StorageError::NotFound("invitation"))?;
        Ok(InvitationOutcome::Existing(record))
    }

    pub async fn invitation_by_event(
        &self,
        source: &str,
        event_id: &str,
    ) -> Result<Option<InvitationRecord>, StorageError> {
        Ok(on_pool!(self, |pool| {
            sqlx::query_as(&format!(
                "SELECT {INVITATION_COLUMNS} FROM invitations i WHERE i.source = $1 AND i.event_id = $2"
            ))
            .bind(source)
            .bind(event_id)
            .fetch_optional(pool)
            .await
        })?)
    }

    pub async fn invitation(&self, id: &str) -> Result<Option<InvitationRecord>, StorageError> {
        Ok(on_pool!(self, |pool| {
            sqlx::query_as(&format!(
                "SELECT {INVITATION_COLUMNS} FROM invitations i WHERE i.id = $1"
            ))
            .bind(id)
            .fetch_optional(pool)
            .await
        })?)
    }

    /// The answers of a conversation, in the order they were given.
    pub async fn conversation_answers(
        &self,
        conversation_id: &str,
    ) -> Result<Vec<AnswerRecord>, StorageError> {
        Ok(on_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT question_id, kind, score, choice, text, message_id, answered_at FROM answers \
                 WHERE conversation_id = $1 ORDER BY answered_at, id",
            )
            .bind(conversation_id)
            .fetch_all(pool)
            .await
        })?)
    }

    /// Applies what the engine decides for an open conversation when no customer message caused
    /// it (its reminder, its expiry), in one transaction with the contact's row locked, like a
    /// customer message; nothing happens when it is closed already or the engine decides
    /// nothing. Returns whether it changed.
    pub async fn advance_open_conversation<P>(
        &self,
        conversation_id: &str,
        send_max_attempts: u32,
        now: Timestamp,
        plan: P,
    ) -> Result<bool, StorageError>
    where
        P: FnOnce(&ConversationView) -> Option<Advance> + Send,
    {
        let _writing = self.writing().await;
        let lock = self.row_lock();
        on_pool!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            let contact: Option<String> = sqlx::query_scalar(&format!(
                "SELECT id FROM contacts WHERE id = (SELECT contact_id FROM conversations WHERE id = $1){lock}"
            ))
            .bind(conversation_id)
            .fetch_optional(&mut *tx)
            .await?;
            if contact.is_none() {
                return Ok(false);
            }
            let view: Option<ConversationView> = sqlx::query_as(
                "SELECT c.id, c.invitation_id, i.event_id, c.flow_id, c.contact_id, c.channel, c.sender, c.state, c.version \
                 FROM conversations c JOIN invitations i ON i.id = c.invitation_id \
                 WHERE c.id = $1 AND c.status = 'open'",
            )
            .bind(conversation_id)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(advance) = view.as_ref().and_then(|view| plan(view).map(|a| (view, a))) else {
                return Ok(false);
            };
            let (view, advance) = advance;
            let mut writes = WriteSet::default();
            writes.advance(view, &advance, None, send_max_attempts, now, now);
            flush_writes!(tx, &writes);
            tx.commit().await?;
            Ok(true)
        })
    }

    /// A conversation's status and version.
    pub async fn conversation_status(
        &self,
        conversation_id: &str,
    ) -> Result<Option<(String, i64)>, StorageError> {
        Ok(on_pool!(self, |pool| {
            sqlx::query_as("SELECT status, version FROM conversations WHERE id = $1")
                .bind(conversation_id)
                .fetch_optional(pool)
                .await
        })?)
    }

    /// A statement that takes a transaction lock on a text key (bound as `$1`), for writers that
    /// must not run side by side but share no row to lock; `None` on SQLite, whose writers
    /// already take turns.
    pub(crate) fn key_lock(&self) -> Option<&'static str> {
        match self.backend {
            super::Backend::Sqlite(_) => None,
            super::Backend::Postgres(_) => Some("SELECT pg_advisory_xact_lock(hashtext($1))"),
        }
    }

    /// A contact's lock where the database takes row locks; SQLite's write transaction already
    /// excludes every other writer. `FOR NO KEY UPDATE`, not `FOR UPDATE`: it orders the
    /// contact's writers among themselves but lets another transaction insert a row that refers
    /// to the contact (its foreign-key check takes `FOR KEY SHARE`). With `FOR UPDATE`, a send
    /// recording `invitation.sent` waited for the lock of an invitation request that waited for
    /// that send's update of the invitation: a deadlock, seen in CI.
    pub(crate) fn row_lock(&self) -> &'static str {
        match self.backend {
            super::Backend::Sqlite(_) => "",
            super::Backend::Postgres(_) => " FOR NO KEY UPDATE",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct AnswerRecord {
    pub question_id: String,
    pub kind: String,
    pub score: Option<i32>,
    pub choice: Option<String>,
    pub text: Option<String>,
    pub message_id: Option<String>,
    pub answered_at: Timestamp,
}
