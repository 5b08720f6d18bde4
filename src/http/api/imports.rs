//! `POST /api/v1/imports`, `GET /api/v1/imports/{id}`: a file of customer events in, its progress
//! and per-row report out.
//!
//! The upload is spooled to an anonymous temporary file as it arrives (never held in memory),
//! then imported in the background on this instance ([`crate::import`]). An instance that stops
//! during an import leaves it `running` with a stale `updated_at`: it is then reported as
//! `interrupted`, and posting the same file again is harmless (events already taken in are
//! reported as duplicates, nothing is sent twice).

use crate::http::AppState;
use crate::http::auth::Caller;
use crate::http::error::{ApiError, ErrorBody};
use crate::http::json::ApiQuery;
use crate::import::{self, Format, Progress};
use crate::storage::{ImportRecord, ImportRejection};
use crate::time::Timestamp;
use axum::Extension;
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use std::io::Seek;
use std::sync::Arc;
use tokio::io::AsyncWriteExt;
use tracing::{info, warn};
use utoipa::{IntoParams, ToSchema};

/// A running import whose progress has not moved for this long has stopped with its instance.
const STALE_AFTER_SECS: i64 = 120;
/// Rejections per page of the report.
const MAX_REPORT_PAGE: u32 = 1_000;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ImportParams {
    /// `csv` or `jsonl`; by default from the Content-Type (`text/csv`, `application/x-ndjson`).
    pub format: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ReportParams {
    /// Rejections after this line of the file (the previous page's `next_after_line`).
    pub after_line: Option<i64>,
    /// At most this many rejections (1 to 1000, default 1000).
    pub limit: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RejectionBody {
    /// The row's line in the file (a CSV's header is line 1).
    pub line: i64,
    pub event_id: Option<String>,
    /// `invalid_number`, `not_mobile`, `unknown_flow`, `unknown_unit`, `missing_variable`,
    /// `invalid_variable`, `invalid_event_id`, `invalid_event_time`, `invalid_locale`,
    /// `no_channel`, `window_never_opens`, `unreadable`, `opted_out`, `frequency_cap`,
    /// `quota_reached`, `open_conversation`, `open_case` or `duplicate_event`.
    pub reason: String,
    pub message: String,
    /// The invitation the event already had, or the one recorded as declined.
    pub invitation_id: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ImportBody {
    pub id: String,
    /// `csv` or `jsonl`.
    pub format: String,
    /// `running`, `completed`, `failed` (see `error`), or `interrupted` (its instance stopped;
    /// post the file again: what was taken in is not taken twice).
    pub status: String,
    /// Rows read so far; each is accepted (a new invitation) or rejected.
    pub rows: i64,
    pub accepted: i64,
    pub rejected: i64,
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    /// The rejected rows, in line order, one page at a time.
    pub rejections: Vec<RejectionBody>,
    /// Pass as `after_line` for the next page; absent on the last page.
    pub next_after_line: Option<i64>,
}

impl ImportBody {
    fn new(record: ImportRecord, rejections: Vec<ImportRejection>, limit: u32) -> ImportBody {
        let stale = record.status == "running"
            && (Timestamp::now().as_datetime() - record.updated_at.as_datetime()).num_seconds()
                > STALE_AFTER_SECS;
        let next_after_line = (rejections.len() as u64 == u64::from(limit))
            .then(|| rejections.last().map(|r| r.line))
            .flatten();
        ImportBody {
            id: record.id,
            format: record.format,
            status: if stale {
                "interrupted".into()
            } else {
                record.status
            },
            rows: record.rows,
            accepted: record.accepted,
            rejected: record.rejected,
            error: record.error,
            created_at: record.created_at.as_datetime(),
            updated_at: record.updated_at.as_datetime(),
            finished_at: record.finished_at.map(Timestamp::as_datetime),
            rejections: rejections
                .into_iter()
                .map(|r| RejectionBody {
                    line: r.line,
                    event_id: r.event_id,
                    reason: r.reason,
                    message: r.message,
                    invitation_id: r.invitation_id,
                })
                .collect(),
            next_after_line,
        }
    }
}

fn format_of(params: &ImportParams, headers: &HeaderMap) -> Result<Format, ApiError> {
    let invalid = |message: String| {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_format",
            message,
        )
    };
    if let Some(name) = &params.format {
        return Format::parse(name)
            .ok_or_else(|| invalid(format!("format '{name}' is not csv or jsonl")));
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        "text/csv" => Ok(Format::Csv),
        "application/x-ndjson" | "application/jsonl" | "application/json-lines" => {
            Ok(Format::JsonLines)
        }
        _ => Err(invalid(format!(
            "send text/csv or application/x-ndjson, or say ?format=csv|jsonl (Content-Type was '{content_type}')"
        ))),
    }
}

/// Spools the body to an anonymous temporary file; a 413 past `limit` bytes.
async fn spool(body: Body, limit: u64) -> Result<std::fs::File, ApiError> {
    let file = tempfile::tempfile().map_err(|e| ApiError::internal(&e))?;
    let mut spooled = tokio::fs::File::from_std(file);
    let mut stream = body.into_data_stream();
    let mut size: u64 = 0;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_body",
                format!("the upload stopped: {e}"),
            )
        })?;
        size += chunk.len() as u64;
        if size > limit {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!(
                    "the file is larger than {limit} bytes (server.import_body_limit_bytes); import it with `hearback import FILE`"
                ),
            ));
        }
        spooled
            .write_all(&chunk)
            .await
            .map_err(|e| ApiError::internal(&e))?;
    }
    spooled.flush().await.map_err(|e| ApiError::internal(&e))?;
    let mut file = spooled.into_std().await;
    file.rewind().map_err(|e| ApiError::internal(&e))?;
    Ok(file)
}

