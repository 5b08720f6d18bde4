//! The reporting store's responses: each conversation (one per invitation) with its answers,
//! filtered by period, unit (with its sub-units), flow and status, in id order, a page at a
//! time. A page is one short query, so an export of any size never holds more than a page in
//! memory nor keeps a transaction open (the tables are described in docs/reporting-store.md).

use super::listing::push_subtree;
use super::{Storage, StorageError, on_pool};
use crate::time::Timestamp;

/// Which responses to list; every filter is optional.
#[derive(Debug, Clone, Default)]
pub struct ResponseFilter {
    /// `open`, `completed` or `expired`.
    pub status: Option<String>,
    /// A unit's code: its responses and those of every unit below it.
    pub unit: Option<String>,
    pub flow: Option<String>,
    /// Started at or after.
    pub from: Option<Timestamp>,
    /// Started before.
    pub until: Option<Timestamp>,
}

/// One response: a conversation and what the customer answered in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseRecord {
    pub id: String,
    pub invitation_id: String,
    /// The caller's id of the event that started the survey.
    pub event_id: String,
    pub flow_id: String,
    pub unit: Option<String>,
    pub contact_id: String,
    pub channel: String,
    /// `open`, `completed` or `expired`.
    pub status: String,
    pub started_at: Timestamp,
    pub closed_at: Option<Timestamp>,
    /// In the order they were given.
    pub answers: Vec<ResponseAnswer>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseAnswer {
    pub question_id: String,
    /// `nps`, `csat`, `ces`, `yesno`, `choice` or `text`.
    pub kind: String,
    pub score: Option<i32>,
    /// `yes`/`no`, or the choice's key.
    pub choice: Option<String>,
    /// An open answer, or the comment that came with a score, a yes/no or a choice.
    pub text: Option<String>,
    pub answered_at: Timestamp,
}

/// A response joined with one of its answers (none: the answer columns are NULL).
#[derive(sqlx::FromRow)]
struct Joined {
    id: String,
    invitation_id: String,
    event_id: String,
    flow_id: String,
    unit: Option<String>,
    contact_id: String,
    channel: String,
    status: String,
    started_at: Timestamp,
    closed_at: Option<Timestamp>,
    question_id: Option<String>,
    kind: Option<String>,
    score: Option<i32>,
    choice: Option<String>,
    text: Option<String>,
    answered_at: Option<Timestamp>,
}

impl Storage {
    /// Responses matching `filter` whose id comes after `after` (ids grow with creation time),
    /// at most `limit`, in id order, each with its answers: one statement, the page's
    /// conversations joined with their answers.
    pub async fn list_responses(
        &self,
        filter: &ResponseFilter,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<ResponseRecord>, StorageError> {
        let rows: Vec<Joined> = on_pool!(self, |pool| {
            let mut query = sqlx::QueryBuilder::new("WITH RECURSIVE ");
            if let Some(unit) = &filter.unit {
                push_subtree(&mut query, unit);
                query.push(", ");
            }
            query.push(
                "page AS (SELECT c.id, c.invitation_id, i.event_id, c.flow_id, u.code AS unit, \
                 c.contact_id, c.channel, c.status, c.started_at, c.closed_at \
                 FROM conversations c JOIN invitations i ON i.id = c.invitation_id \
                 LEFT JOIN units u ON u.id = i.unit_id WHERE 1 = 1",
            );
            if filter.unit.is_some() {
                query.push(" AND i.unit_id IN (SELECT id FROM subtree)");
            }
            if let Some(status) = &filter.status {
                query.push(" AND c.status = ").push_bind(status.clone());
            }
            if let Some(flow) = &filter.flow {
                query.push(" AND c.flow_id = ").push_bind(flow.clone());
            }
            if let Some(from) = filter.from {
                query.push(" AND c.started_at >= ").push_bind(from);
            }
            if let Some(until) = filter.until {
                query.push(" AND c.started_at < ").push_bind(until);
            }
            if let Some(after) = after {
                query.push(" AND c.id > ").push_bind(after.to_string());
            }
            query
                .push(" ORDER BY c.id LIMIT ")
                .push_bind(i64::from(limit))
                .push(
                    ") SELECT p.*, a.question_id, a.kind, a.score, a.choice, a.text, a.answered_at \
                     FROM page p LEFT JOIN answers a ON a.conversation_id = p.id \
                     ORDER BY p.id, a.answered_at, a.id",
                );
            query.build_query_as().fetch_all(pool).await
        })?;
        let mut responses: Vec<ResponseRecord> = Vec::new();
        for row in rows {
            let answer = match (row.question_id, row.kind, row.answered_at) {
                (Some(question_id), Some(kind), Some(answered_at)) => Some(ResponseAnswer {
                    question_id,
                    kind,
                    score: row.score,
                    choice: row.choice,
                    text: row.text,
                    answered_at,
                }),
                _ => None,
            };
            if responses.last().is_none_or(|last| last.id != row.id) {
                responses.push(ResponseRecord {
                    id: row.id,
                    invitation_id: row.invitation_id,
                    event_id: row.event_id,
                    flow_id: row.flow_id,
                    unit: row.unit,
                    contact_id: row.contact_id,
                    channel: row.channel,
                    status: row.status,
                    started_at: row.started_at,
                    closed_at: row.closed_at,
                    answers: Vec::new(),
                });
            }
            if let (Some(answer), Some(response)) = (answer, responses.last_mut()) {
                response.answers.push(answer);
            }
        }
        Ok(responses)
    }
}
