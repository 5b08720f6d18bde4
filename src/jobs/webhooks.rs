//! Pushing events to the CRM: the fan-out that hands new outbox events to the endpoints, and the
//! `webhook.deliver` job that makes one delivery's requests.
//!
//! A request carries the event's envelope (`{"id","type","version","timestamp","data"}`) signed
//! per Standard Webhooks; the `webhook-id` is the event's id, the same on every retry, so a
//! receiver drops what it has already seen. A 2xx delivers; anything else (an error status, a
//! timeout, a refused address, a redirect) is an attempt that failed, tried again on the
//! schedule (`webhooks.retry_schedule`, never sooner than a `Retry-After` asks), and
//! after the last one the delivery is dead, to be replayed by the API. Retries are counted on the
//! delivery: the job itself is only put back until then. A job that settles a delivery goes on
//! with the contact's next one (up to [`CHAIN_TURNS`]), so a backlog costs one transaction per
//! delivery, not three.

use super::{JobFailure, JobFuture, JobHandler};
use crate::storage::{
    AttemptResult, ClaimedJob, DeliveryNext, DeliveryToSend, Storage, WEBHOOK_DELIVERY_JOB,
};
use crate::time::Clock;
use crate::webhooks::{AddressPolicy, GuardedResolver, RetrySchedule, SigningSecret, retry_after};
use serde::Serialize;
use serde_json::Value;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Events handed out per fan-out transaction; a full batch is followed by another at once.
const FAN_OUT_BATCH: u32 = 500;
/// How many of a contact's deliveries one job makes in a row before it hands on to a new job:
/// going down the chain saves a claim and a completion per delivery, handing on keeps one
/// contact with a long backlog from holding a worker.
pub const CHAIN_TURNS: u32 = 50;
/// How much of a failed answer's body is kept with the attempt, for whoever looks into it.
const KEPT_BODY_BYTES: usize = 300;

/// How many requests one endpoint may have in flight on an instance, of its webhook workers
/// (ten): a CRM that hangs holds that many at most, and the other endpoints keep the rest.
pub const MAX_IN_FLIGHT_PER_ENDPOINT: usize = 8;
/// How long a worker waits for a place at a full endpoint before it sets the delivery aside:
/// at a fast endpoint a place frees up well within it, at one that hangs it does not.
const PLACE_WAIT: Duration = Duration::from_secs(1);
/// The longest a delivery set aside waits before it looks again.
const MAX_SET_ASIDE: Duration = Duration::from_secs(300);

/// The requests in flight per endpoint, on this instance.
pub struct EndpointGates {
    limit: usize,
    /// Between two deliveries set aside for the same full endpoint: its timeout over its limit,
    /// about how often a place frees up while every request runs to its timeout.
    spacing: Duration,
    gates: std::sync::Mutex<std::collections::HashMap<String, Gate>>,
}

struct Gate {
    places: Arc<tokio::sync::Semaphore>,
    /// Deliveries set aside since a place was last given: each waits one spacing longer.
    set_aside: u32,
}

impl EndpointGates {
    pub fn new(limit: usize, timeout: Duration) -> Arc<EndpointGates> {
        let limit = limit.max(1);
        Arc::new(EndpointGates {
            limit,
            spacing: timeout / u32::try_from(limit).unwrap_or(u32::MAX),
            gates: Default::default(),
        })
    }

    /// A place for a request to `endpoint`, given back when dropped; or how long to set the
    /// delivery aside. A worker waits up to [`PLACE_WAIT`] for a place, unless deliveries were
    /// set aside since the endpoint last gave one: then it is full of requests that hang, and
    /// waiting would only hold this worker too.
    async fn enter(&self, endpoint: &str) -> Result<tokio::sync::OwnedSemaphorePermit, Duration> {
        let (places, hanging) = {
            let mut gates = self.gates.lock().expect("the gates are never poisoned");
            let gate = gates.entry(endpoint.to_string()).or_insert_with(|| Gate {
                places: Arc::new(tokio::sync::Semaphore::new(self.limit)),
                set_aside: 0,
            });
            (Arc::clone(&gate.places), gate.set_aside > 0)
        };
        let place = if hanging {
            places.try_acquire_owned().ok()
        } else {
            tokio::time::timeout(PLACE_WAIT, places.acquire_owned())
                .await
                .ok()
                .and_then(Result::ok)
        };
        let mut gates = self.gates.lock().expect("the gates are never poisoned");
        let gate = gates.get_mut(endpoint).expect("made above, never removed");
        match place {
            Some(place) => {
                gate.set_aside = 0;
                Ok(place)
            }
            None => {
                gate.set_aside = gate.set_aside.saturating_add(1);
                Err(self
                    .spacing
                    .saturating_mul(gate.set_aside)
                    .min(MAX_SET_ASIDE))
            }
        }
    }
}

