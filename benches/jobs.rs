//! The job queue's hot path: one job enqueued, claimed and completed, on SQLite and (when
//! `HEARBACK_TEST_POSTGRES_URL` is set) PostgreSQL — on an empty queue, and behind a backlog of
//! 100 000 due jobs and 100 000 scheduled ones. `cargo bench --bench jobs`.

use criterion::{Criterion, criterion_group, criterion_main};
use hearback::config::{DatabaseConfig, DatabaseUrl};
use hearback::storage::{NewJob, Storage};
use hearback::time::Timestamp;
use serde_json::json;
use std::time::Duration;

async fn storage(url: &str) -> Storage {
    let config = DatabaseConfig {
        url: DatabaseUrl::parse(url).unwrap(),
        ..DatabaseConfig::default()
    };
    let storage = Storage::connect(&config).await.unwrap();
    storage.migrate().await.unwrap();
    storage
}

async fn cycle(storage: &Storage) {
    let now = Timestamp::now();
    let job = NewJob {
        kind: "bench".into(),
        payload: json!({"message_id": "m1"}),
        run_at: now,
        max_attempts: 3,
        unique_key: None,
    };
    storage.enqueue_job(&job, now).await.unwrap();
    let claimed = storage
        .claim_jobs("bench", &["bench"], 1, Duration::from_secs(60), now)
        .await
        .unwrap();
    storage
        .complete_job(claimed[0].id, "bench", now)
        .await
        .unwrap();
}

/// Jobs of each backlog: due a day ago (waiting their turn), and due in a day (scheduled).
const BACKLOG: i64 = 100_000;

/// Writes the backlog in two statements, straight into the `jobs` table.
async fn fill_backlog(url: &str) {
    let now = Timestamp::now();
    let day = Duration::from_secs(86_400);
    let (past, future) = (
        Timestamp::from_millis(now.as_millis() - 86_400_000).unwrap(),
        now + day,
    );
    let columns = "kind, payload, state, run_at, attempts, max_attempts, created_at, updated_at";
    if url.starts_with("sqlite") {
        let pool = sqlx::SqlitePool::connect(url).await.unwrap();
        for run_at in [past, future] {
            sqlx::query(&format!(
                "WITH RECURSIVE n (i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $1) \
                 INSERT INTO jobs ({columns}) SELECT 'bench', '{{}}', 'pending', $2, 0, 3, $3, $3 FROM n"
            ))
            .bind(BACKLOG)
            .bind(run_at)
            .bind(now)
            .execute(&pool)
            .await
            .unwrap();
        }
        pool.close().await;
    } else {
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        for run_at in [past, future] {
            sqlx::query(&format!(
                "INSERT INTO jobs ({columns}) SELECT 'bench', '{{}}', 'pending', $2, 0, 3, $3, $3 \
                 FROM generate_series(1, $1)"
            ))
            .bind(BACKLOG)
            .bind(run_at)
            .bind(now)
            .execute(&pool)
            .await
            .unwrap();
        }
        sqlx::query("ANALYZE jobs").execute(&pool).await.unwrap();
        pool.close().await;
    }
}

fn job_cycle(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut targets = vec![(
        "sqlite",
        format!("sqlite://{}", dir.path().join("bench.db").display()),
        None,
    )];
    if let Ok(base) = std::env::var("HEARBACK_TEST_POSTGRES_URL") {
        let schema = format!("hb_bench_{}", std::process::id());
        runtime.block_on(async {
            let admin = sqlx::PgPool::connect(&base).await.unwrap();
            sqlx::query(&format!("CREATE SCHEMA {schema}"))
                .execute(&admin)
                .await
                .unwrap();
        });
        let separator = if base.contains('?') { '&' } else { '?' };
        targets.push((
            "postgres",
            format!("{base}{separator}options[search_path]={schema}"),
            Some((base, schema)),
        ));
    }
    let mut group = c.benchmark_group("job_enqueue_claim_complete");
    for (name, url, _) in &targets {
        let storage = runtime.block_on(storage(url));
        group.bench_function(*name, |b| b.to_async(&runtime).iter(|| cycle(&storage)));
        runtime.block_on(storage.close());
    }
    group.finish();
    // The same cycle behind the backlog: each claim takes the oldest due job, so the backlog
    // shrinks by one job per cycle (a few thousand of its 100 000 during a run).
    let mut group = c.benchmark_group("job_enqueue_claim_complete_behind_200k");
    for (name, url, _) in &targets {
        let storage = runtime.block_on(storage(url));
        runtime.block_on(fill_backlog(url));
        group.bench_function(*name, |b| b.to_async(&runtime).iter(|| cycle(&storage)));
        runtime.block_on(storage.close());
    }
    group.finish();
    for (_, _, cleanup) in targets {
        if let Some((base, schema)) = cleanup {
            runtime.block_on(async {
                let admin = sqlx::PgPool::connect(&base).await.unwrap();
                sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
                    .execute(&admin)
                    .await
                    .unwrap();
            });
        }
    }
}

criterion_group!(benches, job_cycle);
criterion_main!(benches);
