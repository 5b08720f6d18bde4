use super::*;
use crate::flow::{Flow, load_paths, parse_flow};
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::path::Path;
use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

const SHOP: &str = r#"id: shop
name: Shop
languages: [fr]
start: score
questions:
  - id: score
    kind: nps
    text: { fr: "De 0 à 10 ?" }
    reprompt: { fr: "De 0 à 10 svp." }
    next:
      - goto: channel
  - id: channel
    kind: choice
    text: { fr: "Site ou magasin ?" }
    reprompt: { fr: "1 ou 2 svp." }
    options:
      - { key: web, label: { fr: "Site" } }
      - { key: store, label: { fr: "Magasin" } }
    next:
      - goto: consent
  - id: consent
    kind: yesno
    text: { fr: "On peut publier ?" }
    reprompt: { fr: "OUI ou NON." }
    next:
      - goto: comment
  - id: comment
    kind: text
    text: { fr: "Un commentaire ?" }
closing:
  - text: { fr: "Merci !" }
"#;

const VISIT: &str = r#"id: visit
name: Visit
languages: [fr]
start: satisfaction
questions:
  - id: satisfaction
    kind: csat
    text: { fr: "De 1 à 5 ?" }
    reprompt: { fr: "De 1 à 5 svp." }
    next:
      - goto: consent
  - id: consent
    kind: yesno
    text: { fr: "On peut publier ?" }
    reprompt: { fr: "OUI ou NON." }
closing:
  - text: { fr: "Merci !" }
"#;

fn flows() -> BTreeMap<String, Flow> {
    [("shop", SHOP), ("visit", VISIT)]
        .into_iter()
        .map(|(id, source)| {
            let file = format!("flows/{id}.yaml");
            let flow = parse_flow(Path::new(&file), source).expect("the fixture flow is valid");
            (id.to_string(), flow)
        })
        .collect()
}

fn rules(source: &str) -> AlertRules {
    parse_rules(Path::new("alerts.yaml"), source, &flows())
        .unwrap_or_else(|errors| panic!("the rules should load: {errors:#?}"))
}

fn errors_of(source: &str) -> Vec<String> {
    parse_rules(Path::new("alerts.yaml"), source, &flows())
        .expect_err("the rules should be refused")
        .iter()
        .map(ToString::to_string)
        .collect()
}

/// A rule file with one rule whose `when` is the given condition.
fn one_rule(condition: &str) -> AlertRules {
    rules(&format!(
        "rules:\n  - id: r\n    when:\n      - {condition}\n"
    ))
}

fn answer<'a>(question_id: &'a str, kind: &'a str) -> ObservedAnswer<'a> {
    ObservedAnswer {
        question_id,
        kind,
        score: None,
        choice: None,
        text: None,
        new: true,
    }
}

fn scored<'a>(question_id: &'a str, kind: &'a str, score: i32) -> ObservedAnswer<'a> {
    ObservedAnswer {
        score: Some(score),
        ..answer(question_id, kind)
    }
}

fn chosen<'a>(question_id: &'a str, kind: &'a str, choice: &'a str) -> ObservedAnswer<'a> {
    ObservedAnswer {
        choice: Some(choice),
        ..answer(question_id, kind)
    }
}

fn written(text: &str) -> ObservedAnswer<'_> {
    ObservedAnswer {
        text: Some(text),
        ..answer("comment", "text")
    }
}

fn old(answer: ObservedAnswer<'_>) -> ObservedAnswer<'_> {
    ObservedAnswer {
        new: false,
        ..answer
    }
}

fn step<'a>(flow_id: &'a str, answers: &'a [ObservedAnswer<'a>]) -> Observation<'a> {
    Observation {
        flow_id,
        answers,
        opted_out: false,
    }
}

fn fired_ids(rules: &AlertRules, step: &Observation<'_>) -> Vec<String> {
    rules
        .evaluate(step)
        .into_iter()
        .map(|t| t.rule_id)
        .collect()
}