/// How long the deliveries of a disabled endpoint wait for it to come back before they are
/// dead: an instance started with an older or newer configuration (a rolling deploy) disables
/// an endpoint the others still have, until one of them starts again.
const DISABLED_GRACE: Duration = Duration::from_secs(24 * 60 * 60);
/// How often a delivery waiting for its disabled endpoint looks again.
const DISABLED_RECHECK: Duration = Duration::from_secs(300);

/// The body of every webhook request.
#[derive(Serialize)]
struct Envelope<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    event_type: &'a str,
    version: i32,
    timestamp: chrono::DateTime<chrono::Utc>,
    data: &'a Value,
}

/// The request body of a delivery: the event's envelope, the same bytes on every attempt.
pub fn envelope(delivery: &DeliveryToSend) -> Vec<u8> {
    serde_json::to_vec(&Envelope {
        id: &delivery.event_id,
        event_type: &delivery.event_type,
        version: delivery.version,
        timestamp: delivery.occurred_at.as_datetime(),
        data: &delivery.payload.0,
    })
    .expect("an envelope serialises")
}

/// The HTTP client of webhook requests: the guarded resolver, the timeout, no redirects.
pub fn webhook_client(
    policy: Arc<AddressPolicy>,
    timeout: Duration,
) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .dns_resolver(Arc::new(GuardedResolver::new(policy)))
        .redirect(reqwest::redirect::Policy::none())
        // A proxy would resolve the endpoint's name itself, out of the guarded resolver's sight.
        .no_proxy()
        .timeout(timeout)
        .connect_timeout(timeout)
        .user_agent(concat!("hearback/", env!("CARGO_PKG_VERSION")))
        .build()
}

#[derive(Clone)]
pub struct DeliverWebhook {
    pub storage: Storage,
    pub client: reqwest::Client,
    pub policy: Arc<AddressPolicy>,
    pub schedule: RetrySchedule,
    pub clock: Clock,
    /// [`CHAIN_TURNS`], but in tests.
    pub chain_turns: u32,
    pub gates: Arc<EndpointGates>,
}

impl JobHandler for DeliverWebhook {
    fn kind(&self) -> &'static str {
        WEBHOOK_DELIVERY_JOB
    }

    fn run(&self, job: ClaimedJob) -> JobFuture {
        let this = self.clone();
        Box::pin(async move {
            let mut id = job
                .payload
                .get("delivery_id")
                .and_then(Value::as_i64)
                .ok_or_else(|| JobFailure::Permanent("the payload has no delivery_id".into()))?;
            let last = this.chain_turns.max(1);
            for turn in 1..=last {
                // Gone (erased with its contact): nothing to do.
                let Some(delivery) = this
                    .storage
                    .webhook_delivery_to_send(id)
                    .await
                    .map_err(storage_retry)?
                else {
                    return Ok(());
                };
                if delivery.state == "pending" {
                    // Reached down the chain, a delivery waiting for its next try (a retry or
                    // a replay of an earlier one led here, or this job's own earlier run whose
                    // wait was not recorded) is not tried sooner: neither its schedule nor a
                    // `Retry-After` is cut short. This job waits for it too, so that the chain
                    // keeps a job whatever became of the other.
                    if let Some(wait) = this.waiting(&delivery).filter(|_| turn > 1) {
                        return Err(JobFailure::Later(
                            wait,
                            "the delivery waits for its next try".into(),
                        ));
                    }
                    match this.attempt(&delivery, turn == last).await? {
                        Turn::Settled if turn < last => {}
                        Turn::Settled | Turn::Moved => return Ok(()),
                        Turn::Later(wait, why) => return Err(JobFailure::Later(wait, why)),
                    }
                }
                // Delivered or dead (now, or by an earlier run that stopped half-way down the
                // chain): on with the contact's next event, if any.
                match this.chain_head(&delivery).await? {
                    Some(head) if head != id => id = head,
                    _ => return Ok(()),
                }
                if turn == last {
                    // Out of turns at a delivery this job did not attempt (another run settled
                    // it): the head gets a job of its own, or nothing would ever send it; one
                    // that waits for its next try keeps this job until then.
                    let head = this
                        .storage
                        .webhook_delivery_to_send(id)
                        .await
                        .map_err(storage_retry)?;
                    if let Some(wait) = head.as_ref().and_then(|head| this.waiting(head)) {
                        return Err(JobFailure::Later(
                            wait,
                            "the delivery waits for its next try".into(),
                        ));
                    }
                    if let Some(contact) = &delivery.contact_id {
                        this.storage
                            .hand_on_webhook_chain(&delivery.endpoint_id, contact, this.clock.now())
                            .await
                            .map_err(storage_retry)?;
                    }
                }
            }
            Ok(())
        })
    }

    /// A job out of attempts (its worker stopped, or the database failed, on each of them) gives
    /// up the delivery its chain was at, which may be what stops it, and hands the chain on, so
    /// that the contact's later events still go.
    fn abandon(&self, job: ClaimedJob) -> JobFuture {
        let this = self.clone();
        Box::pin(async move {
            let Some(id) = job.payload.get("delivery_id").and_then(Value::as_i64) else {
                return Ok(());
            };
            let Some(delivery) = this
                .storage
                .webhook_delivery_to_send(id)
                .await
                .map_err(storage_retry)?
            else {
                return Ok(());
            };
            // Its own delivery if still pending (a retry's, say); else where its chain is.
            let at = match this.chain_head(&delivery).await? {
                Some(head) if delivery.state != "pending" => head,
                _ => id,
            };
            warn!(delivery = at, endpoint = %delivery.endpoint_id, "webhook delivery given up: its job ran out of attempts");
            this.storage
                .give_up_webhook_delivery(
                    at,
                    job.id,
                    "given up: its job ran out of attempts (its worker stopped, or the database failed, each time)",
                    this.clock.now(),
                )
                .await
                .map_err(storage_retry)
        })
    }
}

