//! `hearback serve`: the HTTP server and the job workers in one process, stopped gracefully.

use crate::config::{Config, DatabaseKind};
use crate::http::{self, AppState};
use crate::jobs::expire::ExpireConversation;
use crate::jobs::maintenance::PurgeFinishedJobs;
use crate::jobs::remind::RemindConversation;
use crate::jobs::retention::ApplyRetention;
use crate::jobs::send_sms::{SendChannel, SendSms};
use crate::jobs::{JobRegistry, JobRunner, RunnerSettings};
use crate::storage::{Storage, StorageError};
use crate::time::{Clock, Timestamp};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("channel '{name}': {source}")]
    Channel {
        name: String,
        source: crate::providers::BuildError,
    },
    #[error(
        "channel '{name}': its senders are all alphanumeric sender IDs, which cannot receive \
         replies, and every flow asks questions; add a number or a short code to its senders"
    )]
    OneWayChannel { name: String },
    #[error("the HTTP server failed: {0}")]
    Http(std::io::Error),
    #[error("alert rules refused:\n{0}")]
    AlertRules(String),
    #[error("e-mail: {0}")]
    Email(String),
    #[error(transparent)]
    PrivacyKey(#[from] crate::privacy::KeyError),
}

/// Connects, brings the schema up to date where that is this process's job, and checks it.
/// SQLite is migrated at start-up. A PostgreSQL database that hearback has never touched gets its
/// schema at once (no release can be running on it); an existing one moves only when asked
/// (`migrate` or `serve --migrate`), since several instances share it and a deploy decides when
/// its schema changes.
pub async fn open_storage(config: &Config, migrate: bool) -> Result<Storage, StorageError> {
    let storage = Storage::connect(&config.database).await?;
    let empty = !storage.schema_status().await?.initialised;
    if migrate || empty || storage.kind() == DatabaseKind::Sqlite {
        let applied = storage.migrate().await?;
        if applied > 0 {
            info!(applied, "database migrated");
        }
    }
    storage.ensure_schema_current().await?;
    Ok(storage)
}

/// Refuses a channel that could carry no flow: every flow asks questions, and a channel whose
/// senders are all alphanumeric IDs cannot receive the answers.
fn check_channels(
    config: &Config,
    flows: &std::collections::BTreeMap<String, crate::flow::Flow>,
) -> Result<(), ServeError> {
    for (name, channel) in config.effective_channels() {
        let senders = channel.common().senders;
        if !flows.is_empty() && !senders.is_empty() && !senders.iter().any(|s| s.receives_replies())
        {
            return Err(ServeError::OneWayChannel {
                name: name.to_string(),
            });
        }
    }
    Ok(())
}

/// Binds the configured address and serves until SIGTERM or SIGINT.
pub async fn serve(config: Config, migrate: bool) -> Result<(), ServeError> {
    // A channel that cannot be built (a malformed key) stops start-up, before anything else.
    http::build_channels(&config).map_err(|(name, source)| ServeError::Channel { name, source })?;
    let flows = load_flows(&config)?;
    let rules = load_alert_rules(&config, &flows)?;
    let storage = open_storage(&config, migrate).await?;
    let addr = config.server.listen;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Listen { addr, source })?;
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    run_with_flows(
        &config,
        (flows, rules),
        storage,
        listener,
        (shutdown, Clock::system()),
    )
    .await
}

/// Case notices sent at once by one instance, in their own lane. A notice mostly waits on the
/// SMTP server (lettre writes the end of the message apart from its body, so each e-mail waits
/// for the server's delayed acknowledgement, about 40 ms on Linux): workers, not CPU, bound the
/// rate, and eight keep up with 100 alerts a second (docs/PERFORMANCE.md).
const NOTICE_WORKERS: usize = 8;
/// Send jobs a worker of the texts' lane takes at a time: a batch is read, marked `sending` and
/// recorded `sent` with one statement and one commit each, whatever its size
/// (docs/PERFORMANCE.md).
const SEND_BATCH: usize = 32;
/// Workers of webhook deliveries, in a lane of their own: a CRM that answers slowly (up to
/// `webhooks.timeout_secs` a request) never holds back texts or notices. One endpoint takes at
/// most `jobs::webhooks::MAX_IN_FLIGHT_PER_ENDPOINT` of them (eight, as many as this lane had
/// before that limit: one endpoint's throughput is unchanged), the others keep the rest.
const WEBHOOK_WORKERS: usize = 10;

