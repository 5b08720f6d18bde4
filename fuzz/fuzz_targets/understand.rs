//! Understanding any reply never panics and never returns a value outside the question's range.
#![no_main]

use hearback::lang::Lang;
use hearback::understand::{self, Scale};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    for lang in Lang::ALL {
        for scale in [Scale::Nps, Scale::Csat, Scale::Ces] {
            if let Ok(reading) = understand::score(text, scale, lang) {
                assert!(scale.range().contains(&reading.value), "{text:?} gave {}", reading.value);
            }
        }
        let _ = understand::yes_no(text, lang);
        let options = vec![vec!["Livraison".to_string()], vec!["Produit".to_string()], vec!["Prix".to_string()]];
        if let Ok(reading) = understand::choice(text, &options, lang) {
            assert!(reading.value < options.len());
        }
    }
    let _ = understand::keyword(text);
});
