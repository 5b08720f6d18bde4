//! Load driver for the inbound path, and the two baselines it is compared with.
//!
//! - `drive`: creates one invitation per customer through the API (not timed), then plays whole
//!   conversations (`--rounds` replies per customer, one round after the other so that one
//!   customer's replies stay in order) as signed Twilio webhooks with `--connections` requests in
//!   flight. Reports replies/s, p50/p99 latency and, with `--server-pid`, the server's CPU time
//!   per reply (from `/proc`).
//! - `bare`: an axum server that answers 200 to everything: the HTTP ceiling.
//! - `naive`: parses the form, checks Twilio's HMAC-SHA1 and commits one two-statement
//!   transaction per request: the durable-write ceiling, on SQLite (`--synchronous normal|full`)
//!   or PostgreSQL.
//! - `stand-in`: a Twilio Messages API that accepts everything, for hearback's send jobs.
//! - `alerts`: time to alert. Runs an SMTP server (mailin) that hearback's notices go to, then
//!   sends each customer's score once, at a fixed rate (`--rate`, open loop), a share of them
//!   detractors (`--detractors-percent`). For each detractor it measures the webhook's answer
//!   (the answer comes after the commit that holds `alert.raised`) and the arrival of the case's
//!   e-mail at the SMTP server.
//! - `crm`: a CRM that receives hearback's webhooks and answers 204 at once; reports how long
//!   `--expect` distinct events took to arrive (from the first), deliveries per second and, with
//!   `--server-pid`, the server's CPU time per delivery (`scripts/webhook_throughput.sh`).
//!
//! `scripts/load.sh` runs the whole comparison with the servers on one core and the driver on
//! the other; figures go to docs/PERFORMANCE.md.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use base64::Engine;
use clap::{Parser, Subcommand};
use futures::StreamExt;
use hmac::{Hmac, Mac};
use serde_json::json;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Drive(Drive),
    Bare {
        #[arg(long)]
        listen: String,
    },
    Naive {
        #[arg(long)]
        listen: String,
        /// `sqlite://FILE` or `postgres://…`.
        #[arg(long)]
        database: String,
        /// SQLite only: `normal` or `full`.
        #[arg(long, default_value = "normal")]
        synchronous: String,
        #[arg(long, default_value = "load-test-token")]
        token: String,
        /// The URL the driver signs (the public URL of this server).
        #[arg(long)]
        public_url: String,
    },
    StandIn {
        #[arg(long)]
        listen: String,
    },
    Alerts(Alerts),
    Crm {
        #[arg(long)]
        listen: String,
        /// Stop and report once this many distinct events have arrived.
        #[arg(long)]
        expect: usize,
        /// A file that holds the server's pid by the time the first request comes (the server
        /// starts after this stand-in, so that none of its requests finds the port closed).
        #[arg(long)]
        server_pid_file: Option<std::path::PathBuf>,
    },
}

#[derive(clap::Args)]
struct Alerts {
    #[arg(long)]
    url: String,
    #[arg(long, default_value = "load-test-token")]
    token: String,
    #[arg(long)]
    api_key: String,
    #[arg(long, default_value_t = 5000)]
    customers: u32,
    /// Replies per second, sent on a fixed schedule whatever the answers' latency.
    #[arg(long, default_value_t = 500)]
    rate: u32,
    #[arg(long, default_value_t = 20)]
    detractors_percent: u32,
    /// Where the SMTP server listens (hearback's `email.smtp_url` points here).
    #[arg(long)]
    smtp_listen: String,
    /// The server's database: the driver waits there for the first questions to go out.
    #[arg(long)]
    verify_database: String,
    #[arg(long, default_value_t = 0)]
    run: u32,
}

#[tokio::main]
async fn main() {
    match Cli::parse().command {
        Command::Drive(d) => drive(d).await,
        Command::Alerts(a) => alerts(a).await,
        Command::Crm {
            listen,
            expect,
            server_pid_file,
        } => crm(&listen, expect, server_pid_file).await,
        Command::Bare { listen } => {
            let app = Router::new().fallback(|| async { StatusCode::OK });
            serve(&listen, app).await;
        }
        Command::Naive {
            listen,
            database,
            synchronous,
            token,
            public_url,
        } => naive(&listen, &database, &synchronous, token, public_url).await,
        Command::StandIn { listen } => {
            let counter = Arc::new(AtomicU64::new(0));
            let app = Router::new().fallback(move || {
                let n = counter.fetch_add(1, Ordering::Relaxed);
                async move {
                    (
                        StatusCode::CREATED,
                        axum::Json(json!({ "sid": format!("SM{n:032x}"), "status": "queued", "num_segments": "1" })),
                    )
                }
            });
            serve(&listen, app).await;
        }
    }
}