/// Loads the flows (logging each one refused) and checks that every channel can carry them.
pub(crate) fn load_flows(config: &Config) -> Result<crate::flow::FlowSet, ServeError> {
    let flows = crate::flow::load_paths(std::slice::from_ref(&config.flows.dir));
    for problem in &flows.errors {
        error!(%problem, "flow refused");
    }
    info!(dir = %config.flows.dir.display(), flows = ?flows.flows.keys().collect::<Vec<_>>(), "flows loaded");
    check_channels(config, &flows.flows)?;
    if config.dispatch.immediate {
        warn!(
            "dispatch.immediate is set: surveys go out at once, whatever their delay, the sending window and holidays (development only)"
        );
    }
    Ok(flows)
}

/// Where the alert rules are: `flows.alerts`, a relative path being taken beside the flows
/// folder (in the folder that holds it), so that a set of flows and its rules travel together.
pub(crate) fn alerts_path(config: &Config) -> std::path::PathBuf {
    let alerts = &config.flows.alerts;
    if alerts.is_absolute() {
        return alerts.clone();
    }
    config
        .flows
        .dir
        .parent()
        .unwrap_or(std::path::Path::new(""))
        .join(alerts)
}

/// Loads the alert rules beside the flows. The file is optional (no rules, no alerts); a file
/// with any problem is refused whole, every problem listed with its line.
pub(crate) fn load_alert_rules(
    config: &Config,
    flows: &crate::flow::FlowSet,
) -> Result<crate::alerts::AlertRules, ServeError> {
    let path = &alerts_path(config);
    if !path.exists() {
        info!(file = %path.display(), "no alert rules file: no alert will be raised");
        return Ok(crate::alerts::AlertRules::empty());
    }
    let rules = crate::alerts::load_rules(path, &flows.flows).map_err(|problems| {
        ServeError::AlertRules(
            problems
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n"),
        )
    })?;
    info!(file = %path.display(), rules = rules.len(), "alert rules loaded");
    Ok(rules)
}

/// Serves on `listener` until `shutdown` is cancelled, then stops accepting, lets in-flight
/// requests and jobs finish for up to `server.shutdown_timeout_secs`, and returns.
pub async fn run(
    config: &Config,
    storage: Storage,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    run_with_clock(config, storage, listener, shutdown, Clock::system()).await
}

/// [`run`] with the job workers on `clock`: tests move it to let reminders and expiries come
/// due without waiting for them.
pub async fn run_with_clock(
    config: &Config,
    storage: Storage,
    listener: TcpListener,
    shutdown: CancellationToken,
    clock: Clock,
) -> Result<(), ServeError> {
    let flows = load_flows(config)?;
    let rules = load_alert_rules(config, &flows)?;
    run_with_flows(config, (flows, rules), storage, listener, (shutdown, clock)).await
}

