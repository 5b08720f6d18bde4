//! A batch's rows of one table in one statement, written the way each backend takes them best.
//!
//! SQLite binds every value (`INSERT … VALUES (…), (…)`); its statements are kept prepared, one
//! per batch size ([`super::BatchPlans`]). PostgreSQL binds one array per column
//! (`INSERT … SELECT … FROM UNNEST(…)`): the statement's text is the same whatever the batch's
//! size, so it is parsed once and kept prepared, and an insert has nothing to plan. A multi-row
//! `VALUES` of 15 000 parameters was parsed, planned and bound again for each batch
//! (docs/PERFORMANCE.md).
//!
//! Rows keep their order in either form: the contacts' upsert locks its rows in the order given.

use super::NewInvitation;
use super::write_set::JobRow;
use crate::time::Timestamp;
use serde_json::Value;
use sqlx::types::Json;

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

/// A batch's inserts, one statement each, through a connection (or a transaction's).
pub(crate) trait BulkInsert {
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

    /// Jobs, pending.
    fn insert_jobs(
        &mut self,
        rows: &[JobRow],
    ) -> impl std::future::Future<Output = Result<(), sqlx::Error>> + Send;
}

impl BulkInsert for sqlx::SqliteConnection {
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

    async fn insert_jobs(&mut self, rows: &[JobRow]) -> Result<(), sqlx::Error> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut insert = sqlx::QueryBuilder::new(format!("INSERT INTO jobs ({JOB_COLUMNS}) "));
        insert.push_values(rows, |mut row, j| {
            row.push_bind(j.kind)
                .push_bind(Json(&j.payload))
                .push_bind(&j.unique_key)
                .push_bind("pending")
                .push_bind(j.run_at)
                .push_bind(0_i32)
                .push_bind(j.max_attempts)
                .push_bind(j.created_at)
                .push_bind(j.created_at);
        });
        insert.build().execute(&mut *self).await?;
        Ok(())
    }
}

/// One column of `rows` as an array parameter.
fn column<'r, R, T>(rows: &'r [R], value: impl Fn(&'r R) -> T) -> Vec<T> {
    rows.iter().map(value).collect()
}

impl BulkInsert for sqlx::PgConnection {
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

    async fn insert_jobs(&mut self, rows: &[JobRow]) -> Result<(), sqlx::Error> {
        if rows.is_empty() {
            return Ok(());
        }
        sqlx::query(&format!(
            "INSERT INTO jobs ({JOB_COLUMNS}) \
             SELECT kind, payload, unique_key, 'pending', run_at, 0, max_attempts, at, at \
             FROM UNNEST($1::text[], $2::jsonb[], $3::text[], $4::timestamptz[], $5::int4[], \
             $6::timestamptz[]) AS r (kind, payload, unique_key, run_at, max_attempts, at)"
        ))
        .bind(column(rows, |j| j.kind))
        .bind(column(rows, |j| Json::<&Value>(&j.payload)))
        .bind(column(rows, |j| j.unique_key.as_str()))
        .bind(column(rows, |j| j.run_at))
        .bind(column(rows, |j| j.max_attempts))
        .bind(column(rows, |j| j.created_at))
        .execute(&mut *self)
        .await?;
        Ok(())
    }
}
