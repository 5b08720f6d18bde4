//! Imports: a CSV or JSON-lines file of customer events, streamed through intake and storage in
//! batches, with a report per row.
//!
//! - **Streamed.** One thread reads and checks rows ([`rows`], [`Intake::prepare`]) while the
//!   previous batch is written: at most three batches of [`MAX_INVITATIONS_PER_BATCH`] rows are in
//!   memory (one being written, one waiting, one being read), whatever the size of the file.
//! - **Every row reported.** A row becomes a new invitation (accepted) or is rejected with the
//!   reason: one of intake's ([`crate::intake::Reason`]), a declined invitation's (`opted_out`,
//!   `frequency_cap`, `quota_reached`, `open_conversation`, `open_case`), or `duplicate_event`. Rejections
//!   are stored with their line (`GET /api/v1/imports/{id}`); accepted rows are counted.
//! - **A batch's invitations and its report are one transaction** ([`Storage::import_invitations`]):
//!   an import that stops, however it stops, counts and reports exactly the invitations it wrote.
//! - **Re-running is harmless.** Invitations are idempotent on (source, event id): the same file
//!   again sends nothing new, and reports its rows as duplicate events.

pub mod rows;

pub use rows::{FileError, Format, Row};

use crate::intake::{Intake, Problem};
use crate::storage::{
    ImportChunk, ImportRejection, InvitationOutcome, MAX_INVITATIONS_PER_BATCH, NewInvitation,
    Storage, StorageError,
};
use crate::time::Timestamp;
use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// What became of one row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RowOutcome {
    Accepted { invitation_id: String },
    Rejected(ImportRejection),
}

/// One row's line, event id and outcome, as the CLI's `--report` lists them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowReport {
    pub line: u64,
    pub event_id: Option<String>,
    pub outcome: RowOutcome,
}

