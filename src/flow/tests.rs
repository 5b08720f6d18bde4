use super::*;
use std::path::{Path, PathBuf};

fn shipped() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("flows")
}

const VALID: &str = r#"id: sample
name: Sample
languages: [fr, en]
variables: [first_name]
start: score
questions:
  - id: score
    kind: nps
    text: { fr: "Bonjour {{first_name}}, de 0 à 10 ?", en: "Hi {{first_name}}, 0 to 10?" }
    reprompt: { fr: "De 0 à 10 svp.", en: "0 to 10 please." }
    next:
      - when: { question: score, at_most: 6 }
        goto: why
  - id: why
    kind: text
    text: { fr: "Pourquoi ?", en: "Why?" }
closing:
  - text: { fr: "Merci !", en: "Thanks!" }
"#;

fn errors_of(source: &str) -> Vec<String> {
    parse_flow(Path::new("flows/sample.yaml"), source)
        .expect_err("the flow should be refused")
        .into_iter()
        .map(|e| e.to_string())
        .collect()
}

/// Replaces `from` with `to` in the valid flow, once, and checks the edit applied.
fn edited(from: &str, to: &str) -> String {
    assert!(VALID.contains(from), "the sample has no {from:?}");
    VALID.replacen(from, to, 1)
}

#[test]
fn the_shipped_flows_load_without_errors() {
    let set = load_paths(&[shipped()]);
    assert!(set.errors.is_empty(), "{:#?}", set.errors);
    let ids: Vec<&str> = set.flows.keys().map(String::as_str).collect();
    assert_eq!(ids, ["call_centre", "delivery", "repair"]);
    let delivery = &set.flows["delivery"];
    assert_eq!(delivery.languages, [Lang::Fr, Lang::En]);
    assert_eq!(
        delivery.question(delivery.start).kind,
        QuestionKind::Score(Scale::Nps)
    );
    assert_eq!(delivery.dispatch.delay, Duration::from_secs(2 * 3600));
    assert_eq!(
        delivery.dispatch.quota,
        Some(Quota {
            responses: 500,
            per: QuotaPeriod::Month
        })
    );
}

#[test]
fn a_valid_flow_resolves_every_reference() {
    let flow = parse_flow(Path::new("flows/sample.yaml"), VALID).unwrap();
    assert_eq!(flow.start, 0);
    let branch = &flow.questions[0].next[0];
    assert_eq!(branch.goto, Target::Question(1));
    assert_eq!(
        branch.when,
        Some(Condition {
            question: 0,
            test: Test::AtMost(6)
        })
    );
    assert_eq!(flow.questions[0].retries, 2, "the default retry limit");
    assert_eq!(
        flow.dispatch.expire_after,
        Duration::from_secs(72 * 3600),
        "the default expiry"
    );
    assert_eq!(flow.variables, ["first_name"]);
}

