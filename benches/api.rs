//! One authenticated API request through the whole HTTP stack (key check, metrics, tracing,
//! handler, SQLite read), over loopback with a kept-alive connection. `cargo bench --bench api`.

use criterion::{Criterion, criterion_group, criterion_main};
use hearback::auth::api_key::ApiKeyToken;
use hearback::config::{Config, DatabaseConfig, DatabaseUrl};
use hearback::storage::{Actor, NewApiKey, NewUnit};
use hearback::time::Timestamp;
use hearback::units::UnitCode;
use tokio_util::sync::CancellationToken;

fn authenticated_get(c: &mut Criterion) {
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
    let (base, key) = runtime.block_on(async {
        let storage = hearback::server::open_storage(&config, true).await.unwrap();
        let token = ApiKeyToken::generate();
        let new = NewApiKey {
            id: token.id().into(),
            name: "bench".into(),
            secret_hash: token.secret_hash(),
            user_id: None,
        };
        storage
            .create_api_key(&new, &Actor::Cli, Timestamp::now())
            .await
            .unwrap();
        let unit = NewUnit {
            code: UnitCode::parse("LYON-2").unwrap(),
            name: "Lyon 2".into(),
            parent: None,
        };
        storage
            .create_unit(&unit, &Actor::Cli, Timestamp::now())
            .await
            .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let token_for_server = shutdown.clone();
        let config = config.clone();
        tokio::spawn(async move {
            hearback::server::run(&config, storage, listener, token_for_server).await
        });
        (base, token.reveal())
    });
    let client = reqwest::Client::new();
    let unit_url = format!("{base}/api/v1/units/LYON-2");
    c.bench_function("api_get_unit_authenticated", |b| {
        b.to_async(&runtime).iter(|| async {
            let response = client
                .get(&unit_url)
                .bearer_auth(&key)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            response.bytes().await.unwrap();
        })
    });
    shutdown.cancel();
}

criterion_group!(benches, authenticated_get);
criterion_main!(benches);
