//! The YAML file as written, before validation. Positions are kept (`Spanned`) wherever a later
//! check may need to point at a line.

use marked_yaml::Spanned;
use serde::Deserialize;
use std::collections::HashMap;

pub type Text = HashMap<Spanned<String>, Spanned<String>>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowFile {
    pub id: Spanned<String>,
    pub name: String,
    pub languages: Spanned<Vec<String>>,
    #[serde(default)]
    pub variables: Vec<Spanned<String>>,
    #[serde(default)]
    pub dispatch: DispatchFile,
    pub start: Spanned<String>,
    pub questions: Vec<QuestionFile>,
    pub closing: Vec<ClosingFile>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DispatchFile {
    pub delay: Option<Spanned<String>>,
    pub window: Option<WindowFile>,
    pub frequency_cap_days: Option<u32>,
    pub quota: Option<QuotaFile>,
    pub reminder: Option<ReminderFile>,
    pub expire_after: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowFile {
    pub days: Option<Spanned<Vec<String>>>,
    pub from: Option<Spanned<String>>,
    pub to: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaFile {
    pub responses: u32,
    pub per: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReminderFile {
    pub after: Spanned<String>,
    pub text: Spanned<Text>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuestionFile {
    pub id: Spanned<String>,
    pub kind: Spanned<String>,
    pub text: Spanned<Text>,
    pub reprompt: Option<Spanned<Text>>,
    pub retries: Option<u8>,
    pub on_give_up: Option<Spanned<String>>,
    #[serde(default)]
    pub options: Vec<OptionFile>,
    #[serde(default)]
    pub next: Vec<BranchFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptionFile {
    pub key: Spanned<String>,
    pub label: Spanned<Text>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BranchFile {
    pub when: Option<ConditionFile>,
    pub goto: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClosingFile {
    pub when: Option<ConditionFile>,
    pub text: Spanned<Text>,
}

/// `{ question: score, at_most: 6 }`: exactly one test besides `question`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConditionFile {
    pub question: Spanned<String>,
    pub at_most: Option<Spanned<i64>>,
    pub at_least: Option<Spanned<i64>>,
    pub equals: Option<Spanned<String>>,
    pub one_of: Option<Spanned<Vec<String>>>,
    pub answered: Option<Spanned<bool>>,
}