/// [`run`] with the flows and alert rules already loaded and checked.
async fn run_with_flows(
    config: &Config,
    (flows, rules): (crate::flow::FlowSet, crate::alerts::AlertRules),
    storage: Storage,
    listener: TcpListener,
    (shutdown, clock): (CancellationToken, Clock),
) -> Result<(), ServeError> {
    let local = listener.local_addr().map_err(ServeError::Http)?;
    // Contacts are created here (invitations, texts): they must recognise blocked numbers.
    let storage = if storage.has_privacy_key() {
        storage
    } else {
        storage.with_privacy_key(crate::privacy::HashKey::from_config(config)?)
    };
    for (name, channel) in config.effective_channels() {
        info!(channel = %name, provider = channel.provider(), "channel configured");
    }

    let mailer = crate::email::Mailer::new(&config.email)
        .map_err(ServeError::Email)?
        .map(Arc::new);
    if mailer.is_none() {
        info!("no [email] smtp_url: cases open and their events are pushed, but no e-mail is sent");
    }
    let state = AppState::new(storage.clone(), config, Arc::new(flows.flows))
        .map_err(|(name, source)| ServeError::Channel { name, source })?
        .with_alert_rules(rules);
    let send_channels = config
        .effective_channels()
        .into_iter()
        .filter_map(|(name, channel)| {
            let provider = state.channels.get(name.as_str())?;
            Some((
                name.to_string(),
                SendChannel::new(name.as_str(), Arc::clone(provider), &channel),
            ))
        })
        .collect();
    let mut registry = JobRegistry::default()
        .with(crate::jobs::cases::EscalateCase {
            storage: storage.clone(),
            email: mailer.is_some(),
            clock: clock.clone(),
        })
        .with(crate::jobs::cases::CloseResolvedCase {
            storage: storage.clone(),
            clock: clock.clone(),
        })
        .with(PurgeFinishedJobs {
            storage: storage.clone(),
            retention: Duration::from_secs(u64::from(config.jobs.retention_days) * 86_400),
        })
        .with(ExpireConversation {
            storage: storage.clone(),
            flows: Arc::clone(&state.flows),
            send_max_attempts: config.jobs.max_attempts,
            clock: clock.clone(),
        })
        .with(RemindConversation {
            storage: storage.clone(),
            flows: Arc::clone(&state.flows),
            scheduling: state.intake.scheduling.clone(),
            send_max_attempts: config.jobs.max_attempts,
            clock: clock.clone(),
        });
    // Texts have a lane of their own, whose workers take send jobs in batches; surveys planned
    // for later open there too, a batch at a time, just before their first question is sent.
    let send_sms = SendSms::new(
        storage.clone(),
        send_channels,
        (
            state.intake.scheduling.clone(),
            Arc::clone(&state.flows),
            crate::jobs::send_sms::SendGuards::new(config, state.intake.quota_zone),
        ),
        (
            crate::providers::http_client(),
            config.server.public_url.clone(),
        ),
        clock.clone(),
    );
    let held_elsewhere = send_sms.channels_held_elsewhere();
    let texts = JobRunner::new(
        storage.clone(),
        JobRegistry::default()
            .with(crate::jobs::open::OpenInvitation {
                storage: storage.clone(),
                flows: Arc::clone(&state.flows),
                send_max_attempts: config.jobs.max_attempts,
                clock: clock.clone(),
            })
            .with(send_sms),
        RunnerSettings {
            clock: clock.clone(),
            batch: SEND_BATCH,
            ..RunnerSettings::from(&config.jobs)
        },
    );
    // An answer to a customer goes to the texts lane as its message commits, not at its next
    // claim; but for a channel another instance sends through, whose holder claims it.
    let state = state.with_text_handover(config, texts.handover().except_channels(held_elsewhere));
    // Case notices have a lane of their own: a backlog of texts (a busy hour, an import) never
    // delays telling a person about an unhappy customer (measured in docs/PERFORMANCE.md).
    let notices = mailer.map(|mailer| {
        JobRunner::new(
            storage.clone(),
            JobRegistry::default().with(crate::jobs::cases::SendCaseNotice {
                storage: storage.clone(),
                mailer,
            }),
            RunnerSettings {
                clock: clock.clone(),
                concurrency: NOTICE_WORKERS,
                ..RunnerSettings::from(&config.jobs)
            },
        )
    });
    let now = Timestamp::now();
    PurgeFinishedJobs::schedule(&storage, now, now).await?;
    let webhooks = webhook_lane(config, &storage, &clock, now).await?;
    if let Some(days) = config.privacy.retention_days {
        registry = registry.with(ApplyRetention {
            storage: storage.clone(),
            retention: Duration::from_secs(u64::from(days) * 86_400),
            clock: clock.clone(),
        });
        let now = clock.now();
        ApplyRetention::schedule(&storage, now, now).await?;
    }
    let runner = JobRunner::new(
        storage.clone(),
        registry,
        RunnerSettings {
            clock: clock.clone(),
            ..RunnerSettings::from(&config.jobs)
        },
    );
    let workers = tokio::spawn(runner.run(shutdown.clone()));
    let text_workers = tokio::spawn(texts.run(shutdown.clone()));
    let notice_workers = notices.map(|runner| tokio::spawn(runner.run(shutdown.clone())));
    let webhook_workers = tokio::spawn(webhooks.run(shutdown.clone()));
    let fan_out = tokio::spawn(crate::jobs::webhooks::fan_out(
        storage.clone(),
        Duration::from_millis(config.webhooks.fan_out_interval_ms),
        clock.clone(),
        shutdown.clone(),
    ));

    let upkeep = tokio::spawn(metrics_upkeep(state.metrics.clone(), shutdown.clone()));
    let app = http::router(state, &config.server);
    info!(addr = %local, database = storage.backend_name(), "listening");
    let server =
        axum::serve(listener, app).with_graceful_shutdown(shutdown.clone().cancelled_owned());
    let server = tokio::spawn(async move { server.await });

    let grace = config.server.shutdown_timeout();
    let stopped = async {
        let served = server.await;
        let _ = workers.await;
        let _ = text_workers.await;
        if let Some(notice_workers) = notice_workers {
            let _ = notice_workers.await;
        }
        let _ = webhook_workers.await;
        let _ = fan_out.await;
        let _ = upkeep.await;
        served
    };
    tokio::pin!(stopped);
    let outcome = tokio::select! {
        outcome = &mut stopped => Some(outcome),
        _ = async { shutdown.cancelled().await; tokio::time::sleep(grace).await } => None,
    };
    let result = match outcome {
        Some(Ok(Ok(()))) => {
            info!("stopped cleanly");
            Ok(())
        }
        Some(Ok(Err(e))) => Err(ServeError::Http(e)),
        Some(Err(join)) => Err(ServeError::Http(std::io::Error::other(join))),
        None => {
            warn!(
                grace_secs = grace.as_secs(),
                "shutdown timeout reached; work still in progress resumes when its lease expires"
            );
            Ok(())
        }
    };
    storage.close().await;
    result
}