#[test]
fn a_detractor_score_fires_the_rule_with_the_default_case() {
    let rules = one_rule("answer: nps <= 6");
    let answers = [scored("score", "nps", 3)];
    assert_eq!(
        rules.evaluate(&step("shop", &answers)),
        [Triggered {
            rule_id: "r".to_string(),
            priority: Priority::Normal,
            sla: Duration::from_secs(24 * 3600),
            notify: vec![],
            reasons: vec!["nps <= 6 (answered 3)".to_string()],
        }]
    );
}

#[test]
fn every_operator_is_exact_on_its_boundary() {
    let cases = [
        ("<=", 5, true),
        ("<=", 6, true),
        ("<=", 7, false),
        ("<", 5, true),
        ("<", 6, false),
        (">=", 5, false),
        (">=", 6, true),
        (">", 6, false),
        (">", 7, true),
        ("==", 6, true),
        ("==", 7, false),
        ("!=", 6, false),
        ("!=", 5, true),
    ];
    for selector in ["nps", "score"] {
        for (op, score, fires) in cases {
            let rules = one_rule(&format!("answer: {selector} {op} 6"));
            let answers = [scored("score", "nps", score)];
            let fired = !rules.evaluate(&step("shop", &answers)).is_empty();
            assert_eq!(fired, fires, "{selector} {op} 6 on {score}");
        }
    }
}

#[test]
fn comparisons_may_be_written_without_spaces() {
    let rules = one_rule("answer: nps<=6");
    let answers = [scored("score", "nps", 6)];
    assert_eq!(
        rules.evaluate(&step("shop", &answers))[0].reasons,
        ["nps <= 6 (answered 6)"]
    );
}

#[test]
fn a_kind_selector_matches_any_question_of_that_kind_and_only_that_kind() {
    let rules = one_rule("answer: nps <= 6");
    let cases = [
        (scored("score", "nps", 2), true),
        (scored("another_nps_question", "nps", 2), true),
        (scored("satisfaction", "csat", 2), false),
        (chosen("score", "nps", "2"), false),
    ];
    for (answer, fires) in cases {
        let answers = [answer];
        assert_eq!(
            !rules.evaluate(&step("shop", &answers)).is_empty(),
            fires,
            "{answer:?}"
        );
    }
}

#[test]
fn a_question_id_selector_matches_only_that_question() {
    let rules = one_rule("answer: score <= 6");
    let answers = [scored("other", "nps", 2)];
    assert!(rules.evaluate(&step("shop", &answers)).is_empty());
    let answers = [scored("score", "nps", 2)];
    assert_eq!(fired_ids(&rules, &step("shop", &answers)), ["r"]);
}

#[test]
fn a_rule_applies_only_to_its_flows() {
    let rules = rules(
        "rules:\n  - id: shop_only\n    flows: [shop]\n    when:\n      - answer: consent == no\n  - id: everywhere\n    when:\n      - answer: consent == no\n",
    );
    let answers = [chosen("consent", "yesno", "no")];
    let cases = [
        ("shop", vec!["shop_only", "everywhere"]),
        ("visit", vec!["everywhere"]),
        ("elsewhere", vec!["everywhere"]),
    ];
    for (flow, expected) in cases {
        assert_eq!(fired_ids(&rules, &step(flow, &answers)), expected, "{flow}");
    }
}

#[test]
fn without_flows_a_question_id_needs_to_exist_in_one_flow_only() {
    let rules = one_rule("answer: channel == web");
    let answers = [chosen("channel", "choice", "web")];
    assert_eq!(fired_ids(&rules, &step("shop", &answers)), ["r"]);
}

