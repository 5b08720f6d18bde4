//! What the integration tests share: fresh databases of both kinds, an in-process server, and the
//! real binary.

use hearback::config::{Config, DatabaseConfig, DatabaseUrl};
use hearback::storage::Storage;
use std::io::Write;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, Once};
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub const POSTGRES_URL_VAR: &str = "HEARBACK_TEST_POSTGRES_URL";

/// The privacy key of the PostgreSQL test servers.
pub const TEST_HASH_KEY: &str = "test-privacy-key-0123456789abcdef0123456789";

/// The PostgreSQL server to test against. Without it the PostgreSQL tests are skipped, loudly;
/// under `CI=true` its absence is a failure.
pub fn postgres_url() -> Option<String> {
    match std::env::var(POSTGRES_URL_VAR) {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ if std::env::var("CI").as_deref() == Ok("true") => {
            panic!(
                "CI=true but {POSTGRES_URL_VAR} is not set: the PostgreSQL suite is mandatory in CI"
            )
        }
        _ => {
            static ANNOUNCE: Once = Once::new();
            ANNOUNCE.call_once(|| {
                // Written to the real stderr, past the test harness's capture, so it is seen.
                let _ = writeln!(
                    std::io::stderr(),
                    "\n*** {POSTGRES_URL_VAR} is not set: the PostgreSQL suite was SKIPPED ***\n"
                );
            });
            None
        }
    }
}

/// A fresh, migrated database: a SQLite file in a temporary folder, or a PostgreSQL schema of
/// its own in the test database.
pub struct TestDb {
    pub url: String,
    pub storage: Storage,
    schema: Option<(String, String)>,
    _dir: Option<TempDir>,
}

impl TestDb {
    pub async fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let url = format!("sqlite://{}", dir.path().join("hearback.db").display());
        let storage = Self::open_migrated(&url).await;
        TestDb {
            url,
            storage,
            schema: None,
            _dir: Some(dir),
        }
    }

    pub async fn postgres() -> Option<TestDb> {
        let (url, schema, base) = Self::postgres_schema().await?;
        let storage = Self::open_migrated(&url).await;
        Some(TestDb {
            url,
            storage,
            schema: Some((schema, base)),
            _dir: None,
        })
    }

    /// A PostgreSQL schema of its own, not migrated: (url, schema, server url).
    pub async fn postgres_schema() -> Option<(String, String, String)> {
        let base = postgres_url()?;
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let schema = format!(
            "hb_test_{}_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed),
            rand_suffix()
        );
        let admin = sqlx::PgPool::connect(&base)
            .await
            .unwrap_or_else(|e| panic!("{POSTGRES_URL_VAR}={base} is unreachable: {e}"));
        sqlx::query(&format!("CREATE SCHEMA {schema}"))
            .execute(&admin)
            .await
            .expect("create schema");
        admin.close().await;
        let separator = if base.contains('?') { '&' } else { '?' };
        Some((
            format!("{base}{separator}options[search_path]={schema}"),
            schema,
            base,
        ))
    }

    async fn open_migrated(url: &str) -> Storage {
        let storage = Storage::connect(&database_config(url))
            .await
            .expect("connect");
        storage.migrate().await.expect("migrate");
        storage
    }

    /// Another pool on the same database, as a second instance would have.
    pub async fn second_pool(&self) -> Storage {
        Storage::connect(&database_config(&self.url))
            .await
            .expect("connect a second pool")
    }

    pub fn config(&self) -> Config {
        let mut config = Config {
            database: database_config(&self.url),
            ..Config::default()
        };
        self.keep_key_out_of_the_working_directory(&mut config);
        config
    }

    /// With PostgreSQL the generated privacy key file would go to the working directory (the
    /// repository): the tests give those servers a key of their own instead. SQLite's goes
    /// beside its file, in the test's temporary folder.
    fn keep_key_out_of_the_working_directory(&self, config: &mut Config) {
        if self.schema.is_some() && config.privacy.hash_key.is_none() {
            config.privacy.hash_key = Some(hearback::config::Secret::new(TEST_HASH_KEY));
        }
    }

    /// A configuration read from `toml` as a file would be (validated the same way), on this
    /// database.
    pub fn config_from_toml(&self, toml: &str) -> Config {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hearback.toml");
        std::fs::write(&path, toml).unwrap();
        let mut config = hearback::config::Config::load(&hearback::config::ConfigSource {
            path,
            required: true,
        })
        .unwrap();
        config.database = self.config().database;
        self.keep_key_out_of_the_working_directory(&mut config);
        config
    }

    /// Drops the PostgreSQL schema (a failed test leaves its schema behind for inspection).
    pub async fn cleanup(self) {
        self.storage.close().await;
        if let Some((schema, base)) = &self.schema {
            drop_schema(base, schema).await;
        }
    }
}

