//! From the engine to storage: what an invitation opens with and what a customer message causes,
//! as plain data the storage layer commits in one transaction. Pure: no I/O, no clock.
//!
//! Rules for a customer message, in order:
//! 1. **STOP** (any opt-out wording): the number is opted out; one confirmation is sent, the open
//!    conversation closes as expired (its answers are kept) and nothing else is ever sent to the
//!    number, whatever asks. A second STOP changes nothing and earns no second confirmation.
//! 2. **START** from an opted-out number: opted in again, with a confirmation.
//! 3. **HELP**: a short help text, unless the number is opted out. The survey does not move.
//! 4. From an opted-out number, anything else is kept and answered by nothing.
//! 5. Otherwise the open conversation on the number the customer wrote to takes the reply.
//! 6. Without one, a customer who has a case that is not closed writes to its thread: the
//!    agent's. After the case's resolution, a yes or a no answers its recovery question.
//!    Without a case the message is kept and nothing is sent.
//!
//! Each step's answers go through the alert rules (an opt-out is a step too, for the rules on
//! opting out after a low score); what fires becomes alerts that open or join the customer's case
//! in the same transaction.

use crate::alerts::{AlertRules, Observation, ObservedAnswer};
use crate::engine::{self, Event, Input, State, Status};
use crate::flow::{AnswerValue, Flow, YesNoValue};
use crate::lang::Lang;
use crate::storage::{
    Advance, CaseInput, ConsentChange, ConversationStatus, ConversationView, InboundContext,
    InboundPlan, NewAlert, NewAnswer, NewEvent, Purpose,
};
use crate::time::Timestamp;
use crate::understand::Keyword;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// The conversation's language: the invitation's locale when the flow speaks it, else the
/// flow's first language.
pub fn language(flow: &Flow, locale: Option<&str>) -> Lang {
    locale
        .and_then(|l| l.parse::<Lang>().ok())
        .filter(|lang| flow.languages.contains(lang))
        .unwrap_or(flow.languages[0])
}

/// The first step of a new conversation: its state and its first question.
pub fn opening(
    flow: &Flow,
    lang: Lang,
    variables: BTreeMap<String, String>,
    ids: &ConversationIds<'_>,
    now: Timestamp,
) -> Advance {
    let step = engine::step(flow, &State::new(lang, variables), Input::Start, now);
    advance(Some(flow), &flow.id, ids, step)
}

/// What identifies a conversation in the events it raises.
#[derive(Debug, Clone, Copy)]
pub struct ConversationIds<'a> {
    pub conversation_id: &'a str,
    pub invitation_id: &'a str,
    pub event_id: &'a str,
    pub contact_id: &'a str,
}

/// What decides what customer messages cause, besides the message itself.
#[derive(Debug, Clone, Copy)]
pub struct Planning<'a> {
    pub flows: &'a BTreeMap<String, Flow>,
    pub rules: &'a AlertRules,
    /// Whether cases' notices go out by e-mail (SMTP is configured).
    pub email: bool,
}

/// Decides what one stored customer message causes; see the module doc for the rules.
pub fn plan_inbound(
    planning: Planning<'_>,
    context: &InboundContext,
    keyword: Option<Keyword>,
    text: &str,
    now: Timestamp,
) -> InboundPlan {
    let flows = planning.flows;
    let conversation = context.conversation.as_ref();
    let state = conversation.and_then(|c| serde_json::from_value::<State>(c.state.0.clone()).ok());
    let lang = state
        .as_ref()
        .map(|s| s.lang)
        .or_else(|| {
            context
                .contact_locale
                .as_deref()
                .and_then(|l| l.parse().ok())
        })
        .unwrap_or(Lang::Fr);
    let mut plan = InboundPlan::default();
    match (context.consent_changed, keyword) {
        (Some(ConsentChange::OptedOut), _) => {
            plan.replies.push((
                Purpose::OptOutConfirmation,
                reply_text(Purpose::OptOutConfirmation, lang),
            ));
            plan.advance = conversation
                .zip(state.as_ref())
                .and_then(|(view, state)| run(flows, view, state, Input::ExpiryDue, now));
            if let (Some(view), Some(state)) = (conversation, state.as_ref()) {
                plan.alerts = alerts(planning, view, Some(state), &[], true);
            }
        }
        (Some(ConsentChange::OptedIn), _) => {
            plan.replies.push((
                Purpose::OptInConfirmation,
                reply_text(Purpose::OptInConfirmation, lang),
            ));
        }
        (None, Some(Keyword::OptOut | Keyword::OptIn)) => {}
        (None, Some(Keyword::Help)) if !context.opted_out => {
            plan.replies
                .push((Purpose::Help, reply_text(Purpose::Help, lang)));
        }
        (None, _) if context.opted_out => {
            // Nothing is sent to the number, but the agent reads what the customer wrote.
            if context.case.is_some() {
                plan.case = Some(CaseInput::Thread);
            }
        }
        (None, Some(Keyword::Help)) => {}
        (None, None) => {
            // The recovery question is the last thing the customer was asked: their yes or no
            // answers it, even with a survey still open on the number.
            let follow_up = context
                .case
                .as_ref()
                .and_then(|case| follow_up_answer(case, text, lang));
            match (follow_up, conversation.zip(state.as_ref())) {
                (Some(answer), _) => plan.case = Some(answer),
                (None, Some((view, state))) => {
                    plan.advance = run(flows, view, state, Input::Reply(text), now);
                    if let Some(advance) = &plan.advance {
                        plan.alerts = alerts(planning, view, Some(state), &advance.answers, false);
                    }
                }
                (None, None) => plan.case = context.case.as_ref().map(|_| CaseInput::Thread),
            }
        }
    }
    plan
}