#[test]
fn yes_no_and_choice_answers_are_compared_by_key() {
    let cases = [
        ("consent == no", chosen("consent", "yesno", "no"), true),
        ("consent == non", chosen("consent", "yesno", "no"), true),
        ("consent == oui", chosen("consent", "yesno", "yes"), true),
        ("consent == yes", chosen("consent", "yesno", "no"), false),
        ("consent != yes", chosen("consent", "yesno", "no"), true),
        ("consent != no", chosen("consent", "yesno", "no"), false),
        (
            "channel == store",
            chosen("channel", "choice", "store"),
            true,
        ),
        (
            "channel == store",
            chosen("channel", "choice", "web"),
            false,
        ),
        ("channel != store", chosen("channel", "choice", "web"), true),
        ("channel != store", answer("channel", "choice"), false),
    ];
    for (condition, observed, fires) in cases {
        let rules = one_rule(&format!("answer: {condition}"));
        let answers = [observed];
        assert_eq!(
            !rules.evaluate(&step("shop", &answers)).is_empty(),
            fires,
            "{condition} on {observed:?}"
        );
    }
    let rules = one_rule("answer: consent == non");
    let answers = [chosen("consent", "yesno", "no")];
    assert_eq!(
        rules.evaluate(&step("shop", &answers))[0].reasons,
        ["consent == no (answered no)"]
    );
}

#[test]
fn words_match_whatever_the_accents_case_plural_or_conjugation() {
    let cases = [
        ("Je vais résilier mon abonnement", "churn"),
        ("je resilie", "churn"),
        ("Résiliation immédiate", "churn"),
        ("RÉCLAMATION", "complaint"),
        ("reclamations", "complaint"),
        ("deux plaintes", "complaint"),
        ("c'est une ARNAQUE !", "complaint"),
        ("Totally unacceptable", "complaint"),
        ("mon AVOCAT", "legal"),
        ("j'ai appelé l'avocat", "legal"),
        ("j’en parle à mes avocats", "legal"),
        ("je vais porter plainte", "legal"),
        ("my lawyers will call", "legal"),
        ("I will cancel my contract", "churn"),
        ("cancelled", "churn"),
        ("never again!", "churn"),
        ("I want a refund", "refund"),
        ("they refunded nothing", "refund"),
        ("remboursé", "refund"),
        ("remboursee", "refund"),
        ("résiliée", "churn"),
        ("j'ai été arnaqué", "complaint"),
        ("c'est honteux", "complaint"),
        ("quelle honte", "complaint"),
        ("un procès", "legal"),
        ("mis en demeure", "legal"),
        ("je change de fournisseur", "churn"),
        ("I'm switching provider", "churn"),
        ("je veux être remboursée", "refund"),
        ("Remboursez-moi", "refund"),
        ("un geste commercial", "refund"),
    ];
    for (text, vocabulary) in cases {
        let rules = one_rule(&format!("words: [{vocabulary}]"));
        let answers = [written(text)];
        assert_eq!(
            fired_ids(&rules, &step("shop", &answers)),
            ["r"],
            "{text:?} should match {vocabulary}"
        );
    }
}

#[test]
fn ordinary_feedback_matches_no_vocabulary() {
    let rules = one_rule("words: [complaint, legal, churn, refund]");
    let texts = [
        "très bien, livreur sympa",
        "great service, thanks",
        "je recommande",
        "Parfait, merci beaucoup !",
        "rien à dire, tout était nickel",
        "le délai était court",
        "je n'ai pas su quoi répondre",
        "plus rapide que prévu",
        "justement, c'était bien",
        "I had no problem at all",
        "the courier was on time",
        "je vais avoir besoin d'un autre colis",
        "mon compte client fonctionne",
        "j'ai changé d'avis, c'est top",
        "le colis était proche de chez moi",
        "the process was simple",
        "plus de choix que prévu",
    ];
    for text in texts {
        let answers = [written(text)];
        assert_eq!(
            rules.evaluate(&step("shop", &answers)),
            [],
            "{text:?} should match nothing"
        );
    }
}

