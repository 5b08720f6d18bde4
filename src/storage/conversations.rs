//! Invitations, conversations and what they send: every change of a conversation commits in one
//! transaction with its answers, its outbox events, its outgoing messages and their send jobs.
//!
//! The engine's decisions come in as plain data ([`Opening`], [`Advance`]): storage never knows a
//! flow. Per-contact ordering comes from a lock on the contact's row (PostgreSQL `FOR NO KEY UPDATE`;
//! SQLite has one writer at a time), taken before the conversation is read, so two messages from
//! one number are applied one after the other on one instance or several; the conversation's
//! `version` is checked on update all the same.

use super::{BeginWrite, Storage, StorageError, WriteSet, flush_writes, on_pool};
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
    /// A text of a case's thread: an agent's, or the recovery question after resolution.
    Case,
}

impl Purpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Survey => "survey",
            Purpose::OptOutConfirmation => "opt_out_confirmation",
            Purpose::OptInConfirmation => "opt_in_confirmation",
            Purpose::Help => "help",
            Purpose::Case => "case",
        }
    }

    /// What `messages.purpose` holds: a case's texts are told by their `case_id` and keep the
    /// column empty (its check, from an earlier release, knows only the survey's purposes).
    pub(crate) fn column(self) -> Option<&'static str> {
        match self {
            Purpose::Case => None,
            other => Some(other.as_str()),
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
    /// The invitation's unit: a case opened from this conversation belongs to it.
    pub unit_id: Option<String>,
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

pub(super) const INVITATION_COLUMNS: &str = "i.id, i.event_id, i.flow_id, i.channel, i.status, i.status_reason, i.send_at, i.created_at, \
     (SELECT c.id FROM conversations c WHERE c.invitation_id = i.id) AS conversation_id";

/// One conversation (bound as `$1`) as the engine needs it, if it is open.
pub(crate) const OPEN_CONVERSATION_VIEW: &str = "SELECT c.id, c.invitation_id, i.event_id, c.flow_id, c.contact_id, c.channel, c.sender, c.state, c.version, i.unit_id \
     FROM conversations c JOIN invitations i ON i.id = c.invitation_id \
     WHERE c.id = $1 AND c.status = 'open'";

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
            let view: Option<ConversationView> = sqlx::query_as(OPEN_CONVERSATION_VIEW)
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
