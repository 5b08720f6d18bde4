//! The `sms.send` job: one queued message, sent through its channel's provider.
//!
//! - **Pacing across instances.** A channel is sent through by one instance at a time: the job
//!   first takes or keeps the channel's lease in the database; an instance that does not hold it
//!   puts the job back for a moment, without counting an attempt. The holder paces the channel
//!   with `governor` at its `messages_per_second`.
//! - **Never twice.** The message is marked `sending` (committed) before the provider is called.
//!   A run that finds it `sending` knows an earlier run died during the call (or the call timed
//!   out): the provider may have the message. The provider is asked ([`Provider::find_sent`]):
//!   if it has the message, the send is recorded; if it has none, the message is sent; if its API
//!   cannot tell, the message is marked `unknown` and reported, never sent again.
//! - **Failures.** A retryable error puts the message back in the queue (the job retries with
//!   backoff); from the second failure on, a channel with a `fallback` hands the message to it
//!   (an outage, not the number: a permanent refusal never fails over). A permanent refusal marks
//!   the message failed, flags an invalid, landline or unreachable number on the contact and
//!   fails the invitation.
//! - **Opt-out wins.** Only the opt-out confirmation reaches a number that has opted out; every
//!   other message to it fails with `opted_out` when its turn comes, whenever it was queued.

use super::{BatchFuture, JobFailure, JobFuture, JobHandler};
use crate::config::ChannelConfig;
use crate::http::Flows;
use crate::providers::{Lookup, OutboundSms, PermanentReason, Provider, SendError};
use crate::schedule::SchedulingRules;
use crate::storage::{
    ClaimedJob, OutgoingMessage, SEND_JOB, SendFailure, SentMessage, Spend, Storage,
};
use crate::time::Timestamp;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tracing::{info, warn};

/// How long a channel stays with the instance that last sent through it.
const CHANNEL_LEASE: Duration = Duration::from_secs(10);
/// How far the provider's clock may be behind ours when comparing creation dates.
const CLOCK_SKEW_MS: i64 = 5_000;
/// How soon a job waiting for another instance's channel looks again.
const CHANNEL_BUSY_DELAY: Duration = Duration::from_secs(1);

/// A channel as the send job needs it.
pub struct SendChannel {
    pub provider: Arc<dyn Provider>,
    /// Its first sender that can receive replies (the channel's name when it has no sender, as
    /// for the console), for failover to it.
    pub default_sender: String,
    pub fallback: Option<String>,
    pub cost_per_segment: Option<f64>,
    /// The channel's pace (`messages_per_second`) and the limiter that keeps it.
    limiter: Option<(std::num::NonZeroU32, DefaultDirectRateLimiter)>,
}

impl SendChannel {
    pub fn new(name: &str, provider: Arc<dyn Provider>, config: &ChannelConfig) -> SendChannel {
        let common = config.common();
        SendChannel {
            provider,
            default_sender: common
                .senders
                .iter()
                .find(|s| s.receives_replies())
                .or(common.senders.first())
                .map_or(name, |s| s.as_str())
                .to_string(),
            fallback: common.fallback.map(|f| f.as_str().to_string()),
            cost_per_segment: common.cost_per_segment,
            limiter: common
                .messages_per_second
                .map(|rate| (rate, RateLimiter::direct(Quota::per_second(rate)))),
        }
    }
}

pub struct SendSms {
    inner: Arc<Inner>,
}

/// The SMS-pumping guards (`dispatch.contact_daily_sms_cap`, `dispatch.unit_daily_spend_cap`),
/// applied to the messages hearback starts. Days are counted in `zone`.
#[derive(Debug, Clone, Copy)]
pub struct SendGuards {
    /// 0: none.
    pub contact_daily_sms_cap: u32,
    pub unit_daily_spend_cap_micros: Option<i64>,
    pub zone: chrono_tz::Tz,
}

impl SendGuards {
    /// The guards of `[dispatch]`, counting days in `zone` (`dispatch.default_time_zone`).
    pub fn new(config: &crate::config::Config, zone: chrono_tz::Tz) -> SendGuards {
        SendGuards {
            contact_daily_sms_cap: config.dispatch.contact_daily_sms_cap,
            unit_daily_spend_cap_micros: config
                .dispatch
                .spend_cap_micros()
                .expect("the configuration was validated when it loaded"),
            zone,
        }
    }

