//! Checks of query parameters shared by the listings; each notes its problem under the
//! parameter's name, so that one 422 names every wrong parameter at once.

use serde_json::{Map, Value};

/// `value`, when given, must be one of `allowed`.
pub fn one_of(
    problems: &mut Map<String, Value>,
    field: &str,
    value: Option<&str>,
    allowed: &[&str],
) {
    if value.is_some_and(|v| !allowed.contains(&v)) {
        problems.insert(
            field.into(),
            Value::from(format!("must be one of {}", allowed.join(", "))),
        );
    }
}

/// A page size, when given, is 1 to `max`.
pub fn page_limit(problems: &mut Map<String, Value>, limit: Option<u32>, max: u32) {
    if limit.is_some_and(|l| !(1..=max).contains(&l)) {
        problems.insert("limit".into(), Value::from(format!("must be 1 to {max}")));
    }
}
