//! `Phone::parse_recipient`, which every invitation and every import row goes through, on a
//! French mobile (one region for its code), a North American number (the region found among
//! those of +1 from its digits) and an Italian landline (refused: a leading zero, a fixed line).
//! `cargo bench --bench phone -- --warm-up-time 1 --measurement-time 5`.

use criterion::{Criterion, criterion_group, criterion_main};
use hearback::phone::{InvalidPhone, Phone};
use std::hint::black_box;

fn bench(c: &mut Criterion) {
    for (name, raw, refused) in [
        ("french_mobile", "+33 6 12 34 56 78", false),
        ("north_american", "+1 415 555 2671", false),
        ("italian_landline", "+39 06 6982 0000", true),
    ] {
        // The figures only mean something for the outcome they claim to measure.
        let outcome = Phone::parse_recipient(raw, None);
        assert_eq!(outcome == Err(InvalidPhone::NotMobile), refused, "{name}");
        assert!(refused || outcome.is_ok(), "{name}");
        c.bench_function(&format!("phone/parse_recipient/{name}"), |b| {
            b.iter(|| Phone::parse_recipient(black_box(raw), None))
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
