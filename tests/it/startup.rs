//! The real `hearback` binary: start-up errors, serving on SQLite and PostgreSQL, SIGTERM, and
//! the API-key commands.

use crate::support::{TestDb, drop_schema};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const BINARY: &str = env!("CARGO_BIN_EXE_hearback");

/// The binary in `dir`, with none of the caller's `HEARBACK_*` variables.
pub(crate) fn hearback(dir: &Path) -> Command {
    let mut command = Command::new(BINARY);
    command.current_dir(dir).env("HEARBACK_LOG__LEVEL", "info");
    for (name, _) in std::env::vars() {
        if name.starts_with("HEARBACK_") && name != "HEARBACK_LOG__LEVEL" {
            command.env_remove(name);
        }
    }
    command
}

/// Runs a command that must fail; returns its single error line.
fn single_error_line(command: &mut Command) -> String {
    let output = run_bounded(command);
    assert!(!output.status.success(), "expected a failure: {output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("hearback: error:"))
        .collect();
    assert_eq!(errors.len(), 1, "one error line expected in:\n{stderr}");
    errors[0].to_string()
}

pub(crate) fn run_bounded(command: &mut Command) -> Output {
    let child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start hearback");
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || sender.send(child.wait_with_output()));
    receiver
        .recv_timeout(Duration::from_secs(60))
        .expect("hearback exits in time")
        .expect("hearback output")
}

#[test]
fn an_unknown_configuration_key_stops_start_up_with_its_name() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("hearback.toml"),
        "[server]\nlisen = \"127.0.0.1:0\"\n",
    )
    .unwrap();
    let line = single_error_line(hearback(dir.path()).arg("serve"));
    assert!(
        line.contains("unknown key 'server.lisen'") && line.contains("hearback.toml"),
        "{line}"
    );
    assert!(
        !dir.path().join("hearback.db").exists(),
        "nothing was created"
    );
}

#[test]
fn a_bad_environment_value_stops_start_up_with_its_variable() {
    let dir = tempfile::tempdir().unwrap();
    let line = single_error_line(
        hearback(dir.path())
            .arg("serve")
            .env("HEARBACK_JOBS__CONCURRENCY", "many"),
    );
    assert!(
        line.contains("jobs.concurrency") && line.contains("HEARBACK_JOBS__CONCURRENCY"),
        "{line}"
    );
}

#[test]
fn a_malformed_database_url_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let line = single_error_line(
        hearback(dir.path())
            .arg("serve")
            .env("HEARBACK_DATABASE_URL", "mysql://root@localhost/db"),
    );
    assert!(
        line.contains("database.url") && line.contains("unsupported scheme 'mysql'"),
        "{line}"
    );
}

#[test]
fn an_unreachable_database_is_reported_without_its_password() {
    let dir = tempfile::tempdir().unwrap();
    let line = single_error_line(
        hearback(dir.path())
            .arg("serve")
            .env(
                "HEARBACK_DATABASE_URL",
                "postgres://hearback:hunter2@127.0.0.1:1/hearback",
            )
            .env("HEARBACK_DATABASE__CONNECT_TIMEOUT_SECS", "2"),
    );
    assert!(
        line.contains(
            "cannot connect to the database postgres://hearback:***@127.0.0.1:1/hearback"
        ),
        "{line}"
    );
    assert!(!line.contains("hunter2"), "{line}");
}

#[test]
fn a_channel_with_a_malformed_key_stops_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let config = "[channels.telnyx]\nprovider = \"telnyx\"\napi_key = \"KEY\"\npublic_key = \"not base64!\"\nsenders = [\"+33757000000\"]\n";
    std::fs::write(dir.path().join("hearback.toml"), config).unwrap();
    let line = single_error_line(hearback(dir.path()).arg("serve"));
    assert!(
        line.contains("channel 'telnyx'") && line.contains("public_key"),
        "{line}"
    );
    assert!(
        !dir.path().join("hearback.db").exists(),
        "refused before the database was touched"
    );
}

