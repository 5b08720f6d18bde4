//! A batch's rows of one table in one statement, written the way each backend takes them best.
//!
//! SQLite binds every value (`INSERT … VALUES (…), (…)`); its statements are kept prepared, one
//! per batch size ([`super::BatchPlans`]). PostgreSQL binds one array per column
//! (`INSERT … SELECT … FROM UNNEST(…)`, `UPDATE … FROM UNNEST(…)`): the statement's text is the
//! same whatever the batch's size, so an insert is parsed once and kept prepared, with nothing to
//! plan. A multi-row `VALUES` of 15 000 parameters was parsed, planned and bound again for each
//! batch, and the inbound path's texts, one per batch size and table, were more than a
//! connection's cache of 100 prepared statements holds (docs/PERFORMANCE.md). Updates, which
//! read the table they change, are planned at each run, as the batches' reads are.
//!
//! Rows keep their order in either form: the contacts' upsert locks its rows in the order given,
//! and outbox events are numbered in it.

use super::inbound::ReceivedRow;
use super::write_set::{
    AnswerRow, ConversationUpdate, EventRow, JobRow, NewConversationRow, OutgoingRow,
};
use super::{ClaimedJob, JobLease, NewInvitation, SentMessage};
use crate::time::Timestamp;
use serde_json::Value;
use sqlx::types::Json;
use std::collections::HashMap;

/// A contact a batch creates unless its number has one: (id, phone, locale, at).
pub(crate) type ContactRow<'a> = (&'a str, &'a str, Option<&'a str>, Timestamp);

/// An invitation as a batch writes it.
pub(crate) struct InvitationRow<'a> {
    pub(crate) new: &'a NewInvitation,
    pub(crate) id: &'a str,
    pub(crate) contact_id: &'a str,
    /// Why it was declined; `None`: scheduled.
    pub(crate) declined: Option<&'a str>,
}

impl InvitationRow<'_> {
    fn status(&self) -> &'static str {
        if self.declined.is_some() {
            "declined"
        } else {
            "scheduled"
        }
    }

    fn send_at(&self) -> Option<Timestamp> {
        self.declined.is_none().then_some(self.new.send_at)
    }
}

const INVITATION_INSERT_COLUMNS: &str = "id, source, event_id, payload_hash, flow_id, contact_id, unit_id, \
     channel, locale, variables, status, status_reason, send_at, created_at, updated_at";

const JOB_COLUMNS: &str =
    "kind, payload, unique_key, state, run_at, attempts, max_attempts, created_at, updated_at";

/// A contact's upsert takes its row's `FOR NO KEY UPDATE` lock (it updates no key column; see
/// `Storage::row_lock`) and changes nothing.
const CONTACT_CONFLICT: &str = "ON CONFLICT (phone) DO UPDATE SET updated_at = contacts.updated_at";

/// When each conversation of a batch got its first answer, by conversation id: it becomes a
/// response of the period (quotas) then, and only then.
pub(crate) type FirstAnswers<'a> = HashMap<&'a str, Timestamp>;

const NEW_CONVERSATION_COLUMNS: &str = "id, invitation_id, contact_id, channel, sender, flow_id, \
     unit_id, state, status, version, started_at, updated_at";

const ANSWER_COLUMNS: &str =
    "id, conversation_id, question_id, kind, score, choice, text, message_id, answered_at";

const EVENT_COLUMNS: &str = "event_id, event_type, version, contact_id, occurred_at, payload";

const OUTGOING_COLUMNS: &str = "id, conversation_id, contact_id, direction, channel, sender, \
     purpose, body, encoding, segments, unprompted, case_id, status, created_at, updated_at";

const RECEIVED_COLUMNS: &str = "id, conversation_id, contact_id, direction, channel, sender, \
     provider_message_id, body, case_id, status, created_at, updated_at";

/// A provider's retry of a message stored already is left out (the partial unique index).
const RECEIVED_CONFLICT: &str = "ON CONFLICT (channel, direction, provider_message_id) \
     WHERE provider_message_id IS NOT NULL DO NOTHING RETURNING id";

