//! Durable jobs: work that must survive a crash (sends, reminders, webhook deliveries, upkeep).
//!
//! A job lives in the database from the moment it is queued. Each `hearback serve` runs a
//! [`JobRunner`] that claims due jobs with a lease, renews the lease while a job runs, and records
//! the outcome: done, retried later with backoff and jitter, or dead with its last error. A job
//! whose worker died is claimed again when its lease expires, so delivery is at least once and
//! handlers are written to be idempotent.

pub mod backoff;
pub mod cases;
pub mod expire;
pub mod maintenance;
pub mod open;
pub mod remind;
pub mod retention;
pub mod send_sms;
pub mod webhooks;

use crate::config::JobsConfig;
use crate::storage::{ClaimedJob, JobLease, Storage};
use crate::time::Timestamp;
use futures::future::BoxFuture;
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, error, info, info_span, warn};

/// Why a run did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobFailure {
    /// Worth another attempt later (a timeout, a 503, a lock).
    Retry(String),
    /// Will fail the same way every time (a malformed payload, a 4xx): the job goes dead at once.
    Permanent(String),
    /// Worth another attempt, not before this delay (a provider asked for it with `Retry-After`);
    /// counted as an attempt like [`JobFailure::Retry`].
    RetryAfter(Duration, String),
    /// Not this instance's turn (another holds the channel, the provider asked to wait): run
    /// again after the delay, without counting this run as an attempt.
    Later(Duration, String),
}

pub type JobFuture = BoxFuture<'static, Result<(), JobFailure>>;
/// The outcomes of a batch, one per job, in the jobs' order.
pub type BatchFuture = BoxFuture<'static, Vec<Result<(), JobFailure>>>;

/// The code that runs one kind of job.
pub trait JobHandler: Send + Sync + 'static {
    fn kind(&self) -> &'static str;
    fn run(&self, job: ClaimedJob) -> JobFuture;

    /// Runs several jobs of this kind together, for a runner whose `batch` is above one; returns
    /// one outcome per job, in order. By default they run one after the other; a handler
    /// overrides this when a batch costs less than its jobs apart (one statement, one commit).
    fn run_batch(&self, jobs: Vec<ClaimedJob>) -> BatchFuture {
        let runs: Vec<JobFuture> = jobs.into_iter().map(|job| self.run(job)).collect();
        Box::pin(async move {
            let mut outcomes = Vec::with_capacity(runs.len());
            for run in runs {
                outcomes.push(run.await);
            }
            outcomes
        })
    }

    /// Called, instead of running it, for a job whose worker stopped without reporting on its
    /// last attempt, before the job is buried: the handler records the final state of its
    /// work (a text never sent is reported as failed), without doing the work. An error leaves
    /// the job to be claimed, and abandoned, again once its lease expires. By default, nothing.
    fn abandon(&self, job: ClaimedJob) -> JobFuture {
        let _ = job;
        Box::pin(async { Ok(()) })
    }
}

/// The handlers an instance has. An instance only claims the kinds it can run, so a release that
/// adds a kind can roll out beside one that does not know it.
#[derive(Clone, Default)]
pub struct JobRegistry {
    handlers: BTreeMap<&'static str, Arc<dyn JobHandler>>,
}

impl JobRegistry {
    pub fn with(mut self, handler: impl JobHandler) -> Self {
        self.handlers.insert(handler.kind(), Arc::new(handler));
        self
    }

    pub fn kinds(&self) -> Vec<&'static str> {
        self.handlers.keys().copied().collect()
    }

    fn handler(&self, kind: &str) -> Option<Arc<dyn JobHandler>> {
        self.handlers.get(kind).cloned()
    }
}

/// Timing of the runner, from `[jobs]`.
#[derive(Debug, Clone)]
pub struct RunnerSettings {
    pub concurrency: usize,
    /// Jobs a worker takes at a time ([`JobHandler::run_batch`]); 1: one at a time.
    pub batch: usize,
    pub poll_interval: Duration,
    pub lease: Duration,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// "Now" for claims, leases and outcomes (the system clock but in tests).
    pub clock: crate::time::Clock,
}

impl From<&JobsConfig> for RunnerSettings {
    fn from(config: &JobsConfig) -> Self {
        Self {
            concurrency: config.concurrency.max(1),
            batch: 1,
            poll_interval: Duration::from_millis(config.poll_interval_ms),
            lease: Duration::from_secs(config.lease_secs),
            backoff_base: Duration::from_millis(config.backoff_base_ms),
            backoff_max: Duration::from_secs(config.backoff_max_secs),
            clock: crate::time::Clock::system(),
        }
    }
}

