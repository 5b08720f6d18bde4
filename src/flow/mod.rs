//! Survey flows: short conversations written as YAML files in `flows/`, validated when loaded.
//!
//! A [`Flow`] is the validated form: every reference resolved to an index, every text parsed into
//! a [`Template`] per language, every condition typed against the question it tests. Nothing in
//! it can point nowhere, so the engine never has to handle a malformed flow. The file format is
//! documented in `docs/flows.md`.

mod load;
mod schema;
mod template;

pub(crate) use load::weekday;
pub use load::{FlowError, FlowSet, is_transcript, load_paths, parse_flow};
pub(crate) use load::{line_of, yaml_error};
pub use template::Template;

use crate::lang::Lang;
use crate::understand::{Scale, YesNo};
use chrono::{NaiveTime, Weekday};
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq)]
pub struct Flow {
    pub id: String,
    pub name: String,
    pub languages: Vec<Lang>,
    /// Variables the invitation must provide.
    pub variables: Vec<String>,
    pub dispatch: Dispatch,
    pub start: QuestionIndex,
    pub questions: Vec<Question>,
    /// Tried in order when the conversation completes; the last one has no condition.
    pub closing: Vec<Closing>,
}

pub type QuestionIndex = usize;

#[derive(Debug, Clone, PartialEq)]
pub struct Question {
    pub id: String,
    pub kind: QuestionKind,
    pub text: Localized,
    /// Sent after a reply that was not understood.
    pub reprompt: Option<Localized>,
    /// Re-prompts allowed before giving up on the question.
    pub retries: u8,
    pub on_give_up: GiveUp,
    /// Tried in order after an answer; when none applies the conversation completes.
    pub next: Vec<Branch>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum QuestionKind {
    Score(Scale),
    YesNo,
    Choice(Vec<ChoiceOption>),
    Text,
}

impl QuestionKind {
    pub fn name(&self) -> &'static str {
        match self {
            QuestionKind::Score(scale) => scale.name(),
            QuestionKind::YesNo => "yesno",
            QuestionKind::Choice(_) => "choice",
            QuestionKind::Text => "text",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ChoiceOption {
    pub key: String,
    pub label: Localized,
}

/// What happens when a question's retries are used up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GiveUp {
    /// Follow the question's branches as if it had not been answered.
    Next,
    /// Complete the conversation now.
    End,
    Goto(QuestionIndex),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Question(QuestionIndex),
    End,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Branch {
    pub when: Option<Condition>,
    pub goto: Target,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Closing {
    pub when: Option<Condition>,
    pub text: Localized,
}

/// A test on the answer to one question, checked at load time against that question's kind.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub question: QuestionIndex,
    pub test: Test,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Test {
    AtMost(u8),
    AtLeast(u8),
    Equals(Expected),
    OneOf(Vec<Expected>),
    Answered(bool),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expected {
    Score(u8),
    YesNo(YesNo),
    Choice(String),
}

/// An answer as the engine records it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "type", content = "value", rename_all = "snake_case")]
pub enum AnswerValue {
    Score(u8),
    YesNo(YesNoValue),
    Choice(String),
    Text(String),
}

/// `YesNo` as stored in the conversation state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum YesNoValue {
    Yes,
    No,
}

impl From<YesNo> for YesNoValue {
    fn from(value: YesNo) -> Self {
        match value {
            YesNo::Yes => YesNoValue::Yes,
            YesNo::No => YesNoValue::No,
        }
    }
}

impl Condition {
    /// Whether the condition holds, given the answer recorded for its question (if any).
    pub fn holds(&self, answer: Option<&AnswerValue>) -> bool {
        match (&self.test, answer) {
            (Test::Answered(expected), answer) => answer.is_some() == *expected,
            (_, None) => false,
            (Test::AtMost(limit), Some(AnswerValue::Score(score))) => score <= limit,
            (Test::AtLeast(limit), Some(AnswerValue::Score(score))) => score >= limit,
            (Test::Equals(expected), Some(answer)) => matches_expected(expected, answer),
            (Test::OneOf(all), Some(answer)) => all.iter().any(|e| matches_expected(e, answer)),
            _ => false,
        }
    }
}

fn matches_expected(expected: &Expected, answer: &AnswerValue) -> bool {
    match (expected, answer) {
        (Expected::Score(a), AnswerValue::Score(b)) => a == b,
        (Expected::YesNo(a), AnswerValue::YesNo(b)) => YesNoValue::from(*a) == *b,
        (Expected::Choice(a), AnswerValue::Choice(b)) => a == b,
        _ => false,
    }
}

/// A text in each of the flow's languages (load-time validation guarantees all are present).
#[derive(Debug, Clone, PartialEq)]
pub struct Localized(BTreeMap<Lang, Template>);

impl Localized {
    pub fn get(&self, lang: Lang) -> &Template {
        self.0
            .get(&lang)
            .or_else(|| self.0.values().next())
            .expect("a localized text has at least one language")
    }

    pub fn iter(&self) -> impl Iterator<Item = (Lang, &Template)> {
        self.0.iter().map(|(lang, t)| (*lang, t))
    }
}

/// The dispatch settings of a flow, applied by the scheduler.
#[derive(Debug, Clone, PartialEq)]
pub struct Dispatch {
    /// Wait this long after the event before sending.
    pub delay: Duration,
    /// Narrows the sending window (never widens it).
    pub window: Option<WindowNarrowing>,
    /// At most one survey of this flow per contact in this many days.
    pub frequency_cap_days: Option<u32>,
    pub quota: Option<Quota>,
    pub reminder: Option<Reminder>,
    /// An unanswered conversation closes after this long.
    pub expire_after: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct WindowNarrowing {
    pub days: Option<Vec<Weekday>>,
    pub from: Option<NaiveTime>,
    pub to: Option<NaiveTime>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    pub responses: u32,
    pub per: QuotaPeriod,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaPeriod {
    Day,
    Week,
    Month,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Reminder {
    pub after: Duration,
    pub text: Localized,
}

impl Flow {
    pub fn question(&self, index: QuestionIndex) -> &Question {
        &self.questions[index]
    }

    pub fn question_index(&self, id: &str) -> Option<QuestionIndex> {
        self.questions.iter().position(|q| q.id == id)
    }

    /// Every text of the flow, for linting: (where, language, template).
    pub fn texts(&self) -> Vec<(String, Lang, &Template)> {
        let mut all = Vec::new();
        for question in &self.questions {
            for (lang, t) in question.text.iter() {
                all.push((format!("{}.text", question.id), lang, t));
            }
            if let Some(reprompt) = &question.reprompt {
                for (lang, t) in reprompt.iter() {
                    all.push((format!("{}.reprompt", question.id), lang, t));
                }
            }
        }
        if let Some(reminder) = &self.dispatch.reminder {
            for (lang, t) in reminder.text.iter() {
                all.push(("dispatch.reminder".to_string(), lang, t));
            }
        }
        for (i, closing) in self.closing.iter().enumerate() {
            for (lang, t) in closing.text.iter() {
                all.push((format!("closing[{i}]"), lang, t));
            }
        }
        all
    }
}

#[cfg(test)]
mod tests;
