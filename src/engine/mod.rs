//! The conversation engine: a pure function of (flow, conversation state, incoming event, now)
//! that returns the new state, the messages to send and the events produced. It does no I/O; the
//! caller stores the state, sends the messages and records the events in one transaction.
//!
//! Rules it applies:
//! - **A reply that is not understood** gets the question's re-prompt, up to `retries` times;
//!   one more unclear reply gives up on the question (`on_give_up`: follow the branches as if
//!   unanswered, end, or go to a question). So a question costs at most `1 + retries` messages.
//! - **A score and a comment in one SMS** ("7 mais livreur en retard"): the score answers the
//!   question; when the flow's next question is an open (`text`) question, the comment answers it
//!   and the flow moves past it (the customer already said why); otherwise the comment is kept as
//!   a note on the answer. Nothing the customer wrote is dropped.
//! - **A reply after the conversation ended** (completed or expired) is a `LateReply` event: kept,
//!   never lost, and it never restarts the survey.
//! - **One reminder**, only to a customer who has not replied at all.
//! - **Keywords** (STOP, HELP, …) are handled before the engine by the inbound path, in any state.
//! - **Two open conversations for one number**: the database allows one open conversation per
//!   (contact, channel, sender number), so a reply always reaches exactly one conversation: the one
//!   of the sender number the customer answered. A new invitation for a contact who already has an
//!   open conversation on that sender waits until it completes or expires.

pub mod transcript;

use crate::flow::{AnswerValue, Flow, GiveUp, Question, QuestionIndex, QuestionKind, Target};
use crate::lang::Lang;
use crate::time::Timestamp;
use crate::understand::{self, Reading};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What happened to the conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input<'a> {
    Start,
    Reply(&'a str),
    ReminderDue,
    ExpiryDue,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    NotStarted,
    Open,
    Completed,
    Expired,
}

/// Everything the engine needs to continue a conversation; stored as JSON with the conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub lang: Lang,
    pub variables: BTreeMap<String, String>,
    pub status: Status,
    /// The question awaiting an answer (by id, so a state outlives a flow edit that reorders).
    pub current: Option<String>,
    /// Replies to the current question that were not understood.
    pub unclear_replies: u8,
    /// Whether the customer has written at all; only silence earns a reminder.
    pub replied: bool,
    pub reminded: bool,
    pub answers: Vec<RecordedAnswer>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedAnswer {
    pub question: String,
    pub value: AnswerValue,
    /// What else the reply said, when no open question took it.
    pub comment: Option<String>,
    pub at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    Started {
        question: String,
    },
    AnswerRecorded {
        question: String,
        value: AnswerValue,
        comment: Option<String>,
    },
    NotUnderstood {
        question: String,
        reason: String,
        attempt: u8,
    },
    GaveUp {
        question: String,
    },
    ReminderSent {
        question: String,
    },
    Completed {
        answered: usize,
    },
    Expired {
        answered: usize,
    },
    LateReply {
        text: String,
    },
}

/// The outcome of one step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub state: State,
    pub messages: Vec<String>,
    pub events: Vec<Event>,
}

impl State {
    pub fn new(lang: Lang, variables: BTreeMap<String, String>) -> State {
        State {
            lang,
            variables,
            status: Status::NotStarted,
            current: None,
            unclear_replies: 0,
            replied: false,
            reminded: false,
            answers: Vec::new(),
        }
    }

    pub fn answer(&self, question: &str) -> Option<&RecordedAnswer> {
        self.answers.iter().find(|a| a.question == question)
    }
}

/// Applies one input to a conversation.
/// An open conversation's expiry: closed, its answers kept, nothing sent. It needs no flow, so
/// that a conversation whose flow was removed still expires. `None` when it is not open.
pub fn expire(state: &State) -> Option<Step> {
    if state.status != Status::Open {
        return None;
    }
    let mut state = state.clone();
    state.status = Status::Expired;
    state.current = None;
    let answered = state.answers.len();
    Some(Step {
        state,
        messages: Vec::new(),
        events: vec![Event::Expired { answered }],
    })
}

pub fn step(flow: &Flow, state: &State, input: Input<'_>, now: Timestamp) -> Step {
    let mut run = Run {
        flow,
        state: state.clone(),
        messages: Vec::new(),
        events: Vec::new(),
        now,
    };
    match (state.status, input) {
        (Status::NotStarted, Input::Start) => {
            run.state.status = Status::Open;
            run.events.push(Event::Started {
                question: flow.question(flow.start).id.clone(),
            });
            run.ask(flow.start);
        }
        (Status::Open, Input::Reply(text)) => {
            run.state.replied = true;
            match run.current() {
                Some(index) => run.reply(index, text),
                None => run.complete(),
            }
        }
        (Status::Open, Input::ReminderDue) => run.remind(),
        (Status::Open, Input::ExpiryDue) => {
            let expired = expire(&run.state).expect("the conversation is open");
            run.state = expired.state;
            run.events.extend(expired.events);
        }
        (Status::NotStarted | Status::Completed | Status::Expired, Input::Reply(text)) => {
            run.events.push(Event::LateReply {
                text: text.to_string(),
            });
        }
        // Starting twice, reminding or expiring a closed conversation: nothing to do.
        _ => {}
    }
    Step {
        state: run.state,
        messages: run.messages,
        events: run.events,
    }
}

struct Run<'f> {
    flow: &'f Flow,
    state: State,
    messages: Vec<String>,
    events: Vec<Event>,
    now: Timestamp,
}