#[test]
fn a_phrase_matches_consecutive_words_only() {
    let rules = one_rule(r#"words: ["livreur impoli"]"#);
    let cases = [
        ("Un livreur impoli.", true),
        ("LIVREURS IMPOLIS", true),
        ("le livreur était impoli", false),
        ("impoli livreur", false),
    ];
    for (text, fires) in cases {
        let answers = [written(text)];
        let fired = rules.evaluate(&step("shop", &answers));
        assert_eq!(!fired.is_empty(), fires, "{text:?}");
        if fires {
            assert_eq!(fired[0].reasons, ["words: livreur impoli"]);
        }
    }
}

#[test]
fn a_vocabulary_reason_names_the_word_and_the_vocabulary() {
    let rules = one_rule("words: [legal]");
    let answers = [written("Mon avocat vous écrira")];
    assert_eq!(
        rules.evaluate(&step("shop", &answers))[0].reasons,
        ["words: avocat (legal)"]
    );
}

#[test]
fn words_are_also_found_in_the_comment_given_with_a_score() {
    let rules = one_rule("words: [refund]");
    let answers = [ObservedAnswer {
        text: Some("3, je veux un remboursement"),
        ..scored("score", "nps", 3)
    }];
    assert_eq!(fired_ids(&rules, &step("shop", &answers)), ["r"]);
}

#[test]
fn opting_out_after_a_bad_answer_fires_even_when_the_answer_is_old() {
    let rules = one_rule("opt_out_after: nps <= 6");
    let cases = [
        (vec![old(scored("score", "nps", 3))], true, true),
        (vec![old(scored("score", "nps", 3))], false, false),
        (vec![old(scored("score", "nps", 9))], true, false),
        (vec![scored("score", "nps", 6)], true, true),
        (vec![], true, false),
    ];
    for (answers, opted_out, fires) in cases {
        let observation = Observation {
            flow_id: "shop",
            answers: &answers,
            opted_out,
        };
        let fired = rules.evaluate(&observation);
        assert_eq!(
            !fired.is_empty(),
            fires,
            "{answers:?}, opted out: {opted_out}"
        );
        if fires {
            assert_eq!(fired[0].reasons, ["opted out after nps <= 6"]);
        }
    }
}

#[test]
fn nothing_fires_on_old_answers_alone() {
    let rules = rules(
        "rules:\n  - id: r\n    when:\n      - answer: nps <= 6\n      - words: [complaint]\n      - answer: consent == no\n",
    );
    let answers = [
        old(ObservedAnswer {
            text: Some("scandaleux"),
            ..scored("score", "nps", 0)
        }),
        old(chosen("consent", "yesno", "no")),
        old(written("une réclamation")),
        chosen("consent", "yesno", "yes"),
    ];
    assert_eq!(rules.evaluate(&step("shop", &answers)), []);
}

#[test]
fn a_rule_fires_once_with_every_reason_that_held() {
    let rules = rules(
        r#"rules:
  - id: detractor
    description: Score faible
    when:
      - answer: nps <= 6
      - words: [complaint, legal]
      - words: ["livreur impoli"]
      - opt_out_after: consent == no
    case: { priority: urgent, sla: 2h 30m }
    notify: [qualite@example.com, direction@example.com]
  - id: quiet
    when:
      - answer: nps >= 9
"#,
    );
    let answers = [
        old(chosen("consent", "yesno", "no")),
        ObservedAnswer {
            text: Some("2 : livreur impoli, c'est scandaleux, j'appelle mon avocat. Scandaleux !"),
            ..scored("score", "nps", 2)
        },
    ];
    let observation = Observation {
        flow_id: "shop",
        answers: &answers,
        opted_out: true,
    };
    assert_eq!(
        rules.evaluate(&observation),
        [Triggered {
            rule_id: "detractor".to_string(),
            priority: Priority::Urgent,
            sla: Duration::from_secs(2 * 3600 + 30 * 60),
            notify: vec![
                "qualite@example.com".to_string(),
                "direction@example.com".to_string()
            ],
            reasons: vec![
                "nps <= 6 (answered 2)".to_string(),
                "words: scandaleux (complaint)".to_string(),
                "words: avocat (legal)".to_string(),
                "words: livreur impoli".to_string(),
                "opted out after consent == no".to_string(),
            ],
        }]
    );
    assert_eq!(rules.description("detractor"), Some("Score faible"));
    assert_eq!(rules.description("quiet"), None);
}

#[test]
fn rules_fire_in_file_order() {
    let rules = rules(
        "rules:\n  - id: b\n    when:\n      - answer: nps <= 6\n  - id: a\n    when:\n      - answer: score < 5\n",
    );
    let answers = [scored("score", "nps", 1)];
    assert_eq!(fired_ids(&rules, &step("shop", &answers)), ["b", "a"]);
    assert_eq!(rules.len(), 2);
    assert!(!rules.is_empty());
}

#[test]
fn no_rules_fire_nothing() {
    let rules = AlertRules::empty();
    assert!(rules.is_empty());
    assert_eq!(rules.len(), 0);
    let answers = [scored("score", "nps", 0)];
    assert_eq!(rules.evaluate(&step("shop", &answers)), []);
    assert!(self::rules("rules: []\n").is_empty());
}

#[test]
fn priorities_read_as_written_in_the_file() {
    for priority in [
        Priority::Low,
        Priority::Normal,
        Priority::High,
        Priority::Urgent,
    ] {
        let rules = rules(&format!(
            "rules:\n  - id: r\n    when:\n      - answer: nps <= 6\n    case:\n      priority: {priority}\n"
        ));
        let answers = [scored("score", "nps", 0)];
        assert_eq!(
            rules.evaluate(&step("shop", &answers))[0].priority,
            priority
        );
    }
}

#[test]
fn each_invalid_rule_is_refused_with_its_line_and_reason() {
    let cases = [
        (
            "rules:\n  - id: r\n    when:\n      - answer: nps <= 6\n    colour: red\n",
            "alerts.yaml:5: unknown key `colour`",
        ),
        (
            "rules:\n  - id: r\n    when:\n      - answer: nps =< 6\n",
            "alerts.yaml:4: answer: unknown operator '=<' in 'nps =< 6'; use <=, <, >=, >, == or !=",
        ),
        (
            "rules:\n  - id: r\n    when:\n      - answer: nps is low\n",
            "alerts.yaml:4: answer: 'nps is low' is not `<selector> <op> <value>`, like `nps <= 6`",
        ),
        (
            "rules:\n  - id: r\n    when:\n      - answer: csat <= 6\n",
            "alerts.yaml:4: answer: '6' is not a score of the csat scale (1–5)",
        ),
        (
            "rules:\n  - id: r\n    when:\n      - opt_out_after: score > 11\n",
            "alerts.yaml:4: opt_out_after: '11' is not a score of the nps scale of 'score' in flow 'shop' (0–10)",
        ),
        (
            "rules:\n  - id: r\n    flows: [shop]\n    when:\n      - answer: ces <= 2\n",
            "alerts.yaml:5: answer: no flow of this rule asks a ces question",
        ),
        (
            "rules:\n  - id: r\n    flows: [shop, nope]\n    when:\n      - answer: nps <= 6\n",
            "alerts.yaml:3: unknown flow 'nope' (known flows: shop, visit)",
        ),
        (
            "rules:\n  - id: r\n    flows: []\n    when:\n      - answer: nps <= 6\n",
            "alerts.yaml:3: flows: list at least one flow, or leave it out for every flow",
        ),
        (
            "rules:\n  - id: r\n    when:\n      - answer: colour == red\n",
            "alerts.yaml:4: answer: 'colour' is neither nps, csat, ces nor a question of flows 'shop', 'visit'",
        ),
        (
            "rules:\n  - id: r\n    flows: [shop, visit]\n    when:\n      - answer: channel == web\n",
            "alerts.yaml:5: answer: flow 'visit' has no question 'channel'",
        ),
        (
            "rules:\n  - id: r\n    when:\n      - answer: nps <= 6\n  - id: r\n    when:\n      - answer: nps <= 5\n",
            "alerts.yaml:5: rule id 'r' is used twice",
        ),
        (
            "rules:\n  - id: Detractor!\n    when:\n      - answer: nps <= 6\n",
            "alerts.yaml:2: rule id 'Detractor!' must be made of a-z, 0-9, '_' and '-'",
        ),
        (
            "rules:\n  - id: r\n    when:\n      - words: []\n",
            "alerts.yaml:4: words: list at least one vocabulary, word or phrase",
        ),
        (
            "rules:\n  - id: r\n    when:\n      - words: [refund, '...']\n",
            "alerts.yaml:4: words: '...' has no letter or digit to look for",
        ),
        (
            "rules:\n  - id: r\n    when: []\n",
            "alerts.yaml:3: rule 'r': `when` needs at least one condition",
        ),
        (
            "rules:\n  - id: r\n    when:\n      - answer: nps <= 6\n        words: [legal]\n",
            "alerts.yaml:4: a condition is exactly one of answer, words or opt_out_after",
        ),
        (
            "rules:\n  - id: r\n    when:\n      - answer: nps <= 6\n    case:\n      sla: soon\n",
            "alerts.yaml:6: case.sla: 'soon' is not a duration like 4h, 30m or 2days",
        ),
        (
            "rules:\n  - id: r\n    when:\n      - answer: nps <= 6\n    case:\n      sla: 0s\n",
            "alerts.yaml:6: case.sla: '0s' must be more than 0 and at most 30 days",
        ),
        (
            "rules:\n  - id: r\n    when:\n      - answer: nps <= 6\n    case:\n      sla: 31days\n",
            "alerts.yaml:6: case.sla: '31days' must be more than 0 and at most 30 days",
        ),
        (
            "rules:\n  - id: r\n    when:\n      - answer: nps <= 6\n    case:\n      priority: critical\n",
            "alerts.yaml:6: case.priority: 'critical' is not low, normal, high or urgent",
        ),
        (
            "rules:\n  - id: r\n    when:\n      - answer: nps <= 6\n    notify:\n      - qualite.example.com\n",
            "alerts.yaml:6: notify: 'qualite.example.com' is not an e-mail address (one @, no spaces)",
        ),
        (
            "rules:\n  - id: r\n    when:\n      - answer: nps <= 6\n    notify: ['a b@example.com']\n",
            "alerts.yaml:5: notify: 'a b@example.com' is not an e-mail address (one @, no spaces)",
        ),
        (
            "rules:\n  - id: r\n    when:\n      - answer: consent == maybe\n",
            "alerts.yaml:4: answer: 'consent' is a yes/no question; compare it with yes or no, not 'maybe'",
        ),
        (
            "rules:\n  - id: r\n    when:\n      - answer: consent <= yes\n",
            "alerts.yaml:4: answer: 'consent' is a yesno question; compare it with == or !=, not <=",
        ),
        (
            "rules:\n  - id: r\n    when:\n      - answer: channel == phone\n",
            "alerts.yaml:4: answer: 'phone' is not an option of 'channel' in flow 'shop' (options: web, store)",
        ),
        (
            "rules:\n  - id: r\n    when:\n      - answer: channel > web\n",
            "alerts.yaml:4: answer: 'channel' is a choice question; compare it with == or !=, not >",
        ),
        (
            "rules:\n  - id: r\n    when:\n      - answer: comment == nice\n",
            "alerts.yaml:4: answer: 'comment' is a text question; look for words in it with `words:`",
        ),
        (
            "rules:\n  - id: r\n    id: s\n    when:\n      - answer: nps <= 6\n",
            "alerts.yaml:3: Duplicate key \"id\"",
        ),
    ];
    for (source, expected) in cases {
        let errors = errors_of(source);
        assert!(
            errors.iter().any(|e| e.starts_with(expected)),
            "expected {expected:?} for\n{source}\ngot {errors:#?}"
        );
    }
}

#[test]
fn every_problem_of_the_file_is_reported_at_once() {
    let errors = errors_of(
        r#"rules:
  - id: a
    flows: [nope]
    when:
      - answer: nps <= 11
    case:
      priority: soon
  - id: b
    when:
      - words: []
    notify: [nobody]
"#,
    );
    let lines: Vec<&str> = errors
        .iter()
        .map(|e| e.split(": ").next().unwrap_or_default())
        .collect();
    assert_eq!(
        lines,
        [
            "alerts.yaml:3",
            "alerts.yaml:7",
            "alerts.yaml:10",
            "alerts.yaml:11"
        ],
        "{errors:#?}"
    );
}

#[test]
fn an_unreadable_file_is_an_error_without_a_line() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let missing = dir.path().join("alerts.yaml");
    let errors = load_rules(&missing, &flows()).expect_err("there is no file");
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].line, None);
    assert_eq!(errors[0].file, missing);
}