/// The configured endpoints made those of the database, and the runner of webhook deliveries.
async fn webhook_lane(
    config: &Config,
    storage: &Storage,
    clock: &Clock,
    now: Timestamp,
) -> Result<JobRunner, ServeError> {
    let settings = &config.webhooks;
    let endpoints: Vec<_> = settings
        .endpoints
        .iter()
        .map(|(name, endpoint)| {
            let endpoint = crate::storage::NewEndpoint {
                url: endpoint.url.to_string(),
                secret: endpoint.secret.expose().to_string(),
                event_types: endpoint.events.clone(),
            };
            (name.clone(), endpoint)
        })
        .collect();
    storage.sync_configured_endpoints(&endpoints, now).await?;
    let policy = Arc::new(
        settings
            .address_policy()
            .expect("webhooks.allow_networks is checked when the configuration loads"),
    );
    let client = crate::jobs::webhooks::webhook_client(Arc::clone(&policy), settings.timeout())
        .map_err(|e| ServeError::Http(std::io::Error::other(e)))?;
    let handler = crate::jobs::webhooks::DeliverWebhook {
        storage: storage.clone(),
        client,
        policy,
        schedule: settings
            .retry_schedule()
            .expect("webhooks.retry_schedule is checked when the configuration loads"),
        clock: clock.clone(),
        chain_turns: crate::jobs::webhooks::CHAIN_TURNS,
        gates: crate::jobs::webhooks::EndpointGates::new(
            crate::jobs::webhooks::MAX_IN_FLIGHT_PER_ENDPOINT,
            settings.timeout(),
        ),
    };
    Ok(JobRunner::new(
        storage.clone(),
        JobRegistry::default().with(handler),
        RunnerSettings {
            clock: clock.clone(),
            concurrency: WEBHOOK_WORKERS,
            ..RunnerSettings::from(&config.jobs)
        },
    ))
}

async fn metrics_upkeep(
    handle: metrics_exporter_prometheus::PrometheusHandle,
    shutdown: CancellationToken,
) {
    let mut every = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = every.tick() => handle.run_upkeep(),
        }
    }
}

/// Cancels `shutdown` on the first SIGTERM or SIGINT.
async fn cancel_on_signal(shutdown: CancellationToken) {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut stream) => {
                stream.recv().await;
            }
            Err(e) => {
                warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => info!("SIGINT received; shutting down"),
        _ = terminate => info!("SIGTERM received; shutting down"),
    }
    shutdown.cancel();
}