impl Run<'_> {
    fn current(&self) -> Option<QuestionIndex> {
        self.state
            .current
            .as_deref()
            .and_then(|id| self.flow.question_index(id))
    }

    fn say(&mut self, text: String) {
        self.messages.push(text);
    }

    fn ask(&mut self, index: QuestionIndex) {
        let question = self.flow.question(index);
        self.state.current = Some(question.id.clone());
        self.state.unclear_replies = 0;
        let text = question
            .text
            .get(self.state.lang)
            .render(&self.state.variables);
        self.say(text);
    }

    fn reply(&mut self, index: QuestionIndex, text: &str) {
        let question = self.flow.question(index);
        match understand_reply(question, text, self.state.lang) {
            Ok(reading) => self.answered(index, reading),
            Err(reason) => {
                self.state.unclear_replies = self.state.unclear_replies.saturating_add(1);
                let attempt = self.state.unclear_replies;
                self.events.push(Event::NotUnderstood {
                    question: question.id.clone(),
                    reason,
                    attempt,
                });
                if attempt <= question.retries {
                    let prompt = question.reprompt.as_ref().unwrap_or(&question.text);
                    let text = prompt.get(self.state.lang).render(&self.state.variables);
                    self.say(text);
                } else {
                    self.events.push(Event::GaveUp {
                        question: question.id.clone(),
                    });
                    match question.on_give_up {
                        GiveUp::Next => self.advance(index, None),
                        GiveUp::End => self.complete(),
                        GiveUp::Goto(next) => self.go(Target::Question(next), None),
                    }
                }
            }
        }
    }

    fn answered(&mut self, index: QuestionIndex, reading: Reading<AnswerValue>) {
        let question = &self.flow.question(index).id;
        self.state.answers.push(RecordedAnswer {
            question: question.clone(),
            value: reading.value.clone(),
            comment: None,
            at: self.now,
        });
        let target = self.next_target(index);
        let comment_answers_next = matches!(target, Target::Question(n) if self.flow.question(n).kind == QuestionKind::Text);
        let comment = reading.comment;
        let (note, carried) = if comment_answers_next {
            (None, comment)
        } else {
            (comment, None)
        };
        if let Some(recorded) = self.state.answers.last_mut() {
            recorded.comment = note.clone();
        }
        self.events.push(Event::AnswerRecorded {
            question: question.clone(),
            value: reading.value,
            comment: note,
        });
        self.go(target, carried);
    }

    fn next_target(&self, index: QuestionIndex) -> Target {
        let question = self.flow.question(index);
        question
            .next
            .iter()
            .find(|branch| {
                branch.when.as_ref().is_none_or(|condition| {
                    let tested = &self.flow.question(condition.question).id;
                    condition.holds(self.state.answer(tested).map(|a| &a.value))
                })
            })
            .map_or(Target::End, |branch| branch.goto)
    }

    fn advance(&mut self, from: QuestionIndex, comment: Option<String>) {
        let target = self.next_target(from);
        self.go(target, comment);
    }

    /// Moves to `target`. A comment carried from the previous reply answers an open question.
    fn go(&mut self, target: Target, comment: Option<String>) {
        match (target, comment) {
            (Target::End, _) => self.complete(),
            (Target::Question(next), Some(comment))
                if self.flow.question(next).kind == QuestionKind::Text =>
            {
                let reading = Reading {
                    value: AnswerValue::Text(comment),
                    comment: None,
                };
                self.answered(next, reading);
            }
            (Target::Question(next), _) => self.ask(next),
        }
    }

    fn complete(&mut self) {
        self.state.status = Status::Completed;
        self.state.current = None;
        let closing = self.flow.closing.iter().find(|c| {
            c.when.as_ref().is_none_or(|condition| {
                let tested = &self.flow.question(condition.question).id;
                condition.holds(self.state.answer(tested).map(|a| &a.value))
            })
        });
        if let Some(closing) = closing {
            let text = closing
                .text
                .get(self.state.lang)
                .render(&self.state.variables);
            self.say(text);
        }
        self.events.push(Event::Completed {
            answered: self.state.answers.len(),
        });
    }

    fn remind(&mut self) {
        let (Some(reminder), Some(index)) = (&self.flow.dispatch.reminder, self.current()) else {
            return;
        };
        if self.state.reminded || self.state.replied {
            return;
        }
        self.state.reminded = true;
        let text = reminder
            .text
            .get(self.state.lang)
            .render(&self.state.variables);
        self.say(text);
        self.events.push(Event::ReminderSent {
            question: self.flow.question(index).id.clone(),
        });
    }
}

/// Reads a reply as an answer to `question`; the error is the reason it was not understood.
fn understand_reply(
    question: &Question,
    text: &str,
    lang: Lang,
) -> Result<Reading<AnswerValue>, String> {
    let unclear = |e: understand::Unclear| e.code().to_string();
    match &question.kind {
        QuestionKind::Score(scale) => understand::score(text, *scale, lang)
            .map(|r| Reading {
                value: AnswerValue::Score(r.value),
                comment: r.comment,
            })
            .map_err(unclear),
        QuestionKind::YesNo => understand::yes_no(text, lang)
            .map(|r| Reading {
                value: AnswerValue::YesNo(r.value.into()),
                comment: r.comment,
            })
            .map_err(unclear),
        QuestionKind::Choice(options) => {
            let labels: Vec<Vec<String>> = options
                .iter()
                .map(|o| vec![o.label.get(lang).source(), o.key.replace('_', " ")])
                .collect();
            understand::choice(text, &labels, lang)
                .map(|r| Reading {
                    value: AnswerValue::Choice(options[r.value].key.clone()),
                    comment: r.comment,
                })
                .map_err(unclear)
        }
        QuestionKind::Text => {
            let text = text.trim();
            if text.is_empty() {
                Err("empty".into())
            } else {
                Ok(Reading {
                    value: AnswerValue::Text(text.to_string()),
                    comment: None,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests;