#[test]
fn the_example_rules_file_loads_against_the_shipped_flows() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let set = load_paths(&[root.join("flows")]);
    assert!(set.errors.is_empty(), "{:#?}", set.errors);
    let rules = load_rules(&root.join("alerts.yaml"), &set.flows)
        .unwrap_or_else(|errors| panic!("{errors:#?}"));
    assert!(rules.len() >= 4);
    let answers = [ObservedAnswer {
        text: Some("Je vais résilier, c'est scandaleux"),
        ..scored("score", "nps", 2)
    }];
    assert!(!rules.evaluate(&step("delivery", &answers)).is_empty());
}

/// Letters that an accent can sit on, with their accented forms.
const ACCENTED: [(char, &str); 5] = [
    ('a', "aàâä"),
    ('e', "eéèêë"),
    ('i', "iîï"),
    ('o', "oôö"),
    ('u', "uùûü"),
];

/// The word with every letter's case flipped or not, and vowels given an accent or not, as
/// `choices` (one per character) decide.
fn disguised(word: &str, choices: &[(bool, usize)]) -> String {
    let plain: String = word.nfd().filter(|c| !is_combining_mark(*c)).collect();
    plain
        .chars()
        .zip(choices.iter().cycle())
        .map(|(c, &(upper, accent))| {
            let c = ACCENTED
                .iter()
                .find(|(base, _)| *base == c)
                .and_then(|(_, forms)| forms.chars().nth(accent % forms.chars().count()))
                .unwrap_or(c);
            if upper {
                c.to_uppercase().collect::<String>()
            } else {
                c.to_string()
            }
        })
        .collect()
}

