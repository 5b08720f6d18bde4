//! Imports: a CSV or JSON-lines file of customer events, streamed through intake and storage in
//! batches, with a report per row.
//!
//! - **Streamed.** One thread reads and checks rows ([`rows`], [`Intake::prepare`]) while the
//!   previous round is written: at most three rounds of [`MAX_INVITATIONS_PER_BATCH`] rows per
//!   lane are in memory (one being written, one waiting, one being read), whatever the size of
//!   the file.
//! - **Lanes.** On PostgreSQL a round is [`POSTGRES_LANES`] batches written at once, each in its
//!   own transaction; SQLite has one writer, so one lane. A number's new events always go to the
//!   same lane, so a customer's rows apply in file order. A row whose event id an earlier row of
//!   the round took goes to that row's lane, after it: the first row of an event wins, as it does
//!   when rows are written one after the other (the later row can only be a duplicate; its
//!   number's contact is upserted in that lane, in phone order as every batch locks contacts, so
//!   the lanes may wait on each other there but not deadlock). Rounds are written one after the
//!   other, so an event of an earlier round is already stored when a later round looks for it.
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

/// Batches written at once on PostgreSQL, one transaction (and connection) each, at most as
/// many as the pool has connections. Two took a million rows from 48.7 to 41.0 s; three and
/// four were within the noise of two, with more memory (docs/PERFORMANCE.md).
pub const POSTGRES_LANES: usize = 2;

/// A round: one batch per lane, each at most [`MAX_INVITATIONS_PER_BATCH`] rows.
type Round = Vec<Vec<Prepared>>;

/// Deals rows into the lanes of a round: a number's rows to one lane, a row whose event id an
/// earlier row of the round took to that row's lane.
struct Dealer {
    lanes: usize,
    /// The lane of each event id of the round, given to the row that took it first.
    events: std::collections::HashMap<String, usize>,
}

impl Dealer {
    fn new(lanes: usize) -> Dealer {
        Dealer {
            lanes,
            events: std::collections::HashMap::new(),
        }
    }

    fn lane(&mut self, prepared: &Prepared) -> usize {
        if self.lanes == 1 {
            return 0;
        }
        match &prepared.invitation {
            Ok(invitation) => {
                let by_number = lane_of(invitation.phone.as_e164(), self.lanes);
                *self
                    .events
                    .entry(invitation.event_id.clone())
                    .or_insert(by_number)
            }
            // A row refused before storage writes nothing but its rejection: any lane.
            Err(_) => (prepared.line % self.lanes as u64) as usize,
        }
    }

    fn next_round(&mut self) {
        self.events.clear();
    }
}

