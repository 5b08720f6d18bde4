//! The reporting store's responses: each conversation (one per invitation) with its answers,
//! filtered by period, unit (with its sub-units), flow and status, in id order, a page at a
//! time. A page is one short read (two statements), so an export of any size never holds more
//! than a page in memory nor keeps a transaction open between pages (the tables are described in docs/reporting-store.md).

use super::listing::push_subtree;
use super::{Storage, StorageError, fetch_by_ids, on_pool};
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

/// A response as its page reads it, before its answers.
#[derive(sqlx::FromRow)]
struct PageRow {
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
}

/// One answer of a page's responses, with the response it belongs to.
#[derive(sqlx::FromRow)]
struct AnswerRow {
    conversation_id: String,
    question_id: String,
    kind: String,
    score: Option<i32>,
    choice: Option<String>,
    text: Option<String>,
    answered_at: Timestamp,
}

impl Storage {
    /// Responses matching `filter` whose id comes after `after` (ids grow with creation time),
    /// at most `limit`, in id order, each with its answers: two statements in one read
    /// transaction, the page's conversations, then the answers of those conversations. One
    /// statement joining the page with `answers` let PostgreSQL choose a hash join that read
    /// the whole `answers` table for each page (an export of 100 000 responses read 300 000
    /// answers a hundred times; docs/PERFORMANCE.md, "Exporting a million responses").
    pub async fn list_responses(
        &self,
        filter: &ResponseFilter,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<ResponseRecord>, StorageError> {
        let (page, answers): (Vec<PageRow>, Vec<AnswerRow>) = on_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            let mut query = sqlx::QueryBuilder::new("");
            if let Some(unit) = &filter.unit {
                query.push("WITH RECURSIVE ");
                push_subtree(&mut query, unit);
                query.push(" ");
            }
            query.push(
                "SELECT c.id, c.invitation_id, i.event_id, c.flow_id, u.code AS unit, \
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
                .push_bind(i64::from(limit));
            let page: Vec<PageRow> = query.build_query_as().fetch_all(&mut *tx).await?;
            let ids: Vec<&str> = page.iter().map(|row| row.id.as_str()).collect();
            let answers: Vec<AnswerRow> = fetch_by_ids!(
                tx,
                "SELECT conversation_id, question_id, kind, score, choice, text, answered_at \
                 FROM answers WHERE conversation_id",
                &ids,
                " ORDER BY conversation_id, answered_at, id"
            );
            tx.commit().await?;
            (page, answers)
        });
        // Both in conversation id order: each response takes the answers that lead the rest.
        let mut answers = answers.into_iter().peekable();
        let responses = page
            .into_iter()
            .map(|row| {
                let mut record = ResponseRecord {
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
                };
                while let Some(answer) =
                    answers.next_if(|answer| answer.conversation_id == record.id)
                {
                    record.answers.push(ResponseAnswer {
                        question_id: answer.question_id,
                        kind: answer.kind,
                        score: answer.score,
                        choice: answer.choice,
                        text: answer.text,
                        answered_at: answer.answered_at,
                    });
                }
                record
            })
            .collect();
        Ok(responses)
    }
}