/// What the CRM stand-in has seen: distinct event ids, every request, and when the first came.
#[derive(Default)]
struct CrmSeen {
    ids: std::collections::HashSet<String>,
    requests: u64,
    /// When the first request came, with the server's pid and CPU time then.
    first: Option<(Instant, Option<(u32, f64)>)>,
}

async fn crm(listen: &str, expect: usize, server_pid_file: Option<std::path::PathBuf>) {
    let server_pid = move || {
        server_pid_file
            .as_ref()
            .and_then(|f| std::fs::read_to_string(f).ok())
            .and_then(|pid| pid.trim().parse::<u32>().ok())
    };
    let seen = Arc::new(std::sync::Mutex::new(CrmSeen::default()));
    let done = Arc::new(tokio::sync::Notify::new());
    let app = Router::new().fallback({
        let (seen, done) = (Arc::clone(&seen), Arc::clone(&done));
        move |headers: HeaderMap| {
            let (seen, done) = (Arc::clone(&seen), Arc::clone(&done));
            let server_pid = server_pid.clone();
            async move {
                let id = headers
                    .get("webhook-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                let mut seen = seen.lock().unwrap();
                if seen.first.is_none() {
                    let cpu = server_pid().map(|pid| (pid, cpu_seconds(pid)));
                    seen.first = Some((Instant::now(), cpu));
                }
                seen.requests += 1;
                seen.ids.insert(id);
                if seen.ids.len() >= expect {
                    done.notify_one();
                }
                StatusCode::NO_CONTENT
            }
        }
    });
    let listener = tokio::net::TcpListener::bind(listen).await.expect("bind");
    tokio::spawn(async move { axum::serve(listener, app).await });
    done.notified().await;
    let seen = seen.lock().unwrap();
    let (started, cpu_at_start) = seen.first.expect("a request came");
    let seconds = started.elapsed().as_secs_f64();
    let cpu = cpu_at_start.map_or(0.0, |(pid, at_start)| cpu_seconds(pid) - at_start);
    println!(
        "delivered {} events ({} requests) in {seconds:.2} s: {:.0} deliveries/s; server CPU {:.0} µs per delivery",
        seen.ids.len(),
        seen.requests,
        seen.ids.len() as f64 / seconds,
        cpu * 1e6 / seen.ids.len() as f64,
    );
}

async fn serve(listen: &str, app: Router) {
    let listener = tokio::net::TcpListener::bind(listen).await.expect("bind");
    axum::serve(listener, app).await.expect("serve");
}

#[derive(clap::Args)]
struct Drive {
    /// The server's base URL, as the webhooks are signed for it.
    #[arg(long)]
    url: String,
    /// The Twilio channel's auth token.
    #[arg(long, default_value = "load-test-token")]
    token: String,
    /// An API key, to create the invitations first (hearback only).
    #[arg(long)]
    api_key: Option<String>,
    #[arg(long, default_value_t = 2000)]
    customers: u32,
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Replies per customer: a score, why, and the yes/no of the delivery flow.
    #[arg(long, default_value_t = 3)]
    rounds: u32,
    /// The server's process id, for its CPU time.
    #[arg(long)]
    server_pid: Option<u32>,
    /// A label for the report line.
    #[arg(long, default_value = "hearback")]
    label: String,
    /// Distinguishes runs against the same database (customers' numbers and message ids).
    #[arg(long, default_value_t = 0)]
    run: u32,
    /// The server's database (hearback only): after the run, checks there that every reply was
    /// stored and applied exactly once, and exits non-zero if not.
    #[arg(long)]
    verify_database: Option<String>,
}

fn customer(run: u32, n: u32) -> String {
    format!("+336{:02}{:06}", run % 100, n)
}

const REPLIES: [&str; 3] = ["8", "Livreur tres aimable", "oui"];

async fn drive(d: Drive) {
    let server_db = match &d.verify_database {
        Some(url) => Some(ServerDb::open(url).await),
        None => None,
    };
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(d.connections)
        .build()
        .unwrap();
    if let Some(key) = &d.api_key {
        open_surveys(
            &client,
            &d.url,
            key,
            (d.run, d.customers),
            d.connections,
            server_db.as_ref(),
        )
        .await;
    }
    let webhook = format!("{}/webhooks/twilio/inbound", d.url);
    let cpu_before = d.server_pid.map(cpu_seconds);
    let (machine_before, postgres_before) = (machine_busy_seconds(), postgres_cpu_seconds());
    let started = Instant::now();
    let mut latencies = Vec::with_capacity((d.customers * d.rounds) as usize);
    let mut failures = 0u64;
    for round in 0..d.rounds {
        let text = REPLIES[round as usize % REPLIES.len()];
        let results: Vec<(Duration, bool)> = futures::stream::iter(0..d.customers)
            .map(|n| {
                let client = client.clone();
                let webhook = webhook.clone();
                let from = customer(d.run, n);
                let sid = format!("SMload{}r{round}c{n}", d.run);
                let params = [
                    ("AccountSid", "ACload"),
                    ("Body", text),
                    ("From", from.as_str()),
                    ("MessageSid", sid.as_str()),
                    ("NumSegments", "1"),
                    ("To", "+33757000000"),
                ];
                let signature = twilio_signature(&d.token, &webhook, &params);
                let body = url::form_urlencoded::Serializer::new(String::new())
                    .extend_pairs(params)
                    .finish();
                async move {
                    let sent = Instant::now();
                    let ok = client
                        .post(&webhook)
                        .header("content-type", "application/x-www-form-urlencoded")
                        .header("x-twilio-signature", signature)
                        .body(body)
                        .send()
                        .await
                        .map(|r| r.status().is_success())
                        .unwrap_or(false);
                    (sent.elapsed(), ok)
                }
            })
            .buffer_unordered(d.connections)
            .collect()
            .await;
        for (latency, ok) in results {
            latencies.push(latency);
            failures += u64::from(!ok);
        }
    }
    let elapsed = started.elapsed();
    let machine = machine_busy_seconds() - machine_before;
    let postgres = postgres_cpu_seconds() - postgres_before;
    let cpu = d
        .server_pid
        .zip(cpu_before)
        .map(|(pid, before)| cpu_seconds(pid) - before);
    latencies.sort();
    let count = latencies.len();
    let pct = |p: f64| latencies[((count as f64 * p) as usize).min(count - 1)];
    let rate = count as f64 / elapsed.as_secs_f64();
    let cpu_per_reply = cpu.map_or("n/a".to_string(), |c| {
        format!("{:.0} µs", c * 1e6 / count as f64)
    });
    println!(
        "{label}: {count} replies in {secs:.2} s = {rate:.0}/s, p50 {p50:.1} ms, p99 {p99:.1} ms, server CPU per reply {cpu_per_reply}, failures {failures}",
        label = d.label,
        secs = elapsed.as_secs_f64(),
        p50 = pct(0.50).as_secs_f64() * 1e3,
        p99 = pct(0.99).as_secs_f64() * 1e3,
    );
    println!(
        "{label}: CPU per reply on the whole machine {machine:.0} µs, of which PostgreSQL's processes {postgres:.0} µs",
        label = d.label,
        machine = machine * 1e6 / count as f64,
        postgres = postgres * 1e6 / count as f64,
    );
    if let Some(db) = &server_db {
        // The replies are answered as soon as they are stored; the questions and thanks they
        // cause go out through the send jobs. The rate a server sustains is the one at which it
        // does both.
        let unsent = "SELECT COUNT(*) FROM messages WHERE direction = 'outbound' AND status IN ('queued', 'sending')";
        let backlog = db.count(unsent).await;
        while db.count(unsent).await > 0 {
            assert!(
                started.elapsed() < Duration::from_secs(600),
                "the answers are not going out"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let drained = started.elapsed().as_secs_f64();
        println!(
            "{label}: {backlog} answers still to send when the last reply was answered; all sent after {drained:.2} s: {sustained:.0} replies/s with their answers sent",
            label = d.label,
            sustained = count as f64 / drained,
        );
        let replies = i64::from(d.customers * d.rounds);
        let expected = [
            (
                "inbound messages",
                "SELECT COUNT(*) FROM messages WHERE direction = 'inbound'",
                replies,
            ),
            ("answers", "SELECT COUNT(*) FROM answers", replies),
            (
                "completed conversations",
                "SELECT COUNT(*) FROM conversations WHERE status = 'completed'",
                i64::from(d.customers),
            ),
        ];
        let mut wrong = false;
        for (what, sql, want) in expected {
            let found = db.count(sql).await;
            if found != want {
                eprintln!("verification failed: {found} {what}, expected {want}");
                wrong = true;
            }
        }
        if wrong {
            std::process::exit(1);
        }
        println!(
            "{label}: verified in the database: every reply stored and applied once",
            label = d.label
        );
    }
}

/// Creates one delivery survey per customer through the API (not timed) and, given the server's
/// database, waits until every first question is out: a reply to a survey not sent yet answers
/// nothing.
async fn open_surveys(
    client: &reqwest::Client,
    base_url: &str,
    key: &str,
    (run, customers): (u32, u32),
    in_flight: usize,
    server_db: Option<&ServerDb>,
) {
    let inviting = Instant::now();
    let invited = futures::stream::iter(0..customers)
        .map(|n| {
            let request = client
                .post(format!("{base_url}/api/v1/invitations"))
                .bearer_auth(key)
                .json(&json!({
                    "event_id": format!("load-{run}-{n}"),
                    "flow": "delivery",
                    "phone": customer(run, n),
                    "variables": { "first_name": "Ana", "store": "Lyon 2", "order_date": "12/11" },
                }));
            async move {
                request
                    .send()
                    .await
                    .is_ok_and(|r| r.status() == StatusCode::ACCEPTED)
            }
        })
        .buffer_unordered(in_flight)
        .filter(|ok| futures::future::ready(*ok))
        .count()
        .await;
    eprintln!(
        "{invited} invitations created in {:.2} s",
        inviting.elapsed().as_secs_f64()
    );
    let Some(db) = server_db else { return };
    let waiting = Instant::now();
    while db
        .count("SELECT COUNT(*) FROM invitations WHERE status = 'scheduled'")
        .await
        > 0
    {
        assert!(
            waiting.elapsed() < Duration::from_secs(300),
            "the first questions are not going out"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!(
        "every first question sent in {:.1} s",
        waiting.elapsed().as_secs_f64()
    );
    // A running PostgreSQL has statistics about its tables (autovacuum analyses them every
    // minute); this database was created seconds ago, and without them the planner takes
    // tables of thousands of rows for empty ones.
    if let ServerDb::Postgres(pool) = db {
        sqlx::query("ANALYZE").execute(pool).await.expect("analyze");
        // Where the extension is loaded, its statistics then cover the timed replies only.
        for sql in [
            "CREATE EXTENSION IF NOT EXISTS pg_stat_statements",
            "SELECT pg_stat_statements_reset()",
        ] {
            let _ = sqlx::query(sql).execute(pool).await;
        }
    }
}

/// The server's database, opened once by the driver to wait for it and check it.
enum ServerDb {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

impl ServerDb {
    async fn open(url: &str) -> ServerDb {
        if url.starts_with("sqlite:") {
            ServerDb::Sqlite(
                sqlx::SqlitePool::connect(url)
                    .await
                    .expect("open the SQLite database"),
            )
        } else {
            ServerDb::Postgres(
                sqlx::PgPool::connect(url)
                    .await
                    .expect("connect to PostgreSQL"),
            )
        }
    }

    /// One `SELECT COUNT(*)`.
    async fn count(&self, sql: &str) -> i64 {
        match self {
            ServerDb::Sqlite(pool) => sqlx::query_scalar(sql).fetch_one(pool).await,
            ServerDb::Postgres(pool) => sqlx::query_scalar(sql).fetch_one(pool).await,
        }
        .expect("count")
    }
}

/// Time the machine's CPUs spent busy (user, nice, system, interrupts), in seconds.
fn machine_busy_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let cpu: Vec<f64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal
    [0, 1, 2, 5, 6]
        .iter()
        .filter_map(|&i| cpu.get(i))
        .sum::<f64>()
        / 100.0
}

/// CPU time of every process named `postgres` on the machine (its backends live as long as
/// the server's pool keeps them), in seconds.
fn postgres_cpu_seconds() -> f64 {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim() == "postgres")
        })
        .map(cpu_seconds)
        .sum()
}

/// utime + stime of a process, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields
        .get(11..13)
        .map(|f| f.iter().filter_map(|v| v.parse::<f64>().ok()).sum())
        .unwrap_or(0.0);
    // USER_HZ is 100 on Linux.
    ticks / 100.0
}

fn twilio_signature(token: &str, url: &str, params: &[(&str, &str)]) -> String {
    let mut signed = url.to_string();
    let mut sorted = params.to_vec();
    sorted.sort();
    for (key, value) in sorted {
        signed.push_str(key);
        signed.push_str(value);
    }
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(token.as_bytes()).unwrap();
    mac.update(signed.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

#[derive(Clone)]
struct Naive {
    pool: NaivePool,
    token: Arc<String>,
    url: Arc<String>,
}

#[derive(Clone)]
enum NaivePool {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

const NAIVE_SCHEMA: [&str; 2] = [
    "CREATE TABLE IF NOT EXISTS naive_messages (sid TEXT PRIMARY KEY, sender TEXT NOT NULL, body TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS naive_contacts (phone TEXT PRIMARY KEY, replies BIGINT NOT NULL)",
];

async fn naive(listen: &str, database: &str, synchronous: &str, token: String, url: String) {
    let pool = if database.starts_with("sqlite:") {
        let options = SqliteConnectOptions::from_str(database)
            .unwrap()
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(match synchronous {
                "full" => SqliteSynchronous::Full,
                _ => SqliteSynchronous::Normal,
            })
            .busy_timeout(Duration::from_secs(5));
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(10)
            .connect_with(options)
            .await
            .unwrap();
        for statement in NAIVE_SCHEMA {
            sqlx::query(statement).execute(&pool).await.unwrap();
        }
        NaivePool::Sqlite(pool)
    } else {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(10)
            .connect(database)
            .await
            .unwrap();
        for statement in NAIVE_SCHEMA {
            sqlx::query(statement).execute(&pool).await.unwrap();
        }
        NaivePool::Postgres(pool)
    };
    let state = Naive {
        pool,
        token: Arc::new(token),
        url: Arc::new(format!("{url}/webhooks/twilio/inbound")),
    };
    let app = Router::new().fallback(naive_handler).with_state(state);
    serve(listen, app).await;
}

async fn naive_handler(State(state): State<Naive>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let params: Vec<(String, String)> = url::form_urlencoded::parse(&body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let pairs: Vec<(&str, &str)> = params
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let expected = twilio_signature(&state.token, &state.url, &pairs);
    let given = headers
        .get("x-twilio-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !bool::from(subtle::ConstantTimeEq::ct_eq(
        expected.as_bytes(),
        given.as_bytes(),
    )) {
        return StatusCode::FORBIDDEN;
    }
    let get = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.as_str())
    };
    let (sid, from, text) = (get("MessageSid"), get("From"), get("Body"));
    macro_rules! commit {
        ($pool:expr) => {{
            let mut tx = $pool.begin().await.unwrap();
            sqlx::query("INSERT INTO naive_messages (sid, sender, body) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
                .bind(sid)
                .bind(from)
                .bind(text)
                .execute(&mut *tx)
                .await
                .unwrap();
            sqlx::query("INSERT INTO naive_contacts (phone, replies) VALUES ($1, 1) ON CONFLICT (phone) DO UPDATE SET replies = naive_contacts.replies + 1")
                .bind(from)
                .execute(&mut *tx)
                .await
                .unwrap();
            tx.commit().await.unwrap();
        }};
    }
    match &state.pool {
        NaivePool::Sqlite(pool) => commit!(pool),
        NaivePool::Postgres(pool) => commit!(pool),
    }
    StatusCode::OK
}

/// E-mails received by the driver's SMTP server: when, and the message.
type Inbox = Arc<std::sync::Mutex<Vec<(Instant, String)>>>;

#[derive(Clone)]
struct InboxHandler {
    inbox: Inbox,
    data: Vec<u8>,
}

impl mailin_embedded::Handler for InboxHandler {
    fn data_start(
        &mut self,
        _domain: &str,
        _from: &str,
        _is8bit: bool,
        _to: &[String],
    ) -> mailin_embedded::Response {
        self.data.clear();
        mailin_embedded::response::OK
    }

    fn data(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.data.extend_from_slice(buf);
        Ok(())
    }

    fn data_end(&mut self) -> mailin_embedded::Response {
        let text = String::from_utf8_lossy(&self.data).into_owned();
        self.inbox.lock().unwrap().push((Instant::now(), text));
        mailin_embedded::response::OK
    }
}

async fn alerts(a: Alerts) {
    let inbox: Inbox = Arc::default();
    let listener = std::net::TcpListener::bind(&a.smtp_listen).expect("bind the SMTP port");
    let handler = InboxHandler {
        inbox: Arc::clone(&inbox),
        data: Vec::new(),
    };
    std::thread::spawn(move || {
        let mut server = mailin_embedded::Server::new(handler);
        server
            .with_name("smtp.load")
            .with_num_threads(8)
            .with_tcp_listener(listener);
        let _ = server.serve();
    });
    let db = ServerDb::open(&a.verify_database).await;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()
        .unwrap();
    open_surveys(
        &client,
        &a.url,
        &a.api_key,
        (a.run, a.customers),
        64,
        Some(&db),
    )
    .await;

    let webhook = format!("{}/webhooks/twilio/inbound", a.url);
    let interval = Duration::from_secs_f64(1.0 / f64::from(a.rate.max(1)));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let every = 100 / a.detractors_percent.clamp(1, 100);
    for n in 0..a.customers {
        // Open loop: the n-th reply leaves at its time, however slow the earlier ones are.
        tokio::time::sleep_until((started + interval * n).into()).await;
        let detractor = n % every == 0;
        let text = if detractor { "3" } else { "9" };
        let from = customer(a.run, n);
        let sid = format!("SMalert{}c{n}", a.run);
        let params = [
            ("AccountSid", "ACload"),
            ("Body", text),
            ("From", from.as_str()),
            ("MessageSid", sid.as_str()),
            ("NumSegments", "1"),
            ("To", "+33757000000"),
        ];
        let signature = twilio_signature(&a.token, &webhook, &params);
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params)
            .finish();
        let (client, webhook) = (client.clone(), webhook.clone());
        tasks.spawn(async move {
            let sent = Instant::now();
            let ok = client
                .post(&webhook)
                .header("content-type", "application/x-www-form-urlencoded")
                .header("x-twilio-signature", signature)
                .body(body)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            (from, detractor, sent, sent.elapsed(), ok)
        });
    }
    let mut sent_at = std::collections::HashMap::new();
    let mut committed = Vec::new();
    let mut failures = 0;
    while let Some(result) = tasks.join_next().await {
        let (from, detractor, sent, latency, ok) = result.expect("a request task");
        failures += u32::from(!ok);
        if detractor {
            committed.push(latency);
            sent_at.insert(from, sent);
        }
    }
    let sending = started.elapsed();
    let deadline = Instant::now() + Duration::from_secs(120);
    while inbox.lock().unwrap().len() < sent_at.len() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut mailed = Vec::new();
    for (at, text) in inbox.lock().unwrap().iter() {
        let Some(phone) = text
            .split("Customer: ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
        else {
            continue;
        };
        if let Some(sent) = sent_at.get(phone) {
            mailed.push(at.duration_since(*sent));
        }
    }
    let report = |what: &str, mut values: Vec<Duration>| {
        values.sort();
        if values.is_empty() {
            println!("{what}: none");
            return;
        }
        let pct = |p: f64| values[((values.len() as f64 * p) as usize).min(values.len() - 1)];
        println!(
            "{what}: {} measured, p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            values.len(),
            pct(0.50).as_secs_f64() * 1e3,
            pct(0.95).as_secs_f64() * 1e3,
            pct(0.99).as_secs_f64() * 1e3,
            values[values.len() - 1].as_secs_f64() * 1e3,
        );
    };
    println!(
        "{} replies in {:.2} s = {:.0}/s ({} detractors), failures {failures}",
        a.customers,
        sending.as_secs_f64(),
        f64::from(a.customers) / sending.as_secs_f64(),
        sent_at.len()
    );
    report(
        "webhook → alert.raised committed (the webhook's answer)",
        committed,
    );
    report("webhook → e-mail accepted by the SMTP server", mailed);
    // Where a notice's time goes, as the server saw it.
    if let Ok(response) = client.get(format!("{}/metrics", a.url)).send().await {
        let text = response.text().await.unwrap_or_default();
        for line in text
            .lines()
            .filter(|l| l.starts_with("hearback_job_duration_seconds") && !l.contains("_bucket"))
        {
            println!("server: {line}");
        }
    }
}
