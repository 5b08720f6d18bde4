//! What providers tell us: customer messages and delivery statuses, each recorded exactly once.
//!
//! A provider retries a webhook until it gets a 2xx, so the same message can arrive several
//! times, on one instance or several. The unique index on (channel, direction, provider message
//! id) decides: the first insert wins, every retry finds it and changes nothing. A consent change
//! (STOP, START) commits in the same transaction as the message that asked for it, with its
//! history row and its outbox event.

use super::{BeginWrite, Storage, StorageError, on_pool};
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
    /// None when the sender is no valid phone number: the message is kept all the same.
    pub from: Option<&'a Phone>,
    pub body: &'a str,
    pub consent: Option<ConsentChange>,
    pub received_at: Timestamp,
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
    pub received_at: Timestamp,
}

impl Storage {
    /// Records one customer message; see the module doc for the exactly-once rule.
    pub async fn receive_inbound(
        &self,
        new: &NewInbound<'_>,
    ) -> Result<InboundOutcome, StorageError> {
        let message_id = uuid::Uuid::now_v7().to_string();
        let now = new.received_at;
        on_pool!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            let contact: Option<(String, Option<Timestamp>)> = match new.from {
                None => None,
                Some(phone) => {
                    sqlx::query(
                        "INSERT INTO contacts (id, phone, created_at, updated_at) VALUES ($1, $2, $3, $3) \
                         ON CONFLICT (phone) DO NOTHING",
                    )
                    .bind(uuid::Uuid::now_v7().to_string())
                    .bind(phone.as_e164())
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                    Some(
                        sqlx::query_as("SELECT id, opted_out_at FROM contacts WHERE phone = $1")
                            .bind(phone.as_e164())
                            .fetch_one(&mut *tx)
                            .await?,
                    )
                }
            };
            let contact_id = contact.as_ref().map(|(id, _)| id.clone());
            let inserted: Option<String> = sqlx::query_scalar(
                "INSERT INTO messages (id, contact_id, direction, channel, provider_message_id, body, status, created_at, updated_at) \
                 VALUES ($1, $2, 'inbound', $3, $4, $5, 'received', $6, $6) \
                 ON CONFLICT (channel, direction, provider_message_id) WHERE provider_message_id IS NOT NULL DO NOTHING \
                 RETURNING id",
            )
            .bind(&message_id)
            .bind(&contact_id)
            .bind(new.channel)
            .bind(new.provider_message_id)
            .bind(new.body)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?;
            if inserted.is_none() {
                tx.rollback().await?;
                return Ok(InboundOutcome::Duplicate);
            }
            let mut consent_changed = None;
            if let (Some(change), Some((contact_id, opted_out_at)), Some(phone)) =
                (new.consent, &contact, new.from)
            {
                let applies = match change {
                    ConsentChange::OptedOut => opted_out_at.is_none(),
                    ConsentChange::OptedIn => opted_out_at.is_some(),
                };
                if applies {
                    let opted_out_at = (change == ConsentChange::OptedOut).then_some(now);
                    sqlx::query(
                        "UPDATE contacts SET opted_out_at = $1, updated_at = $2 WHERE id = $3",
                    )
                    .bind(opted_out_at)
                    .bind(now)
                    .bind(contact_id)
                    .execute(&mut *tx)
                    .await?;
                    let source = format!("sms:{}", new.channel);
                    sqlx::query("INSERT INTO contact_consents (contact_id, change, source, at) VALUES ($1, $2, $3, $4)")
                        .bind(contact_id)
                        .bind(change.as_str())
                        .bind(&source)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                    let data = json!({
                        "contact": { "id": contact_id, "phone": phone.as_e164() },
                        "channel": new.channel,
                        "source": source,
                        "message_id": message_id,
                    });
                    sqlx::query(
                        "INSERT INTO outbox (event_id, event_type, version, contact_id, occurred_at, payload) \
                         VALUES ($1, $2, 1, $3, $4, $5)",
                    )
                    .bind(format!("evt_{}", uuid::Uuid::now_v7().simple()))
                    .bind(format!("contact.{}", change.as_str()))
                    .bind(contact_id)
                    .bind(now)
                    .bind(Json(&data))
                    .execute(&mut *tx)
                    .await?;
                    consent_changed = Some(change);
                }
            }
            tx.commit().await?;
            Ok(InboundOutcome::Stored {
                message_id,
                contact_id,
                consent_changed,
            })
        })
    }

    /// Keeps a delivery status once per (message, status); returns false for a provider retry.
    /// A status may arrive before its message is recorded: it is kept by provider id.
    pub async fn record_status(&self, new: &NewStatus<'_>) -> Result<bool, StorageError> {
        let inserted = on_pool!(self, |pool| {
            sqlx::query(
                "INSERT INTO message_statuses (channel, provider_message_id, message_id, status, error_code, received_at) \
                 VALUES ($1, $2, (SELECT id FROM messages WHERE channel = $1 AND direction = 'outbound' AND provider_message_id = $2), \
                 $3, $4, $5) ON CONFLICT (channel, provider_message_id, status) DO NOTHING",
            )
            .bind(new.channel)
            .bind(new.provider_message_id)
            .bind(new.status)
            .bind(new.error_code)
            .bind(new.received_at)
            .execute(pool)
            .await
            .map(|done| done.rows_affected())
        })?;
        Ok(inserted == 1)
    }

    pub async fn contact_by_phone(
        &self,
        phone: &Phone,
    ) -> Result<Option<ContactRecord>, StorageError> {
        Ok(on_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT id, phone, opted_out_at, created_at FROM contacts WHERE phone = $1",
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