struct Shared {
    storage: Storage,
    registry: JobRegistry,
    settings: RunnerSettings,
    worker_id: String,
    /// Jobs handed over ([`JobHandover`]): the sending side, for more handles.
    handover: mpsc::UnboundedSender<HandedJob>,
    /// The receiving side, taken by [`JobRunner::run`].
    handed: Mutex<Option<mpsc::UnboundedReceiver<HandedJob>>>,
    /// How many more jobs may be handed over now.
    room: Arc<HandoverRoom>,
}

/// What bounds the handover: the jobs handed over and not started yet stay under a cap, and
/// once a writer had to leave a job due now to the claims (no room), nothing more is handed over
/// until a claim finds no more due jobs than it can take. So a backlog (a channel's rate limit,
/// a burst of replies) waits in the database, where any instance may claim it, in order, rather
/// than in one instance's memory; and a job left to the claims is not overtaken by later ones.
#[derive(Debug)]
struct HandoverRoom {
    cap: usize,
    waiting: std::sync::atomic::AtomicUsize,
    caught_up: std::sync::atomic::AtomicBool,
    /// How many times a writer left jobs due now to the claims: a claim proves the lane caught
    /// up only if none did while it ran (its snapshot may have missed those jobs).
    left_to_claims: std::sync::atomic::AtomicU64,
    /// The runner has stopped taking handed jobs: writers leave every job to the claims.
    stopped: std::sync::atomic::AtomicBool,
}

impl HandoverRoom {
    fn now(&self) -> usize {
        use std::sync::atomic::Ordering::Relaxed;
        if self.caught_up.load(Relaxed) && !self.stopped.load(Relaxed) {
            self.cap.saturating_sub(self.waiting.load(Relaxed))
        } else {
            0
        }
    }

    /// Marks the lane caught up after a claim that found no more due jobs than it could take,
    /// unless a writer left jobs to the claims since `before` (read before the claim began).
    fn caught_up_since(&self, before: u64) {
        use std::sync::atomic::Ordering::SeqCst;
        if self.left_to_claims.load(SeqCst) == before {
            self.caught_up.store(true, SeqCst);
            // A writer that left jobs meanwhile, after the check, clears the flag again.
            if self.left_to_claims.load(SeqCst) != before {
                self.caught_up.store(false, SeqCst);
            }
        }
    }

    fn started(&self, jobs: usize) {
        use std::sync::atomic::Ordering::Relaxed;
        let _ = self.waiting.fetch_update(Relaxed, Relaxed, |waiting| {
            Some(waiting.saturating_sub(jobs))
        });
    }
}

/// A job written already claimed by this runner's worker, until its lease expires.
struct HandedJob {
    job: ClaimedJob,
    lease_expires_at: Timestamp,
}

/// Hands a runner jobs that a transaction wrote already claimed in its worker's name (an answer
/// to a customer, committed with the customer's message): the runner starts them as soon as it
/// has a free slot, with no claim statement and no wait for its next poll. A job the runner
/// does not start before its lease expires (the instance stopped, the lane was busy that long)
/// is left to the claims, like the job of a worker that died. Cloning is cheap.
#[derive(Clone)]
pub struct JobHandover {
    queue: mpsc::UnboundedSender<HandedJob>,
    owner: String,
    lease: Duration,
    clock: crate::time::Clock,
    room: Arc<HandoverRoom>,
    /// The channels whose texts are left to the claims, as of a moment.
    held_elsewhere: Option<Arc<dyn Fn(Timestamp) -> Vec<String> + Send + Sync>>,
}

impl JobHandover {
    /// The lease to write jobs under, starting now, for as many jobs as the runner has room for
    /// (none while a backlog waits for the claims: see [`HandoverRoom`]).
    pub fn lease(&self) -> JobLease {
        let now = self.clock.now();
        JobLease {
            owner: self.owner.clone(),
            expires_at: now + self.lease,
            most: self.room.now(),
            not_through: self
                .held_elsewhere
                .as_ref()
                .map_or_else(Vec::new, |held_elsewhere| held_elsewhere(now)),
            not_to: Vec::new(),
        }
    }