/// The answer to the case's recovery question, if it has gone out and waits for its answer, and
/// the text is a yes or a no.
fn follow_up_answer(
    case: &crate::storage::ActiveCase,
    text: &str,
    lang: Lang,
) -> Option<CaseInput> {
    if case.status != "resolved"
        || case.follow_up.as_deref() != Some("asked")
        || !case.follow_up_out
    {
        return None;
    }
    let reading = crate::understand::yes_no(text, lang).ok()?;
    Some(CaseInput::FollowUp(
        reading.value == crate::understand::YesNo::Yes,
    ))
}

/// The alerts one step raises: its new answers (or its opt-out) through the rules.
fn alerts(
    planning: Planning<'_>,
    view: &ConversationView,
    before: Option<&State>,
    new: &[NewAnswer],
    opted_out: bool,
) -> Vec<NewAlert> {
    if planning.rules.is_empty() {
        return Vec::new();
    }
    let Some(flow) = planning.flows.get(&view.flow_id) else {
        return Vec::new();
    };
    let earlier: Vec<NewAnswer> = before
        .map(|state| {
            state
                .answers
                .iter()
                .filter(|a| !new.iter().any(|n| n.question_id == a.question))
                .map(|a| {
                    let kind = flow
                        .question_index(&a.question)
                        .map_or("text", |i| flow.question(i).kind.name());
                    stored_answer(&a.question, kind, &a.value, a.comment.as_deref())
                })
                .collect()
        })
        .unwrap_or_default();
    fn observe(answer: &NewAnswer, new: bool) -> ObservedAnswer<'_> {
        ObservedAnswer {
            question_id: &answer.question_id,
            kind: answer.kind,
            score: answer.score,
            choice: answer.choice.as_deref(),
            text: answer.text.as_deref(),
            new,
        }
    }
    let answers: Vec<ObservedAnswer<'_>> = earlier
        .iter()
        .map(|a| observe(a, false))
        .chain(new.iter().map(|a| observe(a, true)))
        .collect();
    planning
        .rules
        .evaluate(&Observation {
            flow_id: &view.flow_id,
            answers: &answers,
            opted_out,
        })
        .into_iter()
        .map(|fired| NewAlert {
            rule_id: fired.rule_id,
            priority: fired.priority.as_str(),
            sla: fired.sla,
            notify: fired.notify,
            reasons: fired.reasons,
            email: planning.email,
        })
        .collect()
}

/// What a conversation still open at its expiry becomes: closed, its answers kept, with
/// `response.expired`. Its flow removed meanwhile, it expires all the same (else it would hold
/// the customer's channel for ever); the event then gives no answer's `kind`, which only the
/// flow knows. `None` when its state can no longer be read.
pub fn expiry(
    flows: &BTreeMap<String, Flow>,
    view: &ConversationView,
    now: Timestamp,
) -> Option<Advance> {
    let state = serde_json::from_value::<State>(view.state.0.clone()).ok()?;
    match flows.get(&view.flow_id) {
        Some(_) => run(flows, view, &state, Input::ExpiryDue, now),
        None => Some(advance(
            None,
            &view.flow_id,
            &ids_of(view),
            engine::expire(&state)?,
        )),
    }
}

/// What reminding an open conversation does: the reminder text, once, to a customer who has not
/// written at all; `None` when there is nothing to send.
pub fn reminder(
    flows: &BTreeMap<String, Flow>,
    view: &ConversationView,
    now: Timestamp,
) -> Option<Advance> {
    let state = serde_json::from_value::<State>(view.state.0.clone()).ok()?;
    run(flows, view, &state, Input::ReminderDue, now).filter(|advance| !advance.messages.is_empty())
}

fn run(
    flows: &BTreeMap<String, Flow>,
    view: &ConversationView,
    state: &State,
    input: Input<'_>,
    now: Timestamp,
) -> Option<Advance> {
    // A flow removed from the folder leaves its open conversations where they are: the message
    // is kept, and the conversation expires (see `expiry`).
    let flow = flows.get(&view.flow_id)?;
    let step = engine::step(flow, state, input, now);
    Some(advance(Some(flow), &flow.id, &ids_of(view), step))
}

fn ids_of(view: &ConversationView) -> ConversationIds<'_> {
    ConversationIds {
        conversation_id: &view.id,
        invitation_id: &view.invitation_id,
        event_id: &view.event_id,
        contact_id: &view.contact_id,
    }
}