proptest! {
    #[test]
    fn evaluation_never_panics(
        text in any::<String>(),
        score in any::<i32>(),
        choice in any::<String>(),
        new in any::<bool>(),
        opted_out in any::<bool>(),
    ) {
        let rules = rules(
            "rules:\n  - id: r\n    when:\n      - answer: nps <= 6\n      - answer: channel != web\n      - words: [complaint, legal, churn, refund, \"livreur impoli\"]\n      - opt_out_after: consent == no\n",
        );
        let answers = [
            ObservedAnswer { score: Some(score), text: Some(&text), new, ..answer("score", "nps") },
            ObservedAnswer { choice: Some(&choice), text: Some(&text), new, ..answer("channel", "choice") },
            ObservedAnswer { choice: Some(&choice), new, ..answer("consent", "yesno") },
        ];
        let observation = Observation { flow_id: "shop", answers: &answers, opted_out };
        let fired = rules.evaluate(&observation);
        prop_assert!(fired.len() <= 1);
    }

    #[test]
    fn a_vocabulary_word_matches_whatever_its_case_and_accents(
        vocabulary in 0..4usize,
        word in any::<prop::sample::Index>(),
        choices in prop::collection::vec((any::<bool>(), 0..5usize), 1..40),
    ) {
        let name = ["complaint", "legal", "churn", "refund"][vocabulary];
        let (_, all) = words::vocabulary(name).expect("a built-in vocabulary");
        let written = disguised(word.get::<&str>(all), &choices);
        let text = format!("Bonjour, {written} !");
        let rules = one_rule(&format!("words: [{name}]"));
        let answers = [self::written(&text)];
        prop_assert_eq!(fired_ids(&rules, &step("shop", &answers)), ["r"], "{}", text);
    }
}
