//! Loading any file as a flow never panics: it is a flow or a list of located errors.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|source: &str| {
    if let Err(errors) = hearback::flow::parse_flow(Path::new("flows/fuzz.yaml"), source) {
        assert!(!errors.is_empty(), "a refused flow always says why");
    }
});
