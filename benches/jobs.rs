//! The job queue's hot path: one job enqueued, claimed and completed, on SQLite and (when
//! `HEARBACK_TEST_POSTGRES_URL` is set) PostgreSQL. `cargo bench --bench jobs`.

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
