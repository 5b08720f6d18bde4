//! The job runner against real databases: exclusivity across instances, crash recovery, backoff.

use crate::support::TestDb;
use hearback::jobs::{
    BatchFuture, JobFailure, JobFuture, JobHandler, JobRegistry, JobRunner, RunnerSettings,
};
use hearback::storage::{ClaimedJob, JobState, NewJob, Storage};
use hearback::time::Timestamp;
use serde_json::json;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

crate::both_backends!(
    two_runners_on_two_pools_never_run_the_same_job,
    a_job_whose_worker_died_runs_again_after_its_lease,
    a_failing_job_backs_off_then_goes_dead,
    a_permanent_failure_goes_dead_at_once,
    a_panicking_job_is_retried,
    a_long_job_keeps_its_lease_while_it_runs,
    stopping_the_runner_lets_the_job_in_progress_finish,
    a_batch_settles_each_job_by_its_own_outcome,
    a_job_handed_over_runs_at_once_without_a_claim,
    a_handed_job_whose_lease_expired_is_left_to_the_claims,
    a_handed_job_not_started_when_the_runner_stops_is_given_back,
    a_handed_job_with_too_little_of_its_lease_left_is_given_back,
    the_handover_stops_at_its_cap_and_after_a_job_left_to_the_claims,
    a_job_out_of_attempts_is_abandoned_once_its_handler_has_recorded_it,
    a_batch_keeps_every_lease_while_a_job_of_it_is_abandoned,
    a_job_that_fails_its_last_attempt_is_abandoned_before_it_is_buried,
);

const KIND: &str = "test.record";

/// Records every run: (job id, attempt, when). Its behaviour per attempt is set by the test.
#[derive(Clone)]
struct Recorder {
    runs: Arc<Mutex<Vec<(i64, u32, Instant)>>>,
    behaviour: Arc<dyn Fn(u32) -> Behaviour + Send + Sync>,
}

#[derive(Clone, Copy)]
enum Behaviour {
    Succeed,
    SucceedAfter(Duration),
    Retry,
    Fail,
    Panic,
}

impl Recorder {
    fn new(behaviour: impl Fn(u32) -> Behaviour + Send + Sync + 'static) -> Self {
        Self {
            runs: Arc::default(),
            behaviour: Arc::new(behaviour),
        }
    }

    fn runs(&self) -> Vec<(i64, u32, Instant)> {
        self.runs.lock().unwrap().clone()
    }

    /// Each run's job and attempt, in order.
    fn attempts(&self) -> Vec<(i64, u32)> {
        self.runs().iter().map(|r| (r.0, r.1)).collect()
    }
}

impl JobHandler for Recorder {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn run(&self, job: ClaimedJob) -> JobFuture {
        self.runs
            .lock()
            .unwrap()
            .push((job.id, job.attempt, Instant::now()));
        let behaviour = (self.behaviour)(job.attempt);
        Box::pin(async move {
            match behaviour {
                Behaviour::Succeed => Ok(()),
                Behaviour::SucceedAfter(pause) => {
                    tokio::time::sleep(pause).await;
                    Ok(())
                }
                Behaviour::Retry => Err(JobFailure::Retry("the provider answered 503".into())),
                Behaviour::Fail => {
                    Err(JobFailure::Permanent("the payload names no message".into()))
                }
                Behaviour::Panic => panic!("handler bug"),
            }
        })
    }
}

fn settings() -> RunnerSettings {
    RunnerSettings {
        batch: 1,
        concurrency: 4,
        poll_interval: Duration::from_millis(20),
        lease: Duration::from_secs(30),
        backoff_base: Duration::from_millis(50),
        backoff_max: Duration::from_secs(1),
        clock: hearback::time::Clock::system(),
    }
}

