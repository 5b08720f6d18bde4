//! Imports: a CSV or JSON-lines file of customer events, streamed through intake and storage in
//! batches, with a report per row.
//!
//! - **Streamed.** One thread reads and checks rows ([`rows`], [`Intake::prepare`]) while
//!   earlier rounds are written: at most four rounds of [`MAX_INVITATIONS_PER_BATCH`] rows per
//!   lane are in memory (two being written, one waiting, one being read; with one lane, three),
//!   whatever the size of the file.
//! - **Lanes.** On PostgreSQL a round is [`POSTGRES_LANES`] batches written at once, each in its
//!   own transaction; SQLite has one writer, so one lane. A number's new events always go to the
//!   same lane, so a customer's rows apply in file order. A row whose event id an earlier row of
//!   the round took goes to that row's lane, after it: the first row of an event wins, as it does
//!   when rows are written one after the other (the later row can only be a duplicate; its
//!   number's contact is upserted in that lane, in phone order as every batch locks contacts, so
//!   the lanes may wait on each other there but not deadlock). A lane writes its batches one after
//!   the other, and starts a round's batch as soon as its own batch of the round before is
//!   written, without waiting for the other lanes: so no lane idles at the end of a round. But
//!   no lane starts a round before every lane has written the round two before it: an event of
//!   that round is then stored when the later one looks for it, and the dealer keeps an event id
//!   on its lane for two rounds, which covers the round the other lanes may still be writing.
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
/// four were within the noise of two, with more memory; three again on 2026-11-24
/// (docs/PERFORMANCE.md).
pub const POSTGRES_LANES: usize = 2;

/// A round: one batch per lane, each at most [`MAX_INVITATIONS_PER_BATCH`] rows.
type Round = Vec<Vec<Prepared>>;

/// Deals rows into the lanes of a round: a number's rows to one lane, a row whose event id an
/// earlier row of this round or of the round before took to that row's lane (the other lanes
/// may still be writing the round before when a lane starts this one).
struct Dealer {
    lanes: usize,
    /// The lane of each event id of the round, given to the row that took it first.
    events: std::collections::HashMap<String, usize>,
    /// The same for the round before.
    before: std::collections::HashMap<String, usize>,
}

impl Dealer {
    fn new(lanes: usize) -> Dealer {
        Dealer {
            lanes,
            events: std::collections::HashMap::new(),
            before: std::collections::HashMap::new(),
        }
    }

    fn lane(&mut self, prepared: &Prepared) -> usize {
        let stored = prepared
            .invitation
            .as_ref()
            .ok()
            .map(|invitation| (invitation.event_id.as_str(), invitation.phone.as_e164()));
        self.lane_of_row(stored, prepared.line)
    }

    /// The lane of the row at `line`: `stored`, its event id and number when it goes to storage.
    fn lane_of_row(&mut self, stored: Option<(&str, &str)>, line: u64) -> usize {
        if self.lanes == 1 {
            return 0;
        }
        match stored {
            Some((event_id, phone)) => {
                let earlier = self.before.get(event_id).copied();
                *self
                    .events
                    .entry(event_id.to_string())
                    .or_insert_with(|| earlier.unwrap_or_else(|| lane_of(phone, self.lanes)))
            }
            // A row refused before storage writes nothing but its rejection: any lane.
            None => (line % self.lanes as u64) as usize,
        }
    }

    fn next_round(&mut self) {
        self.before = std::mem::take(&mut self.events);
    }
}

