use super::*;
use crate::flow::{YesNoValue, load_paths, parse_flow};
use proptest::prelude::*;
use std::path::Path;

fn shipped(id: &str) -> Flow {
    let mut set = load_paths(&[Path::new(env!("CARGO_MANIFEST_DIR")).join("flows")]);
    set.flows.remove(id).expect("a shipped flow")
}

fn vars() -> BTreeMap<String, String> {
    [
        ("first_name", "Léa"),
        ("store", "Dupain"),
        ("order_date", "12/11"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

fn now() -> Timestamp {
    Timestamp::from_millis(1_795_000_000_000).unwrap()
}

/// Starts a conversation and feeds it the replies; returns every step.
fn converse(flow: &Flow, lang: Lang, replies: &[&str]) -> Vec<Step> {
    let mut steps = vec![step(flow, &State::new(lang, vars()), Input::Start, now())];
    for reply in replies {
        let state = steps.last().unwrap().state.clone();
        steps.push(step(flow, &state, Input::Reply(reply), now()));
    }
    steps
}

fn answers(state: &State) -> Vec<(&str, &AnswerValue)> {
    state
        .answers
        .iter()
        .map(|a| (a.question.as_str(), &a.value))
        .collect()
}

#[test]
fn starting_asks_the_first_question_with_the_invitation_variables() {
    let flow = shipped("delivery");
    let first = step(&flow, &State::new(Lang::Fr, vars()), Input::Start, now());
    assert_eq!(first.state.status, Status::Open);
    assert_eq!(first.state.current.as_deref(), Some("score"));
    assert_eq!(first.messages.len(), 1);
    assert!(
        first.messages[0].starts_with("Bonjour Léa, suite à votre livraison Dupain du 12/11"),
        "{}",
        first.messages[0]
    );
    assert_eq!(
        first.events,
        [Event::Started {
            question: "score".into()
        }]
    );
    let again = step(&flow, &first.state, Input::Start, now());
    assert!(
        again.messages.is_empty() && again.events.is_empty(),
        "starting twice changes nothing"
    );
    assert_eq!(again.state, first.state);
}

#[test]
fn the_score_chooses_the_follow_up_question() {
    let flow = shipped("delivery");
    for (reply, next) in [
        ("3", "why_detractor"),
        ("6", "why_detractor"),
        ("7", "why_passive"),
        ("8", "why_passive"),
        ("9", "why_promoter"),
        ("10", "why_promoter"),
    ] {
        let steps = converse(&flow, Lang::En, &[reply]);
        let last = steps.last().unwrap();
        assert_eq!(last.state.current.as_deref(), Some(next), "{reply}");
        assert_eq!(
            last.messages,
            [flow
                .question(flow.question_index(next).unwrap())
                .text
                .get(Lang::En)
                .source()]
        );
    }
}

#[test]
fn a_full_conversation_records_every_answer_and_thanks_the_customer() {
    let flow = shipped("delivery");
    let steps = converse(&flow, Lang::Fr, &["2", "Livreur très en retard", "oui"]);
    let last = steps.last().unwrap();
    assert_eq!(last.state.status, Status::Completed);
    assert_eq!(
        answers(&last.state),
        [
            ("score", &AnswerValue::Score(2)),
            (
                "why_detractor",
                &AnswerValue::Text("Livreur très en retard".into())
            ),
            ("consent", &AnswerValue::YesNo(YesNoValue::Yes)),
        ]
    );
    assert_eq!(
        last.messages,
        ["Merci Léa. Un conseiller Dupain va revenir vers vous."],
        "the detractor's closing"
    );
    assert_eq!(last.events.last(), Some(&Event::Completed { answered: 3 }));
}

#[test]
fn a_score_with_a_comment_answers_the_open_question_that_follows() {
    let flow = shipped("delivery");
    let steps = converse(&flow, Lang::Fr, &["7 mais livreur en retard"]);
    let last = steps.last().unwrap();
    assert_eq!(answers(&last.state)[0], ("score", &AnswerValue::Score(7)));
    let why = &last.state.answers[1];
    assert_eq!(why.question, "why_passive");
    assert!(
        matches!(&why.value, AnswerValue::Text(t) if t.contains("livreur en retard")),
        "{why:?}"
    );
    assert_eq!(
        last.state.current.as_deref(),
        Some("consent"),
        "the customer is not asked why again"
    );
}

#[test]
fn a_comment_with_no_open_question_next_is_kept_as_a_note() {
    let flow = shipped("repair");
    let steps = converse(&flow, Lang::Fr, &["5 un peu long quand même"]);
    let last = steps.last().unwrap();
    let effort = &last.state.answers[0];
    assert_eq!(effort.value, AnswerValue::Score(5));
    assert!(
        effort
            .comment
            .as_deref()
            .is_some_and(|c| c.contains("un peu long")),
        "{effort:?}"
    );
    assert_eq!(last.state.current.as_deref(), Some("solved"));
}

#[test]
fn unclear_replies_are_reprompted_then_the_question_is_given_up() {
    let flow = shipped("delivery"); // score: 2 retries, then end
    let steps = converse(&flow, Lang::En, &["dunno", "hmm", "blah"]);
    let reprompt = flow
        .question(0)
        .reprompt
        .as_ref()
        .unwrap()
        .get(Lang::En)
        .source();
    assert_eq!(steps[1].messages, std::slice::from_ref(&reprompt));
    assert_eq!(steps[2].messages, [reprompt]);
    assert!(matches!(
        &steps[1].events[0],
        Event::NotUnderstood { attempt: 1, .. }
    ));
    let last = &steps[3];
    assert!(last.events.contains(&Event::GaveUp {
        question: "score".into()
    }));
    assert_eq!(last.state.status, Status::Completed);
    assert_eq!(last.events.last(), Some(&Event::Completed { answered: 0 }));
    assert_eq!(
        last.messages,
        ["Thank you Léa for your answer, see you soon!"]
    );
}

#[test]
fn giving_up_can_move_on_to_the_next_question() {
    let flow = parse_flow(
        Path::new("flows/move_on.yaml"),
        r#"id: move_on
name: Move on
languages: [en]
start: solved
questions:
  - id: solved
    kind: yesno
    text: { en: "Solved?" }
    reprompt: { en: "YES or NO?" }
    retries: 1
    next:
      - goto: effort
  - id: effort
    kind: ces
    text: { en: "Effort 1-7?" }
    reprompt: { en: "1 to 7?" }
closing:
  - text: { en: "Bye" }
"#,
    )
    .unwrap();
    let steps = converse(&flow, Lang::En, &["what?", "pardon?"]);
    assert_eq!(steps[1].messages, ["YES or NO?"]);
    assert_eq!(steps[2].messages, ["Effort 1-7?"]);
    assert_eq!(steps[2].state.current.as_deref(), Some("effort"));
    assert!(steps[2].state.answers.is_empty());
}

#[test]
fn a_reply_after_the_end_is_kept_and_changes_nothing() {
    let flow = shipped("call_centre");
    let steps = converse(&flow, Lang::Fr, &["4", "Conseiller aimable"]);
    let done = steps.last().unwrap().state.clone();
    assert_eq!(done.status, Status::Completed);
    let late = step(&flow, &done, Input::Reply("Et merci encore !"), now());
    assert_eq!(late.state, done);
    assert!(late.messages.is_empty(), "the survey never restarts");
    assert_eq!(
        late.events,
        [Event::LateReply {
            text: "Et merci encore !".into()
        }]
    );
}

#[test]
fn silence_earns_one_reminder_and_expiry_keeps_partial_answers() {
    let flow = shipped("delivery");
    let open = converse(&flow, Lang::En, &[]).pop().unwrap().state;
    let reminded = step(&flow, &open, Input::ReminderDue, now());
    assert_eq!(reminded.messages.len(), 1);
    assert!(
        reminded.messages[0].contains("would you recommend us"),
        "{:?}",
        reminded.messages
    );
    assert_eq!(
        reminded.events,
        [Event::ReminderSent {
            question: "score".into()
        }]
    );
    let twice = step(&flow, &reminded.state, Input::ReminderDue, now());
    assert!(twice.messages.is_empty(), "one reminder only");

    let answered = step(&flow, &twice.state, Input::Reply("9"), now());
    let expired = step(&flow, &answered.state, Input::ExpiryDue, now());
    assert_eq!(expired.state.status, Status::Expired);
    assert_eq!(expired.events, [Event::Expired { answered: 1 }]);
    assert_eq!(
        answers(&expired.state),
        [("score", &AnswerValue::Score(9))],
        "partial answers are kept"
    );
    let late = step(&flow, &expired.state, Input::Reply("10"), now());
    assert_eq!(late.events, [Event::LateReply { text: "10".into() }]);
    assert_eq!(late.state, expired.state);
}

#[test]
fn a_customer_who_replied_gets_no_reminder() {
    let flow = shipped("delivery");
    let answered = converse(&flow, Lang::En, &["9"]).pop().unwrap().state;
    assert!(
        step(&flow, &answered, Input::ReminderDue, now())
            .messages
            .is_empty()
    );
}

#[test]
fn a_flow_without_reminder_sends_none() {
    let flow = shipped("call_centre");
    let open = converse(&flow, Lang::En, &[]).pop().unwrap().state;
    assert!(
        step(&flow, &open, Input::ReminderDue, now())
            .messages
            .is_empty()
    );
}

#[test]
fn the_state_survives_a_round_trip_through_json() {
    let flow = shipped("delivery");
    let state = converse(&flow, Lang::Fr, &["8 bien"]).pop().unwrap().state;
    let json = serde_json::to_string(&state).unwrap();
    let back: State = serde_json::from_str(&json).unwrap();
    assert_eq!(back, state);
}

fn replies() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("9".to_string()),
        Just("3 trop long".to_string()),
        Just("oui".to_string()),
        Just("no".to_string()),
        Just("7 ou 8".to_string()),
        Just("???".to_string()),
        Just("".to_string()),
        "[a-z ]{0,12}",
        any::<String>(),
    ]
}

#[derive(Debug, Clone)]
enum Action {
    Reply(String),
    Remind,
    Expire,
}

fn actions() -> impl Strategy<Value = Vec<Action>> {
    prop::collection::vec(
        prop_oneof![8 => replies().prop_map(Action::Reply), 1 => Just(Action::Remind), 1 => Just(Action::Expire)],
        0..25,
    )
}

proptest! {
    #[test]
    fn the_engine_never_asks_more_than_the_retry_limit_allows(
        flow_id in prop::sample::select(vec!["delivery", "call_centre", "repair"]),
        lang in prop::sample::select(vec![Lang::Fr, Lang::En]),
        actions in actions(),
    ) {
        let flow = shipped(flow_id);
        let mut current = step(&flow, &State::new(lang, vars()), Input::Start, now());
        let mut messages = current.messages.len();
        for action in &actions {
            let input = match action {
                Action::Reply(text) => Input::Reply(text),
                Action::Remind => Input::ReminderDue,
                Action::Expire => Input::ExpiryDue,
            };
            current = step(&flow, &current.state, input, now());
            messages += current.messages.len();
            for event in &current.events {
                if let Event::NotUnderstood { question, attempt, .. } = event {
                    let retries = flow.question(flow.question_index(question).unwrap()).retries;
                    prop_assert!(*attempt <= retries + 1, "{question} attempt {attempt}");
                }
            }
        }
        let budget: usize = flow.questions.iter().map(|q| 1 + usize::from(q.retries)).sum::<usize>() + 2;
        prop_assert!(messages <= budget, "{messages} messages for a budget of {budget}");
        let answered: Vec<&str> = current.state.answers.iter().map(|a| a.question.as_str()).collect();
        let mut unique = answered.clone();
        unique.sort();
        unique.dedup();
        prop_assert_eq!(unique.len(), answered.len(), "a question is answered once at most");
    }
}

#[test]
fn a_choice_is_answered_by_number_letter_or_label_and_routes_on_its_key() {
    let flow = parse_flow(
        Path::new("flows/topic.yaml"),
        r#"id: topic
name: Topic
languages: [fr]
start: topic
questions:
  - id: topic
    kind: choice
    text: { fr: "Quel sujet ? 1 Livraison, 2 Produit, 3 Prix" }
    reprompt: { fr: "Répondez 1, 2 ou 3." }
    options:
      - key: delivery
        label: { fr: "Livraison" }
      - key: product
        label: { fr: "Produit" }
      - key: price
        label: { fr: "Prix" }
    next:
      - when: { question: topic, one_of: [delivery, product] }
        goto: details
  - id: details
    kind: text
    text: { fr: "Dites-nous en plus." }
closing:
  - text: { fr: "Merci" }
"#,
    )
    .unwrap();
    for (reply, key, next) in [
        ("2", "product", Some("details")),
        ("b", "product", Some("details")),
        ("livraison", "delivery", Some("details")),
        ("3", "price", None),
    ] {
        let last = converse(&flow, Lang::Fr, &[reply]).pop().unwrap();
        assert_eq!(
            last.state.answers[0].value,
            AnswerValue::Choice(key.into()),
            "{reply}"
        );
        assert_eq!(last.state.current.as_deref(), next, "{reply}");
    }
    let unclear = converse(&flow, Lang::Fr, &["4"]).pop().unwrap();
    assert_eq!(unclear.messages, ["Répondez 1, 2 ou 3."]);
}