fn start(
    storage: Storage,
    recorder: &Recorder,
    settings: RunnerSettings,
) -> (CancellationToken, tokio::task::JoinHandle<()>) {
    let runner = JobRunner::new(
        storage,
        JobRegistry::default().with(recorder.clone()),
        settings,
    );
    let token = CancellationToken::new();
    let task = tokio::spawn(runner.run(token.clone()));
    (token, task)
}

async fn stop(runner: (CancellationToken, tokio::task::JoinHandle<()>)) {
    runner.0.cancel();
    runner.1.await.unwrap();
}

async fn enqueue(storage: &Storage, max_attempts: u32) -> i64 {
    let now = Timestamp::now();
    let job = NewJob {
        kind: KIND.into(),
        payload: json!({}),
        run_at: now,
        max_attempts,
        unique_key: None,
    };
    storage.enqueue_job(&job, now).await.unwrap()
}

/// Waits (up to a generous bound) until the job reaches `state`.
async fn wait_for(storage: &Storage, id: i64, state: JobState) -> hearback::storage::JobRecord {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let record = storage.job(id).await.unwrap().unwrap();
        if record.state == state {
            return record;
        }
        assert!(
            Instant::now() < deadline,
            "job {id} never reached {state:?}: {record:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn two_runners_on_two_pools_never_run_the_same_job(db: &TestDb) {
    let jobs = 200;
    let mut ids = Vec::new();
    for _ in 0..jobs {
        ids.push(enqueue(&db.storage, 3).await);
    }
    let recorder = Recorder::new(|_| Behaviour::SucceedAfter(Duration::from_millis(2)));
    let first = start(db.storage.clone(), &recorder, settings());
    let second = start(db.second_pool().await, &recorder, settings());
    for id in &ids {
        wait_for(&db.storage, *id, JobState::Succeeded).await;
    }
    stop(first).await;
    stop(second).await;

    let mut runs_per_job: HashMap<i64, usize> = HashMap::new();
    for (id, _, _) in recorder.runs() {
        *runs_per_job.entry(id).or_default() += 1;
    }
    assert_eq!(runs_per_job.len(), jobs);
    assert!(
        runs_per_job.values().all(|&n| n == 1),
        "a job ran twice: {runs_per_job:?}"
    );
}

async fn a_job_whose_worker_died_runs_again_after_its_lease(db: &TestDb) {
    // A worker claimed it a while ago, then died: its lease ran out.
    let long_ago = Timestamp::now() - Duration::from_secs(120);
    let job = NewJob {
        kind: KIND.into(),
        payload: json!({}),
        run_at: long_ago,
        max_attempts: 3,
        unique_key: None,
    };
    let id = db.storage.enqueue_job(&job, long_ago).await.unwrap();
    let claimed = db
        .storage
        .claim_jobs("crashed", &[KIND], 1, Duration::from_secs(60), long_ago)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);

    let recorder = Recorder::new(|_| Behaviour::Succeed);
    let runner = start(db.storage.clone(), &recorder, settings());
    let record = wait_for(&db.storage, id, JobState::Succeeded).await;
    stop(runner).await;
    assert_eq!(record.attempts, 2);
    assert_eq!(recorder.runs().iter().map(|r| r.1).collect::<Vec<_>>(), [2]);
}

async fn a_failing_job_backs_off_then_goes_dead(db: &TestDb) {
    let id = enqueue(&db.storage, 3).await;
    let recorder = Recorder::new(|_| Behaviour::Retry);
    let runner = start(db.storage.clone(), &recorder, settings());
    let record = wait_for(&db.storage, id, JobState::Dead).await;
    stop(runner).await;

    assert_eq!(record.attempts, 3);
    assert_eq!(
        record.last_error.as_deref(),
        Some("the provider answered 503")
    );
    let runs = recorder.runs();
    assert_eq!(
        runs.iter().map(|r| r.1).collect::<Vec<_>>(),
        [1, 2, 3],
        "no run after the last attempt"
    );
    // Backoff with jitter: at least half of 50 ms, then of 100 ms (SQLite keeps milliseconds).
    assert!(
        runs[1].2 - runs[0].2 >= Duration::from_millis(24),
        "{:?}",
        runs[1].2 - runs[0].2
    );
    assert!(
        runs[2].2 - runs[1].2 >= Duration::from_millis(49),
        "{:?}",
        runs[2].2 - runs[1].2
    );
}