    /// Leaves to the claims the texts through the channels `held_elsewhere` names at the time
    /// (another instance sends through them: `SendSms::channels_held_elsewhere`).
    pub fn except_channels(
        mut self,
        held_elsewhere: impl Fn(Timestamp) -> Vec<String> + Send + Sync + 'static,
    ) -> JobHandover {
        self.held_elsewhere = Some(Arc::new(held_elsewhere));
        self
    }

    /// Hands over `jobs`, written under `lease`, once their transaction has committed;
    /// `left_pending`: how many jobs due now it left to the claims for lack of room.
    pub fn hand_over(&self, lease: &JobLease, jobs: Vec<ClaimedJob>, left_pending: usize) {
        use std::sync::atomic::Ordering::{Relaxed, SeqCst};
        if left_pending > 0 {
            self.room.left_to_claims.fetch_add(1, SeqCst);
            self.room.caught_up.store(false, SeqCst);
        }
        self.room.waiting.fetch_add(jobs.len(), Relaxed);
        for job in jobs {
            let handed = HandedJob {
                job,
                lease_expires_at: lease.expires_at,
            };
            if self.queue.send(handed).is_err() {
                warn!(
                    "the job runner has stopped; the jobs handed to it run again when their leases expire"
                );
                return;
            }
        }
    }
}

/// Claims and runs jobs until told to stop.
#[derive(Clone)]
pub struct JobRunner {
    shared: Arc<Shared>,
}

impl JobRunner {
    pub fn new(storage: Storage, registry: JobRegistry, settings: RunnerSettings) -> Self {
        let worker_id = format!("worker-{:016x}", rand::random::<u64>());
        let (handover, handed) = mpsc::unbounded_channel();
        // What the runner can start at once, twice over.
        let room = Arc::new(HandoverRoom {
            cap: settings.concurrency.max(1) * settings.batch.max(1) * 2,
            waiting: Default::default(),
            caught_up: std::sync::atomic::AtomicBool::new(true),
            left_to_claims: Default::default(),
            stopped: Default::default(),
        });
        Self {
            shared: Arc::new(Shared {
                storage,
                registry,
                settings,
                worker_id,
                handover,
                handed: Mutex::new(Some(handed)),
                room,
            }),
        }
    }

    pub fn worker_id(&self) -> &str {
        &self.shared.worker_id
    }

    /// A handle that hands this runner jobs claimed in its name ([`JobHandover`]).
    pub fn handover(&self) -> JobHandover {
        JobHandover {
            queue: self.shared.handover.clone(),
            owner: self.shared.worker_id.clone(),
            lease: self.shared.settings.lease,
            clock: self.shared.settings.clock.clone(),
            room: Arc::clone(&self.shared.room),
            held_elsewhere: None,
        }
    }

