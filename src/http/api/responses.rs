//! `GET /api/v1/responses`: every survey's answers, as JSON pages or, for a BI tool or a
//! spreadsheet, as one streamed CSV or JSON-lines file of any size. The tables behind it and
//! the export's columns are described in docs/reporting-store.md.

use crate::flow::QuestionKind;
use crate::http::AppState;
use crate::http::error::{ApiError, ErrorBody};
use crate::http::export::{Page, accepts, csv_lines, paged_download};
use crate::http::json::ApiQuery;
use crate::import::spreadsheet_safe;
use crate::storage::{ResponseAnswer, ResponseFilter, ResponseRecord, Storage, StorageError};
use crate::time::Timestamp;
use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};

/// Responses per page of JSON, and per database read of an export.
const MAX_PAGE: u32 = 1_000;
const DEFAULT_PAGE: u32 = 100;
const STATUSES: [&str; 3] = ["open", "completed", "expired"];

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// `open` (the customer may still answer), `completed` or `expired`.
    pub status: Option<String>,
    /// A unit's code: its responses and those of every unit below it.
    pub unit: Option<String>,
    /// A flow's id. With `Accept: text/csv`, the answer columns are this flow's questions, in
    /// the flow's order.
    pub flow: Option<String>,
    /// Started at or after (RFC 3339).
    #[param(format = DateTime, example = "2026-11-01T00:00:00Z")]
    pub from: Option<String>,
    /// Started before (RFC 3339).
    #[param(format = DateTime, example = "2026-12-01T00:00:00Z")]
    pub to: Option<String>,
    /// The previous page's `next_cursor`.
    pub cursor: Option<String>,
    /// 1 to 1000, default 100 (JSON only: an export holds every match).
    pub limit: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AnswerItem {
    pub question_id: String,
    /// `nps`, `csat`, `ces`, `yesno`, `choice` or `text`.
    pub kind: String,
    /// nps 0–10, csat 1–5, ces 1–7.
    pub score: Option<i32>,
    /// `yes` or `no` for a yesno question; the option's key for a choice.
    pub choice: Option<String>,
    /// The answer to an open question, or what the customer wrote beside a score, a yes/no or
    /// a choice ("7 mais livreur en retard" gives 7 and "mais livreur en retard").
    pub text: Option<String>,
    pub answered_at: DateTime<Utc>,
}

/// One survey: the conversation an invitation started, and its answers in the order given.
#[derive(Debug, Serialize, ToSchema)]
pub struct ResponseItem {
    pub id: String,
    pub invitation_id: String,
    /// The caller's id of the event that started the survey.
    pub event_id: String,
    pub flow: String,
    pub unit: Option<String>,
    /// The customer (the individual card and erasure go by phone; the export never shows it).
    pub contact_id: String,
    pub channel: String,
    /// `open`, `completed` or `expired` (ended by its time limit, answers kept).
    pub status: String,
    pub started_at: DateTime<Utc>,
    /// When it completed or expired.
    pub closed_at: Option<DateTime<Utc>>,
    pub answers: Vec<AnswerItem>,
}

impl From<ResponseAnswer> for AnswerItem {
    fn from(answer: ResponseAnswer) -> Self {
        AnswerItem {
            question_id: answer.question_id,
            kind: answer.kind,
            score: answer.score,
            choice: answer.choice,
            text: answer.text,
            answered_at: answer.answered_at.as_datetime(),
        }
    }
}