    /// The day `now` falls in: when it began, when the next begins, and its date.
    fn day(&self, now: Timestamp) -> (Timestamp, Timestamp, String) {
        use crate::flow::QuotaPeriod;
        use crate::schedule::quota_period_start;
        let at = now.as_datetime();
        let start = quota_period_start(at, QuotaPeriod::Day, self.zone);
        // Past any daylight-saving change: 26 hours on is always in the next day.
        let next = quota_period_start(
            start + chrono::Duration::hours(26),
            QuotaPeriod::Day,
            self.zone,
        );
        let date = at.with_timezone(&self.zone).date_naive().to_string();
        (
            Timestamp::from_datetime(start),
            Timestamp::from_datetime(next),
            date,
        )
    }
}

struct Inner {
    storage: Storage,
    channels: BTreeMap<String, SendChannel>,
    /// When invitations may be texted; `None`: at once (`dispatch.immediate`).
    scheduling: Option<Arc<SchedulingRules>>,
    flows: Arc<Flows>,
    guards: SendGuards,
    client: reqwest::Client,
    public_url: Option<url::Url>,
    /// "Now" for windows, guards and leases (the system clock but in tests).
    clock: crate::time::Clock,
    /// Who holds channel leases for this instance.
    owner: String,
    /// Until when this instance holds each channel's lease, as last recorded; the lease is
    /// renewed in the database only once half of it has passed.
    held: std::sync::Mutex<BTreeMap<String, Timestamp>>,
    /// Channels another instance was found holding, until when its lease may run at most.
    elsewhere: Arc<std::sync::Mutex<BTreeMap<String, Timestamp>>>,
}

impl SendSms {
    pub fn new(
        storage: Storage,
        channels: BTreeMap<String, SendChannel>,
        (scheduling, flows, guards): (Option<Arc<SchedulingRules>>, Arc<Flows>, SendGuards),
        (client, public_url): (reqwest::Client, Option<url::Url>),
        clock: crate::time::Clock,
    ) -> SendSms {
        SendSms {
            inner: Arc::new(Inner {
                storage,
                channels,
                scheduling,
                flows,
                guards,
                client,
                public_url,
                clock,
                owner: format!("instance-{:016x}", rand::random::<u64>()),
                held: std::sync::Mutex::default(),
                elsewhere: Arc::default(),
            }),
        }
    }

    /// The channels another instance sends through, as this one last found (a function of
    /// "now"): the texts lane's handover leaves their texts to the claims, where their holder
    /// takes them, rather than take them here only to put them back for a second.
    pub fn channels_held_elsewhere(
        &self,
    ) -> impl Fn(Timestamp) -> Vec<String> + Send + Sync + use<> {
        let elsewhere = Arc::clone(&self.inner.elsewhere);
        move |now| {
            elsewhere
                .lock()
                .expect("the lease table is never poisoned")
                .iter()
                .filter(|(_, until)| now < **until)
                .map(|(channel, _)| channel.clone())
                .collect()
        }
    }
}

impl JobHandler for SendSms {
    fn kind(&self) -> &'static str {
        SEND_JOB
    }

    fn run(&self, job: ClaimedJob) -> JobFuture {
        let inner = Arc::clone(&self.inner);
        Box::pin(async move { inner.send(&job).await })
    }

    fn run_batch(&self, jobs: Vec<ClaimedJob>) -> BatchFuture {
        let inner = Arc::clone(&self.inner);
        Box::pin(async move { inner.send_batch(&jobs).await })
    }

    fn abandon(&self, job: ClaimedJob) -> JobFuture {
        let inner = Arc::clone(&self.inner);
        Box::pin(async move { inner.abandon(&job).await })
    }
}

/// A message of a batch on its way to the provider: its job's place in the batch.
struct Going {
    position: usize,
    message: OutgoingMessage,
}

/// Where a message of a batch got to.
enum Step {
    /// Handed to the provider at that time, with its answer.
    Called(Timestamp, Result<crate::providers::Sent, SendError>),
    /// Its job's outcome, decided before any call (the window closed, the channel taken).
    Settled(Result<(), JobFailure>),
    /// Not marked `sending` (an opt-out since it was read): the single path tells what to do.
    Single,
}

fn outbound<'a>(
    message: &'a OutgoingMessage,
    sender: &'a str,
    callback: Option<&'a str>,
) -> OutboundSms<'a> {
    OutboundSms {
        from: sender,
        to: &message.phone,
        text: &message.body,
        status_callback: callback,
    }
}

/// What `segments` cost on `channel`, in millionths, when its price is configured.
fn cost_micros(channel: &SendChannel, segments: i64) -> Option<i64> {
    channel
        .cost_per_segment
        .map(|cost| (cost * 1_000_000.0).round() as i64 * segments)
}

/// A message that must wait for the sending window, which opens in `opens`.
fn outside_window(opens: Duration) -> JobFailure {
    JobFailure::Later(
        opens,
        "outside the sending window in the customer's local time".into(),
    )
}