    /// Runs until `shutdown` is cancelled, then waits for the jobs in progress to finish (the
    /// caller bounds that wait; a job cut short is claimed again when its lease expires).
    pub async fn run(self, shutdown: CancellationToken) {
        let shared = &self.shared;
        let kinds = shared.registry.kinds();
        info!(worker = %shared.worker_id, kinds = ?kinds, concurrency = shared.settings.concurrency, "job runner started");
        let slots = Arc::new(Semaphore::new(shared.settings.concurrency));
        let mut running = JoinSet::new();
        let batch = shared.settings.batch.max(1);
        let mut handed = shared
            .handed
            .lock()
            .expect("the handover's lock is never held across a panic")
            .take();
        if handed.is_some() {
            shared
                .room
                .stopped
                .store(false, std::sync::atomic::Ordering::SeqCst);
        }
        // Handed jobs received while waiting, not started yet.
        let mut waiting: VecDeque<HandedJob> = VecDeque::new();
        while !shutdown.is_cancelled() {
            while running.try_join_next().is_some() {}
            let free = slots.available_permits();
            if free > 0 {
                // Jobs handed over first: they are claimed already, and someone is waiting for
                // them (a customer for the answer to their text).
                let now = shared.settings.clock.now();
                let Handed { start, give_back } = take_handed(
                    &mut waiting,
                    handed.as_mut(),
                    (free * batch, &shared.room),
                    (now, shared.settings.lease),
                );
                if !give_back.is_empty() {
                    let shared = Arc::clone(&self.shared);
                    running.spawn(async move {
                        let reason = "handed over with too little of its lease left";
                        give_back_to_claims(&shared, give_back, reason).await;
                    });
                }
                if !start.is_empty() {
                    self.start(start, &slots, &mut running);
                    continue;
                }
                let limit = u32::try_from(free * batch).unwrap_or(u32::MAX);
                let left_before = shared
                    .room
                    .left_to_claims
                    .load(std::sync::atomic::Ordering::SeqCst);
                match shared
                    .storage
                    .claim_jobs(
                        &shared.worker_id,
                        &kinds,
                        limit,
                        shared.settings.lease,
                        shared.settings.clock.now(),
                    )
                    .await
                {
                    Ok(jobs) => {
                        if jobs.len() < free * batch {
                            // No more due jobs than it could take: no backlog waits for claims.
                            shared.room.caught_up_since(left_before);
                        }
                        if !jobs.is_empty() {
                            self.start(jobs, &slots, &mut running);
                            continue;
                        }
                    }
                    Err(e) => warn!(error = %e, "cannot claim jobs; trying again shortly"),
                }
            }
            let can_take = free > 0 && handed.is_some();
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = tokio::time::sleep(shared.settings.poll_interval) => {}
                _ = running.join_next(), if !running.is_empty() => {}
                job = recv_handed(&mut handed), if can_take => waiting.extend(job),
            }
        }
        // From now on writers leave every job to the claims (of this instance's next start, or of
        // another instance's runner).
        shared
            .room
            .stopped
            .store(true, std::sync::atomic::Ordering::SeqCst);
        if !running.is_empty() {
            info!(jobs = running.len(), "waiting for the jobs in progress");
        }
        // Handed jobs not started are given back to the claims now rather than when their
        // leases expire: those waiting, then, once the jobs in progress are done, those a
        // writer that had asked for its lease before the stop handed over meanwhile. One handed
        // over later still runs when its lease expires.
        give_back_handed(shared, &mut waiting, handed.as_mut()).await;
        while running.join_next().await.is_some() {}
        give_back_handed(shared, &mut waiting, handed.as_mut()).await;
        // For the runner's next run, if any.
        if let Some(queue) = handed {
            *shared
                .handed
                .lock()
                .expect("the handover's lock is never held across a panic") = Some(queue);
        }
        info!(worker = %shared.worker_id, "job runner stopped");
    }

    /// Starts claimed jobs in free slots: one per slot, or batches of `batch` when it is above
    /// one. The caller took no more than the free slots can hold.
    fn start(&self, jobs: Vec<ClaimedJob>, slots: &Arc<Semaphore>, running: &mut JoinSet<()>) {
        let batch = self.shared.settings.batch.max(1);
        let mut jobs = jobs.into_iter().peekable();
        while jobs.peek().is_some() {
            let slot = Arc::clone(slots)
                .try_acquire_owned()
                .expect("took no more jobs than free slots");
            if batch == 1 {
                let job = jobs.next().expect("peeked");
                running.spawn(execute(Arc::clone(&self.shared), job, slot));
            } else {
                let chunk: Vec<ClaimedJob> = jobs.by_ref().take(batch).collect();
                running.spawn(execute_batch(Arc::clone(&self.shared), chunk, slot));
            }
        }
    }
}

/// The next handed job; never when this run has no queue (another run of the same runner took
/// it) or the queue has closed (the claims go on).
async fn recv_handed(handed: &mut Option<mpsc::UnboundedReceiver<HandedJob>>) -> Option<HandedJob> {
    match handed {
        Some(queue) => match queue.recv().await {
            Some(job) => Some(job),
            None => {
                *handed = None;
                None
            }
        },
        None => std::future::pending().await,
    }
}

/// Gives back to the claims, as pending and without counting an attempt, the handed jobs not
/// started: those waiting and those still in the queue.
async fn give_back_handed(
    shared: &Shared,
    waiting: &mut VecDeque<HandedJob>,
    handed: Option<&mut mpsc::UnboundedReceiver<HandedJob>>,
) {
    if let Some(handed) = handed {
        while let Ok(job) = handed.try_recv() {
            waiting.push_back(job);
        }
    }
    shared.room.started(waiting.len());
    let jobs = waiting.drain(..).map(|handed| handed.job).collect();
    give_back_to_claims(shared, jobs, "handed over as its runner stopped").await;
}

/// Puts handed jobs back as pending, their attempt not counted, for the next claim; fenced by
/// the lease's owner, like any outcome.
async fn give_back_to_claims(shared: &Shared, jobs: Vec<ClaimedJob>, reason: &str) {
    for job in jobs {
        let later = JobFailure::Later(Duration::ZERO, reason.into());
        settle(shared, &job, Some(Err(later))).await;
    }
}