async fn a_permanent_failure_goes_dead_at_once(db: &TestDb) {
    let id = enqueue(&db.storage, 5).await;
    let recorder = Recorder::new(|_| Behaviour::Fail);
    let runner = start(db.storage.clone(), &recorder, settings());
    let record = wait_for(&db.storage, id, JobState::Dead).await;
    stop(runner).await;
    assert_eq!(record.attempts, 1);
    assert_eq!(
        record.last_error.as_deref(),
        Some("the payload names no message")
    );
}

async fn a_panicking_job_is_retried(db: &TestDb) {
    let id = enqueue(&db.storage, 3).await;
    let recorder = Recorder::new(|attempt| {
        if attempt == 1 {
            Behaviour::Panic
        } else {
            Behaviour::Succeed
        }
    });
    let runner = start(db.storage.clone(), &recorder, settings());
    let record = wait_for(&db.storage, id, JobState::Succeeded).await;
    stop(runner).await;
    assert_eq!(record.attempts, 2);
    assert!(record.last_error.unwrap().contains("panicked"));
}

async fn a_long_job_keeps_its_lease_while_it_runs(db: &TestDb) {
    let id = enqueue(&db.storage, 3).await;
    let short_lease = RunnerSettings {
        lease: Duration::from_millis(300),
        ..settings()
    };
    let recorder = Recorder::new(|_| Behaviour::SucceedAfter(Duration::from_millis(1500)));
    let first = start(db.storage.clone(), &recorder, short_lease.clone());
    let second = start(db.second_pool().await, &recorder, short_lease);
    let record = wait_for(&db.storage, id, JobState::Succeeded).await;
    stop(first).await;
    stop(second).await;
    assert_eq!(
        recorder.runs().len(),
        1,
        "the lease was renewed, so nobody else took the job"
    );
    assert_eq!(record.attempts, 1);
}

async fn stopping_the_runner_lets_the_job_in_progress_finish(db: &TestDb) {
    let id = enqueue(&db.storage, 3).await;
    let recorder = Recorder::new(|_| Behaviour::SucceedAfter(Duration::from_millis(400)));
    let runner = start(db.storage.clone(), &recorder, settings());
    while recorder.runs().is_empty() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stop(runner).await;
    let record = db.storage.job(id).await.unwrap().unwrap();
    assert_eq!(
        record.state,
        JobState::Succeeded,
        "the runner returned only after the job finished"
    );
}

const BATCH_KIND: &str = "test.batch";

/// Runs each job as its payload says, and records the size of every batch it is given.
#[derive(Clone, Default)]
struct ByPayload {
    batches: Arc<Mutex<Vec<usize>>>,
}

impl JobHandler for ByPayload {
    fn kind(&self) -> &'static str {
        BATCH_KIND
    }

    fn run(&self, job: ClaimedJob) -> JobFuture {
        let outcome = match job.payload["outcome"].as_str() {
            Some("succeed") => Ok(()),
            Some("retry") => Err(JobFailure::Retry("the provider answered 503".into())),
            _ => Err(JobFailure::Permanent("the payload names no message".into())),
        };
        Box::pin(async move { outcome })
    }

    fn run_batch(&self, jobs: Vec<ClaimedJob>) -> BatchFuture {
        self.batches.lock().unwrap().push(jobs.len());
        let runs: Vec<JobFuture> = jobs.into_iter().map(|job| self.run(job)).collect();
        Box::pin(futures::future::join_all(runs))
    }
}