#[test]
fn a_channel_that_cannot_receive_replies_stops_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let flows = concat!(env!("CARGO_MANIFEST_DIR"), "/flows");
    let config = format!(
        "[flows]\ndir = \"{flows}\"\n\n[channels.brand]\nprovider = \"twilio\"\naccount_sid = \"AC0123456789abcdef0123456789abcdef\"\nauth_token = \"t\"\nsenders = [\"HEARBACK\"]\n"
    );
    std::fs::write(dir.path().join("hearback.toml"), config).unwrap();
    let line = single_error_line(hearback(dir.path()).arg("serve"));
    assert!(
        line.contains("channel 'brand'") && line.contains("alphanumeric"),
        "{line}"
    );
    assert!(
        !dir.path().join("hearback.db").exists(),
        "refused before the database was touched"
    );
}

#[test]
fn alert_rules_with_mistakes_stop_start_up_with_each_line() {
    let dir = tempfile::tempdir().unwrap();
    let flows = concat!(env!("CARGO_MANIFEST_DIR"), "/flows");
    let rules = dir.path().join("rules.yaml");
    std::fs::write(
        &rules,
        "rules:\n  - id: low\n    when:\n      - answer: nps <= 11\n  - id: words\n    flows: [nowhere]\n    when:\n      - words: [legal]\n",
    )
    .unwrap();
    let config = format!(
        "[flows]\ndir = \"{flows}\"\nalerts = \"{}\"\n",
        rules.display()
    );
    std::fs::write(dir.path().join("hearback.toml"), config).unwrap();
    let line = single_error_line(hearback(dir.path()).arg("serve"));
    assert!(line.contains("alert rules refused"), "{line}");
    assert!(line.contains("rules.yaml:4:"), "{line}");
    assert!(
        line.contains("rules.yaml:6:") && line.contains("nowhere"),
        "{line}"
    );
    assert!(
        !dir.path().join("hearback.db").exists(),
        "refused before the database was touched"
    );
}

#[test]
fn a_missing_explicit_configuration_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let line = single_error_line(hearback(dir.path()).args(["--config", "absent.toml", "serve"]));
    assert!(
        line.contains("absent.toml") && line.contains("no such file"),
        "{line}"
    );
}

/// A `hearback serve` child, its address read from the "listening" log line.
pub(crate) struct Served {
    child: Child,
    pub(crate) base: String,
    log: mpsc::Receiver<String>,
    /// The lines read while waiting for the "listening" one.
    early: Vec<String>,
}

impl Served {
    pub(crate) fn start(mut command: Command) -> Served {
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start hearback serve");
        let (sender, log) = mpsc::channel();
        let mut served = Served {
            child,
            base: String::new(),
            log,
            early: Vec::new(),
        };
        let stderr = served.child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = sender.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        while served.base.is_empty() {
            let line = served
                .log
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .expect("a 'listening' line");
            served.early.push(line.clone());
            if let Some(addr) = line
                .contains("listening")
                .then(|| line.split("addr=").nth(1))
                .flatten()
            {
                served.base = format!("http://{}", addr.split_whitespace().next().unwrap());
            }
        }
        served
    }

    /// Sends SIGTERM and returns the exit status and the rest of the log (after the
    /// "listening" line; [`Served::terminate_with_whole_log`] for all of it).
    pub(crate) fn terminate_with_whole_log(mut self) -> (std::process::ExitStatus, String) {
        let early = std::mem::take(&mut self.early);
        let (status, rest) = self.terminate();
        (status, format!("{}\n{rest}", early.join("\n")))
    }