/// What [`Inner::reconcile`] does when the provider cannot be asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IfUnanswered {
    /// Fail the run, to ask again on a later attempt.
    Retry,
    /// There is no later attempt: record the outcome as `unknown`.
    RecordUnknown,
}

fn storage_failure(e: crate::storage::StorageError) -> JobFailure {
    JobFailure::Retry(e.to_string())
}

impl Inner {
    /// The text of a job out of attempts whose worker stopped without reporting: never sent
    /// again, but given a final state, so that its failure is reported (`invitation.failed`)
    /// rather than left queued. One left `sending` is reconciled first: the provider may have
    /// it.
    async fn abandon(&self, job: &ClaimedJob) -> Result<(), JobFailure> {
        let Some(message_id) = job.payload.get("message_id").and_then(|v| v.as_str()) else {
            return Ok(());
        };
        let Some(message) = self
            .storage
            .outgoing_message(message_id)
            .await
            .map_err(storage_failure)?
        else {
            return Ok(());
        };
        if message.superseded {
            return self.withdraw(&message).await;
        }
        let never_sent = match (message.status.as_str(), self.channels.get(&message.channel)) {
            ("queued", _) => true,
            // `true`: the provider never got it (now `queued` again).
            ("sending", Some(channel)) => {
                self.reconcile(&message, channel, IfUnanswered::RecordUnknown)
                    .await?
            }
            ("sending", None) => {
                warn!(message = %message.id, channel = %message.channel, "a send stopped during the provider call on its last attempt, through a channel this instance does not have; outcome unknown");
                self.record_failure(
                    &message,
                    "unknown",
                    Some("outcome_unknown"),
                    None,
                    self.clock.now(),
                )
                .await?;
                false
            }
            _ => false,
        };
        if never_sent {
            warn!(message = %message.id, "the worker sending this text stopped on its last attempt; reported as failed, not sent");
            // Recorded only on a text still queued: one recorded otherwise meanwhile keeps that.
            self.record_failure(
                &message,
                "failed_permanent",
                Some("retries_exhausted"),
                None,
                self.clock.now(),
            )
            .await?;
        }
        Ok(())
    }

    async fn send(&self, job: &ClaimedJob) -> Result<(), JobFailure> {
        let message_id = job
            .payload
            .get("message_id")
            .and_then(|v| v.as_str())
            .ok_or_else(|| JobFailure::Permanent("the payload has no message_id".into()))?;
        let message = self
            .storage
            .outgoing_message(message_id)
            .await
            .map_err(storage_failure)?
            .ok_or_else(|| JobFailure::Permanent("no such outgoing message".into()))?;
        let channel = self.channels.get(&message.channel);
        let mut message = message;
        let due = match (message.status.as_str(), channel) {
            ("queued", _) => true,
            ("sending", Some(channel)) => {
                let again = self
                    .reconcile(&message, channel, IfUnanswered::Retry)
                    .await?;
                if again {
                    // Queued again: read as it is now (`superseded` is only worked out for a
                    // queued text).
                    message = self
                        .storage
                        .outgoing_message(message_id)
                        .await
                        .map_err(storage_failure)?
                        .ok_or_else(|| JobFailure::Permanent("no such outgoing message".into()))?;
                }
                again
            }
            ("sending", None) => {
                return Err(JobFailure::Retry(format!(
                    "channel '{}' is not configured on this instance; it cannot reconcile",
                    message.channel
                )));
            }
            // Sent, failed or unknown already: an earlier run finished the work.
            _ => false,
        };
        if !due {
            return Ok(());
        }
        if message.superseded {
            return self.withdraw(&message).await;
        }
        let Some(channel) = channel else {
            return Err(JobFailure::Retry(format!(
                "channel '{}' is not configured on this instance",
                message.channel
            )));
        };
        if let Some(opens) = self.held_by_window(job, &message, self.clock.now()) {
            return Err(outside_window(opens));
        }
        let starts = job.payload.get("window").and_then(|w| w.as_bool()) == Some(true);
        if starts {
            if let Some((until, reason)) = self.held_by_guards(&message, channel, 0).await? {
                if let Some(invitation) = &message.invitation_id {
                    self.storage
                        .hold_invitation(invitation, reason, self.clock.now())
                        .await
                        .map_err(storage_failure)?;
                }
                metrics::counter!("hearback_sms_held_total", "reason" => reason).increment(1);
                info!(message = %message.id, reason, "held by an SMS-pumping guard until the next day");
                let wait = (until.as_datetime() - self.clock.now().as_datetime())
                    .to_std()
                    .unwrap_or(Duration::from_secs(60));
                return Err(JobFailure::Later(
                    wait,
                    format!("held: {reason} reached for today"),
                ));
            }
        }
        // The pace first, then the lease: a long wait for the rate limiter must not outlast the
        // lease another instance could take meanwhile.
        if let Some((_, limiter)) = &channel.limiter {
            limiter.until_ready().await;
        }
        self.hold_channel(&message.channel, self.clock.now())
            .await?;
        if !self
            .storage
            .mark_sending(&message.id, self.clock.now())
            .await
            .map_err(storage_failure)?
        {
            // Still queued means the number has opted out (mark_sending checks it).
            let now_queued = self
                .storage
                .outgoing_message(&message.id)
                .await
                .map_err(storage_failure)?
                .filter(|m| m.status == "queued");
            if let Some(message) = now_queued {
                info!(message = %message.id, "not sent: the number has opted out");
                return self
                    .record_failure(
                        &message,
                        "failed_permanent",
                        Some("opted_out"),
                        None,
                        self.clock.now(),
                    )
                    .await
                    .map(|_| ());
            }
            return Ok(());
        }
        let outcome = self.call_provider(&message, channel).await;
        self.settle_outcome(job, &message, channel, outcome).await
    }