/// Six jobs taken in one batch: the three that succeed are completed together, the one that
/// fails for good and the one out of attempts go dead with their own errors, the one to retry
/// goes back to the queue.
async fn a_batch_settles_each_job_by_its_own_outcome(db: &TestDb) {
    let now = Timestamp::now();
    let mut ids = Vec::new();
    for (outcome, max_attempts) in [
        ("succeed", 3),
        ("fail", 3),
        ("succeed", 3),
        ("retry", 1),
        ("retry", 3),
        ("succeed", 3),
    ] {
        let job = NewJob {
            kind: BATCH_KIND.into(),
            payload: json!({ "outcome": outcome }),
            run_at: now,
            max_attempts,
            unique_key: None,
        };
        ids.push(db.storage.enqueue_job(&job, now).await.unwrap());
    }
    let handler = ByPayload::default();
    let runner = JobRunner::new(
        db.storage.clone(),
        JobRegistry::default().with(handler.clone()),
        RunnerSettings {
            batch: 8,
            concurrency: 1,
            backoff_base: Duration::from_secs(60),
            ..settings()
        },
    );
    let token = CancellationToken::new();
    let task = tokio::spawn(runner.run(token.clone()));
    for (&id, state) in ids.iter().zip([
        JobState::Succeeded,
        JobState::Dead,
        JobState::Succeeded,
        JobState::Dead,
        JobState::Pending,
        JobState::Succeeded,
    ]) {
        let record = wait_for(&db.storage, id, state).await;
        let error = match state {
            JobState::Dead if record.attempts == 1 && record.max_attempts == 1 => {
                Some("the provider answered 503")
            }
            JobState::Dead => Some("the payload names no message"),
            JobState::Pending => Some("the provider answered 503"),
            _ => None,
        };
        assert_eq!(record.last_error.as_deref(), error, "job {id}");
        assert_eq!(record.attempts, 1, "job {id}");
    }
    token.cancel();
    task.await.unwrap();
    assert_eq!(*handler.batches.lock().unwrap(), [6], "one batch of six");
}

/// A runner, its handover and its worker's name; not started yet.
fn with_handover(
    storage: Storage,
    recorder: &Recorder,
    settings: RunnerSettings,
) -> (JobRunner, hearback::jobs::JobHandover, String) {
    let runner = JobRunner::new(
        storage,
        JobRegistry::default().with(recorder.clone()),
        settings,
    );
    let handover = runner.handover();
    let worker = runner.worker_id().to_string();
    (runner, handover, worker)
}

fn spawn(runner: JobRunner) -> (CancellationToken, tokio::task::JoinHandle<()>) {
    let token = CancellationToken::new();
    let task = tokio::spawn(runner.run(token.clone()));
    (token, task)
}

/// A job queued and claimed in `worker`'s name at `now`, as a transaction under a
/// [`hearback::storage::JobLease`] writes it.
async fn claimed_for(
    storage: &Storage,
    worker: &str,
    now: Timestamp,
) -> (ClaimedJob, hearback::storage::JobLease) {
    let job = NewJob {
        kind: KIND.into(),
        payload: json!({}),
        run_at: now,
        max_attempts: 3,
        unique_key: None,
    };
    storage.enqueue_job(&job, now).await.unwrap();
    let lease = Duration::from_secs(30);
    let mut claimed = storage
        .claim_jobs(worker, &[KIND], 1, lease, now)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    let lease = hearback::storage::JobLease {
        owner: worker.to_string(),
        expires_at: now + lease,
        most: 1,
        not_through: Vec::new(),
        not_to: Vec::new(),
    };
    (claimed.pop().unwrap(), lease)
}