/// A batch's writes, one statement per table, through a connection (or a transaction's).
pub(crate) trait BulkWrite {
    /// Creates the contacts of numbers that have none, and locks the others, in the order given.
    fn upsert_contacts(
        &mut self,
        rows: &[ContactRow<'_>],
    ) -> impl std::future::Future<Output = Result<(), sqlx::Error>> + Send;

    /// Invitations; one whose (source, event id) exists already is left out. Returns how many
    /// were written.
    fn insert_invitations(
        &mut self,
        rows: &[InvitationRow<'_>],
    ) -> impl std::future::Future<Output = Result<u64, sqlx::Error>> + Send;

    /// Jobs: pending, but for those due now when there is a `lease`, which are written claimed
    /// under it (running, attempt 1) and returned.
    fn insert_jobs(
        &mut self,
        rows: &[JobRow],
        lease: Option<&JobLease>,
    ) -> impl std::future::Future<Output = Result<Vec<ClaimedJob>, sqlx::Error>> + Send;

    /// Conversations opened: open, at version 1 (the opening is their first step).
    fn insert_new_conversations(
        &mut self,
        rows: &[NewConversationRow],
    ) -> impl std::future::Future<Output = Result<(), sqlx::Error>> + Send;

    /// Each conversation's new state, applied only where its version is still the one read.
    /// Returns how many were changed. A conversation appears once (see `WriteSet::advance`).
    fn update_conversations(
        &mut self,
        rows: &[ConversationUpdate],
        first_answers: &FirstAnswers<'_>,
    ) -> impl std::future::Future<Output = Result<u64, sqlx::Error>> + Send;

    /// Answers; a question answered already keeps its first answer.
    fn insert_answers(
        &mut self,
        rows: &[AnswerRow],
    ) -> impl std::future::Future<Output = Result<(), sqlx::Error>> + Send;

    /// Outbox events, numbered in the order given.
    fn insert_events(
        &mut self,
        rows: &[EventRow],
    ) -> impl std::future::Future<Output = Result<(), sqlx::Error>> + Send;

    /// Outgoing messages, queued.
    fn insert_outgoing(
        &mut self,
        rows: &[OutgoingRow],
    ) -> impl std::future::Future<Output = Result<(), sqlx::Error>> + Send;

    /// Customers' messages; returns the ids of those written (a provider's retry is not).
    fn insert_received(
        &mut self,
        rows: &[ReceivedRow<'_>],
    ) -> impl std::future::Future<Output = Result<Vec<String>, sqlx::Error>> + Send;

    /// Takes the transaction's advisory lock of each key, sorted, so that two batches do not
    /// wait on each other (on PostgreSQL by the database's collation, as instances of earlier
    /// versions take them). Nothing on SQLite, whose write transaction holds the whole database.
    fn lock_keys(
        &mut self,
        keys: &[String],
    ) -> impl std::future::Future<Output = Result<(), sqlx::Error>> + Send;

    /// Marks messages `sent` (those still `sending`, or `unknown` after a lost answer) with the
    /// provider's id and the cost.
    fn mark_sent(
        &mut self,
        sent: &[SentMessage<'_>],
        now: Timestamp,
    ) -> impl std::future::Future<Output = Result<(), sqlx::Error>> + Send;

    /// Gives the statuses that arrived before their message was known as sent to that message;
    /// returns them as (message id, status, error code, number status).
    fn adopt_statuses(
        &mut self,
        sent: &[SentMessage<'_>],
    ) -> impl std::future::Future<Output = Result<Vec<AdoptedStatus>, sqlx::Error>> + Send;
}

/// A status kept before its message was recorded sent: (message id, status, error code, number
/// status).
pub(crate) type AdoptedStatus = (String, String, Option<String>, Option<String>);

/// The `UPDATE messages` of a batch sent, after `SET`.
const MARK_SENT: &str = "status = 'sent', provider_message_id = v.provider_message_id, \
     cost_micros = v.cost_micros, sent_at = COALESCE(v.handed_at, messages.sent_at), updated_at = ";

impl BulkWrite for sqlx::SqliteConnection {
    async fn upsert_contacts(&mut self, rows: &[ContactRow<'_>]) -> Result<(), sqlx::Error> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut upsert = sqlx::QueryBuilder::new(
            "INSERT INTO contacts (id, phone, locale, created_at, updated_at) ",
        );
        upsert.push_values(rows, |mut row, (id, phone, locale, at)| {
            row.push_bind(*id)
                .push_bind(*phone)
                .push_bind(*locale)
                .push_bind(*at)
                .push_bind(*at);
        });
        upsert.push(" ").push(CONTACT_CONFLICT);
        upsert.build().execute(&mut *self).await?;
        Ok(())
    }

    async fn insert_invitations(&mut self, rows: &[InvitationRow<'_>]) -> Result<u64, sqlx::Error> {
        if rows.is_empty() {
            return Ok(0);
        }
        let mut insert = sqlx::QueryBuilder::new(format!(
            "INSERT INTO invitations ({INVITATION_INSERT_COLUMNS}) "
        ));
        insert.push_values(rows, |mut row, r| {
            row.push_bind(r.id)
                .push_bind(&r.new.source)
                .push_bind(&r.new.event_id)
                .push_bind(r.new.payload_hash.as_slice())
                .push_bind(&r.new.flow_id)
                .push_bind(r.contact_id)
                .push_bind(r.new.unit_id.as_deref())
                .push_bind(&r.new.channel)
                .push_bind(r.new.locale.as_deref())
                .push_bind(Json(&r.new.variables))
                .push_bind(r.status())
                .push_bind(r.declined)
                .push_bind(r.send_at())
                .push_bind(r.new.now)
                .push_bind(r.new.now);
        });
        insert.push(" ON CONFLICT (source, event_id) DO NOTHING");
        Ok(insert.build().execute(&mut *self).await?.rows_affected())
    }

    async fn insert_jobs(
        &mut self,
        rows: &[JobRow],
        lease: Option<&JobLease>,
    ) -> Result<Vec<ClaimedJob>, sqlx::Error> {
        let (claimed, pending) = split_claimed(rows, lease);
        if !pending.is_empty() {
            sqlite_job_insert(&pending, None)
                .build()
                .execute(&mut *self)
                .await?;
        }
        if claimed.is_empty() || lease.is_none() {
            return Ok(Vec::new());
        }
        let mut insert = sqlite_job_insert(&claimed, lease);
        insert.push(" RETURNING id, unique_key");
        let ids: Vec<(i64, String)> = insert.build_query_as().fetch_all(&mut *self).await?;
        claimed_jobs(&claimed, ids)
    }

    async fn insert_new_conversations(
        &mut self,
        rows: &[NewConversationRow],
    ) -> Result<(), sqlx::Error> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut insert = sqlx::QueryBuilder::new(format!(
            "INSERT INTO conversations ({NEW_CONVERSATION_COLUMNS}) "
        ));
        insert.push_values(rows, |mut row, c| {
            row.push_bind(&c.id)
                .push_bind(&c.invitation_id)
                .push_bind(&c.contact_id)
                .push_bind(&c.channel)
                .push_bind(&c.sender)
                .push_bind(&c.flow_id)
                .push_bind(&c.unit_id)
                .push_bind(Json(&c.state))
                .push_bind("open")
                .push_bind(1_i64)
                .push_bind(c.started_at)
                .push_bind(c.started_at);
        });
        insert.build().execute(&mut *self).await?;
        Ok(())
    }

    async fn update_conversations(
        &mut self,
        rows: &[ConversationUpdate],
        first_answers: &FirstAnswers<'_>,
    ) -> Result<u64, sqlx::Error> {
        if rows.is_empty() {
            return Ok(0);
        }
        let mut update = sqlx::QueryBuilder::new(
            "UPDATE conversations SET state = v.column3, status = v.column4, version = v.column5, \
             updated_at = v.column6, closed_at = v.column7, \
             first_answered_at = COALESCE(conversations.first_answered_at, v.column8) FROM (",
        );
        update.push_values(rows, |mut row, c| {
            row.push_bind(&c.id)
                .push_bind(c.read_version)
                .push_bind(Json(&c.state))
                .push_bind(c.status.as_str())
                .push_bind(c.new_version)
                .push_bind(c.updated_at)
                .push_bind(c.closed_at)
                .push_bind(first_answers.get(c.id.as_str()).copied());
        });
        update.push(
            ") AS v WHERE conversations.id = v.column1 AND conversations.version = v.column2",
        );
        Ok(update.build().execute(&mut *self).await?.rows_affected())
    }

    async fn insert_answers(&mut self, rows: &[AnswerRow]) -> Result<(), sqlx::Error> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut insert =
            sqlx::QueryBuilder::new(format!("INSERT INTO answers ({ANSWER_COLUMNS}) "));
        insert.push_values(rows, |mut row, a| {
            row.push_bind(&a.id)
                .push_bind(&a.conversation_id)
                .push_bind(&a.question_id)
                .push_bind(a.kind)
                .push_bind(a.score)
                .push_bind(&a.choice)
                .push_bind(&a.text)
                .push_bind(&a.message_id)
                .push_bind(a.answered_at);
        });
        insert.push(" ON CONFLICT (conversation_id, question_id) DO NOTHING");
        insert.build().execute(&mut *self).await?;
        Ok(())
    }

    async fn insert_events(&mut self, rows: &[EventRow]) -> Result<(), sqlx::Error> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut insert = sqlx::QueryBuilder::new(format!("INSERT INTO outbox ({EVENT_COLUMNS}) "));
        insert.push_values(rows, |mut row, e| {
            row.push_bind(&e.event_id)
                .push_bind(&e.event_type)
                .push_bind(1_i32)
                .push_bind(&e.contact_id)
                .push_bind(e.occurred_at)
                .push_bind(Json(&e.payload));
        });
        insert.build().execute(&mut *self).await?;
        Ok(())
    }

    async fn insert_outgoing(&mut self, rows: &[OutgoingRow]) -> Result<(), sqlx::Error> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut insert =
            sqlx::QueryBuilder::new(format!("INSERT INTO messages ({OUTGOING_COLUMNS}) "));
        insert.push_values(rows, |mut row, m| {
            row.push_bind(&m.id)
                .push_bind(&m.conversation_id)
                .push_bind(&m.contact_id)
                .push_bind("outbound")
                .push_bind(&m.channel)
                .push_bind(&m.sender)
                .push_bind(m.purpose.column())
                .push_bind(&m.body)
                .push_bind(m.encoding)
                .push_bind(m.segments)
                .push_bind(m.unprompted)
                .push_bind(&m.case_id)
                .push_bind("queued")
                .push_bind(m.created_at)
                .push_bind(m.created_at);
        });
        insert.build().execute(&mut *self).await?;
        Ok(())
    }

    async fn insert_received(
        &mut self,
        rows: &[ReceivedRow<'_>],
    ) -> Result<Vec<String>, sqlx::Error> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let mut insert =
            sqlx::QueryBuilder::new(format!("INSERT INTO messages ({RECEIVED_COLUMNS}) "));
        insert.push_values(rows, |mut row, m| {
            row.push_bind(&m.id)
                .push_bind(&m.conversation_id)
                .push_bind(&m.contact_id)
                .push_bind("inbound")
                .push_bind(m.new.channel)
                .push_bind(m.new.to)
                .push_bind(m.new.provider_message_id)
                .push_bind(m.new.body)
                .push_bind(&m.case_id)
                .push_bind("received")
                .push_bind(m.new.received_at)
                .push_bind(m.new.received_at);
        });
        insert.push(" ").push(RECEIVED_CONFLICT);
        insert.build_query_scalar().fetch_all(&mut *self).await
    }

    async fn lock_keys(&mut self, _keys: &[String]) -> Result<(), sqlx::Error> {
        Ok(())
    }

    async fn mark_sent(
        &mut self,
        sent: &[SentMessage<'_>],
        now: Timestamp,
    ) -> Result<(), sqlx::Error> {
        if sent.is_empty() {
            return Ok(());
        }
        let mut update = sqlx::QueryBuilder::new(format!("UPDATE messages SET {MARK_SENT}"));
        update
            .push_bind(now)
            .push(" FROM (SELECT column1 AS id, column2 AS provider_message_id, column3 AS cost_micros, column4 AS handed_at FROM (");
        update.push_values(sent, |mut row, s| {
            row.push_bind(&s.message.id)
                .push_bind(s.provider_message_id)
                .push_bind(s.cost.map(|c| c.micros))
                .push_bind(s.handed_at);
        });
        update
            .push(")) AS v WHERE messages.id = v.id AND messages.status IN ('sending', 'unknown')");
        update.build().execute(&mut *self).await?;
        Ok(())
    }

    async fn adopt_statuses(
        &mut self,
        sent: &[SentMessage<'_>],
    ) -> Result<Vec<AdoptedStatus>, sqlx::Error> {
        if sent.is_empty() {
            return Ok(Vec::new());
        }
        let mut adopt =
            sqlx::QueryBuilder::new("UPDATE message_statuses SET message_id = v.column1 FROM (");
        adopt.push_values(sent, |mut row, s| {
            row.push_bind(&s.message.id)
                .push_bind(&s.message.channel)
                .push_bind(s.provider_message_id);
        });
        adopt.push(
            ") AS v WHERE message_statuses.channel = v.column2 \
             AND message_statuses.provider_message_id = v.column3 \
             RETURNING message_id, status, error_code, number_status",
        );
        adopt.build_query_as().fetch_all(&mut *self).await
    }
}

/// One column of `rows` as an array parameter.
/// SQLite's `INSERT INTO jobs` of `rows`: pending, or claimed under `lease` (running, attempt 1).
fn sqlite_job_insert<'a>(
    rows: &'a [&'a JobRow],
    lease: Option<&'a JobLease>,
) -> sqlx::QueryBuilder<'a, sqlx::Sqlite> {
    let lease_columns = if lease.is_some() {
        ", lease_owner, lease_expires_at"
    } else {
        ""
    };
    let mut insert =
        sqlx::QueryBuilder::new(format!("INSERT INTO jobs ({JOB_COLUMNS}{lease_columns}) "));
    insert.push_values(rows, |mut row, j| {
        row.push_bind(j.kind)
            .push_bind(Json(&j.payload))
            .push_bind(&j.unique_key)
            .push_bind(if lease.is_some() {
                "running"
            } else {
                "pending"
            })
            .push_bind(j.run_at)
            .push_bind(i32::from(lease.is_some()))
            .push_bind(j.max_attempts)
            .push_bind(j.created_at)
            .push_bind(j.created_at);
        if let Some(lease) = lease {
            row.push_bind(&lease.owner).push_bind(lease.expires_at);
        }
    });
    insert
}

/// The jobs to write claimed (due now, with a lease to write them under, as many as it allows,
/// not through a channel it leaves to the claims) and the others.
fn split_claimed<'r>(
    rows: &'r [JobRow],
    lease: Option<&JobLease>,
) -> (Vec<&'r JobRow>, Vec<&'r JobRow>) {
    let mut room = lease.map_or(0, |lease| lease.most);
    let left_to_claims = |job: &JobRow| {
        lease.is_some_and(|lease| {
            lease.leaves_to_claims(job.channel.as_deref(), job.contact_id.as_deref())
        })
    };
    rows.iter().partition(|job| {
        let claimed = job.due_now && room > 0 && !left_to_claims(job);
        room -= usize::from(claimed);
        claimed
    })
}