    /// A text no longer wanted is never sent: a reminder when the customer has written, or the
    /// survey has closed, while it was held (a guard until the next day, an outage, the window);
    /// a case's recovery question when the case has closed meanwhile.
    async fn withdraw(&self, message: &OutgoingMessage) -> Result<(), JobFailure> {
        if self
            .storage
            .withdraw_message(&message.id, self.clock.now())
            .await
            .map_err(storage_failure)?
        {
            metrics::counter!("hearback_sms_withdrawn_total").increment(1);
            info!(message = %message.id, "not sent: no longer wanted (the customer has written, or the survey or case has closed, since it was queued)");
        }
        Ok(())
    }

    /// Sends one message claimed `sending` through its channel's provider.
    async fn call_provider(
        &self,
        message: &OutgoingMessage,
        channel: &SendChannel,
    ) -> Result<crate::providers::Sent, SendError> {
        let (sender, callback) = self.addressing(message, channel);
        let outcome = channel
            .provider
            .send(
                &self.client,
                outbound(message, &sender, callback.as_deref()),
            )
            .await;
        let label = match &outcome {
            Ok(_) => "sent",
            Err(SendError::Retryable { .. }) => "retried",
            Err(SendError::OutcomeUnknown { .. }) => "unknown",
            Err(SendError::Permanent { .. }) => "refused",
        };
        metrics::counter!("hearback_sms_sent_total", "channel" => message.channel.clone(), "outcome" => label).increment(1);
        outcome
    }