/// What [`take_handed`] took: jobs to start, and jobs to give back to the claims.
struct Handed {
    start: Vec<ClaimedJob>,
    give_back: Vec<ClaimedJob>,
}

/// Up to `limit` handed jobs, oldest first, each with more than half of its `lease` left: a job
/// started with less could outlive its lease before its first renewal (a third of the lease
/// in) and be claimed and run a second time meanwhile. One with less but more than a quarter
/// left is given back to the claims at once (the give-back, fenced by the lease's owner, runs
/// long before the lease ends). One with a quarter or less is dropped: its lease may end before
/// a give-back lands, and the claims may then have given it to a worker already; they take it
/// when it ends otherwise.
fn take_handed(
    waiting: &mut VecDeque<HandedJob>,
    mut handed: Option<&mut mpsc::UnboundedReceiver<HandedJob>>,
    (limit, room): (usize, &HandoverRoom),
    (now, lease): (Timestamp, Duration),
) -> Handed {
    let mut taken = Handed {
        start: Vec::new(),
        give_back: Vec::new(),
    };
    let mut dropped = 0;
    while taken.start.len() < limit {
        let next = match waiting.pop_front() {
            Some(job) => job,
            None => match handed.as_deref_mut().map(mpsc::UnboundedReceiver::try_recv) {
                Some(Ok(job)) => job,
                _ => break,
            },
        };
        room.started(1);
        if next.lease_expires_at > now + lease / 2 {
            taken.start.push(next.job);
        } else if next.lease_expires_at > now + lease / 4 {
            taken.give_back.push(next.job);
        } else {
            dropped += 1;
        }
    }
    if dropped + taken.give_back.len() > 0 {
        warn!(
            dropped,
            given_back = taken.give_back.len(),
            "handed jobs waited for a free slot until too little of their lease was left; the claims take them"
        );
    }
    taken
}

async fn execute(shared: Arc<Shared>, job: ClaimedJob, _slot: OwnedSemaphorePermit) {
    let span = info_span!("job", id = job.id, kind = %job.kind, attempt = job.attempt);
    async move {
        let kind = job.kind.clone();
        let started = Instant::now();
        let outcome = run_with_lease(&shared, job.clone()).await;
        let outcome_label = settle(&shared, &job, outcome).await;
        metrics::counter!("hearback_jobs_finished_total", "kind" => kind.clone(), "outcome" => outcome_label).increment(1);
        metrics::histogram!("hearback_job_duration_seconds", "kind" => kind).record(started.elapsed().as_secs_f64());
    }
    .instrument(span)
    .await
}

/// Runs a batch of jobs in one slot: each kind's jobs through its handler's
/// [`JobHandler::run_batch`], the leases renewed meanwhile; the successes are recorded in one
/// statement, the other outcomes one by one.
async fn execute_batch(shared: Arc<Shared>, jobs: Vec<ClaimedJob>, _slot: OwnedSemaphorePermit) {
    let span = info_span!("jobs", count = jobs.len());
    async move {
        let mut by_kind: BTreeMap<String, Vec<ClaimedJob>> = BTreeMap::new();
        for job in jobs {
            by_kind.entry(job.kind.clone()).or_default().push(job);
        }
        for (kind, jobs) in by_kind {
            let started = Instant::now();
            let outcomes = run_batch_with_lease(&shared, &kind, &jobs).await;
            let succeeded: Vec<i64> = jobs
                .iter()
                .zip(&outcomes)
                .filter(|(_, outcome)| matches!(outcome, Some(Ok(()))))
                .map(|(job, _)| job.id)
                .collect();
            let completed = match shared
                .storage
                .complete_jobs(&succeeded, &shared.worker_id, shared.settings.clock.now())
                .await
            {
                Ok(completed) => Some(completed),
                Err(e) => {
                    error!(error = %e, jobs = succeeded.len(), "cannot record the jobs' outcomes; they will run again when their leases expire");
                    None
                }
            };
            for (job, outcome) in jobs.iter().zip(outcomes) {
                let label = match (outcome, &completed) {
                    (Some(Ok(())), Some(completed)) if completed.contains(&job.id) => "succeeded",
                    (Some(Ok(())), Some(_)) => "lease_lost",
                    (Some(Ok(())), None) => "unrecorded",
                    (other, _) => settle(&shared, job, other).await,
                };
                metrics::counter!("hearback_jobs_finished_total", "kind" => kind.clone(), "outcome" => label).increment(1);
                // Each job of a batch took as long as its batch.
                metrics::histogram!("hearback_job_duration_seconds", "kind" => kind.clone())
                    .record(started.elapsed().as_secs_f64());
            }
            metrics::histogram!("hearback_job_batch_size", "kind" => kind.clone()).record(jobs.len() as f64);
        }
    }
    .instrument(span)
    .await
}

