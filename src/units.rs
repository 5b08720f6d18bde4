//! The organisation tree: company → region → store, any depth. Users, API keys and reports are
//! scoped to a unit and its sub-units.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A unit's code, chosen by the company ("LYON-2", "north.region"): 1 to 64 of letters, digits,
/// `-`, `_` and `.`. It appears in URLs and CSV files, hence the narrow alphabet.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(try_from = "String", into = "String")]
#[schema(value_type = String, example = "LYON-2")]
pub struct UnitCode(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid unit code '{0}': use 1 to 64 of letters, digits, '-', '_' and '.'")]
pub struct InvalidUnitCode(pub String);

impl UnitCode {
    pub fn parse(raw: &str) -> Result<Self, InvalidUnitCode> {
        let valid = !raw.is_empty()
            && raw.len() <= 64
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if valid {
            Ok(Self(raw.to_string()))
        } else {
            Err(InvalidUnitCode(raw.chars().take(80).collect()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for UnitCode {
    type Error = InvalidUnitCode;
    fn try_from(raw: String) -> Result<Self, Self::Error> {
        UnitCode::parse(&raw)
    }
}

impl From<UnitCode> for String {
    fn from(code: UnitCode) -> String {
        code.0
    }
}

impl fmt::Display for UnitCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for UnitCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UnitCode({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn unit_codes_accept_the_documented_alphabet_only() {
        for good in ["LYON-2", "north.region", "a", "store_0042", &"x".repeat(64)] {
            assert!(UnitCode::parse(good).is_ok(), "{good}");
        }
        for bad in ["", "Lyon 2", "Lyon/2", "é", &"x".repeat(65), "a\n"] {
            assert!(UnitCode::parse(bad).is_err(), "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn a_parsed_code_prints_back_unchanged(raw in "[A-Za-z0-9._-]{1,64}") {
            let code = UnitCode::parse(&raw).unwrap();
            prop_assert_eq!(code.as_str(), raw.as_str());
        }
    }
}