/// What became of one delivery's attempt.
enum Turn {
    /// Delivered or dead: the contact's next event may go.
    Settled,
    /// Failed, to be tried again after the wait.
    Later(Duration, String),
    /// Another run recorded it meanwhile (a duplicate run, a replay): this one stops.
    Moved,
}

fn storage_retry(e: crate::storage::StorageError) -> JobFailure {
    JobFailure::Retry(e.to_string())
}

impl DeliverWebhook {
    /// How long a pending delivery still waits for its next try, if it does.
    fn waiting(&self, delivery: &DeliveryToSend) -> Option<Duration> {
        let now = self.clock.now();
        delivery.next_attempt_at.filter(|at| *at > now).map(|at| {
            (at.as_datetime() - now.as_datetime())
                .to_std()
                .unwrap_or_default()
        })
    }

    /// The contact's oldest pending delivery to the same endpoint.
    async fn chain_head(&self, delivery: &DeliveryToSend) -> Result<Option<i64>, JobFailure> {
        match &delivery.contact_id {
            Some(contact) => self
                .storage
                .webhook_chain_head(&delivery.endpoint_id, contact)
                .await
                .map_err(storage_retry),
            None => Ok(None),
        }
    }

    /// One request for a pending delivery, recorded with where the delivery goes next; on the
    /// job's last turn (`hand_on`), a settled delivery queues the job of its contact's next one.
    async fn attempt(&self, delivery: &DeliveryToSend, hand_on: bool) -> Result<Turn, JobFailure> {
        if let Some(disabled_at) = delivery.endpoint_disabled_at {
            let back_by = disabled_at + DISABLED_GRACE;
            let now = self.clock.now();
            if now < back_by {
                let wait = (back_by.as_datetime() - now.as_datetime())
                    .to_std()
                    .unwrap_or_default()
                    .min(DISABLED_RECHECK);
                // Not an attempt: nothing is recorded.
                return Ok(Turn::Later(
                    wait,
                    "the endpoint is disabled; its deliveries wait a day for it to come back"
                        .into(),
                ));
            }
        }
        let place = match self.gates.enter(&delivery.endpoint_id).await {
            Ok(place) => place,
            // Not an attempt: nothing is recorded, and the job comes back after the wait.
            Err(wait) => {
                return Ok(Turn::Later(
                    wait,
                    format!(
                        "the endpoint has {} requests in flight on this instance",
                        self.gates.limit
                    ),
                ));
            }
        };
        let started = Instant::now();
        let result = if delivery.endpoint_disabled_at.is_some() {
            Err(Failure::from(AttemptResult {
                status: None,
                error: Some("the endpoint is disabled".into()),
                duration_ms: 0,
            }))
        } else {
            self.request(delivery).await
        };
        // The place is for the request: recording it may wait for the database.
        drop(place);
        let now = self.clock.now();
        let (result, next, retry_in) = match result {
            Ok(status) => (
                AttemptResult {
                    status: Some(status),
                    error: None,
                    duration_ms: elapsed_ms(started),
                },
                DeliveryNext::Delivered,
                None,
            ),
            Err(failure) => {
                let asked = failure.retry_after;
                let failed = u32::try_from(delivery.attempts).unwrap_or(0) + 1;
                let spread = rand::random::<f64>() * 2.0 - 1.0;
                match self.schedule.after_failure(failed, asked, spread) {
                    Some(wait) if delivery.endpoint_disabled_at.is_none() => (
                        failure.result,
                        DeliveryNext::RetryAt(now + wait),
                        Some(wait),
                    ),
                    _ => (failure.result, DeliveryNext::Dead, None),
                }
            }
        };
        let outcome = match next {
            DeliveryNext::Delivered => "delivered",
            DeliveryNext::RetryAt(_) => "failed",
            DeliveryNext::Dead => "dead",
        };
        metrics::counter!("hearback_webhook_attempts_total", "outcome" => outcome).increment(1);
        let recorded = self
            .storage
            .record_webhook_attempt(delivery, &result, (next, hand_on), now)
            .await
            .map_err(storage_retry)?;
        if !recorded {
            return Ok(Turn::Moved);
        }
        Ok(match (next, retry_in) {
            (DeliveryNext::RetryAt(_), Some(wait)) => {
                Turn::Later(wait, result.error.unwrap_or_else(|| "failed".into()))
            }
            (DeliveryNext::Dead, _) => {
                warn!(delivery = delivery.id, endpoint = %delivery.endpoint_id, "webhook delivery is dead after its last attempt");
                Turn::Settled
            }
            _ => Turn::Settled,
        })
    }
}