impl From<ResponseRecord> for ResponseItem {
    fn from(record: ResponseRecord) -> Self {
        ResponseItem {
            id: record.id,
            invitation_id: record.invitation_id,
            event_id: record.event_id,
            flow: record.flow_id,
            unit: record.unit,
            contact_id: record.contact_id,
            channel: record.channel,
            status: record.status,
            started_at: record.started_at.as_datetime(),
            closed_at: record.closed_at.map(Timestamp::as_datetime),
            answers: record.answers.into_iter().map(Into::into).collect(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ResponseList {
    pub responses: Vec<ResponseItem>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

fn instant(
    problems: &mut Map<String, Value>,
    field: &str,
    value: Option<&str>,
) -> Option<Timestamp> {
    let value = value?;
    match DateTime::parse_from_rfc3339(value.trim()) {
        Ok(at) => Some(Timestamp::from_datetime(at.with_timezone(&Utc))),
        Err(_) => {
            problems.insert(
                field.into(),
                Value::from(format!(
                    "'{}' is not an RFC 3339 instant such as 2026-11-01T00:00:00Z",
                    crate::intake::shown(value)
                )),
            );
            None
        }
    }
}

fn filter_of(params: &ListParams) -> Result<ResponseFilter, ApiError> {
    let mut problems = Map::new();
    super::checks::one_of(&mut problems, "status", params.status.as_deref(), &STATUSES);
    super::checks::page_limit(&mut problems, params.limit, MAX_PAGE);
    let from = instant(&mut problems, "from", params.from.as_deref());
    let until = instant(&mut problems, "to", params.to.as_deref());
    if let (Some(from), Some(until)) = (from, until) {
        if from >= until {
            problems.insert("to".into(), Value::from("must come after from"));
        }
    }
    if !problems.is_empty() {
        return Err(ApiError::invalid_fields(problems));
    }
    Ok(ResponseFilter {
        status: params.status.clone(),
        unit: params.unit.clone(),
        flow: params.flow.clone(),
        from,
        until,
    })
}

/// Lists responses (surveys and their answers) in id order, which is the order they started
/// in: JSON a page at a time; with `Accept: text/csv` (one row per response, one column per
/// question) or `Accept: application/x-ndjson` (one JSON object per line, as in the pages)
/// every match as one streamed file, read from the database a page at a time.
#[utoipa::path(
    get, path = "/responses", tag = "responses",
    security(("api_key" = [])),
    params(ListParams),
    responses(
        (status = 200, description = "A page (JSON), or every match (`Accept: text/csv`: one row per response, columns in docs/reporting-store.md; `Accept: application/x-ndjson`: one response object per line)",
         content((ResponseList = "application/json"), (String = "text/csv"), (ResponseItem = "application/x-ndjson"))),
        (status = 400, description = "A query parameter that cannot be read, or an unknown one", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, description = "A key acting for a user who is not an admin", body = ErrorBody),
        (status = 422, description = "Invalid status, unit, period or limit", body = ErrorBody),
    )
)]
pub async fn list_responses(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<Response, ApiError> {
    let filter = filter_of(&params)?;
    super::units::require_known_unit(&state.storage, filter.unit.as_deref()).await?;
    let storage = state.storage.clone();
    if accepts(&headers, "application/x-ndjson") {
        return Ok(export(
            storage,
            filter,
            params.cursor,
            Format::JsonLines,
            "application/x-ndjson",
            "responses.ndjson",
            Vec::new(),
        ));
    }
    if accepts(&headers, "text/csv") {
        let columns = Arc::new(question_columns(&state.flows, params.flow.as_deref()));
        let head = csv_lines([header_cells(&columns)]);
        return Ok(export(
            storage,
            filter,
            params.cursor,
            Format::Csv(columns),
            "text/csv; charset=utf-8",
            "responses.csv",
            head,
        ));
    }
    let limit = params.limit.unwrap_or(DEFAULT_PAGE);
    let rows = storage
        .list_responses(&filter, params.cursor.as_deref(), limit)
        .await?;
    let next_cursor = (rows.len() as u64 == u64::from(limit))
        .then(|| rows.last().map(|r| r.id.clone()))
        .flatten();
    Ok(Json(ResponseList {
        responses: rows.into_iter().map(Into::into).collect(),
        next_cursor,
    })
    .into_response())
}

#[derive(Clone)]
enum Format {
    Csv(Arc<Vec<QuestionColumn>>),
    JsonLines,
}

impl Format {
    fn write(&self, rows: Vec<ResponseRecord>) -> Vec<u8> {
        match self {
            Format::Csv(columns) => csv_lines(rows.into_iter().map(|r| row_cells(r, columns))),
            Format::JsonLines => {
                let mut out = Vec::new();
                for row in rows {
                    serde_json::to_writer(&mut out, &ResponseItem::from(row))
                        .expect("a response serialises");
                    out.push(b'\n');
                }
                out
            }
        }
    }
}

fn export(
    storage: Storage,
    filter: ResponseFilter,
    cursor: Option<String>,
    format: Format,
    content_type: &'static str,
    file_name: &'static str,
    head: Vec<u8>,
) -> Response {
    paged_download(
        content_type,
        file_name,
        "responses",
        head,
        cursor,
        move |cursor| {
            let (storage, filter, format) = (storage.clone(), filter.clone(), format.clone());
            async move {
                let rows = storage
                    .list_responses(&filter, cursor.as_deref(), MAX_PAGE)
                    .await?;
                let full = rows.len() as u64 == u64::from(MAX_PAGE);
                let next = rows.last().filter(|_| full).map(|r| r.id.clone());
                Ok::<Page, StorageError>((!rows.is_empty()).then(|| (format.write(rows), next)))
            }
        },
    )
}

/// The CSV's fixed columns, before one per question.
const FIXED_COLUMNS: [&str; 10] = [
    "response_id",
    "invitation_id",
    "event_id",
    "flow",
    "unit",
    "contact_id",
    "channel",
    "status",
    "started_at",
    "closed_at",
];

/// A question's CSV column, and whether a `<question>_comment` column follows it: what the
/// customer wrote beside a score, a yes/no or a choice (an open question's answer is all text).
#[derive(Debug, PartialEq)]
struct QuestionColumn {
    question: String,
    comment: bool,
}

/// With a flow, its questions in the flow's order; without, every loaded flow's in flow id
/// order then question order, each question id once (at its first place), so the columns stay
/// the same from one export to the next while the flows do.
fn question_columns(flows: &crate::http::Flows, flow: Option<&str>) -> Vec<QuestionColumn> {
    let mut columns: Vec<QuestionColumn> = Vec::new();
    let chosen = flows
        .values()
        .filter(|f| flow.is_none_or(|wanted| f.id == wanted));
    for question in chosen.flat_map(|f| &f.questions) {
        let comment = !matches!(question.kind, QuestionKind::Text);
        match columns.iter_mut().find(|c| c.question == question.id) {
            Some(column) => column.comment |= comment,
            None => columns.push(QuestionColumn {
                question: question.id.clone(),
                comment,
            }),
        }
    }
    columns
}

fn header_cells(columns: &[QuestionColumn]) -> Vec<String> {
    let mut cells: Vec<String> = FIXED_COLUMNS.iter().map(|c| c.to_string()).collect();
    for column in columns {
        cells.push(column.question.clone());
        if column.comment {
            cells.push(format!("{}_comment", column.question));
        }
    }
    cells
}

/// Every cell goes through [`spreadsheet_safe`]: the customer's words (and an event id the
/// caller chose) may start like a formula. Scores never do: they are 0 to 10.
fn row_cells(row: ResponseRecord, columns: &[QuestionColumn]) -> Vec<String> {
    let time = |t: Timestamp| t.as_datetime().to_rfc3339();
    let mut cells = vec![
        row.id,
        row.invitation_id,
        row.event_id,
        row.flow_id,
        row.unit.unwrap_or_default(),
        row.contact_id,
        row.channel,
        row.status,
        time(row.started_at),
        row.closed_at.map(time).unwrap_or_default(),
    ];
    for column in columns {
        let answer = row
            .answers
            .iter()
            .find(|a| a.question_id == column.question);
        let (value, comment) = match answer {
            None => (None, None),
            Some(a) if a.kind == "text" => (a.text.clone(), None),
            Some(a) => (
                a.score.map(|s| s.to_string()).or_else(|| a.choice.clone()),
                a.text.clone(),
            ),
        };
        cells.push(value.unwrap_or_default());
        if column.comment {
            cells.push(comment.unwrap_or_default());
        }
    }
    cells.into_iter().map(spreadsheet_safe).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(
        question: &str,
        kind: &str,
        score: Option<i32>,
        text: Option<&str>,
    ) -> ResponseAnswer {
        ResponseAnswer {
            question_id: question.into(),
            kind: kind.into(),
            score,
            choice: None,
            text: text.map(Into::into),
            answered_at: Timestamp::from_millis(0).unwrap(),
        }
    }

    #[test]
    fn a_csv_row_puts_each_answer_under_its_question_and_neutralises_formulas() {
        let columns = [
            QuestionColumn {
                question: "score".into(),
                comment: true,
            },
            QuestionColumn {
                question: "why".into(),
                comment: false,
            },
            QuestionColumn {
                question: "consent".into(),
                comment: true,
            },
        ];
        let row = ResponseRecord {
            id: "r".into(),
            invitation_id: "i".into(),
            event_id: "-1".into(),
            flow_id: "delivery".into(),
            unit: None,
            contact_id: "c".into(),
            channel: "console".into(),
            status: "open".into(),
            started_at: Timestamp::from_millis(0).unwrap(),
            closed_at: None,
            answers: vec![
                answer("score", "nps", Some(0), Some("@home")),
                answer("why", "text", None, Some("\tcmd")),
            ],
        };
        let cells = row_cells(row, &columns);
        assert_eq!(
            cells,
            [
                "r",
                "i",
                "'-1",
                "delivery",
                "",
                "c",
                "console",
                "open",
                "1970-01-01T00:00:00+00:00",
                "",
                "0",
                "'@home",
                "'\tcmd",
                "",
                "",
            ]
        );
    }
}