async fn a_job_handed_over_runs_at_once_without_a_claim(db: &TestDb) {
    let recorder = Recorder::new(|_| Behaviour::Succeed);
    let hourly = RunnerSettings {
        poll_interval: Duration::from_secs(3600),
        ..settings()
    };
    let (runner, handover, worker) = with_handover(db.storage.clone(), &recorder, hourly);
    let runner = spawn(runner);
    // Let the runner make its first claim (there is nothing yet) and go to sleep for the hour.
    tokio::time::sleep(Duration::from_millis(100)).await;

    let (job, lease) = claimed_for(&db.storage, &worker, Timestamp::now()).await;
    handover.hand_over(&lease, vec![job.clone()], 0);
    let record = wait_for(&db.storage, job.id, JobState::Succeeded).await;
    stop(runner).await;
    assert_eq!(record.attempts, 1);
    assert_eq!(recorder.attempts(), [(job.id, 1)]);
}

async fn a_handed_job_whose_lease_expired_is_left_to_the_claims(db: &TestDb) {
    let recorder = Recorder::new(|_| Behaviour::Succeed);
    let (runner, handover, worker) = with_handover(db.storage.clone(), &recorder, settings());
    // Handed over too late: its lease ran out before the runner could start it.
    let long_ago = Timestamp::now() - Duration::from_secs(120);
    let (job, lease) = claimed_for(&db.storage, &worker, long_ago).await;
    handover.hand_over(&lease, vec![job.clone()], 0);
    let runner = spawn(runner);

    // The claims take it again, as any job whose lease expired: one run, its second attempt.
    let record = wait_for(&db.storage, job.id, JobState::Succeeded).await;
    stop(runner).await;
    assert_eq!(record.attempts, 2);
    assert_eq!(recorder.attempts(), [(job.id, 2)]);
}

/// Started with less than half of its lease left, a job could outlive the lease before its
/// first renewal and be claimed a second time meanwhile: it is given back to the claims instead,
/// its attempt not counted, and runs once.
async fn a_handed_job_with_too_little_of_its_lease_left_is_given_back(db: &TestDb) {
    let recorder = Recorder::new(|_| Behaviour::Succeed);
    let (runner, handover, worker) = with_handover(db.storage.clone(), &recorder, settings());
    // A 30 s lease with 12 s left: less than half, more than a quarter.
    let (job, lease) = claimed_for(
        &db.storage,
        &worker,
        Timestamp::now() - Duration::from_secs(18),
    )
    .await;
    handover.hand_over(&lease, vec![job.clone()], 0);
    let runner = spawn(runner);

    let record = wait_for(&db.storage, job.id, JobState::Succeeded).await;
    stop(runner).await;
    assert_eq!(
        record.last_error.as_deref(),
        Some("handed over with too little of its lease left")
    );
    assert_eq!(record.attempts, 1);
    assert_eq!(recorder.attempts(), [(job.id, 1)]);
}

async fn a_handed_job_not_started_when_the_runner_stops_is_given_back(db: &TestDb) {
    // One slot, taken by a long job: the handed job waits for it.
    let recorder = Recorder::new(|_| Behaviour::SucceedAfter(Duration::from_millis(500)));
    let one_slot = RunnerSettings {
        concurrency: 1,
        ..settings()
    };
    let busy = enqueue(&db.storage, 3).await;
    let (runner, handover, worker) = with_handover(db.storage.clone(), &recorder, one_slot);
    let runner = spawn(runner);
    wait_for(&db.storage, busy, JobState::Running).await;
    let (job, lease) = claimed_for(&db.storage, &worker, Timestamp::now()).await;
    handover.hand_over(&lease, vec![job.clone()], 0);
    stop(runner).await;
    assert_eq!(
        handover.lease().most,
        0,
        "a stopped runner takes nothing more"
    );

    // Pending again at once, its attempt not counted: the next claim takes it, not the lease's end.
    let record = db.storage.job(job.id).await.unwrap().unwrap();
    assert_eq!(record.state, JobState::Pending);
    assert_eq!(record.attempts, 0);
    assert_eq!(record.lease_owner, None);
    assert!(
        recorder.runs().iter().all(|r| r.0 != job.id),
        "{:?}",
        recorder.runs()
    );
    wait_for(&db.storage, busy, JobState::Succeeded).await;
}