    pub(crate) fn terminate(mut self) -> (std::process::ExitStatus, String) {
        let pid = self.child.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                let rest: Vec<String> = self.log.try_iter().collect();
                return (status, rest.join("\n"));
            }
            assert!(
                Instant::now() < deadline,
                "hearback did not stop after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

async fn get_status(url: String) -> u16 {
    reqwest::get(url)
        .await
        .expect("the server answers")
        .status()
        .as_u16()
}

impl Drop for Served {
    /// A failed test must not leave a server running.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn serve_creates_the_sqlite_database_answers_ready_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = hearback(dir.path());
    command.args(["serve", "--listen", "127.0.0.1:0"]);
    let served = Served::start(command);
    assert!(
        dir.path().join("hearback.db").exists(),
        "the zero-configuration database is ./hearback.db"
    );
    assert_eq!(get_status(format!("{}/readyz", served.base)).await, 200);
    let (status, log) = served.terminate();
    assert!(status.success(), "exit {status:?}; log:\n{log}");
    assert!(log.contains("stopped cleanly"), "{log}");
}

#[tokio::test]
async fn an_empty_postgres_database_gets_its_schema_and_is_served() {
    let Some((url, schema, base)) = TestDb::postgres_schema().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut command = hearback(dir.path());
    command
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("HEARBACK_DATABASE_URL", &url);
    let served = Served::start(command);
    assert_eq!(get_status(format!("{}/readyz", served.base)).await, 200);
    let (status, log) = served.terminate();
    assert!(status.success(), "exit {status:?}; log:\n{log}");
    assert!(
        !dir.path().join("hearback.db").exists(),
        "no SQLite file when PostgreSQL is configured"
    );
    drop_schema(&base, &schema).await;
}

#[tokio::test]
async fn a_postgres_schema_behind_the_binary_is_refused_until_migrated() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    // As if hearback had set the database up long ago, before any of today's migrations.
    let admin = sqlx::PgPool::connect(&db.url).await.unwrap();
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT tablename::text FROM pg_tables \
         WHERE schemaname = current_schema() AND tablename <> '_sqlx_migrations'",
    )
    .fetch_all(&admin)
    .await
    .unwrap();
    sqlx::query(&format!("DROP TABLE {} CASCADE", tables.join(", ")))
        .execute(&admin)
        .await
        .unwrap();
    sqlx::query("DELETE FROM _sqlx_migrations")
        .execute(&admin)
        .await
        .unwrap();
    admin.close().await;
    let dir = tempfile::tempdir().unwrap();

    let line = single_error_line(
        hearback(dir.path())
            .arg("serve")
            .env("HEARBACK_DATABASE_URL", &db.url),
    );
    assert!(
        line.contains("run `hearback migrate`"),
        "an outdated schema is refused: {line}"
    );

    let migrated = run_bounded(
        hearback(dir.path())
            .arg("migrate")
            .env("HEARBACK_DATABASE_URL", &db.url),
    );
    assert!(migrated.status.success(), "{migrated:?}");
    assert!(
        String::from_utf8_lossy(&migrated.stdout).contains("schema at version"),
        "{migrated:?}"
    );

    let mut command = hearback(dir.path());
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--migrate"])
        .env("HEARBACK_DATABASE_URL", &db.url);
    let served = Served::start(command);
    assert_eq!(get_status(format!("{}/readyz", served.base)).await, 200);
    let (status, log) = served.terminate();
    assert!(status.success(), "exit {status:?}; log:\n{log}");
    db.cleanup().await;
}