/// [`run_with_lease`] for a batch of one kind: one outcome per job, `None` for a job whose lease
/// was lost meanwhile (its new owner decides).
async fn run_batch_with_lease(
    shared: &Shared,
    kind: &str,
    jobs: &[ClaimedJob],
) -> Vec<Option<Result<(), JobFailure>>> {
    let Some(handler) = shared.registry.handler(kind) else {
        let failure = JobFailure::Retry(format!("no handler for job kind '{kind}'"));
        return jobs.iter().map(|_| Some(Err(failure.clone()))).collect();
    };
    // Every job of the batch keeps its lease while any of them is at work: a job abandoned
    // first (a provider lookup may take seconds) must not let the others' leases lapse.
    let lease = shared.settings.lease;
    let mut lost = std::collections::BTreeSet::new();
    let mut work = tokio::spawn(abandon_then_run_batch(handler, jobs.to_vec()));
    let mut renewal = tokio::time::interval(lease / 3);
    renewal.tick().await;
    let finished = loop {
        tokio::select! {
            joined = &mut work => break joined,
            _ = renewal.tick() => {
                let now = shared.settings.clock.now();
                for job in jobs {
                    if lost.contains(&job.id) {
                        continue;
                    }
                    match shared.storage.renew_job_lease(job.id, &shared.worker_id, now + lease, now).await {
                        Ok(true) => {}
                        Ok(false) => {
                            warn!(job = job.id, "lease lost to another worker; its outcome is left to it");
                            lost.insert(job.id);
                        }
                        Err(e) => warn!(error = %e, "cannot renew the lease; the job keeps running"),
                    }
                }
            }
        }
    };
    let outcomes = finished.unwrap_or_else(|e| {
        let failure = JobFailure::Retry(format!("the batch panicked: {e}"));
        jobs.iter().map(|_| Some(Err(failure.clone()))).collect()
    });
    jobs.iter()
        .zip(outcomes)
        .map(|(job, outcome)| outcome.filter(|_| !lost.contains(&job.id)))
        .collect()
}

/// The work of a batch: each job whose earlier worker died on its last attempt is abandoned, not
/// run again, then the others run together. `None` for an abandoned job left as it is (its
/// handler could not record it).
async fn abandon_then_run_batch(
    handler: Arc<dyn JobHandler>,
    jobs: Vec<ClaimedJob>,
) -> Vec<Option<Result<(), JobFailure>>> {
    let mut outcomes: Vec<Option<Result<(), JobFailure>>> = Vec::with_capacity(jobs.len());
    let mut runnable = Vec::new();
    let mut positions = Vec::new();
    for (i, job) in jobs.into_iter().enumerate() {
        if job.attempt <= job.max_attempts {
            outcomes.push(None);
            positions.push(i);
            runnable.push(job);
        } else {
            outcomes.push(abandon(&*handler, &job).await);
        }
    }
    if runnable.is_empty() {
        return outcomes;
    }
    // In a task of its own, so that a panic fails the batch's jobs and not the abandons'
    // outcomes.
    let results = tokio::spawn(handler.run_batch(runnable))
        .await
        .unwrap_or_else(|e| {
            let failure = JobFailure::Retry(format!("the batch panicked: {e}"));
            positions.iter().map(|_| Err(failure.clone())).collect()
        });
    for (i, result) in positions.into_iter().zip(results) {
        outcomes[i] = Some(result);
    }
    outcomes
}

/// A job whose worker stopped on its last attempt: the handler records its work's final state,
/// then the job is buried (`Permanent`). `None` when the handler could not: the job is left as
/// it is, claimed and abandoned again once its lease expires.
async fn abandon(handler: &dyn JobHandler, job: &ClaimedJob) -> Option<Result<(), JobFailure>> {
    let reason = format!(
        "the worker running attempt {} stopped without reporting and the lease expired",
        job.max_attempts
    );
    match handler.abandon(job.clone()).await {
        Ok(()) => Some(Err(JobFailure::Permanent(reason))),
        Err(e) => {
            warn!(job = job.id, error = ?e, "cannot record the final state of an abandoned job; it is tried again when its lease expires");
            None
        }
    }
}