/// The lane of a number (E.164) among `lanes`: the same in every round and every run.
pub fn lane_of(phone: &str, lanes: usize) -> usize {
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
    let mut writing = Writing::new(lanes);
    loop {
        let round = match received.recv().await {
            Some(Ok(round)) => round,
            // The rows read before the file's error, and those being written, are reported first.
            Some(Err(e)) => {
                writing.finish(progress, on_row).await?;
                return Err(e.into());
            }
            None => break,
        };
        // No lane starts this round before every lane has written the round two before it (with
        // one lane, the round before: it gains nothing from a round waiting in memory).
        if writing.rounds.len() == lanes.min(2) {
            if let Err(e) = writing.report_oldest(progress, on_row).await {
                // What the lanes are writing still commits: it is reported before the error
                // (and a batch's panic is raised again there).
                let _ = writing.finish(progress, on_row).await;
                return Err(e);
            }
        }
        writing.start(storage, id, round);
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
    writing.finish(progress, on_row).await?;
    if let Some(refresh) = refreshing {
        // The task logs its own failure.
        let _ = refresh.await;
    }
    reading
        .await
        .map_err(|e| FileError::Io(format!("the reader stopped: {e}")))?;
    Ok(())
}

/// A lane's batch of one round, being written: its rows' reports, or why it failed. `None`: not
/// written, because the lane's batch of the round before failed.
type LaneWrite = tokio::task::JoinHandle<Option<Result<Vec<RowReport>, ImportError>>>;

/// The rounds being written, oldest first, and what each lane's next batch waits for.
struct Writing {
    rounds: std::collections::VecDeque<Vec<LaneWrite>>,
    /// For each lane, whether its last batch started was written (`true`) or not, once known.
    last: Vec<Option<tokio::sync::oneshot::Receiver<bool>>>,
    /// A batch's panic, raised again once every round being written is reported.
    panicked: Option<Box<dyn std::any::Any + Send>>,
}

impl Writing {
    fn new(lanes: usize) -> Writing {
        Writing {
            rounds: std::collections::VecDeque::new(),
            last: (0..lanes).map(|_| None).collect(),
            panicked: None,
        }
    }

    /// Starts a round's batches, each as soon as its lane's batch of the round before is written
    /// (a task each, so that one lane's own work runs beside the other's on another thread).
    fn start(&mut self, storage: &Storage, id: &str, round: Round) {
        let mut writes = Vec::with_capacity(round.len());
        for (lane, batch) in round.into_iter().enumerate() {
            if batch.is_empty() {
                continue;
            }
            let before = self.last[lane].take();
            let (written, next) = tokio::sync::oneshot::channel();
            self.last[lane] = Some(next);
            let (storage, id) = (storage.clone(), id.to_string());
            writes.push(tokio::spawn(async move {
                if let Some(before) = before {
                    // A lane stops at its first failure: its numbers' later rows are not written
                    // before its earlier ones. (A panic drops the sender: not written either.)
                    if before.await != Ok(true) {
                        let _ = written.send(false);
                        return None;
                    }
                }
                let result = write_batch(&storage, &id, batch).await;
                let _ = written.send(result.is_ok());
                Some(result)
            }));
        }
        self.rounds.push_back(writes);
    }

    /// Waits for the oldest round's batches, then reports their rows in file order. When a batch
    /// failed, the rows of the others, which are written, are reported before the error.
    async fn report_oldest(
        &mut self,
        progress: &Progress,
        on_row: &mut impl FnMut(&RowReport),
    ) -> Result<(), ImportError> {
        let Some(writes) = self.rounds.pop_front() else {
            return Ok(());
        };
        // Every lane is awaited before anything is reported or raised: a lane that failed does
        // not hide the rows another one wrote.
        let mut finished = Vec::with_capacity(writes.len());
        for write in writes {
            finished.push(write.await);
        }
        let mut reports = Vec::new();
        let mut failure = None;
        for lane in finished {
            match lane {
                Ok(Some(Ok(batch))) => reports.extend(batch),
                Ok(Some(Err(e))) => failure = failure.or(Some(e)),
                // Not written: the error of the batch before it is raised with its round.
                Ok(None) => {}
                Err(stopped) if stopped.is_panic() => {
                    self.panicked = self.panicked.take().or(Some(stopped.into_panic()));
                    failure = failure.or(Some(ImportError::File(FileError::Io(
                        "a batch panicked".into(),
                    ))));
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
        match failure {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Waits for every round being written and reports them, oldest first; the first failure
    /// (or a batch's panic, again) is raised once all are reported.
    async fn finish(
        &mut self,
        progress: &Progress,
        on_row: &mut impl FnMut(&RowReport),
    ) -> Result<(), ImportError> {
        let mut failure = None;
        while !self.rounds.is_empty() {
            if let Err(e) = self.report_oldest(progress, on_row).await {
                failure = failure.or(Some(e));
            }
        }
        if let Some(panic) = self.panicked.take() {
            std::panic::resume_unwind(panic);
        }
        failure.map_or(Ok(()), Err)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Two numbers on different lanes.
    fn numbers() -> (&'static str, &'static str) {
        let (a, b) = ("+33612345601", "+33612345602");
        assert_ne!(lane_of(a, 2), lane_of(b, 2), "the table needs two lanes");
        (a, b)
    }

    #[test]
    fn a_number_keeps_its_lane_and_an_event_its_first_rows_lane_for_two_rounds() {
        let (a, b) = numbers();
        let mut dealer = Dealer::new(2);
        // (round, event, number, the lane expected: that of the number named)
        let table = [
            (1, "e1", a, a),
            (1, "e2", b, b),
            (1, "e1", b, a), // the same event from another number: after its first row
            (2, "e1", b, a), // the round after: still there, the lane may be a round behind
            (2, "e3", a, a),
            (3, "e3", b, a), // its first row was the round before
            (4, "e1", b, b), // last seen two rounds ago: written by then, any lane
            (4, "e2", a, a),
        ];
        let mut round = 1;
        for (line, (in_round, event, number, expected)) in table.into_iter().enumerate() {
            while round < in_round {
                dealer.next_round();
                round += 1;
            }
            assert_eq!(
                dealer.lane_of_row(Some((event, number)), line as u64),
                lane_of(expected, 2),
                "line {line}: {event} from {number} in round {round}"
            );
        }
    }

    #[test]
    fn one_lane_takes_every_row_and_a_refused_row_goes_to_any_lane() {
        let (a, _) = numbers();
        let mut one = Dealer::new(1);
        assert_eq!(one.lane_of_row(Some(("e1", a)), 7), 0);
        let mut two = Dealer::new(2);
        assert_eq!(two.lane_of_row(None, 7), 1);
        assert_eq!(two.lane_of_row(None, 8), 0);
    }
}