/// The storage form of one engine step: the answers it recorded, the contract events it raises.
/// Without its flow (removed), the events give no answer's kind.
fn advance(
    flow: Option<&Flow>,
    flow_id: &str,
    ids: &ConversationIds<'_>,
    step: engine::Step,
) -> Advance {
    let conversation = json!({
        "id": ids.conversation_id,
        "invitation_id": ids.invitation_id,
        "event_id": ids.event_id,
        "flow": flow_id,
    });
    let contact = json!({ "id": ids.contact_id });
    let kind_of = |question: &str| {
        flow.map(|flow| {
            flow.question_index(question)
                .map_or("text", |i| flow.question(i).kind.name())
        })
    };
    let mut answers = Vec::new();
    let mut events = Vec::new();
    for event in &step.events {
        match event {
            Event::AnswerRecorded {
                question,
                value,
                comment,
            } => {
                let kind = kind_of(question);
                // Only a step of a flow records answers; "text" keeps the row total.
                answers.push(stored_answer(
                    question,
                    kind.unwrap_or("text"),
                    value,
                    comment.as_deref(),
                ));
                events.push(NewEvent {
                    event_type: "response.answered",
                    data: json!({
                        "conversation": conversation,
                        "contact": contact,
                        "question": question,
                        "kind": kind,
                        "value": value_json(value),
                        "comment": comment,
                    }),
                });
            }
            Event::Completed { .. } | Event::Expired { .. } => {
                let completed = matches!(event, Event::Completed { .. });
                let all: Vec<Value> = step
                    .state
                    .answers
                    .iter()
                    .map(|a| {
                        json!({
                            "question": a.question,
                            "kind": kind_of(&a.question),
                            "value": value_json(&a.value),
                            "comment": a.comment,
                        })
                    })
                    .collect();
                events.push(NewEvent {
                    event_type: if completed {
                        "response.completed"
                    } else {
                        "response.expired"
                    },
                    data: json!({
                        "conversation": conversation,
                        "contact": contact,
                        "complete": completed,
                        "answers": all,
                    }),
                });
            }
            _ => {}
        }
    }
    Advance {
        state: serde_json::to_value(&step.state).expect("the engine's state serialises"),
        status: match step.state.status {
            Status::NotStarted | Status::Open => ConversationStatus::Open,
            Status::Completed => ConversationStatus::Completed,
            Status::Expired => ConversationStatus::Expired,
        },
        answers,
        events,
        messages: step.messages,
    }
}

fn stored_answer(
    question: &str,
    kind: &'static str,
    value: &AnswerValue,
    comment: Option<&str>,
) -> NewAnswer {
    let (score, choice, text) = match value {
        AnswerValue::Score(score) => (Some(i32::from(*score)), None, comment.map(str::to_string)),
        AnswerValue::YesNo(yes_no) => (
            None,
            Some(yes_no_str(*yes_no).to_string()),
            comment.map(str::to_string),
        ),
        AnswerValue::Choice(key) => (None, Some(key.clone()), comment.map(str::to_string)),
        AnswerValue::Text(text) => (None, None, Some(text.clone())),
    };
    NewAnswer {
        question_id: question.to_string(),
        kind,
        score,
        choice,
        text,
    }
}

fn yes_no_str(value: YesNoValue) -> &'static str {
    match value {
        YesNoValue::Yes => "yes",
        YesNoValue::No => "no",
    }
}

fn value_json(value: &AnswerValue) -> Value {
    match value {
        AnswerValue::Score(score) => json!(score),
        AnswerValue::YesNo(yes_no) => json!(yes_no_str(*yes_no)),
        AnswerValue::Choice(key) => json!(key),
        AnswerValue::Text(text) => json!(text),
    }
}

/// The answers to keywords. Short, in GSM-7 (one segment each), and naming the keyword that
/// undoes them, as carriers' rules ask.
pub fn reply_text(purpose: Purpose, lang: Lang) -> String {
    let text = match (purpose, lang) {
        (Purpose::OptOutConfirmation, Lang::Fr) => {
            "Vous ne recevrez plus de SMS de notre part. Pour vous réinscrire, répondez START."
        }
        (Purpose::OptOutConfirmation, Lang::En) => {
            "You will not receive any more texts from us. Reply START to subscribe again."
        }
        (Purpose::OptInConfirmation, Lang::Fr) => {
            "C'est noté, vous recevrez de nouveau nos SMS. Répondez STOP pour ne plus en recevoir."
        }
        (Purpose::OptInConfirmation, Lang::En) => {
            "Done: you will receive our texts again. Reply STOP to stop receiving them."
        }
        (Purpose::Help | Purpose::Survey | Purpose::Case, Lang::Fr) => {
            "Questionnaire de satisfaction : répondez simplement à la question. STOP pour ne plus recevoir de SMS."
        }
        (Purpose::Help | Purpose::Survey | Purpose::Case, Lang::En) => {
            "Satisfaction survey by text: just answer the question. Reply STOP to stop receiving texts."
        }
    };
    text.to_string()
}

#[cfg(test)]
mod tests;
