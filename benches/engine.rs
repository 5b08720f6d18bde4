//! One engine step: a reply to the first question of the shipped delivery flow, understood and
//! applied. `cargo bench --bench engine`.

use criterion::{Criterion, criterion_group, criterion_main};
use hearback::engine::{Input, State, step};
use hearback::flow::load_paths;
use hearback::lang::Lang;
use hearback::time::Timestamp;
use std::collections::BTreeMap;
use std::hint::black_box;
use std::path::Path;

fn engine_step(c: &mut Criterion) {
    let mut set = load_paths(&[Path::new(env!("CARGO_MANIFEST_DIR")).join("flows")]);
    let flow = set
        .flows
        .remove("delivery")
        .expect("the shipped delivery flow");
    let variables: BTreeMap<String, String> = [
        ("first_name", "Léa"),
        ("store", "Dupain"),
        ("order_date", "12/11"),
    ]
    .into_iter()
    .map(|(k, v)| (k.into(), v.into()))
    .collect();
    let now = Timestamp::now();
    let open = step(&flow, &State::new(Lang::Fr, variables), Input::Start, now).state;

    let mut group = c.benchmark_group("engine_step");
    for (name, reply) in [
        ("score", "9"),
        ("score_and_comment", "7 mais livreur en retard"),
        ("unclear", "7 ou 8"),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| step(&flow, black_box(&open), Input::Reply(black_box(reply)), now))
        });
    }
    group.finish();
}

fn flow_loading(c: &mut Criterion) {
    let source =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("flows/delivery.yaml"))
            .unwrap();
    c.bench_function("flow_parse_and_validate_delivery", |b| {
        b.iter(|| {
            hearback::flow::parse_flow(Path::new("flows/delivery.yaml"), black_box(&source))
                .unwrap()
        })
    });
}

criterion_group!(benches, engine_step, flow_loading);
criterion_main!(benches);
