//! Invitations as the company reviews them: filtered by status, unit (with its sub-units), flow
//! and period, in creation order, a page at a time.

use super::{Storage, StorageError, on_pool};
use crate::time::Timestamp;

/// Which invitations to list; every filter is optional.
#[derive(Debug, Clone, Default)]
pub struct InvitationFilter {
    pub status: Option<String>,
    /// A unit's code: its invitations and those of every unit below it.
    pub unit: Option<String>,
    pub flow: Option<String>,
    /// Created at or after.
    pub from: Option<Timestamp>,
    /// Created before.
    pub until: Option<Timestamp>,
}

/// An invitation with what a company needs to act on it (call back, clean its data).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct InvitationListRow {
    pub id: String,
    pub event_id: String,
    pub flow_id: String,
    pub unit: Option<String>,
    /// E.164.
    pub phone: String,
    /// What the provider said about the number: ok, invalid, landline, unreachable.
    pub number_status: String,
    pub channel: Option<String>,
    pub status: String,
    pub status_reason: Option<String>,
    pub send_at: Option<Timestamp>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl Storage {
    /// Invitations matching `filter` whose id comes after `after` (ids grow with creation
    /// time), at most `limit`, in id order.
    pub async fn list_invitations(
        &self,
        filter: &InvitationFilter,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<InvitationListRow>, StorageError> {
        Ok(on_pool!(self, |pool| {
            let mut query = sqlx::QueryBuilder::new("");
            if let Some(unit) = &filter.unit {
                query.push("WITH RECURSIVE ");
                push_subtree(&mut query, unit);
                query.push(" ");
            }
            query.push(
                "SELECT i.id, i.event_id, i.flow_id, u.code AS unit, c.phone, c.number_status, i.channel, \
                 i.status, i.status_reason, i.send_at, i.created_at, i.updated_at \
                 FROM invitations i JOIN contacts c ON c.id = i.contact_id \
                 LEFT JOIN units u ON u.id = i.unit_id WHERE 1 = 1",
            );
            if filter.unit.is_some() {
                query.push(" AND i.unit_id IN (SELECT id FROM subtree)");
            }
            if let Some(status) = &filter.status {
                query.push(" AND i.status = ").push_bind(status.clone());
            }
            if let Some(flow) = &filter.flow {
                query.push(" AND i.flow_id = ").push_bind(flow.clone());
            }
            if let Some(from) = filter.from {
                query.push(" AND i.created_at >= ").push_bind(from);
            }
            if let Some(until) = filter.until {
                query.push(" AND i.created_at < ").push_bind(until);
            }
            if let Some(after) = after {
                query.push(" AND i.id > ").push_bind(after.to_string());
            }
            query
                .push(" ORDER BY i.id LIMIT ")
                .push_bind(i64::from(limit));
            query.build_query_as().fetch_all(pool).await
        })?)
    }
}

/// Pushes the common table expression `subtree (id)`: the unit coded `unit` and every unit
/// below it, for a listing's unit filter (`… IN (SELECT id FROM subtree)`). The caller writes
/// `WITH RECURSIVE` before it.
pub(super) fn push_subtree<'a, DB>(query: &mut sqlx::QueryBuilder<'a, DB>, unit: &str)
where
    DB: sqlx::Database,
    String: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    query
        .push("subtree (id) AS (SELECT id FROM units WHERE code = ")
        .push_bind(unit.to_string())
        .push(" UNION ALL SELECT u.id FROM units u JOIN subtree s ON u.parent_id = s.id)");
}
