use super::*;
use crate::storage::ConversationView;
use sqlx::types::Json;
use std::path::PathBuf;

fn flows() -> BTreeMap<String, Flow> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("flows");
    let set = crate::flow::load_paths(&[dir]);
    assert!(set.errors.is_empty(), "{:?}", set.errors);
    set.flows
}

fn variables() -> BTreeMap<String, String> {
    [
        ("first_name", "Ana"),
        ("store", "Lyon 2"),
        ("order_date", "12/11"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

const IDS: ConversationIds<'static> = ConversationIds {
    conversation_id: "conv-1",
    invitation_id: "inv-1",
    event_id: "order-123",
    contact_id: "contact-1",
};

static NO_RULES: std::sync::LazyLock<AlertRules> = std::sync::LazyLock::new(AlertRules::empty);

fn planning(flows: &BTreeMap<String, Flow>) -> Planning<'_> {
    Planning {
        flows,
        rules: &NO_RULES,
        email: false,
    }
}

/// The shipped `alerts.yaml`, against the shipped flows.
fn shipped_rules(flows: &BTreeMap<String, Flow>) -> AlertRules {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("alerts.yaml");
    crate::alerts::load_rules(&path, flows).expect("the shipped rules load")
}

fn now() -> Timestamp {
    Timestamp::from_millis(1_790_000_000_000).unwrap()
}

/// A context with the delivery conversation opened, as storage would hand it over.
fn context_with_open_delivery(flows: &BTreeMap<String, Flow>) -> InboundContext {
    let opening = opening(&flows["delivery"], Lang::Fr, variables(), &IDS, now());
    InboundContext {
        message_id: "msg-1".into(),
        contact_id: Some("contact-1".into()),
        contact_locale: None,
        opted_out: false,
        consent_changed: None,
        conversation: Some(ConversationView {
            id: "conv-1".into(),
            invitation_id: "inv-1".into(),
            event_id: "order-123".into(),
            flow_id: "delivery".into(),
            contact_id: "contact-1".into(),
            channel: "console".into(),
            sender: "+33700000000".into(),
            state: Json(opening.state),
            version: 1,
            unit_id: None,
        }),
        case: None,
    }
}

#[test]
fn an_invitation_opens_with_the_first_question_in_its_language() {
    let flows = flows();
    let fr = opening(&flows["delivery"], Lang::Fr, variables(), &IDS, now());
    assert_eq!(fr.status, ConversationStatus::Open);
    assert_eq!(fr.messages.len(), 1);
    assert!(fr.messages[0].starts_with("Bonjour Ana, suite à votre livraison Lyon 2"));
    assert!(fr.answers.is_empty() && fr.events.is_empty());
    let en = opening(&flows["delivery"], Lang::En, variables(), &IDS, now());
    assert!(en.messages[0].starts_with("Hello Ana"));
}

#[test]
fn the_language_follows_the_locale_when_the_flow_speaks_it() {
    let flows = flows();
    let flow = &flows["delivery"];
    assert_eq!(language(flow, Some("en-GB")), Lang::En);
    assert_eq!(language(flow, Some("fr_CA")), Lang::Fr);
    assert_eq!(language(flow, Some("de-DE")), flow.languages[0]);
    assert_eq!(language(flow, None), flow.languages[0]);
}

#[test]
fn a_score_with_a_comment_records_the_answer_and_raises_response_answered() {
    let flows = flows();
    let context = context_with_open_delivery(&flows);
    let plan = plan_inbound(
        planning(&flows),
        &context,
        None,
        "3 livreur en retard",
        now(),
    );
    assert!(plan.replies.is_empty());
    let advance = plan.advance.expect("the conversation moves");
    let score = &advance.answers[0];
    assert_eq!(
        (score.question_id.as_str(), score.kind, score.score),
        ("score", "nps", Some(3))
    );
    let answered: Vec<&NewEvent> = advance
        .events
        .iter()
        .filter(|e| e.event_type == "response.answered")
        .collect();
    assert_eq!(answered[0].data["value"], json!(3));
    assert_eq!(
        answered[0].data["conversation"]["event_id"],
        json!("order-123")
    );
    assert_eq!(answered[0].data["contact"]["id"], json!("contact-1"));
}

#[test]
fn stop_opts_out_confirms_once_and_closes_the_conversation() {
    let flows = flows();
    let mut context = context_with_open_delivery(&flows);
    context.consent_changed = Some(ConsentChange::OptedOut);
    context.opted_out = true;
    let plan = plan_inbound(
        planning(&flows),
        &context,
        Some(Keyword::OptOut),
        "STOP",
        now(),
    );
    assert_eq!(plan.replies.len(), 1);
    assert_eq!(plan.replies[0].0, Purpose::OptOutConfirmation);
    let advance = plan.advance.expect("the open conversation closes");
    assert_eq!(advance.status, ConversationStatus::Expired);
    assert_eq!(advance.events[0].event_type, "response.expired");
    assert!(advance.messages.is_empty(), "nothing but the confirmation");

    // A second STOP changed nothing: no second confirmation.
    context.consent_changed = None;
    let again = plan_inbound(
        planning(&flows),
        &context,
        Some(Keyword::OptOut),
        "STOP",
        now(),
    );
    assert_eq!(again, InboundPlan::default());
}

#[test]
fn an_opted_out_number_gets_nothing_but_its_confirmations() {
    let flows = flows();
    let mut context = context_with_open_delivery(&flows);
    context.opted_out = true;
    for (keyword, text) in [(Some(Keyword::Help), "AIDE"), (None, "9")] {
        assert_eq!(
            plan_inbound(planning(&flows), &context, keyword, text, now()),
            InboundPlan::default(),
            "{text}"
        );
    }
    context.consent_changed = Some(ConsentChange::OptedIn);
    let plan = plan_inbound(
        planning(&flows),
        &context,
        Some(Keyword::OptIn),
        "START",
        now(),
    );
    assert_eq!(plan.replies[0].0, Purpose::OptInConfirmation);
    assert!(plan.advance.is_none());
}

#[test]
fn help_answers_without_moving_the_survey() {
    let flows = flows();
    let context = context_with_open_delivery(&flows);
    let plan = plan_inbound(
        planning(&flows),
        &context,
        Some(Keyword::Help),
        "AIDE",
        now(),
    );
    assert_eq!(
        plan.replies,
        vec![(Purpose::Help, reply_text(Purpose::Help, Lang::Fr))]
    );
    assert!(plan.advance.is_none());
}

#[test]
fn a_message_without_conversation_or_flow_is_kept_and_causes_nothing() {
    let flows = flows();
    let mut context = context_with_open_delivery(&flows);
    let mut gone = context.clone();
    context.conversation = None;
    assert_eq!(
        plan_inbound(planning(&flows), &context, None, "9", now()),
        InboundPlan::default()
    );
    gone.conversation.as_mut().unwrap().flow_id = "removed".into();
    assert_eq!(
        plan_inbound(planning(&flows), &gone, None, "9", now()),
        InboundPlan::default()
    );
}

#[test]
fn a_completed_survey_raises_response_completed_with_every_answer() {
    let flows = flows();
    let mut context = context_with_open_delivery(&flows);
    let mut seen = Vec::new();
    for reply in ["10", "Livreur super sympa", "oui"] {
        let plan = plan_inbound(planning(&flows), &context, None, reply, now());
        let advance = plan.advance.expect("the conversation moves");
        seen.extend(advance.events.iter().map(|e| e.event_type));
        let view = context.conversation.as_mut().unwrap();
        view.state = Json(advance.state.clone());
        if advance.status != ConversationStatus::Open {
            let completed = advance
                .events
                .iter()
                .find(|e| e.event_type == "response.completed")
                .expect("completed");
            assert_eq!(completed.data["complete"], json!(true));
            assert!(completed.data["answers"].as_array().unwrap().len() >= 2);
            break;
        }
    }
    assert!(seen.contains(&"response.completed"), "{seen:?}");
}

#[test]
fn keyword_replies_are_one_gsm7_segment_in_every_language() {
    for purpose in [
        Purpose::OptOutConfirmation,
        Purpose::OptInConfirmation,
        Purpose::Help,
    ] {
        for lang in Lang::ALL {
            let text = reply_text(purpose, lang);
            let counted = crate::sms::segments(&text);
            assert_eq!(
                (counted.encoding, counted.segments),
                (crate::sms::Encoding::Gsm7, 1),
                "{purpose:?} {lang}: {text}"
            );
        }
    }
}

#[test]
fn only_a_customer_who_has_not_written_is_reminded_and_only_once() {
    let flows = flows();
    let context = context_with_open_delivery(&flows);
    let mut view = context.conversation.clone().unwrap();
    let reminded = reminder(&flows, &view, now()).expect("a silent customer is reminded");
    assert_eq!(reminded.messages.len(), 1);
    assert!(
        reminded.messages[0].contains("votre avis"),
        "{:?}",
        reminded.messages
    );
    assert_eq!(reminded.status, ConversationStatus::Open);
    // Reminded already: nothing more.
    view.state = Json(reminded.state);
    assert_eq!(reminder(&flows, &view, now()), None);
    // A customer who wrote (even something not understood) is not reminded.
    let replied = plan_inbound(planning(&flows), &context, None, "euh", now())
        .advance
        .unwrap();
    let mut view = context.conversation.unwrap();
    view.state = Json(replied.state);
    assert_eq!(reminder(&flows, &view, now()), None);
    // A flow without a reminder reminds nobody.
    let mut without = flows.clone();
    without.get_mut("delivery").unwrap().dispatch.reminder = None;
    assert_eq!(
        reminder(
            &without,
            &context_with_open_delivery(&without).conversation.unwrap(),
            now()
        ),
        None
    );
}

#[test]
fn a_detractor_score_raises_the_rule_s_alert_in_the_same_plan() {
    let flows = flows();
    let rules = shipped_rules(&flows);
    let context = context_with_open_delivery(&flows);
    let planning = Planning {
        flows: &flows,
        rules: &rules,
        email: true,
    };
    let plan = plan_inbound(planning, &context, None, "3 livreur en retard", now());
    let fired: Vec<(&str, &str, bool)> = plan
        .alerts
        .iter()
        .map(|a| (a.rule_id.as_str(), a.priority, a.email))
        .collect();
    assert_eq!(fired, [("detractor", "high", true)]);
    assert!(
        plan.alerts[0].reasons[0].contains("nps <= 6"),
        "{:?}",
        plan.alerts
    );
    // A promoter raises nothing.
    let plan = plan_inbound(planning, &context, None, "10", now());
    assert!(plan.alerts.is_empty());
}

#[test]
fn a_stop_after_a_low_score_raises_the_churn_alert() {
    let flows = flows();
    let rules = shipped_rules(&flows);
    let mut context = context_with_open_delivery(&flows);
    let planning = Planning {
        flows: &flows,
        rules: &rules,
        email: false,
    };
    // The customer scored 4, then wrote STOP.
    let scored = plan_inbound(planning, &context, None, "4", now());
    let advance = scored.advance.expect("the score advances the survey");
    context.conversation.as_mut().unwrap().state = Json(advance.state);
    context.consent_changed = Some(ConsentChange::OptedOut);
    context.opted_out = true;
    let plan = plan_inbound(planning, &context, Some(Keyword::OptOut), "STOP", now());
    let fired: Vec<&str> = plan.alerts.iter().map(|a| a.rule_id.as_str()).collect();
    assert_eq!(fired, ["churn-risk"]);
}

fn active_case(status: &str, follow_up: Option<&str>) -> crate::storage::ActiveCase {
    crate::storage::ActiveCase {
        id: "case-1".into(),
        contact_id: "contact-1".into(),
        channel: "console".into(),
        sender: "+33700000000".into(),
        status: status.into(),
        // "held": asked, not gone out yet.
        follow_up: follow_up.map(|f| if f == "held" { "asked" } else { f }.to_string()),
        follow_up_out: follow_up == Some("asked"),
        priority: "high".into(),
        sla_due_at: now(),
    }
}

#[test]
fn with_no_survey_open_a_customer_with_a_case_writes_to_its_thread() {
    let flows = flows();
    let mut context = context_with_open_delivery(&flows);
    context.conversation = None;
    context.case = Some(active_case("in_progress", None));
    let plan = plan_inbound(planning(&flows), &context, None, "oui je suis là", now());
    assert_eq!(plan.case, Some(CaseInput::Thread));
    assert!(plan.advance.is_none() && plan.replies.is_empty());
}

#[test]
fn an_open_survey_keeps_the_customer_s_answers_even_with_a_case() {
    let flows = flows();
    let mut context = context_with_open_delivery(&flows);
    context.case = Some(active_case("open", None));
    let plan = plan_inbound(planning(&flows), &context, None, "8", now());
    assert!(plan.advance.is_some());
    assert_eq!(plan.case, None);
}

#[test]
fn the_recovery_question_once_out_is_answered_by_yes_or_no_and_anything_else_goes_to_the_agent() {
    let flows = flows();
    let mut context = context_with_open_delivery(&flows);
    context.conversation = None;
    let cases = [
        ("resolved", Some("asked"), "OUI", CaseInput::FollowUp(true)),
        (
            "resolved",
            Some("asked"),
            "oui merci !",
            CaseInput::FollowUp(true),
        ),
        ("resolved", Some("asked"), "non", CaseInput::FollowUp(false)),
        (
            "resolved",
            Some("asked"),
            "pas vraiment non",
            CaseInput::FollowUp(false),
        ),
        (
            "resolved",
            Some("asked"),
            "je vous rappelle",
            CaseInput::Thread,
        ),
        ("resolved", None, "oui", CaseInput::Thread),
        ("in_progress", None, "non", CaseInput::Thread),
        // Not gone out yet (the window holds it): a yes or no answers something else.
        ("resolved", Some("held"), "non", CaseInput::Thread),
        ("resolved", Some("held"), "OUI", CaseInput::Thread),
    ];
    for (status, follow_up, text, expected) in cases {
        context.case = Some(active_case(status, follow_up));
        let plan = plan_inbound(planning(&flows), &context, None, text, now());
        assert_eq!(plan.case, Some(expected), "{status} {follow_up:?} {text:?}");
    }
}

#[test]
fn an_opted_out_customer_s_text_still_reaches_the_agent_but_earns_no_reply() {
    let flows = flows();
    let mut context = context_with_open_delivery(&flows);
    context.conversation = None;
    context.opted_out = true;
    context.case = Some(active_case("in_progress", None));
    let plan = plan_inbound(planning(&flows), &context, None, "pourquoi ?", now());
    assert_eq!(plan.case, Some(CaseInput::Thread));
    assert!(plan.replies.is_empty());
}

/// A conversation whose flow was removed from the folder still expires (it would otherwise
/// hold the customer's channel for ever): closed as with its flow, its answers kept and
/// reported, only their kinds unknown.
#[test]
fn a_conversation_whose_flow_was_removed_still_expires_with_its_answers() {
    let flows = flows();
    let mut context = context_with_open_delivery(&flows);
    let plan = plan_inbound(planning(&flows), &context, None, "9", now());
    let view = context.conversation.as_mut().unwrap();
    view.state = Json(plan.advance.expect("the score is taken").state);

    let with_flow = expiry(&flows, view, now()).expect("it expires");
    view.flow_id = "removed".into();
    let without = expiry(&flows, view, now()).expect("it expires without its flow");
    assert_eq!(without.status, ConversationStatus::Expired);
    assert_eq!(without.state, with_flow.state);
    assert!(without.messages.is_empty() && without.answers.is_empty());
    let expired = |advance: &Advance| {
        let event = &advance.events[0];
        assert_eq!(event.event_type, "response.expired");
        event.data.clone()
    };
    let (reported, reported_without) = (expired(&with_flow), expired(&without));
    assert_eq!(reported["answers"][0]["kind"], json!("nps"));
    assert_eq!(reported_without["answers"][0]["kind"], Value::Null);
    assert_eq!(reported_without["answers"][0]["value"], json!(9));
    assert_eq!(reported_without["conversation"]["flow"], json!("removed"));
    assert_eq!(reported_without["complete"], json!(false));

    // Expired already: nothing more to expire.
    view.state = Json(without.state.clone());
    assert!(expiry(&flows, view, now()).is_none());
}
