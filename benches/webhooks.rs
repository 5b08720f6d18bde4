//! One inbound SMS through the whole webhook path: HTTP, verification, parsing, keyword check,
//! contact upsert and the exactly-once insert, committed to SQLite. Console channel (no
//! signature), one client at a time over loopback. `cargo bench --bench webhooks`.

use criterion::{Criterion, criterion_group, criterion_main};
use hearback::config::{Config, DatabaseConfig, DatabaseUrl};
use std::sync::atomic::{AtomicU64, Ordering};
use tokio_util::sync::CancellationToken;

fn inbound_webhook(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("bench.db").display());
    let config = Config {
        database: DatabaseConfig {
            url: DatabaseUrl::parse(&url).unwrap(),
            ..DatabaseConfig::default()
        },
        ..Config::default()
    };
    let shutdown = CancellationToken::new();
    let base = runtime.block_on(async {
        let storage = hearback::server::open_storage(&config, true).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let token = shutdown.clone();
        let config = config.clone();
        tokio::spawn(async move { hearback::server::run(&config, storage, listener, token).await });
        base
    });
    let client = reqwest::Client::new();
    let hook = format!("{base}/webhooks/console/inbound");
    let next = AtomicU64::new(0);
    c.bench_function("webhook_inbound_console_sqlite", |b| {
        b.to_async(&runtime).iter(|| async {
            let n = next.fetch_add(1, Ordering::Relaxed);
            let body = serde_json::json!({
                "id": format!("SM{n}"),
                "from": format!("+336{:08}", 10_000_000 + n % 80_000_000),
                "to": "+33600000000",
                "text": "7 mais livreur en retard",
            });
            let response = client.post(&hook).json(&body).send().await.unwrap();
            assert_eq!(response.status(), 200);
        })
    });
    shutdown.cancel();
}

criterion_group!(benches, inbound_webhook);
criterion_main!(benches);