pub async fn drop_schema(base: &str, schema: &str) {
    let admin = sqlx::PgPool::connect(base)
        .await
        .expect("reconnect to drop the schema");
    sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
        .execute(&admin)
        .await
        .expect("drop schema");
    admin.close().await;
}

fn rand_suffix() -> String {
    format!("{:08x}", rand::random::<u32>())
}

pub fn database_config(url: &str) -> DatabaseConfig {
    DatabaseConfig {
        url: DatabaseUrl::parse(url).expect("a valid test URL"),
        ..DatabaseConfig::default()
    }
}

/// Runs the test body against SQLite and PostgreSQL: `both_backends!(flavor; name, …)` makes
/// `sqlite::name` and `postgres::name` from `async fn name(db: &TestDb)`.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let db = $crate::support::TestDb::sqlite().await;
                    super::$name(&db).await;
                    db.cleanup().await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(db) = $crate::support::TestDb::postgres().await else { return };
                    super::$name(&db).await;
                    db.cleanup().await;
                }
            )*
        }
    };
}

/// The real server, in this process, on a free port.
pub struct TestServer {
    pub base: String,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl TestServer {
    pub async fn start(config: Config, storage: Storage) -> TestServer {
        Self::start_with_clock(config, storage, hearback::time::Clock::system()).await
    }

    /// The server with its job workers on `clock`, which the test moves.
    pub async fn start_with_clock(
        config: Config,
        storage: Storage,
        clock: hearback::time::Clock,
    ) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a free port");
        let base = format!("http://{}", listener.local_addr().unwrap());
        let shutdown = CancellationToken::new();
        let token = shutdown.clone();
        let task = tokio::spawn(async move {
            hearback::server::run_with_clock(&config, storage, listener, token, clock)
                .await
                .expect("the server runs");
        });
        TestServer {
            base,
            shutdown,
            task,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.expect("the server stops cleanly");
    }
}

/// Creates an API key directly in storage and returns it as a caller would send it.
pub async fn api_key(storage: &Storage, name: &str) -> String {
    let token = hearback::auth::api_key::ApiKeyToken::generate();
    let new = hearback::storage::NewApiKey {
        id: token.id().into(),
        name: name.into(),
        secret_hash: token.secret_hash(),
        user_id: None,
    };
    storage
        .create_api_key(
            &new,
            &hearback::storage::Actor::Cli,
            hearback::time::Timestamp::now(),
        )
        .await
        .expect("create an API key");
    token.reveal()
}

/// Twilio's signature of a form POST: HMAC-SHA1 of the URL followed by each parameter's name and
/// value, sorted by name, in base64.
pub fn twilio_signature(token: &str, url: &str, params: &[(&str, &str)]) -> String {
    use base64::Engine;
    use hmac::{Hmac, Mac};
    let mut sorted = params.to_vec();
    sorted.sort();
    let mut signed = url.to_string();
    for (key, value) in sorted {
        signed.push_str(key);
        signed.push_str(value);
    }
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(token.as_bytes()).unwrap();
    mac.update(signed.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// An e-mail as a real SMTP server (mailin) received it.
#[derive(Debug, Clone)]
pub struct ReceivedMail {
    pub from: String,
    pub to: Vec<String>,
    /// The message as sent: headers and MIME parts.
    pub data: String,
}

/// A real SMTP server on a free port, in a thread of the test, keeping what it receives.
#[derive(Clone)]
pub struct SmtpSink {
    pub port: u16,
    received: Arc<Mutex<Vec<ReceivedMail>>>,
}

#[derive(Clone)]
struct SinkHandler {
    received: Arc<Mutex<Vec<ReceivedMail>>>,
    /// Mailboxes answered 550 at `RCPT TO`.
    refused: Vec<String>,
    from: String,
    to: Vec<String>,
    data: Vec<u8>,
}

impl mailin_embedded::Handler for SinkHandler {
    fn rcpt(&mut self, to: &str) -> mailin_embedded::Response {
        if self.refused.iter().any(|r| to.contains(r.as_str())) {
            mailin_embedded::response::NO_MAILBOX
        } else {
            mailin_embedded::response::OK
        }
    }

    fn data_start(
        &mut self,
        _domain: &str,
        from: &str,
        _is8bit: bool,
        to: &[String],
    ) -> mailin_embedded::Response {
        self.from = from.to_string();
        self.to = to.to_vec();
        self.data.clear();
        mailin_embedded::response::OK
    }

    fn data(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.data.extend_from_slice(buf);
        Ok(())
    }

    fn data_end(&mut self) -> mailin_embedded::Response {
        self.received.lock().unwrap().push(ReceivedMail {
            from: self.from.clone(),
            to: self.to.clone(),
            data: String::from_utf8_lossy(&self.data).into_owned(),
        });
        mailin_embedded::response::OK
    }
}

impl SmtpSink {
    pub fn start() -> SmtpSink {
        Self::start_refusing(&[])
    }

    /// A server whose mailboxes `refused` do not exist (550 at `RCPT TO`).
    pub fn start_refusing(refused: &[&str]) -> SmtpSink {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
        let port = listener.local_addr().unwrap().port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let handler = SinkHandler {
            received: Arc::clone(&received),
            refused: refused.iter().map(|r| r.to_string()).collect(),
            from: String::new(),
            to: Vec::new(),
            data: Vec::new(),
        };
        std::thread::spawn(move || {
            let mut server = mailin_embedded::Server::new(handler);
            server.with_name("smtp.test").with_tcp_listener(listener);
            // Runs until the test process ends.
            let _ = server.serve();
        });
        SmtpSink { port, received }
    }

    pub fn received(&self) -> Vec<ReceivedMail> {
        self.received.lock().unwrap().clone()
    }

    /// Waits for at least `count` e-mails.
    pub async fn wait_for(&self, count: usize) -> Vec<ReceivedMail> {
        for _ in 0..500 {
            let received = self.received();
            if received.len() >= count {
                return received;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        panic!("expected {count} e-mails, received {:?}", self.received());
    }
}

/// A PostgreSQL transaction a test holds open, so that a statement of hearback's that needs its
/// rows waits for it; the test then knows exactly when the other side read and when it waits.
pub struct HeldTransaction {
    /// Another connection, for the test's own reads.
    pub pool: sqlx::PgPool,
    pub tx: sqlx::Transaction<'static, sqlx::Postgres>,
    pid: i32,
}

impl HeldTransaction {
    pub async fn begin(url: &str) -> HeldTransaction {
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        let mut tx = pool.begin().await.unwrap();
        let pid = sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(&mut *tx)
            .await
            .unwrap();
        HeldTransaction { pool, tx, pid }
    }

    /// Returns once another session waits for a lock this transaction holds.
    pub async fn wait_until_blocking(&self, what: &str) {
        crate::conversations::wait_until(what, || async {
            let waiting: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity WHERE $1 = ANY (pg_blocking_pids(pid))",
            )
            .bind(self.pid)
            .fetch_one(&self.pool)
            .await
            .unwrap();
            waiting == 1
        })
        .await;
    }
}