/// The lane of a number: the same in every round and every run.
fn lane_of(phone: &str, lanes: usize) -> usize {
    // FNV-1a: stable across runs and builds, unlike the standard library's hasher.
    let hash = phone.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    });
    (hash % lanes as u64) as usize
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
    let lanes = match storage.kind() {
        crate::config::DatabaseKind::Postgres => {
            POSTGRES_LANES.min(usize::try_from(storage.max_connections()).unwrap_or(1))
        }
        crate::config::DatabaseKind::Sqlite => 1,
    }
    .max(1);
    let (rounds, mut received) = tokio::sync::mpsc::channel::<Result<Round, FileError>>(1);
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
                    let _ = rounds.blocking_send(Err(e));
                    return;
                }
            };
            let empty_round = || -> Round {
                (0..lanes)
                    .map(|_| Vec::with_capacity(MAX_INVITATIONS_PER_BATCH))
                    .collect()
            };
            let mut dealer = Dealer::new(lanes);
            let mut round = empty_round();
            for row in rows {
                let row = match row {
                    Ok(row) => row,
                    Err(e) => {
                        // The rows read before the error are written and reported first.
                        if round.iter().any(|batch| !batch.is_empty()) {
                            let _ = rounds.blocking_send(Ok(std::mem::take(&mut round)));
                        }
                        let _ = rounds.blocking_send(Err(e));
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
                let prepared = Prepared {
                    line: row.line,
                    event_id,
                    invitation,
                };
                let lane = dealer.lane(&prepared);
                round[lane].push(prepared);
                if round[lane].len() == MAX_INVITATIONS_PER_BATCH {
                    dealer.next_round();
                    if rounds
                        .blocking_send(Ok(std::mem::replace(&mut round, empty_round())))
                        .is_err()
                    {
                        // The writer stopped (a storage error): it reports why.
                        return;
                    }
                }
            }
            if round.iter().any(|batch| !batch.is_empty()) {
                let _ = rounds.blocking_send(Ok(round));
            }
        })
    };
    // The planner's statistics follow the import as it doubles: ten refreshes for a million
    // rows (Storage::refresh_import_statistics), each beside the next rounds rather than
    // between them (a refresh took 0.1 s or more once the tables held tens of thousands of rows).
    // A refresh that fails costs speed, not rows: it is logged, and the import goes on.
    let mut refresh_at = MAX_INVITATIONS_PER_BATCH as u64;
    let mut refreshing: Option<tokio::task::JoinHandle<()>> = None;
    while let Some(round) = received.recv().await {
        write_round(storage, id, round?, progress, on_row).await?;
        let due = progress.rows.load(Ordering::Relaxed) >= refresh_at;
        if due
            && refreshing
                .as_ref()
                .is_none_or(|refresh| refresh.is_finished())
        {
            let storage = storage.clone();
            refreshing = Some(tokio::spawn(async move {
                if let Err(e) = storage.refresh_import_statistics().await {
                    tracing::warn!(error = %e, "cannot refresh the planner's statistics during an import; it goes on");
                }
            }));
            refresh_at *= 2;
        }
    }
    if let Some(refresh) = refreshing {
        // The task logs its own failure.
        let _ = refresh.await;
    }
    reading
        .await
        .map_err(|e| FileError::Io(format!("the reader stopped: {e}")))?;
    Ok(())
}

/// Writes a round's batches at once, each with its report in one transaction, then reports
/// their rows in file order. When a batch fails, the rows of the others, which are written,
/// are reported before the error.
async fn write_round(
    storage: &Storage,
    id: &str,
    round: Round,
    progress: &Progress,
    on_row: &mut impl FnMut(&RowReport),
) -> Result<(), ImportError> {
    // A task each, so that one lane's own work (rows, payloads, outcomes) runs beside the
    // other's on another thread, not only their waits for the database.
    let lanes: Vec<_> = round
        .into_iter()
        .filter(|batch| !batch.is_empty())
        .map(|batch| {
            let (storage, id) = (storage.clone(), id.to_string());
            tokio::spawn(async move { write_batch(&storage, &id, batch).await })
        })
        .collect();
    // Every lane is awaited before anything is reported or raised: a lane that failed does not
    // hide the rows another one wrote.
    let mut finished = Vec::with_capacity(lanes.len());
    for lane in lanes {
        finished.push(lane.await);
    }
    let mut reports = Vec::new();
    let mut failure = None;
    let mut panicked = None;
    for lane in finished {
        match lane {
            Ok(Ok(batch)) => reports.extend(batch),
            Ok(Err(e)) => failure = failure.or(Some(e)),
            Err(stopped) if stopped.is_panic() => {
                panicked = panicked.or(Some(stopped.into_panic()));
            }
            Err(stopped) => {
                failure = failure.or(Some(ImportError::File(FileError::Io(format!(
                    "a batch was stopped: {stopped}"
                )))));
            }
        }
    }
    reports.sort_by_key(|report| report.line);
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
    if let Some(panic) = panicked {
        std::panic::resume_unwind(panic);
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Writes one batch's invitations and its report, in one transaction; returns its rows'
/// reports, in file order.
async fn write_batch(
    storage: &Storage,
    id: &str,
    batch: Vec<Prepared>,
) -> Result<Vec<RowReport>, ImportError> {
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
    Ok(reports)
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
