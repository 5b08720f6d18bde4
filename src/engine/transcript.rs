//! Transcript tests: `flows/<id>.test.yaml` holds conversations (what hearback sends, what the
//! customer replies) with the answers and status they must end with. `hearback flows test`
//! replays them through the engine, so a flow edit that changes a conversation is caught.
//!
//! ```yaml
//! flow: delivery
//! cases:
//!   - name: a promoter explains and consents
//!     lang: fr
//!     variables: { first_name: Léa, store: Dupain, order_date: "12/11" }
//!     conversation:
//!       - send: "Bonjour Léa, …"          # the next message hearback sends, exactly
//!       - reply: "10/10 top"              # the customer's SMS
//!       - event: reminder                 # or: expiry
//!     answers: { score: "10", why_promoter: "top" }
//!     notes: { score: "…" }               # comments kept on an answer (optional)
//!     status: completed                   # open, completed or expired
//! ```

use super::{Input, State, Status, step};
use crate::flow::{AnswerValue, Flow, YesNoValue};
use crate::lang::Lang;
use crate::time::Timestamp;
use serde::Deserialize;
use std::collections::{BTreeMap, VecDeque};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Transcript {
    pub flow: String,
    pub cases: Vec<Case>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    pub name: String,
    pub lang: Lang,
    #[serde(default)]
    pub variables: BTreeMap<String, String>,
    pub conversation: Vec<Line>,
    #[serde(default)]
    pub answers: BTreeMap<String, String>,
    #[serde(default)]
    pub notes: BTreeMap<String, String>,
    pub status: Option<String>,
}

/// One line of a conversation: exactly one of the three.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Line {
    pub send: Option<String>,
    pub reply: Option<String>,
    pub event: Option<String>,
}

pub fn parse(source: &str) -> Result<Transcript, String> {
    marked_yaml::from_yaml(0, source).map_err(|e| e.to_string())
}

/// Plays one case; returns what differed (empty when the case passes).
pub fn run_case(flow: &Flow, case: &Case, now: Timestamp) -> Vec<String> {
    let mut failures = Vec::new();
    let mut state = State::new(case.lang, case.variables.clone());
    let first = step(flow, &state, Input::Start, now);
    state = first.state;
    let mut sent: VecDeque<String> = first.messages.into();
    for (number, line) in case.conversation.iter().enumerate() {
        let at = number + 1;
        match (&line.send, &line.reply, &line.event) {
            (Some(expected), None, None) => match sent.pop_front() {
                Some(actual) if &actual == expected => {}
                Some(actual) => failures.push(format!(
                    "line {at}: expected hearback to send {expected:?}, it sent {actual:?}"
                )),
                None => failures.push(format!(
                    "line {at}: expected hearback to send {expected:?}, it sent nothing"
                )),
            },
            (None, Some(reply), None) => {
                unexpected(&mut sent, at, &mut failures);
                let next = step(flow, &state, Input::Reply(reply), now);
                state = next.state;
                sent.extend(next.messages);
            }
            (None, None, Some(event)) => {
                unexpected(&mut sent, at, &mut failures);
                let input = match event.as_str() {
                    "reminder" => Input::ReminderDue,
                    "expiry" => Input::ExpiryDue,
                    other => {
                        failures.push(format!(
                            "line {at}: unknown event '{other}' (reminder or expiry)"
                        ));
                        continue;
                    }
                };
                let next = step(flow, &state, input, now);
                state = next.state;
                sent.extend(next.messages);
            }
            _ => failures.push(format!(
                "line {at}: a line is exactly one of send, reply or event"
            )),
        }
    }
    unexpected(&mut sent, case.conversation.len() + 1, &mut failures);

    let actual: BTreeMap<String, String> = state
        .answers
        .iter()
        .map(|a| (a.question.clone(), shown(&a.value)))
        .collect();
    if actual != case.answers {
        failures.push(format!(
            "answers: expected {:?}, got {actual:?}",
            case.answers
        ));
    }
    let notes: BTreeMap<String, String> = state
        .answers
        .iter()
        .filter_map(|a| a.comment.clone().map(|c| (a.question.clone(), c)))
        .collect();
    if notes != case.notes {
        failures.push(format!("notes: expected {:?}, got {notes:?}", case.notes));
    }
    if let Some(expected) = &case.status {
        let actual = match state.status {
            Status::NotStarted => "not_started",
            Status::Open => "open",
            Status::Completed => "completed",
            Status::Expired => "expired",
        };
        if actual != expected {
            failures.push(format!("status: expected {expected}, got {actual}"));
        }
    }
    failures
}

fn unexpected(sent: &mut VecDeque<String>, at: usize, failures: &mut Vec<String>) {
    for message in sent.drain(..) {
        failures.push(format!(
            "line {at}: hearback also sent {message:?}, which the transcript does not expect"
        ));
    }
}

/// An answer as transcripts write it.
fn shown(value: &AnswerValue) -> String {
    match value {
        AnswerValue::Score(n) => n.to_string(),
        AnswerValue::YesNo(YesNoValue::Yes) => "yes".into(),
        AnswerValue::YesNo(YesNoValue::No) => "no".into(),
        AnswerValue::Choice(key) => key.clone(),
        AnswerValue::Text(text) => text.clone(),
    }
}