#[test]
fn each_invalid_flow_is_refused_with_its_line_and_reason() {
    let cases: Vec<(String, &str)> = vec![
        (
            edited("name: Sample", "name: Sample\ncolour: blue"),
            "sample.yaml:3: unknown key `colour`",
        ),
        (
            edited("en: \"Why?\"", "de: \"Warum?\""),
            "'de' is not one of this flow's languages",
        ),
        (
            edited(", en: \"Why?\"", ""),
            ":16: the text of question 'why' has no 'en' translation",
        ),
        (
            edited("goto: why", "goto: whyy"),
            ":13: there is no question 'whyy'",
        ),
        (
            edited("start: score", "start: nowhere"),
            ":5: there is no question 'nowhere'",
        ),
        (
            edited("Pourquoi ?", "Pourquoi {{store}} ?"),
            ":16: text of question 'why' uses {{store}}, which is not declared in `variables`",
        ),
        (
            edited("Pourquoi ?", "Pourquoi {{store ?"),
            "without its closing",
        ),
        (
            edited("kind: nps", "kind: stars"),
            ":8: unknown question kind 'stars'",
        ),
        (
            edited("at_most: 6", "at_most: 11"),
            ":12: 11 is outside the nps scale of 'score' (0–10)",
        ),
        (
            edited("at_most: 6", "equals: \"yes\""),
            "'yes' cannot be an answer to 'score' (nps question)",
        ),
        (
            edited("at_most: 6", "at_most: 6, at_least: 2"),
            "exactly one of",
        ),
        (
            edited(
                "    reprompt: { fr: \"De 0 à 10 svp.\", en: \"0 to 10 please.\" }\n",
                "",
            ),
            "needs a `reprompt`",
        ),
        (
            edited(
                "- when: { question: score, at_most: 6 }\n        goto: why",
                "- goto: end",
            ),
            ":13: question 'why' can never be reached from the start",
        ),
        (
            edited("languages: [fr, en]", "languages: [fr, de]"),
            "unsupported language 'de'",
        ),
        (
            edited(
                "- text: { fr: \"Merci !\", en: \"Thanks!\" }",
                "- when: { question: score, at_least: 9 }\n    text: { fr: \"Merci !\", en: \"Thanks!\" }",
            ),
            "the last closing message must have no `when`",
        ),
        (
            edited("id: sample", "id: other"),
            "flow id 'other' must match the file name",
        ),
        (
            edited(
                "    text: { fr: \"Pourquoi ?\", en: \"Why?\" }",
                "    text: { fr: \"Pourquoi ?\", en: \"Why?\" }\n    next:\n      - goto: score",
            ),
            "form a loop",
        ),
        (
            edited("  - id: why", "  - id: score"),
            "question id 'score' is used twice",
        ),
        (
            edited("name: Sample", "name: Sample\nname: Again"),
            "sample.yaml:3: Duplicate key \"name\"",
        ),
        (
            edited("questions:", "dispatch:\n  delay: soon\nquestions:"),
            ":7: dispatch.delay: 'soon' is not a duration",
        ),
        ("id: [unclosed".to_string(), "sample.yaml:"),
    ];
    for (source, expected) in cases {
        let errors = errors_of(&source);
        assert!(
            errors.iter().any(|e| e.contains(expected)),
            "expected {expected:?} in {errors:#?}\nfor:\n{source}"
        );
        assert!(
            errors.iter().all(|e| e.starts_with("flows/sample.yaml")),
            "{errors:#?}"
        );
    }
}

#[test]
fn a_condition_on_a_later_question_is_refused() {
    let source = edited(
        "        goto: why",
        "        goto: why\n      - when: { question: why, answered: true }\n        goto: end",
    );
    let errors = errors_of(&source);
    assert!(
        errors
            .iter()
            .any(|e| e.contains("tests 'why', which is never asked before it")),
        "{errors:#?}"
    );
}

#[test]
fn an_invalid_file_does_not_stop_the_others_from_loading() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("sample.yaml"), VALID).unwrap();
    std::fs::write(dir.path().join("broken.yaml"), "id: broken\nname: [").unwrap();
    std::fs::write(dir.path().join("sample.test.yaml"), "not: a flow").unwrap();
    std::fs::write(dir.path().join("notes.txt"), "ignored").unwrap();
    let set = load_paths(&[dir.path().to_path_buf()]);
    assert_eq!(set.flows.keys().collect::<Vec<_>>(), ["sample"]);
    assert_eq!(set.errors.len(), 1, "{:#?}", set.errors);
    assert!(set.errors[0].file.ends_with("broken.yaml"));
}

#[test]
fn conditions_test_the_answer_they_name() {
    let score = |n| Some(AnswerValue::Score(n));
    let at_most = Condition {
        question: 0,
        test: Test::AtMost(6),
    };
    assert!(at_most.holds(score(6).as_ref()));
    assert!(!at_most.holds(score(7).as_ref()));
    assert!(
        !at_most.holds(None),
        "an unanswered question matches no score test"
    );
    let yes = Condition {
        question: 0,
        test: Test::Equals(Expected::YesNo(YesNo::Yes)),
    };
    assert!(yes.holds(Some(&AnswerValue::YesNo(YesNoValue::Yes))));
    assert!(!yes.holds(Some(&AnswerValue::YesNo(YesNoValue::No))));
    let unanswered = Condition {
        question: 0,
        test: Test::Answered(false),
    };
    assert!(unanswered.holds(None));
    let one_of = Condition {
        question: 0,
        test: Test::OneOf(vec![
            Expected::Choice("a".into()),
            Expected::Choice("b".into()),
        ]),
    };
    assert!(one_of.holds(Some(&AnswerValue::Choice("b".into()))));
    assert!(!one_of.holds(Some(&AnswerValue::Choice("c".into()))));
}