/// Imports a CSV (a header line, then one event per row: `event_id`, `flow`, `phone`, and
/// optionally `locale`, `unit`, `channel`, `event_time`; every other column is a variable of
/// the flow) or JSON lines (one invitation request per line). Answers 202 at once; the rows are
/// taken in in the background.
#[utoipa::path(
    post, path = "/imports", tag = "imports",
    security(("api_key" = [])),
    params(ImportParams),
    request_body(content = String, description = "The file", content_type = "text/csv"),
    responses(
        (status = 202, description = "Taken; follow it at /api/v1/imports/{id}", body = ImportBody),
        (status = 401, body = ErrorBody),
        (status = 413, description = "Larger than server.import_body_limit_bytes", body = ErrorBody),
        (status = 415, description = "Neither CSV nor JSON lines", body = ErrorBody),
    )
)]
pub async fn create_import(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiQuery(params): ApiQuery<ImportParams>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<ImportBody>), ApiError> {
    let format = format_of(&params, &headers)?;
    let file = spool(body, state.import_body_limit_bytes).await?;
    let id = uuid::Uuid::now_v7().to_string();
    let now = Timestamp::now();
    state
        .storage
        .create_import(&id, &caller.key_id, format.as_str(), now)
        .await?;
    info!(import = %id, format = format.as_str(), "import started");
    let (storage, intake, import_id) = (state.storage.clone(), state.intake.clone(), id.clone());
    tokio::spawn(async move {
        let outcome = import::run(
            &storage,
            &intake,
            (&import_id, &caller.key_id),
            (format, Box::new(std::io::BufReader::new(file))),
            Arc::new(Progress::default()),
            |_| {},
        )
        .await;
        match outcome {
            Ok(()) => info!(import = %import_id, "import completed"),
            Err(e) => warn!(import = %import_id, error = %e, "import failed"),
        }
    });
    let record = state
        .storage
        .import(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("import"))?;
    Ok((
        StatusCode::ACCEPTED,
        Json(ImportBody::new(record, Vec::new(), MAX_REPORT_PAGE)),
    ))
}

/// An import's progress and its rejected rows, a page at a time.
#[utoipa::path(
    get, path = "/imports/{id}", tag = "imports",
    security(("api_key" = [])),
    params(("id" = String, Path, description = "The import's id"), ReportParams),
    responses(
        (status = 200, body = ImportBody),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
    )
)]
pub async fn get_import(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiQuery(params): ApiQuery<ReportParams>,
) -> Result<Json<ImportBody>, ApiError> {
    let limit = params
        .limit
        .unwrap_or(MAX_REPORT_PAGE)
        .clamp(1, MAX_REPORT_PAGE);
    let record = state
        .storage
        .import(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("import"))?;
    let rejections = state
        .storage
        .import_rejections(&id, params.after_line.unwrap_or(0), limit)
        .await?;
    Ok(Json(ImportBody::new(record, rejections, limit)))
}