/// A request that did not deliver.
struct Failure {
    result: AttemptResult,
    retry_after: Option<Duration>,
}

impl From<AttemptResult> for Failure {
    fn from(result: AttemptResult) -> Self {
        Failure {
            result,
            retry_after: None,
        }
    }
}

impl DeliverWebhook {
    /// One signed request; the 2xx status, or what went wrong.
    async fn request(&self, delivery: &DeliveryToSend) -> Result<u16, Failure> {
        let started = Instant::now();
        let failed = |error: String| AttemptResult {
            status: None,
            error: Some(error),
            duration_ms: elapsed_ms(started),
        };
        let url = url::Url::parse(&delivery.url).map_err(|e| failed(format!("bad URL: {e}")))?;
        self.policy
            .check_url(&url)
            .map_err(|e| failed(e.to_string()))?;
        let secret = SigningSecret::parse(&delivery.secret)
            .map_err(|e| failed(format!("the endpoint's secret {e}")))?;
        let body = envelope(delivery);
        let timestamp = self.clock.now().as_millis().div_euclid(1000);
        let signature = secret.sign(&delivery.event_id, timestamp, &body);
        let response = self
            .client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("webhook-id", &delivery.event_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body)
            .send()
            .await
            // Without the URL: it may hold credentials, and the delivery names its endpoint.
            .map_err(|e| failed(describe(&e.without_url())))?;
        let status = response.status();
        if status.is_success() {
            return Ok(status.as_u16());
        }
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| retry_after(v, self.clock.now().as_datetime()));
        let why = if status.is_redirection() {
            let to = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("?")
                .to_string();
            format!("redirected to {to}; redirects are not followed, update the endpoint's URL")
        } else {
            let start = first_bytes(response, KEPT_BODY_BYTES).await;
            format!("HTTP {status}: {start}")
        };
        Err(Failure {
            result: AttemptResult {
                status: Some(status.as_u16()),
                error: Some(why),
                duration_ms: elapsed_ms(started),
            },
            retry_after,
        })
    }
}

/// The start of a body, as text, without reading more of it.
async fn first_bytes(mut response: reqwest::Response, limit: usize) -> String {
    let mut kept = Vec::new();
    while kept.len() < limit {
        match response.chunk().await {
            Ok(Some(chunk)) => kept.extend_from_slice(&chunk),
            _ => break,
        }
    }
    kept.truncate(limit);
    String::from_utf8_lossy(&kept).trim().to_string()
}

/// reqwest's error and its causes (the refused address is a cause).
fn describe(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn elapsed_ms(started: Instant) -> i64 {
    i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX)
}

/// Hands new events to the endpoints every `interval` (at once again after a full batch) until
/// `shutdown`. Nothing here needs to survive a crash: an event not handed out stays marked so in
/// the outbox and goes with the next round.
pub async fn fan_out(
    storage: Storage,
    interval: Duration,
    clock: Clock,
    shutdown: CancellationToken,
) {
    info!(
        interval_ms = interval.as_millis() as u64,
        "webhook fan-out started"
    );
    while !shutdown.is_cancelled() {
        let handed = match storage.fan_out_events(FAN_OUT_BATCH, clock.now()).await {
            Ok(handed) => handed,
            Err(e) => {
                warn!(error = %e, "cannot hand events to the webhook endpoints; trying again shortly");
                0
            }
        };
        if handed == FAN_OUT_BATCH as usize {
            continue;
        }
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = tokio::time::sleep(interval) => {}
        }
    }
}