/// Runs the handler in its own task (a panic becomes a failure), renewing the lease meanwhile.
/// Returns `None` when the lease was lost: another worker owns the job now.
async fn run_with_lease(shared: &Shared, job: ClaimedJob) -> Option<Result<(), JobFailure>> {
    let Some(handler) = shared.registry.handler(&job.kind) else {
        return Some(Err(JobFailure::Retry(format!(
            "no handler for job kind '{}'",
            job.kind
        ))));
    };
    let (id, lease) = (job.id, shared.settings.lease);
    // A job whose earlier worker died on its last attempt is abandoned, not run again; under
    // its lease too (a provider lookup may take seconds).
    let mut work = if job.attempt > job.max_attempts {
        tokio::spawn(async move { abandon(&*handler, &job).await })
    } else {
        let run = handler.run(job);
        tokio::spawn(async move { Some(run.await) })
    };
    let mut renewal = tokio::time::interval(lease / 3);
    renewal.tick().await;
    loop {
        tokio::select! {
            joined = &mut work => {
                return joined.unwrap_or_else(|e| Some(Err(JobFailure::Retry(format!("the job panicked: {e}")))));
            }
            _ = renewal.tick() => {
                let now = shared.settings.clock.now();
                match shared.storage.renew_job_lease(id, &shared.worker_id, now + lease, now).await {
                    Ok(true) => {}
                    Ok(false) => {
                        warn!("lease lost to another worker; abandoning this run");
                        work.abort();
                        return None;
                    }
                    Err(e) => warn!(error = %e, "cannot renew the lease; the job keeps running"),
                }
            }
        }
    }
}

/// How often a reminder or an expiry looks again while its conversation's first question waits.
const FIRST_MESSAGE_WAIT: Duration = Duration::from_secs(300);

/// A reminder or an expiry never comes before the first question, and comes as long after it
/// as planned (its payload's `after_first_message_ms`), not after the opening: while the
/// question waits (the window, an SMS-pumping guard holding it to the next day, a provider
/// outage), the job is put back, five minutes at a time; once the question has gone out later
/// than planned, the job is put back until its delay has passed since. Neither counts an
/// attempt. A job written before its payload carried the delay runs when it is due.
pub(crate) async fn after_first_message(
    storage: &Storage,
    conversation_id: &str,
    payload: &serde_json::Value,
    now: Timestamp,
) -> Result<(), JobFailure> {
    use crate::storage::FirstMessage;
    let after = payload
        .get("after_first_message_ms")
        .and_then(serde_json::Value::as_u64)
        .map(Duration::from_millis);
    match storage.first_message(conversation_id).await {
        Ok(FirstMessage::Waiting) => Err(JobFailure::Later(
            FIRST_MESSAGE_WAIT,
            "the first question has not gone out yet".into(),
        )),
        Ok(FirstMessage::Out {
            sent_at: Some(sent_at),
        }) => match after.and_then(|after| still_to_wait(sent_at, after, now)) {
            Some(wait) => Err(JobFailure::Later(
                wait,
                "the first question went out late; the delay runs from then".into(),
            )),
            None => Ok(()),
        },
        Ok(FirstMessage::Out { sent_at: None } | FirstMessage::Missing) => Ok(()),
        Err(e) => Err(JobFailure::Retry(e.to_string())),
    }
}

/// How long is left at `now` until `after` has passed since `since`; `None` once it has.
fn still_to_wait(since: Timestamp, after: Duration, now: Timestamp) -> Option<Duration> {
    let due = since + after;
    (due > now).then(|| {
        Duration::from_millis(u64::try_from(due.as_millis() - now.as_millis()).unwrap_or(0))
    })
}

/// Puts a failed job back, to run after its backoff (or the delay asked for, when longer).
async fn retry(
    shared: &Shared,
    job: &ClaimedJob,
    reason: String,
    asked: Option<Duration>,
    now: Timestamp,
) -> (&'static str, Result<bool, crate::storage::StorageError>) {
    let s = &shared.settings;
    let backoff = backoff::retry_delay(
        job.attempt,
        s.backoff_base,
        s.backoff_max,
        rand::random::<f64>(),
    );
    let delay = asked.map_or(backoff, |asked| asked.max(backoff));
    warn!(error = %reason, retry_in_ms = delay.as_millis() as u64, "job failed; will retry");
    (
        "retried",
        shared
            .storage
            .retry_job(job.id, &shared.worker_id, &reason, now + delay, now)
            .await,
    )
}