    /// What a send's segments cost, as the day's spend of its unit.
    fn spend<'a>(
        &self,
        message: &OutgoingMessage,
        channel: &SendChannel,
        sent: &crate::providers::Sent,
        day: &'a str,
    ) -> Option<Spend<'a>> {
        let segments = sent
            .segments
            .map(i64::from)
            .or(message.segments.map(i64::from))
            .unwrap_or(1);
        cost_micros(channel, segments).map(|micros| Spend { micros, day })
    }

    /// Records what became of a provider call: sent, or a failure to retry, fail over, report.
    async fn settle_outcome(
        &self,
        job: &ClaimedJob,
        message: &OutgoingMessage,
        channel: &SendChannel,
        outcome: Result<crate::providers::Sent, SendError>,
    ) -> Result<(), JobFailure> {
        let now = self.clock.now();
        let last_attempt = job.attempt >= job.max_attempts;
        match outcome {
            Ok(sent) => {
                let (_, _, day) = self.guards.day(now);
                let cost = self.spend(message, channel, &sent, &day);
                self.storage
                    .record_sent(message, &sent.provider_message_id, cost, now)
                    .await
                    .map_err(storage_failure)
            }
            Err(SendError::OutcomeUnknown { reason }) if last_attempt => {
                warn!(message = %message.id, error = %reason, "send outcome unknown on the last attempt; reported, not sent again");
                self.record_failure(message, "unknown", Some("outcome_unknown"), None, now)
                    .await?;
                Err(JobFailure::Permanent(reason))
            }
            Err(SendError::OutcomeUnknown { reason }) => {
                // The message stays `sending`: the next attempt asks the provider before anything
                // is sent again.
                warn!(message = %message.id, error = %reason, "send outcome unknown; will reconcile with the provider");
                Err(JobFailure::Retry(reason))
            }
            Err(SendError::Retryable { reason, .. }) if last_attempt => {
                // Out of attempts: the message and its invitation get a final state, so that
                // the failure is reported (`invitation.failed`) rather than left pending.
                warn!(message = %message.id, error = %reason, "the last attempt to send failed; giving up");
                self.record_failure(
                    message,
                    "failed_permanent",
                    Some("retries_exhausted"),
                    None,
                    now,
                )
                .await?;
                Err(JobFailure::Permanent(reason))
            }
            Err(SendError::Retryable {
                reason,
                retry_after,
            }) => {
                let fallback = channel
                    .fallback
                    .as_ref()
                    .filter(|_| job.attempt >= 2)
                    .and_then(|name| self.channels.get(name).map(|c| (name, c)));
                match fallback {
                    Some((name, fallback)) => {
                        let sender = fallback.default_sender.as_str();
                        warn!(message = %message.id, from = %message.channel, to = %name, error = %reason, "channel failing; the message moves to the fallback channel");
                        self.storage
                            .reroute_message(message, name, sender, now)
                            .await
                            .map_err(storage_failure)?;
                    }
                    None => {
                        self.record_failure(message, "queued", None, None, now)
                            .await?;
                    }
                }
                Err(match retry_after {
                    Some(delay) => JobFailure::RetryAfter(delay, reason),
                    None => JobFailure::Retry(reason),
                })
            }
            Err(SendError::Permanent {
                reason,
                code,
                permanent,
            }) => {
                warn!(message = %message.id, error = %reason, "the provider refused the message");
                let number_status = permanent.and_then(PermanentReason::number_status);
                let code = code.unwrap_or_else(|| "refused".into());
                self.record_failure(message, "failed_permanent", Some(&code), number_status, now)
                    .await
                    .map(|_| ())
            }
        }
    }

    /// Sends a batch of queued messages with a few statements however many it holds: one read,
    /// one `sending` mark committed before any provider call (on a paced channel, one per message,
    /// right before its call, as for a single job), the provider calls (one customer's messages in
    /// order, customers side by side, at the channel's pace), and one transaction recording what
    /// was sent. What needs a look of its own (a send to reconcile, a message held by the window
    /// or a guard, a number opted out, a failed call) takes the path of a single job, and so do
    /// the other messages of that customer in the batch, so that theirs stay in order.
    async fn send_batch(&self, jobs: &[ClaimedJob]) -> Vec<Result<(), JobFailure>> {
        let mut outcomes: Vec<Option<Result<(), JobFailure>>> = vec![None; jobs.len()];
        let ids: Vec<&str> = jobs
            .iter()
            .filter_map(|job| job.payload.get("message_id").and_then(|v| v.as_str()))
            .collect();
        let mut messages: std::collections::HashMap<String, OutgoingMessage> =
            match self.storage.outgoing_messages(&ids).await {
                Ok(found) => found.into_iter().map(|m| (m.id.clone(), m)).collect(),
                Err(e) => {
                    let failure = storage_failure(e);
                    return jobs.iter().map(|_| Err(failure.clone())).collect();
                }
            };
        let now = self.clock.now();
        let mut alone = Vec::new();
        // Customers who must keep the single path for every message of this batch.
        let mut in_order: std::collections::HashSet<String> = Default::default();
        // Texts hearback starts, per customer, taken into this batch so far (the daily cap).
        let mut started: std::collections::HashMap<String, i64> = Default::default();
        let mut going: Vec<(String, Going)> = Vec::new();
        for (position, job) in jobs.iter().enumerate() {
            let message = job
                .payload
                .get("message_id")
                .and_then(|v| v.as_str())
                .and_then(|id| messages.remove(id));
            let Some(message) = message else {
                alone.push(position);
                continue;
            };
            if message.status != "queued" && message.status != "sending" {
                // Sent, failed or unknown already: an earlier run finished the work.
                outcomes[position] = Some(Ok(()));
                continue;
            }
            let starts = job.payload.get("window").and_then(|w| w.as_bool()) == Some(true);
            let channel = self.channels.get(&message.channel);
            let single = match channel {
                None => true,
                _ if message.superseded => true,
                Some(_) if message.status == "sending" => true,
                Some(_) if self.held_by_window(job, &message, now).is_some() => true,
                // A unit's spend is checked against what was recorded: one message at a time.
                Some(_)
                    if starts
                        && message.unit_id.is_some()
                        && self.guards.unit_daily_spend_cap_micros.is_some() =>
                {
                    true
                }
                Some(channel) if starts => {
                    let so_far = started.get(&message.contact_id).copied().unwrap_or(0);
                    !matches!(
                        self.held_by_guards(&message, channel, so_far).await,
                        Ok(None)
                    )
                }
                Some(_) => false,
            };
            if single {
                in_order.insert(message.contact_id.clone());
                alone.push(position);
                continue;
            }
            if starts {
                *started.entry(message.contact_id.clone()).or_default() += 1;
            }
            going.push((message.channel.clone(), Going { position, message }));
        }
        // A customer with messages on two channels (a failover) keeps them in order too.
        let mut channel_of: std::collections::HashMap<&str, &str> = Default::default();
        for (channel, g) in &going {
            if *channel_of.entry(&g.message.contact_id).or_insert(channel) != channel.as_str() {
                in_order.insert(g.message.contact_id.clone());
            }
        }
        let mut by_channel: BTreeMap<String, Vec<Going>> = BTreeMap::new();
        for (channel, g) in going {
            if in_order.contains(&g.message.contact_id) {
                alone.push(g.position);
            } else {
                by_channel.entry(channel).or_default().push(g);
            }
        }
        for (name, going) in by_channel {
            let channel = &self.channels[&name];
            // A paced channel's batch goes a second of its pace at a time.
            let part = channel
                .limiter
                .as_ref()
                .map_or(going.len(), |(rate, _)| rate.get() as usize)
                .max(1);
            let mut going = going.into_iter().peekable();
            while going.peek().is_some() {
                let part: Vec<Going> = going.by_ref().take(part).collect();
                self.send_part(jobs, &name, channel, part, &mut outcomes, &mut alone)
                    .await;
            }
        }
        alone.sort_unstable();
        for position in alone {
            outcomes[position] = Some(self.send(&jobs[position]).await);
        }
        outcomes
            .into_iter()
            .map(|outcome| outcome.expect("every job of the batch has an outcome"))
            .collect()
    }

    /// Sends part of a batch through one channel, under the channel's lease, and records what
    /// was sent together. Unpaced, the part is marked `sending` together; paced, each message
    /// waits for its turn, then the window and the lease are checked again and it is marked
    /// right before its call, as a single job would be.
    async fn send_part(
        &self,
        jobs: &[ClaimedJob],
        name: &str,
        channel: &SendChannel,
        part: Vec<Going>,
        outcomes: &mut [Option<Result<(), JobFailure>>],
        alone: &mut Vec<usize>,
    ) {
        let mut fail_all = |failure: JobFailure, part: &[Going]| {
            for going in part {
                outcomes[going.position] = Some(Err(failure.clone()));
            }
        };
        if let Err(failure) = self.hold_channel(name, self.clock.now()).await {
            return fail_all(failure, &part);
        }
        let paced = channel.limiter.as_ref().map(|(_, limiter)| limiter);
        let part = if paced.is_some() {
            part
        } else {
            let ids: Vec<&str> = part.iter().map(|g| g.message.id.as_str()).collect();
            let marked = match self.storage.mark_sending_many(&ids, self.clock.now()).await {
                Ok(marked) => marked,
                Err(e) => return fail_all(storage_failure(e), &part),
            };
            // Not marked: the number has opted out, or another run took it; the single path
            // tells.
            let (part, unmarked): (Vec<Going>, Vec<Going>) = part
                .into_iter()
                .partition(|g| marked.contains(&g.message.id));
            alone.extend(unmarked.iter().map(|g| g.position));
            part
        };
        // One customer's messages go in order; different customers' side by side.
        let mut by_contact: BTreeMap<&str, Vec<&Going>> = BTreeMap::new();
        for going in &part {
            by_contact
                .entry(going.message.contact_id.as_str())
                .or_default()
                .push(going);
        }
        let calls = by_contact.into_values().map(|queue| async move {
            let mut steps = Vec::with_capacity(queue.len());
            for going in queue {
                let step = match paced {
                    None => self.call(going, channel).await,
                    Some(limiter) => {
                        limiter.until_ready().await;
                        self.call_when_clear(&jobs[going.position], name, going, channel)
                            .await
                    }
                };
                steps.push((going, step));
            }
            steps
        });
        let steps: Vec<(&Going, Step)> = futures::future::join_all(calls)
            .await
            .into_iter()
            .flatten()
            .collect();
        let now = self.clock.now();
        let (_, _, day) = self.guards.day(now);
        let mut accepted = Vec::new();
        for (going, step) in steps {
            match step {
                Step::Called(handed_at, Ok(sent)) => accepted.push((going, handed_at, sent)),
                Step::Called(_, Err(error)) => {
                    let outcome = self
                        .settle_outcome(&jobs[going.position], &going.message, channel, Err(error))
                        .await;
                    outcomes[going.position] = Some(outcome);
                }
                Step::Settled(outcome) => outcomes[going.position] = Some(outcome),
                Step::Single => alone.push(going.position),
            }
        }
        let records: Vec<SentMessage<'_>> = accepted
            .iter()
            .map(|(going, handed_at, sent)| SentMessage {
                message: &going.message,
                provider_message_id: &sent.provider_message_id,
                cost: self.spend(&going.message, channel, sent, &day),
                handed_at: Some(*handed_at),
            })
            .collect();
        // Not recorded, the messages stay `sending`: their jobs' next run asks the provider.
        let recorded = self
            .storage
            .record_sent_many(&records, now)
            .await
            .map_err(storage_failure);
        for (going, _, _) in &accepted {
            outcomes[going.position] = Some(recorded.clone());
        }
    }

    /// Hands one message marked `sending` to the provider.
    async fn call(&self, going: &Going, channel: &SendChannel) -> Step {
        let handed_at = self.clock.now();
        Step::Called(handed_at, self.call_provider(&going.message, channel).await)
    }

    /// A paced message whose turn came: the window and the channel's lease checked again, then
    /// marked `sending` and handed to the provider.
    async fn call_when_clear(
        &self,
        job: &ClaimedJob,
        name: &str,
        going: &Going,
        channel: &SendChannel,
    ) -> Step {
        if let Some(opens) = self.held_by_window(job, &going.message, self.clock.now()) {
            return Step::Settled(Err(outside_window(opens)));
        }
        if let Err(failure) = self.hold_channel(name, self.clock.now()).await {
            return Step::Settled(Err(failure));
        }
        match self
            .storage
            .mark_sending_many(&[going.message.id.as_str()], self.clock.now())
            .await
        {
            Ok(marked) if marked.is_empty() => Step::Single,
            Ok(_) => self.call(going, channel).await,
            Err(e) => Step::Settled(Err(storage_failure(e))),
        }
    }

    /// How long a message we start (an invitation's first message, a reminder: its job says
    /// `window`) waits for the sending window, checked again at the moment of sending so that a
    /// backlog never spills into the night; `None` when it may go now. Messages answering a
    /// customer who just wrote (the next question, a STOP confirmation) go at once.
    fn held_by_window(
        &self,
        job: &ClaimedJob,
        message: &OutgoingMessage,
        now: Timestamp,
    ) -> Option<Duration> {
        let scheduling = self.scheduling.as_ref()?;
        if job.payload.get("window").and_then(|w| w.as_bool()) != Some(true) {
            return None;
        }
        let narrowing = message
            .flow_id
            .as_ref()
            .and_then(|id| self.flows.get(id))
            .and_then(|flow| flow.dispatch.window.as_ref());
        // The number was checked when it was taken in; only its country is read here.
        let country = crate::phone::country_of(&message.phone);
        let opens = scheduling.hold_until(now.as_datetime(), country.as_deref(), narrowing)?;
        (opens - now.as_datetime()).to_std().ok()
    }

    /// Whether the daily guards hold this message: until when, and which guard.
    async fn held_by_guards(
        &self,
        message: &OutgoingMessage,
        channel: &SendChannel,
        in_batch: i64,
    ) -> Result<Option<(Timestamp, &'static str)>, JobFailure> {
        let guards = &self.guards;
        if guards.contact_daily_sms_cap == 0 && guards.unit_daily_spend_cap_micros.is_none() {
            return Ok(None);
        }
        let (since, next_day, date) = guards.day(self.clock.now());
        let used = self
            .storage
            .daily_use(
                &message.contact_id,
                // The unit's spend is read only when it is capped.
                message
                    .unit_id
                    .as_deref()
                    .filter(|_| guards.unit_daily_spend_cap_micros.is_some()),
                (since, &date),
            )
            .await
            .map_err(storage_failure)?;
        if guards.contact_daily_sms_cap > 0
            && used.contact_texts + in_batch >= i64::from(guards.contact_daily_sms_cap)
        {
            return Ok(Some((next_day, "contact_daily_cap")));
        }
        if let (Some(cap), Some(_)) = (guards.unit_daily_spend_cap_micros, &message.unit_id) {
            let cost = cost_micros(channel, message.segments.map(i64::from).unwrap_or(1));
            if used.unit_spend_micros + cost.unwrap_or(0) > cap {
                return Ok(Some((next_day, "unit_spend_cap")));
            }
        }
        Ok(None)
    }

    /// The sender and the status callback URL of a message.
    fn addressing(
        &self,
        message: &OutgoingMessage,
        channel: &SendChannel,
    ) -> (String, Option<String>) {
        let sender = message
            .sender
            .clone()
            .unwrap_or_else(|| channel.default_sender.clone());
        let callback = self.public_url.as_ref().map(|base| {
            format!(
                "{}/webhooks/{}/status",
                base.as_str().trim_end_matches('/'),
                message.channel
            )
        });
        (sender, callback)
    }

    /// A message left `sending` by an earlier run: the provider may have it. Asks the provider;
    /// returns true when it has no such message and sending it is safe (the message is `queued`
    /// again). Otherwise the message is recorded as sent (the provider had it) or `unknown` (the
    /// provider cannot tell), and never sent again. When the provider cannot be asked now,
    /// `if_unanswered` says whether to try again later or to record the outcome as `unknown`.
    async fn reconcile(
        &self,
        message: &OutgoingMessage,
        channel: &SendChannel,
        if_unanswered: IfUnanswered,
    ) -> Result<bool, JobFailure> {
        let (sender, callback) = self.addressing(message, channel);
        let now = self.clock.now();
        // The provider may have it only if it was created after the message was queued (less a
        // little clock difference between the provider and us).
        let since = Timestamp::from_millis(message.created_at.as_millis() - CLOCK_SKEW_MS)
            .unwrap_or(message.created_at);
        let lookup = match channel
            .provider
            .find_sent(
                &self.client,
                outbound(message, &sender, callback.as_deref()),
                since,
            )
            .await
        {
            Ok(lookup) => lookup,
            Err(e) if if_unanswered == IfUnanswered::RecordUnknown => {
                warn!(message = %message.id, channel = %message.channel, error = %e, "the provider cannot be asked whether it has a text stopped during its call on the last attempt; outcome unknown, not sent again");
                self.record_failure(message, "unknown", Some("outcome_unknown"), None, now)
                    .await?;
                return Ok(false);
            }
            Err(e) => {
                return Err(JobFailure::Retry(format!(
                    "cannot reconcile an unknown send: {e}"
                )));
            }
        };
        let outcome = match &lookup {
            Lookup::Found(_) => "reconciled_sent",
            Lookup::NotFound => "reconciled_missing",
            Lookup::Unsupported => "unknown",
        };
        metrics::counter!("hearback_sms_sent_total", "channel" => message.channel.clone(), "outcome" => outcome).increment(1);
        match lookup {
            Lookup::Found(sent) => {
                info!(message = %message.id, "unknown send reconciled: the provider had the message");
                self.storage
                    .record_sent(message, &sent.provider_message_id, None, now)
                    .await
                    .map_err(storage_failure)?;
                Ok(false)
            }
            Lookup::NotFound => {
                info!(message = %message.id, "unknown send reconciled: the provider never got the message; sending it");
                // Not due if it was recorded otherwise meanwhile.
                self.record_failure(message, "queued", None, None, now)
                    .await
            }
            Lookup::Unsupported => {
                warn!(message = %message.id, channel = %message.channel, "an earlier send stopped during the provider call and the provider cannot be asked; outcome unknown, not sent again");
                self.record_failure(message, "unknown", Some("outcome_unknown"), None, now)
                    .await?;
                Ok(false)
            }
        }
    }

    /// Whether this instance may send through `channel` now: it holds the channel's lease, taken
    /// or renewed in the database when less than half of it is left. When another instance
    /// holds it, the job is put back for a moment without counting an attempt.
    async fn hold_channel(&self, channel: &str, now: Timestamp) -> Result<(), JobFailure> {
        let fresh = self
            .held
            .lock()
            .expect("the lease table is never poisoned")
            .get(channel)
            .is_some_and(|until| now + CHANNEL_LEASE / 2 < *until);
        if fresh {
            return Ok(());
        }
        let until = now + CHANNEL_LEASE;
        let held = self
            .storage
            .hold_channel_lease(channel, &self.owner, until, now)
            .await
            .map_err(storage_failure)?;
        let mut table = self.held.lock().expect("the lease table is never poisoned");
        let mut elsewhere = self
            .elsewhere
            .lock()
            .expect("the lease table is never poisoned");
        if held {
            table.insert(channel.to_string(), until);
            elsewhere.remove(channel);
        } else {
            table.remove(channel);
            // The other instance's lease runs at most this long before it must renew it.
            elsewhere.insert(channel.to_string(), until);
        }
        if held {
            Ok(())
        } else {
            Err(JobFailure::Later(
                CHANNEL_BUSY_DELAY,
                "another instance is sending through this channel".into(),
            ))
        }
    }

    /// Records what became of a send that did not succeed: `queued` again, `failed_permanent`
    /// or `unknown` (see [`SendFailure`]); `false` when the text was recorded sent, delivered or
    /// failed meanwhile, and keeps that.
    async fn record_failure(
        &self,
        message: &OutgoingMessage,
        status: &'static str,
        error_code: Option<&str>,
        number_status: Option<&'static str>,
        now: Timestamp,
    ) -> Result<bool, JobFailure> {
        self.storage
            .record_send_failure(
                message,
                &SendFailure {
                    status,
                    error_code,
                    number_status,
                },
                now,
            )
            .await
            .map_err(storage_failure)
    }
}
