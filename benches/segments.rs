//! `sms::segments` on a typical 140-character French survey question, once with accents that
//! GSM-7 has (é, à) and once with accents that force UCS-2 (Ê, ê).
//! `cargo bench --bench segments -- --warm-up-time 1 --measurement-time 5`.

use criterion::{Criterion, criterion_group, criterion_main};
use hearback::sms::{Encoding, segments};
use std::hint::black_box;

const GSM7_QUESTION: &str = "Bonjour Marie, merci pour votre visite chez Garage Dupont. Sur une \
    échelle de 0 à 10, recommanderiez-vous notre atelier à un ami? STOP 36111";
const UCS2_QUESTION: &str = "Bonjour Marie, merci pour votre visite au Garage Dupont. Êtes-vous \
    prête à nous noter de 0 à 10 ? Votre avis nous est précieux ! STOP 36111.";

fn bench(c: &mut Criterion) {
    for (name, text, encoding) in [
        ("french_140_gsm7", GSM7_QUESTION, Encoding::Gsm7),
        ("french_140_ucs2", UCS2_QUESTION, Encoding::Ucs2),
    ] {
        // The figures only mean something for the text they claim to measure.
        assert_eq!(text.chars().count(), 140, "{name}");
        assert_eq!(segments(text).encoding, encoding, "{name}");
        c.bench_function(&format!("segments/{name}"), |b| {
            b.iter(|| segments(black_box(text)))
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