async fn the_handover_stops_at_its_cap_and_after_a_job_left_to_the_claims(db: &TestDb) {
    // One slot, one job at a time: room for two handed jobs.
    let recorder = Recorder::new(|_| Behaviour::Succeed);
    let small = RunnerSettings {
        concurrency: 1,
        ..settings()
    };
    let (runner, handover, worker) = with_handover(db.storage.clone(), &recorder, small);
    assert_eq!(handover.lease().most, 2);
    let now = Timestamp::now();
    let (first, lease) = claimed_for(&db.storage, &worker, now).await;
    let (second, _) = claimed_for(&db.storage, &worker, now).await;
    handover.hand_over(&lease, vec![first.clone(), second.clone()], 0);
    assert_eq!(
        handover.lease().most,
        0,
        "two handed jobs wait: no more room"
    );
    let running = spawn(runner.clone());
    for id in [first.id, second.id] {
        wait_for(&db.storage, id, JobState::Succeeded).await;
    }
    wait_until_room(&handover, 2).await;
    stop(running).await;

    // A writer had no room for a job due now and left it pending: nothing more is handed over
    // until the claims have taken it, so that later jobs do not overtake it.
    let left = enqueue(&db.storage, 3).await;
    handover.hand_over(&lease, Vec::new(), 1);
    assert_eq!(handover.lease().most, 0, "a job waits for the claims");
    let running = spawn(runner);
    wait_for(&db.storage, left, JobState::Succeeded).await;
    wait_until_room(&handover, 2).await;
    stop(running).await;
    let runs: Vec<i64> = recorder.attempts().iter().map(|r| r.0).collect();
    assert_eq!(runs, [first.id, second.id, left]);
}

