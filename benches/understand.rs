//! Reply understanding, the hot path of every inbound SMS: three typical replies on their own,
//! then a mix of the kinds a conversation meets. `cargo bench --bench understand`.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use hearback::lang::Lang;
use hearback::understand::{Scale, choice, keyword, score, yes_no};
use std::hint::black_box;

#[derive(Clone, Copy)]
enum Ask {
    Score(Scale),
    YesNo,
    Keyword,
    Choice,
}

/// Replies as they arrive, in rough proportion: mostly short scores, some with a comment.
const MIX: &[(Ask, &str)] = &[
    (Ask::Score(Scale::Nps), "9"),
    (Ask::Score(Scale::Nps), "10"),
    (Ask::Score(Scale::Nps), "neuf sur dix"),
    (Ask::Score(Scale::Nps), "7 mais livreur en retard"),
    (Ask::Score(Scale::Nps), "10/10 top"),
    (Ask::Score(Scale::Nps), "Je mets 8 car livraison rapide"),
    (Ask::Score(Scale::Nps), "I'd say 8"),
    (Ask::Score(Scale::Nps), "9\u{FE0F}\u{20E3}"),
    (Ask::Score(Scale::Nps), "7 ou 8"),
    (Ask::Score(Scale::Nps), "livré avec 3 jours de retard"),
    (Ask::Score(Scale::Csat), "très satisfait"),
    (Ask::Score(Scale::Csat), "⭐⭐⭐⭐"),
    (Ask::Score(Scale::Csat), "4"),
    (Ask::Score(Scale::Ces), "2, c'était facile"),
    (Ask::YesNo, "oui"),
    (Ask::YesNo, "non merci"),
    (Ask::YesNo, "oui mais c'était long"),
    (Ask::YesNo, "👍"),
    (Ask::Keyword, "STOP"),
    (Ask::Keyword, "9"),
    (Ask::Keyword, "7 mais livreur en retard"),
    (Ask::Choice, "2"),
    (Ask::Choice, "livraison"),
];

fn options() -> Vec<Vec<String>> {
    [
        &["Livraison", "livreur"][..],
        &["Prix", "tarif"],
        &["Service client", "SAV"],
        &["Autre"],
    ]
    .iter()
    .map(|labels| labels.iter().map(|l| (*l).to_string()).collect())
    .collect()
}

fn understand(c: &mut Criterion) {
    let mut group = c.benchmark_group("understand");
    for text in ["9", "neuf sur dix", "7 mais livreur en retard"] {
        group.throughput(Throughput::Elements(1));
        group.bench_function(format!("nps {text:?}"), |b| {
            b.iter(|| score(black_box(text), Scale::Nps, Lang::Fr))
        });
    }
    let options = options();
    group.throughput(Throughput::Elements(MIX.len() as u64));
    group.bench_function("mix of typical replies", |b| {
        b.iter(|| {
            for &(ask, text) in MIX {
                let text = black_box(text);
                match ask {
                    Ask::Score(scale) => drop(black_box(score(text, scale, Lang::Fr))),
                    Ask::YesNo => drop(black_box(yes_no(text, Lang::Fr))),
                    Ask::Keyword => drop(black_box(keyword(text))),
                    Ask::Choice => drop(black_box(choice(text, &options, Lang::Fr))),
                }
            }
        })
    });
    group.finish();
}

criterion_group!(benches, understand);
criterion_main!(benches);