/// How far an import has got; shared with whoever shows progress.
#[derive(Debug, Default)]
pub struct Progress {
    /// Bytes of the file read so far.
    pub bytes: AtomicU64,
    pub rows: AtomicU64,
    pub accepted: AtomicU64,
    pub rejected: AtomicU64,
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error(transparent)]
    File(#[from] FileError),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// A row read and checked, waiting for its batch to be written.
struct Prepared {
    line: u64,
    event_id: Option<String>,
    invitation: Result<NewInvitation, Problem>,
}

/// Runs import `id` (already created with [`Storage::create_import`]) of `reader`: every row
/// through intake for `source`, batches written with their report, then the import marked
/// completed, or failed with the reason it stopped. `on_row` sees every row's outcome in order.
pub async fn run(
    storage: &Storage,
    intake: &Intake,
    (id, source): (&str, &str),
    (format, reader): (Format, Box<dyn Read + Send>),
    progress: Arc<Progress>,
    mut on_row: impl FnMut(&RowReport),
) -> Result<(), ImportError> {
    let outcome = run_batches(
        storage,
        intake,
        (id, source),
        (format, reader),
        &progress,
        &mut on_row,
    )
    .await;
    let error = outcome.as_ref().err().map(ToString::to_string);
    storage
        .finish_import(id, error.as_deref(), Timestamp::now())
        .await?;
    outcome
}

async fn run_batches(
    storage: &Storage,
    intake: &Intake,
    (id, source): (&str, &str),
    (format, reader): (Format, Box<dyn Read + Send>),
    progress: &Arc<Progress>,
    on_row: &mut impl FnMut(&RowReport),
) -> Result<(), ImportError> {
    let units = storage.unit_ids().await?;
    let (batches, mut received) = tokio::sync::mpsc::channel::<Result<Vec<Prepared>, FileError>>(1);
    let reading = {
        let (intake, source, progress) = (intake.clone(), source.to_string(), progress.clone());
        tokio::task::spawn_blocking(move || {
            let counted = Counted {
                inner: reader,
                progress,
            };
            let rows = match rows::rows(format, counted) {
                Ok(rows) => rows,
                Err(e) => {
                    let _ = batches.blocking_send(Err(e));
                    return;
                }
            };
            let mut batch = Vec::with_capacity(MAX_INVITATIONS_PER_BATCH);
            for row in rows {
                let row = match row {
                    Ok(row) => row,
                    Err(e) => {
                        // The rows read before the error are written and reported first.
                        if !batch.is_empty() {
                            let _ = batches.blocking_send(Ok(std::mem::take(&mut batch)));
                        }
                        let _ = batches.blocking_send(Err(e));
                        return;
                    }
                };
                let now = Timestamp::now();
                let event_id = row
                    .event
                    .as_ref()
                    .ok()
                    .map(|event| event.event_id.trim().to_string());
                let invitation = row.event.and_then(|event| {
                    intake
                        .prepare(&source, &event, &units, now)
                        .map_err(|mut problems| problems.remove(0))
                });
                batch.push(Prepared {
                    line: row.line,
                    event_id,
                    invitation,
                });
                if batch.len() == MAX_INVITATIONS_PER_BATCH {
                    let full = std::mem::replace(
                        &mut batch,
                        Vec::with_capacity(MAX_INVITATIONS_PER_BATCH),
                    );
                    if batches.blocking_send(Ok(full)).is_err() {
                        // The writer stopped (a storage error): it reports why.
                        return;
                    }
                }
            }
            if !batch.is_empty() {
                let _ = batches.blocking_send(Ok(batch));
            }
        })
    };
    // The planner's statistics follow the import as it doubles: ten refreshes for a million
    // rows (Storage::refresh_import_statistics).
    let mut refresh_at = MAX_INVITATIONS_PER_BATCH as u64;
    while let Some(batch) = received.recv().await {
        let batch = batch?;
        write_batch(storage, id, batch, progress, on_row).await?;
        if progress.rows.load(Ordering::Relaxed) >= refresh_at {
            storage.refresh_import_statistics().await?;
            refresh_at *= 2;
        }
    }
    reading
        .await
        .map_err(|e| FileError::Io(format!("the reader stopped: {e}")))?;
    Ok(())
}

/// Writes one batch's invitations and its report, in one transaction.
async fn write_batch(
    storage: &Storage,
    id: &str,
    batch: Vec<Prepared>,
    progress: &Progress,
    on_row: &mut impl FnMut(&RowReport),
) -> Result<(), ImportError> {
    // Rows refused by intake have their outcome now; the others get theirs from storage.
    let mut invitations = Vec::with_capacity(batch.len());
    let mut pending = Vec::with_capacity(batch.len());
    for prepared in batch {
        let line = i64::try_from(prepared.line).unwrap_or(i64::MAX);
        let outcome = match prepared.invitation {
            Ok(invitation) => {
                invitations.push(invitation);
                None
            }
            Err(problem) => Some(RowOutcome::Rejected(ImportRejection {
                line,
                event_id: prepared.event_id.clone(),
                reason: problem.reason.as_str().to_string(),
                message: if problem.field.is_empty() {
                    problem.message
                } else {
                    format!("{}: {}", problem.field, problem.message)
                },
                invitation_id: None,
            })),
        };
        pending.push((prepared.line, prepared.event_id, outcome));
    }
    // The report is made from the outcomes and written in the invitations' transaction.
    let reports = storage
        .import_invitations(id, &invitations, |stored| {
            let mut stored = stored.into_iter();
            let mut reports = Vec::with_capacity(pending.len());
            for (line, event_id, outcome) in pending {
                let outcome = match outcome {
                    Some(outcome) => outcome,
                    None => {
                        let stored = stored.next().expect("one outcome per invitation");
                        stored_outcome(line, event_id.as_deref(), stored)?
                    }
                };
                reports.push(RowReport {
                    line,
                    event_id,
                    outcome,
                });
            }
            let rejections: Vec<ImportRejection> = reports
                .iter()
                .filter_map(|report| match &report.outcome {
                    RowOutcome::Rejected(rejection) => Some(rejection.clone()),
                    RowOutcome::Accepted { .. } => None,
                })
                .collect();
            let chunk = ImportChunk {
                accepted: (reports.len() - rejections.len()) as u64,
                rejections,
                at: Timestamp::now(),
            };
            Ok((chunk, reports))
        })
        .await?;
    let rejected = reports
        .iter()
        .filter(|report| matches!(report.outcome, RowOutcome::Rejected(_)))
        .count() as u64;
    let rows = reports.len() as u64;
    progress.rows.fetch_add(rows, Ordering::Relaxed);
    progress
        .accepted
        .fetch_add(rows - rejected, Ordering::Relaxed);
    progress.rejected.fetch_add(rejected, Ordering::Relaxed);
    for report in &reports {
        on_row(report);
    }
    Ok(())
}

/// A row's outcome from what storage made of its invitation.
fn stored_outcome(
    line: u64,
    event_id: Option<&str>,
    stored: Result<InvitationOutcome, StorageError>,
) -> Result<RowOutcome, StorageError> {
    let rejected = |reason: &str, message: String, invitation_id: Option<String>| {
        RowOutcome::Rejected(ImportRejection {
            line: i64::try_from(line).unwrap_or(i64::MAX),
            event_id: event_id.map(str::to_string),
            reason: reason.to_string(),
            message,
            invitation_id,
        })
    };
    Ok(match stored {
        Ok(InvitationOutcome::Created(record)) => match record.status_reason {
            None => RowOutcome::Accepted {
                invitation_id: record.id,
            },
            Some(reason) => rejected(&reason, declined_message(&reason), Some(record.id)),
        },
        Ok(InvitationOutcome::Existing(record)) => rejected(
            "duplicate_event",
            format!(
                "this event already has an invitation ({}); nothing new is sent",
                record.status
            ),
            Some(record.id),
        ),
        Err(StorageError::Conflict(message)) => {
            rejected("duplicate_event", message.to_string(), None)
        }
        Err(e) => return Err(e),
    })
}

/// What a declined invitation's reason means, for the report.
fn declined_message(reason: &str) -> String {
    match reason {
        "opted_out" => "the number has opted out of texts".into(),
        "open_conversation" => "the customer is in a survey on this sender already".into(),
        "frequency_cap" => "the customer was surveyed within the frequency cap".into(),
        "quota_reached" => "the unit's response quota for this flow is reached".into(),
        "open_case" => "the customer has a case that is not closed".into(),
        other => format!("declined: {other}"),
    }
}

/// A caller's text that a spreadsheet would run as a formula (`=`, `+`, `-`, `@` first, or a
/// tab or carriage return, which some spreadsheets skip before reading one) gets a leading
/// apostrophe, for every CSV hearback writes.
pub fn spreadsheet_safe(text: String) -> String {
    if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{text}")
    } else {
        text
    }
}

/// A reader that counts the bytes read, for the progress bar.
struct Counted {
    inner: Box<dyn Read + Send>,
    progress: Arc<Progress>,
}

impl Read for Counted {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.bytes.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}