/// The claimed jobs as their runner takes them, in the order of `rows` (one customer's texts go
/// out in that order; `RETURNING` promises none), from the ids the insert gave their unique keys.
fn claimed_jobs(rows: &[&JobRow], ids: Vec<(i64, String)>) -> Result<Vec<ClaimedJob>, sqlx::Error> {
    let by_key: HashMap<String, i64> = ids.into_iter().map(|(id, key)| (key, id)).collect();
    rows.iter()
        .map(|job| {
            let id = *by_key.get(job.unique_key.as_str()).ok_or_else(|| {
                sqlx::Error::Protocol(format!(
                    "the insert of claimed jobs returned no id for '{}'",
                    job.unique_key
                ))
            })?;
            Ok(ClaimedJob {
                id,
                kind: job.kind.to_string(),
                payload: job.payload.clone(),
                attempt: 1,
                max_attempts: u32::try_from(job.max_attempts).unwrap_or(1),
            })
        })
        .collect()
}

fn column<'r, R, T>(rows: &'r [R], value: impl Fn(&'r R) -> T) -> Vec<T> {
    rows.iter().map(value).collect()
}

impl BulkWrite for sqlx::PgConnection {
    async fn upsert_contacts(&mut self, rows: &[ContactRow<'_>]) -> Result<(), sqlx::Error> {
        if rows.is_empty() {
            return Ok(());
        }
        sqlx::query(&format!(
            "INSERT INTO contacts (id, phone, locale, created_at, updated_at) \
             SELECT id, phone, locale, at, at FROM UNNEST($1::text[], $2::text[], $3::text[], \
             $4::timestamptz[]) AS r (id, phone, locale, at) {CONTACT_CONFLICT}"
        ))
        .bind(column(rows, |r| r.0))
        .bind(column(rows, |r| r.1))
        .bind(column(rows, |r| r.2))
        .bind(column(rows, |r| r.3))
        .execute(&mut *self)
        .await?;
        Ok(())
    }

    async fn insert_invitations(&mut self, rows: &[InvitationRow<'_>]) -> Result<u64, sqlx::Error> {
        if rows.is_empty() {
            return Ok(0);
        }
        let written = sqlx::query(&format!(
            "INSERT INTO invitations ({INVITATION_INSERT_COLUMNS}) \
             SELECT id, source, event_id, payload_hash, flow_id, contact_id, unit_id, channel, locale, \
             variables, status, status_reason, send_at, at, at \
             FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bytea[], $5::text[], $6::text[], \
             $7::text[], $8::text[], $9::text[], $10::jsonb[], $11::text[], $12::text[], \
             $13::timestamptz[], $14::timestamptz[]) AS r (id, source, event_id, payload_hash, \
             flow_id, contact_id, unit_id, channel, locale, variables, status, status_reason, \
             send_at, at) \
             ON CONFLICT (source, event_id) DO NOTHING"
        ))
        .bind(column(rows, |r| r.id))
        .bind(column(rows, |r| r.new.source.as_str()))
        .bind(column(rows, |r| r.new.event_id.as_str()))
        .bind(column(rows, |r| r.new.payload_hash.as_slice()))
        .bind(column(rows, |r| r.new.flow_id.as_str()))
        .bind(column(rows, |r| r.contact_id))
        .bind(column(rows, |r| r.new.unit_id.as_deref()))
        .bind(column(rows, |r| r.new.channel.as_str()))
        .bind(column(rows, |r| r.new.locale.as_deref()))
        .bind(column(rows, |r| Json(&r.new.variables)))
        .bind(column(rows, InvitationRow::status))
        .bind(column(rows, |r| r.declined))
        .bind(column(rows, InvitationRow::send_at))
        .bind(column(rows, |r| r.new.now))
        .execute(&mut *self)
        .await?;
        Ok(written.rows_affected())
    }

    async fn insert_jobs(
        &mut self,
        rows: &[JobRow],
        lease: Option<&JobLease>,
    ) -> Result<Vec<ClaimedJob>, sqlx::Error> {
        const ROWS: &str = "FROM UNNEST($1::text[], $2::jsonb[], $3::text[], $4::timestamptz[], \
             $5::int4[], $6::timestamptz[]) AS r (kind, payload, unique_key, run_at, max_attempts, at)";
        let (claimed, pending) = split_claimed(rows, lease);
        if !pending.is_empty() {
            sqlx::query(&format!(
                "INSERT INTO jobs ({JOB_COLUMNS}) \
                 SELECT kind, payload, unique_key, 'pending', run_at, 0, max_attempts, at, at {ROWS}"
            ))
            .bind(column(&pending, |j| j.kind))
            .bind(column(&pending, |j| Json::<&Value>(&j.payload)))
            .bind(column(&pending, |j| j.unique_key.as_str()))
            .bind(column(&pending, |j| j.run_at))
            .bind(column(&pending, |j| j.max_attempts))
            .bind(column(&pending, |j| j.created_at))
            .execute(&mut *self)
            .await?;
        }
        let Some(lease) = lease.filter(|_| !claimed.is_empty()) else {
            return Ok(Vec::new());
        };
        let ids: Vec<(i64, String)> = sqlx::query_as(&format!(
            "INSERT INTO jobs ({JOB_COLUMNS}, lease_owner, lease_expires_at) \
             SELECT kind, payload, unique_key, 'running', run_at, 1, max_attempts, at, at, $7, $8 \
             {ROWS} RETURNING id, unique_key"
        ))
        .bind(column(&claimed, |j| j.kind))
        .bind(column(&claimed, |j| Json::<&Value>(&j.payload)))
        .bind(column(&claimed, |j| j.unique_key.as_str()))
        .bind(column(&claimed, |j| j.run_at))
        .bind(column(&claimed, |j| j.max_attempts))
        .bind(column(&claimed, |j| j.created_at))
        .bind(&lease.owner)
        .bind(lease.expires_at)
        .fetch_all(&mut *self)
        .await?;
        claimed_jobs(&claimed, ids)
    }

    async fn insert_new_conversations(
        &mut self,
        rows: &[NewConversationRow],
    ) -> Result<(), sqlx::Error> {
        if rows.is_empty() {
            return Ok(());
        }
        sqlx::query(&format!(
            "INSERT INTO conversations ({NEW_CONVERSATION_COLUMNS}) \
             SELECT id, invitation_id, contact_id, channel, sender, flow_id, unit_id, state, 'open', \
             1, at, at FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], \
             $6::text[], $7::text[], $8::jsonb[], $9::timestamptz[]) AS r (id, invitation_id, \
             contact_id, channel, sender, flow_id, unit_id, state, at)"
        ))
        .bind(column(rows, |c| c.id.as_str()))
        .bind(column(rows, |c| c.invitation_id.as_str()))
        .bind(column(rows, |c| c.contact_id.as_str()))
        .bind(column(rows, |c| c.channel.as_str()))
        .bind(column(rows, |c| c.sender.as_str()))
        .bind(column(rows, |c| c.flow_id.as_str()))
        .bind(column(rows, |c| c.unit_id.as_deref()))
        .bind(column(rows, |c| Json(&c.state)))
        .bind(column(rows, |c| c.started_at))
        .execute(&mut *self)
        .await?;
        Ok(())
    }

    async fn update_conversations(
        &mut self,
        rows: &[ConversationUpdate],
        first_answers: &FirstAnswers<'_>,
    ) -> Result<u64, sqlx::Error> {
        if rows.is_empty() {
            return Ok(0);
        }
        // Planned at each run, as the batches' reads are (`super::BatchPlans`): it joins the
        // conversations.
        let updated = sqlx::query(
            "UPDATE conversations SET state = v.state, status = v.status, version = v.new_version, \
             updated_at = v.updated_at, closed_at = v.closed_at, \
             first_answered_at = COALESCE(conversations.first_answered_at, v.first_answered_at) \
             FROM UNNEST($1::text[], $2::int8[], $3::jsonb[], $4::text[], $5::int8[], \
             $6::timestamptz[], $7::timestamptz[], $8::timestamptz[]) AS v (id, read_version, state, \
             status, new_version, updated_at, closed_at, first_answered_at) \
             WHERE conversations.id = v.id AND conversations.version = v.read_version",
        )
        .bind(column(rows, |c| c.id.as_str()))
        .bind(column(rows, |c| c.read_version))
        .bind(column(rows, |c| Json(&c.state)))
        .bind(column(rows, |c| c.status.as_str()))
        .bind(column(rows, |c| c.new_version))
        .bind(column(rows, |c| c.updated_at))
        .bind(column(rows, |c| c.closed_at))
        .bind(column(rows, |c| first_answers.get(c.id.as_str()).copied()))
        .persistent(false)
        .execute(&mut *self)
        .await?;
        Ok(updated.rows_affected())
    }

    async fn insert_answers(&mut self, rows: &[AnswerRow]) -> Result<(), sqlx::Error> {
        if rows.is_empty() {
            return Ok(());
        }
        sqlx::query(&format!(
            "INSERT INTO answers ({ANSWER_COLUMNS}) \
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::int4[], \
             $6::text[], $7::text[], $8::text[], $9::timestamptz[]) \
             ON CONFLICT (conversation_id, question_id) DO NOTHING"
        ))
        .bind(column(rows, |a| a.id.as_str()))
        .bind(column(rows, |a| a.conversation_id.as_str()))
        .bind(column(rows, |a| a.question_id.as_str()))
        .bind(column(rows, |a| a.kind))
        .bind(column(rows, |a| a.score))
        .bind(column(rows, |a| a.choice.as_deref()))
        .bind(column(rows, |a| a.text.as_deref()))
        .bind(column(rows, |a| a.message_id.as_deref()))
        .bind(column(rows, |a| a.answered_at))
        .execute(&mut *self)
        .await?;
        Ok(())
    }

    async fn insert_events(&mut self, rows: &[EventRow]) -> Result<(), sqlx::Error> {
        if rows.is_empty() {
            return Ok(());
        }
        sqlx::query(&format!(
            "INSERT INTO outbox ({EVENT_COLUMNS}) \
             SELECT event_id, event_type, 1, contact_id, occurred_at, payload \
             FROM UNNEST($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::jsonb[]) \
             AS r (event_id, event_type, contact_id, occurred_at, payload)"
        ))
        .bind(column(rows, |e| e.event_id.as_str()))
        .bind(column(rows, |e| e.event_type.as_str()))
        .bind(column(rows, |e| e.contact_id.as_deref()))
        .bind(column(rows, |e| e.occurred_at))
        .bind(column(rows, |e| Json(&e.payload)))
        .execute(&mut *self)
        .await?;
        Ok(())
    }

    async fn insert_outgoing(&mut self, rows: &[OutgoingRow]) -> Result<(), sqlx::Error> {
        if rows.is_empty() {
            return Ok(());
        }
        sqlx::query(&format!(
            "INSERT INTO messages ({OUTGOING_COLUMNS}) \
             SELECT id, conversation_id, contact_id, 'outbound', channel, sender, purpose, body, \
             encoding, segments, unprompted, case_id, 'queued', at, at \
             FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], \
             $7::text[], $8::text[], $9::int4[], $10::bool[], $11::text[], $12::timestamptz[]) \
             AS r (id, conversation_id, contact_id, channel, sender, purpose, body, encoding, \
             segments, unprompted, case_id, at)"
        ))
        .bind(column(rows, |m| m.id.as_str()))
        .bind(column(rows, |m| m.conversation_id.as_deref()))
        .bind(column(rows, |m| m.contact_id.as_str()))
        .bind(column(rows, |m| m.channel.as_str()))
        .bind(column(rows, |m| m.sender.as_str()))
        .bind(column(rows, |m| m.purpose.column()))
        .bind(column(rows, |m| m.body.as_str()))
        .bind(column(rows, |m| m.encoding))
        .bind(column(rows, |m| m.segments))
        .bind(column(rows, |m| m.unprompted))
        .bind(column(rows, |m| m.case_id.as_deref()))
        .bind(column(rows, |m| m.created_at))
        .execute(&mut *self)
        .await?;
        Ok(())
    }

    async fn insert_received(
        &mut self,
        rows: &[ReceivedRow<'_>],
    ) -> Result<Vec<String>, sqlx::Error> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        sqlx::query_scalar(&format!(
            "INSERT INTO messages ({RECEIVED_COLUMNS}) \
             SELECT id, conversation_id, contact_id, 'inbound', channel, sender, provider_message_id, \
             body, case_id, 'received', at, at \
             FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], \
             $7::text[], $8::text[], $9::timestamptz[]) AS r (id, conversation_id, contact_id, \
             channel, sender, provider_message_id, body, case_id, at) {RECEIVED_CONFLICT}"
        ))
        .bind(column(rows, |m| m.id.as_str()))
        .bind(column(rows, |m| m.conversation_id.as_deref()))
        .bind(column(rows, |m| m.contact_id.as_deref()))
        .bind(column(rows, |m| m.new.channel))
        .bind(column(rows, |m| m.new.to))
        .bind(column(rows, |m| m.new.provider_message_id))
        .bind(column(rows, |m| m.new.body))
        .bind(column(rows, |m| m.case_id.as_deref()))
        .bind(column(rows, |m| m.new.received_at))
        .fetch_all(&mut *self)
        .await
    }

    async fn lock_keys(&mut self, keys: &[String]) -> Result<(), sqlx::Error> {
        if keys.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "SELECT pg_advisory_xact_lock(hashtext(k.key)) FROM UNNEST($1::text[]) AS k (key) \
             ORDER BY k.key",
        )
        .bind(keys)
        .fetch_all(&mut *self)
        .await?;
        Ok(())
    }

    async fn mark_sent(
        &mut self,
        sent: &[SentMessage<'_>],
        now: Timestamp,
    ) -> Result<(), sqlx::Error> {
        if sent.is_empty() {
            return Ok(());
        }
        // Planned at each run, as the batches' reads are (`super::BatchPlans`).
        sqlx::query(&format!(
            "UPDATE messages SET {MARK_SENT}$1 \
             FROM UNNEST($2::text[], $3::text[], $4::int8[], $5::timestamptz[]) \
             AS v (id, provider_message_id, cost_micros, handed_at) \
             WHERE messages.id = v.id AND messages.status IN ('sending', 'unknown')"
        ))
        .bind(now)
        .bind(column(sent, |s| s.message.id.as_str()))
        .bind(column(sent, |s| s.provider_message_id))
        .bind(column(sent, |s| s.cost.map(|c| c.micros)))
        .bind(column(sent, |s| s.handed_at))
        .persistent(false)
        .execute(&mut *self)
        .await?;
        Ok(())
    }

    async fn adopt_statuses(
        &mut self,
        sent: &[SentMessage<'_>],
    ) -> Result<Vec<AdoptedStatus>, sqlx::Error> {
        if sent.is_empty() {
            return Ok(Vec::new());
        }
        sqlx::query_as(
            "UPDATE message_statuses SET message_id = v.id \
             FROM UNNEST($1::text[], $2::text[], $3::text[]) AS v (id, channel, provider_message_id) \
             WHERE message_statuses.channel = v.channel \
             AND message_statuses.provider_message_id = v.provider_message_id \
             RETURNING message_id, status, error_code, number_status",
        )
        .bind(column(sent, |s| s.message.id.as_str()))
        .bind(column(sent, |s| s.message.channel.as_str()))
        .bind(column(sent, |s| s.provider_message_id))
        .persistent(false)
        .fetch_all(&mut *self)
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn epoch() -> Timestamp {
        Timestamp::from_millis(0).unwrap()
    }

    fn job(key: &str, due_now: bool) -> JobRow {
        JobRow {
            kind: "sms.send",
            payload: Value::Null,
            unique_key: key.to_string(),
            run_at: epoch(),
            max_attempts: 3,
            created_at: epoch(),
            due_now,
            channel: Some(if key == "c" { "vonage" } else { "twilio" }.to_string()),
            contact_id: Some(if key == "b" { "bea" } else { "ana" }.to_string()),
        }
    }

    fn keys(rows: &[&JobRow]) -> Vec<String> {
        rows.iter().map(|j| j.unique_key.clone()).collect()
    }

    #[test]
    fn a_lease_claims_the_first_jobs_due_now_it_has_room_for_but_none_through_a_channel_held_elsewhere_or_behind_a_waiting_text()
     {
        let rows = [
            job("a", true),
            job("remind", false),
            job("b", true),
            job("c", true),
        ];
        let lease = |most, not_through: &[&str], not_to: &[&str]| JobLease {
            owner: "lane".into(),
            expires_at: epoch(),
            most,
            not_through: not_through.iter().map(|c| c.to_string()).collect(),
            not_to: not_to.iter().map(|c| c.to_string()).collect(),
        };
        // "c" goes through vonage, the others through twilio; "b" goes to Bea, the others to Ana.
        let table: [(Option<JobLease>, &[&str], &[&str]); 8] = [
            (None, &[], &["a", "remind", "b", "c"]),
            (Some(lease(0, &[], &[])), &[], &["a", "remind", "b", "c"]),
            (Some(lease(2, &[], &[])), &["a", "b"], &["remind", "c"]),
            (
                Some(lease(usize::MAX, &[], &[])),
                &["a", "b", "c"],
                &["remind"],
            ),
            (
                Some(lease(usize::MAX, &["vonage"], &[])),
                &["a", "b"],
                &["remind", "c"],
            ),
            (
                Some(lease(usize::MAX, &["twilio"], &[])),
                &["c"],
                &["a", "remind", "b"],
            ),
            (
                Some(lease(usize::MAX, &[], &["ana"])),
                &["b"],
                &["a", "remind", "c"],
            ),
            (Some(lease(1, &[], &["ana"])), &["b"], &["a", "remind", "c"]),
        ];
        for (lease, claimed, pending) in table {
            let (got_claimed, got_pending) = split_claimed(&rows, lease.as_ref());
            assert_eq!(keys(&got_claimed), claimed, "{lease:?}");
            assert_eq!(keys(&got_pending), pending, "{lease:?}");
        }
    }
}