#[tokio::test]
async fn api_keys_are_shown_once_work_and_stop_working_when_revoked() {
    let dir = tempfile::tempdir().unwrap();
    let created = run_bounded(hearback(dir.path()).args(["api-keys", "create", "--name", "crm"]));
    assert!(created.status.success(), "{created:?}");
    let key = String::from_utf8(created.stdout)
        .unwrap()
        .trim()
        .to_string();
    assert!(key.starts_with("hb_"), "{key}");
    let id = key.split('_').nth(1).unwrap().to_string();

    let again =
        single_error_line(hearback(dir.path()).args(["api-keys", "create", "--name", "crm"]));
    assert!(
        again.contains("an active API key with this name already exists"),
        "{again}"
    );

    let listed = run_bounded(hearback(dir.path()).args(["api-keys", "list"]));
    let listing = String::from_utf8(listed.stdout).unwrap();
    assert!(
        listing.contains(&id) && listing.contains("crm"),
        "{listing}"
    );
    assert!(!listing.contains(&key), "the secret is never shown again");

    let mut command = hearback(dir.path());
    command.args(["serve", "--listen", "127.0.0.1:0"]);
    let served = Served::start(command);
    let units = format!("{}/api/v1/units", served.base);
    let client = reqwest::Client::new();
    assert_eq!(
        client
            .get(&units)
            .bearer_auth(&key)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    let revoked = run_bounded(hearback(dir.path()).args(["api-keys", "revoke", &id]));
    assert!(revoked.status.success(), "{revoked:?}");
    assert_eq!(
        client
            .get(&units)
            .bearer_auth(&key)
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    let (status, _) = served.terminate();
    assert!(status.success());

    let unknown =
        single_error_line(hearback(dir.path()).args(["api-keys", "revoke", "0000000000000000"]));
    assert!(unknown.contains("API key not found"), "{unknown}");
}

#[tokio::test]
async fn a_user_s_key_is_issued_by_e_mail_and_reaches_only_the_cases() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("units.csv"),
        "code,name,parent\nLYON-2,Lyon 2,\n",
    )
    .unwrap();
    let imported = run_bounded(hearback(dir.path()).args(["units", "import", "units.csv"]));
    assert!(imported.status.success(), "{imported:?}");

    let no_unit = single_error_line(hearback(dir.path()).args([
        "users",
        "create",
        "--email",
        "lea@example.com",
        "--role",
        "agent",
    ]));
    assert!(no_unit.contains("--unit"), "{no_unit}");
    let bad_role = single_error_line(hearback(dir.path()).args([
        "users",
        "create",
        "--email",
        "lea@example.com",
        "--role",
        "boss",
        "--unit",
        "LYON-2",
    ]));
    assert!(bad_role.contains("admin, manager, agent"), "{bad_role}");
    let unknown_unit = single_error_line(hearback(dir.path()).args([
        "users",
        "create",
        "--email",
        "lea@example.com",
        "--role",
        "agent",
        "--unit",
        "NOWHERE",
    ]));
    assert!(unknown_unit.contains("NOWHERE"), "{unknown_unit}");

    let created = run_bounded(hearback(dir.path()).args([
        "users",
        "create",
        "--email",
        "Lea@Example.com",
        "--role",
        "agent",
        "--unit",
        "LYON-2",
    ]));
    assert!(created.status.success(), "{created:?}");
    let user: serde_json::Value = serde_json::from_slice(&created.stdout).unwrap();
    assert_eq!(user["email"], "lea@example.com", "kept lowercased");
    let twice = single_error_line(hearback(dir.path()).args([
        "users",
        "create",
        "--email",
        "LEA@example.com",
        "--role",
        "agent",
        "--unit",
        "LYON-2",
    ]));
    assert!(twice.contains("already exists"), "{twice}");

    let nobody = single_error_line(hearback(dir.path()).args([
        "api-keys",
        "create",
        "--user",
        "bob@example.com",
    ]));
    assert!(nobody.contains("bob@example.com"), "{nobody}");
    let issued =
        run_bounded(hearback(dir.path()).args(["api-keys", "create", "--user", "LEA@example.com"]));
    assert!(issued.status.success(), "{issued:?}");
    let key = String::from_utf8(issued.stdout).unwrap().trim().to_string();

    let mut command = hearback(dir.path());
    command.args(["serve", "--listen", "127.0.0.1:0"]);
    let served = Served::start(command);
    let client = reqwest::Client::new();
    let status = |path: &str| {
        let request = client
            .get(format!("{}{path}", served.base))
            .bearer_auth(&key);
        async move { request.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(status("/api/v1/cases").await, 200);
    assert_eq!(status("/api/v1/units").await, 403);
    let (exit, _) = served.terminate();
    assert!(exit.success());
}

#[test]
fn every_command_explains_itself() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        vec!["--help"],
        vec!["serve", "--help"],
        vec!["migrate", "--help"],
        vec!["api-keys", "create", "--help"],
        vec!["users", "create", "--help"],
    ] {
        let output = run_bounded(hearback(dir.path()).args(&args));
        assert!(output.status.success(), "{args:?}");
        let help = String::from_utf8(output.stdout).unwrap();
        assert!(help.contains("Usage: hearback"), "{args:?}: {help}");
    }
}
