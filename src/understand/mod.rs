//! TEMPORARY interface stub while the real module is written on the `understand` branch.
use crate::lang::Lang;
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scale {
    Nps,
    Csat,
    Ces,
}
impl Scale {
    pub fn range(self) -> std::ops::RangeInclusive<u8> {
        match self {
            Scale::Nps => 0..=10,
            Scale::Csat => 1..=5,
            Scale::Ces => 1..=7,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Scale::Nps => "nps",
            Scale::Csat => "csat",
            Scale::Ces => "ces",
        }
    }
}
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum YesNo {
    Yes,
    No,
}
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Keyword {
    OptOut,
    OptIn,
    Help,
}
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unclear {
    Empty,
}
impl Unclear {
    pub fn code(&self) -> &'static str {
        "empty"
    }
}
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reading<T> {
    pub value: T,
    pub comment: Option<String>,
}
pub fn score(text: &str, _scale: Scale, _lang: Lang) -> Result<Reading<u8>, Unclear> {
    text.trim()
        .parse()
        .map(|value| Reading {
            value,
            comment: None,
        })
        .map_err(|_| Unclear::Empty)
}
pub fn yes_no(_text: &str, _lang: Lang) -> Result<Reading<YesNo>, Unclear> {
    Err(Unclear::Empty)
}
pub fn choice(
    _text: &str,
    _options: &[Vec<String>],
    _lang: Lang,
) -> Result<Reading<usize>, Unclear> {
    Err(Unclear::Empty)
}
pub fn keyword(_text: &str) -> Option<Keyword> {
    None
}
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    Nps,
    Csat,
    Ces,
    Yesno,
    Keyword,
}
impl Keyword {
    pub fn as_str(self) -> &'static str {
        match self {
            Keyword::OptOut => "opt_out",
            Keyword::OptIn => "opt_in",
            Keyword::Help => "help",
        }
    }
}
pub fn describe(_kind: Kind, _lang: Lang, _text: &str) -> String {
    r#"{"kind":"unknown","unclear":"empty"}"#.to_string()
}