/// Waits (up to a generous bound) until the handover has room for `most` jobs.
async fn wait_until_room(handover: &hearback::jobs::JobHandover, most: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while handover.lease().most != most {
        assert!(
            Instant::now() < deadline,
            "the handover never had room for {most} again"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A handler that records the jobs it abandons, and fails to the first time.
#[derive(Clone, Default)]
struct Abandoning {
    abandoned: Arc<Mutex<Vec<i64>>>,
    runs: Arc<Mutex<usize>>,
}

impl JobHandler for Abandoning {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn run(&self, _job: ClaimedJob) -> JobFuture {
        *self.runs.lock().unwrap() += 1;
        Box::pin(async { Ok(()) })
    }

    fn abandon(&self, job: ClaimedJob) -> JobFuture {
        let mut abandoned = self.abandoned.lock().unwrap();
        abandoned.push(job.id);
        let first = abandoned.len() == 1;
        Box::pin(async move {
            if first {
                Err(JobFailure::Retry("the database is away".into()))
            } else {
                Ok(())
            }
        })
    }
}

/// A job whose worker died on its last attempt is not run: its handler records the final state
/// of its work, then it is buried. When the handler cannot, the job is left as it is and
/// abandoned again once its lease expires.
async fn a_job_out_of_attempts_is_abandoned_once_its_handler_has_recorded_it(db: &TestDb) {
    let id = enqueue(&db.storage, 1).await;
    let now = Timestamp::now();
    let claimed = db
        .storage
        .claim_jobs("crashed", &[KIND], 1, Duration::from_millis(1), now)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);

    let handler = Abandoning::default();
    let runner = JobRunner::new(
        db.storage.clone(),
        JobRegistry::default().with(handler.clone()),
        RunnerSettings {
            lease: Duration::from_millis(300),
            ..settings()
        },
    );
    let runner = spawn(runner);
    let record = wait_for(&db.storage, id, JobState::Dead).await;
    stop(runner).await;
    assert_eq!(
        *handler.abandoned.lock().unwrap(),
        [id, id],
        "abandoned again"
    );
    assert_eq!(*handler.runs.lock().unwrap(), 0, "never run");
    assert_eq!(record.attempts, 3, "claimed by the dead worker, then twice");
}

/// Records each job abandoned, after `abandon_takes`; each run fails for another try when
/// `runs_fail`, else succeeds.
#[derive(Clone, Default)]
struct SlowToAbandon {
    abandon_takes: Duration,
    runs_fail: bool,
    abandoned: Arc<Mutex<Vec<i64>>>,
    runs: Arc<Mutex<Vec<i64>>>,
}

impl JobHandler for SlowToAbandon {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn run(&self, job: ClaimedJob) -> JobFuture {
        self.runs.lock().unwrap().push(job.id);
        let fails = self.runs_fail;
        Box::pin(async move {
            if fails {
                Err(JobFailure::Retry("the database is away".into()))
            } else {
                Ok(())
            }
        })
    }

    fn abandon(&self, job: ClaimedJob) -> JobFuture {
        self.abandoned.lock().unwrap().push(job.id);
        let pause = self.abandon_takes;
        Box::pin(async move {
            tokio::time::sleep(pause).await;
            Ok(())
        })
    }
}

/// A batch holds a job out of attempts, abandoned first and slowly (a provider asked whether it
/// has a text), and a job to run. Neither lease lapses meanwhile: another worker claiming then
/// finds neither, so neither is abandoned or run twice.
async fn a_batch_keeps_every_lease_while_a_job_of_it_is_abandoned(db: &TestDb) {
    let lease = Duration::from_millis(300);
    let out_of_attempts = enqueue(&db.storage, 1).await;
    let crashed = db
        .storage
        .claim_jobs(
            "crashed",
            &[KIND],
            1,
            Duration::from_millis(1),
            Timestamp::now(),
        )
        .await
        .unwrap();
    assert_eq!(crashed.len(), 1);
    let to_run = enqueue(&db.storage, 3).await;

    let handler = SlowToAbandon {
        abandon_takes: lease * 4,
        ..Default::default()
    };
    let runner = spawn(JobRunner::new(
        db.storage.clone(),
        JobRegistry::default().with(handler.clone()),
        RunnerSettings {
            batch: 8,
            lease,
            ..settings()
        },
    ));
    let deadline = Instant::now() + Duration::from_secs(30);
    while handler.abandoned.lock().unwrap().is_empty() {
        assert!(
            Instant::now() < deadline,
            "the runner never abandoned the job"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Two leases into the abandon: a lease not renewed would have lapsed by now.
    tokio::time::sleep(lease * 2).await;
    let stolen = db
        .storage
        .claim_jobs("another-worker", &[KIND], 8, lease, Timestamp::now())
        .await
        .unwrap();
    let stolen: Vec<i64> = stolen.iter().map(|job| job.id).collect();
    assert_eq!(stolen, Vec::<i64>::new(), "both leases renewed");

    wait_for(&db.storage, out_of_attempts, JobState::Dead).await;
    wait_for(&db.storage, to_run, JobState::Succeeded).await;
    stop(runner).await;
    assert_eq!(*handler.abandoned.lock().unwrap(), [out_of_attempts]);
    assert_eq!(*handler.runs.lock().unwrap(), [to_run]);
}

/// A job that fails for another try on its last attempt has its handler record its work's
/// final state (as for a job whose worker died) before it is buried.
async fn a_job_that_fails_its_last_attempt_is_abandoned_before_it_is_buried(db: &TestDb) {
    let id = enqueue(&db.storage, 1).await;
    let handler = SlowToAbandon {
        runs_fail: true,
        ..Default::default()
    };
    let runner = spawn(JobRunner::new(
        db.storage.clone(),
        JobRegistry::default().with(handler.clone()),
        settings(),
    ));
    let record = wait_for(&db.storage, id, JobState::Dead).await;
    stop(runner).await;
    assert_eq!(*handler.runs.lock().unwrap(), [id], "run once");
    assert_eq!(*handler.abandoned.lock().unwrap(), [id], "then abandoned");
    assert_eq!(record.last_error.as_deref(), Some("the database is away"));
}
