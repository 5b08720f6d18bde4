//! The languages hearback speaks with customers.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A language flows are written in and replies are understood in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    Fr,
    En,
}

impl Lang {
    pub const ALL: [Lang; 2] = [Lang::Fr, Lang::En];

    pub fn code(self) -> &'static str {
        match self {
            Lang::Fr => "fr",
            Lang::En => "en",
        }
    }
}

impl fmt::Display for Lang {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unsupported language '{0}': expected fr or en")]
pub struct UnsupportedLang(pub String);

impl FromStr for Lang {
    type Err = UnsupportedLang;
    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        // "fr-FR", "fr_CA" and "FR" all mean French.
        let primary = raw
            .split(['-', '_'])
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        Lang::ALL
            .into_iter()
            .find(|l| l.code() == primary)
            .ok_or_else(|| UnsupportedLang(raw.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locales_map_to_their_language() {
        for (raw, lang) in [
            ("fr", Lang::Fr),
            ("FR", Lang::Fr),
            ("fr-FR", Lang::Fr),
            ("fr_CA", Lang::Fr),
            ("en-GB", Lang::En),
        ] {
            assert_eq!(raw.parse::<Lang>(), Ok(lang), "{raw}");
        }
        for raw in ["", "de", "french", "f"] {
            assert!(raw.parse::<Lang>().is_err(), "{raw}");
        }
    }
}