/// Records the outcome; returns its metric label.
async fn settle(
    shared: &Shared,
    job: &ClaimedJob,
    outcome: Option<Result<(), JobFailure>>,
) -> &'static str {
    let now = shared.settings.clock.now();
    let storage = &shared.storage;
    let worker = shared.worker_id.as_str();
    let (label, recorded) = match outcome {
        None => return "lease_lost",
        Some(Ok(())) => ("succeeded", storage.complete_job(job.id, worker, now).await),
        Some(Err(JobFailure::Permanent(reason))) => {
            warn!(error = %reason, "job failed permanently");
            ("dead", storage.bury_job(job.id, worker, &reason, now).await)
        }
        Some(Err(JobFailure::Later(delay, reason))) => (
            "deferred",
            storage
                .defer_job(job.id, worker, &reason, now + delay, now)
                .await,
        ),
        Some(Err(JobFailure::Retry(reason) | JobFailure::RetryAfter(_, reason)))
            if job.attempt >= job.max_attempts =>
        {
            warn!(error = %reason, "job failed on its last attempt");
            // Its handler records the final state of its work first, as for a job whose worker
            // died (a text never sent is reported as failed, not left queued); if it cannot, the
            // job is left as it is, and abandoned again once its lease expires.
            if let Some(handler) = shared.registry.handler(&job.kind)
                && abandon(&*handler, job).await.is_none()
            {
                return "unrecorded";
            }
            ("dead", storage.bury_job(job.id, worker, &reason, now).await)
        }
        Some(Err(JobFailure::Retry(reason))) => retry(shared, job, reason, None, now).await,
        Some(Err(JobFailure::RetryAfter(asked, reason))) => {
            retry(shared, job, reason, Some(asked), now).await
        }
    };
    match recorded {
        Ok(true) => label,
        Ok(false) => {
            warn!("lease lost before the outcome was recorded; the new owner decides");
            "lease_lost"
        }
        Err(e) => {
            error!(error = %e, "cannot record the job's outcome; it will run again when its lease expires");
            "unrecorded"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering::SeqCst;

    fn room() -> HandoverRoom {
        HandoverRoom {
            cap: 4,
            waiting: Default::default(),
            caught_up: std::sync::atomic::AtomicBool::new(false),
            left_to_claims: Default::default(),
            stopped: Default::default(),
        }
    }

    #[test]
    fn a_delay_after_the_first_question_is_waited_for_only_until_it_has_passed() {
        let sent = Timestamp::from_millis(1_000_000).unwrap();
        let hour = Duration::from_secs(3_600);
        let cases = [
            // (now past the first question, delay, still to wait)
            (Duration::ZERO, hour, Some(hour)),
            (
                Duration::from_secs(600),
                hour,
                Some(Duration::from_secs(3_000)),
            ),
            (
                hour - Duration::from_millis(1),
                hour,
                Some(Duration::from_millis(1)),
            ),
            (hour, hour, None),
            (hour * 2, hour, None),
            (Duration::ZERO, Duration::ZERO, None),
        ];
        for (past, after, expected) in cases {
            assert_eq!(
                still_to_wait(sent, after, sent + past),
                expected,
                "{past:?} past, {after:?} to wait"
            );
        }
    }

    #[test]
    fn a_claim_proves_the_lane_caught_up_only_if_no_writer_left_jobs_to_the_claims_meanwhile() {
        let room = room();
        let before = room.left_to_claims.load(SeqCst);
        room.caught_up_since(before);
        assert_eq!(
            room.now(),
            4,
            "nothing left to the claims while the claim ran"
        );

        // A claim begins; a writer leaves a job to the claims, committed after the claim's
        // snapshot; the claim comes back short.
        room.caught_up.store(false, SeqCst);
        let before = room.left_to_claims.load(SeqCst);
        room.left_to_claims.fetch_add(1, SeqCst);
        room.caught_up_since(before);
        assert_eq!(room.now(), 0, "the claim may have missed that job");
    }

    #[test]
    fn a_stopped_lane_has_no_room() {
        let room = room();
        room.caught_up.store(true, SeqCst);
        room.stopped.store(true, SeqCst);
        assert_eq!(room.now(), 0);
    }
}
