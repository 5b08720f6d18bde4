//! The flow author's commands, run as the real binary: lint, test, simulate, understand, segments.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

const BINARY: &str = env!("CARGO_BIN_EXE_hearback");

fn repository() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn hearback(args: &[&str]) -> Output {
    Command::new(BINARY)
        .args(args)
        .current_dir(repository())
        .env_remove("HEARBACK_CONFIG")
        .output()
        .expect("run hearback")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn the_shipped_flows_pass_lint_and_their_transcripts() {
    let lint = hearback(&["flows", "lint", "flows/"]);
    assert!(
        lint.status.success(),
        "{}{}",
        stdout(&lint),
        String::from_utf8_lossy(&lint.stderr)
    );
    let report = stdout(&lint);
    for flow in ["delivery", "call_centre", "repair"] {
        assert!(report.contains(&format!("{flow} (")), "{report}");
    }
    assert!(report.contains("GSM-7"), "{report}");

    let test = hearback(&["flows", "test", "flows/"]);
    let report = stdout(&test);
    assert!(test.status.success(), "{report}");
    assert!(report.contains(", 0 failed"), "{report}");
}

#[test]
fn every_shipped_flow_has_a_transcript() {
    for entry in std::fs::read_dir(repository().join("flows")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        if name.ends_with(".yaml") && !name.ends_with(".test.yaml") {
            let transcript = path.with_file_name(name.replace(".yaml", ".test.yaml"));
            assert!(transcript.exists(), "{name} has no transcript");
        }
    }
}

#[test]
fn lint_reports_an_invalid_flow_with_its_line_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("broken.yaml"),
        "id: broken\nname: Broken\nlanguages: [fr]\nstart: nowhere\nquestions: []\nclosing: []\n",
    )
    .unwrap();
    let lint = hearback(&["flows", "lint", dir.path().to_str().unwrap()]);
    assert!(!lint.status.success());
    let report = stdout(&lint);
    assert!(
        report.contains("broken.yaml:4: there is no question 'nowhere'"),
        "{report}"
    );
}

#[test]
fn lint_as_json_lists_each_message_with_its_encoding_and_suggestions() {
    let dir = tempfile::tempdir().unwrap();
    let flow = r#"id: accents
name: Accents
languages: [fr]
start: q
questions:
  - id: q
    kind: yesno
    text: { fr: "Êtes-vous satisfait de votre commande ?" }
    reprompt: { fr: "OUI ou NON ?" }
closing:
  - text: { fr: "Merci" }
"#;
    std::fs::write(dir.path().join("accents.yaml"), flow).unwrap();
    let lint = hearback(&["flows", "lint", "--json", dir.path().to_str().unwrap()]);
    assert!(
        lint.status.success(),
        "warnings do not fail the lint: {}",
        stdout(&lint)
    );
    let report: serde_json::Value = serde_json::from_str(stdout(&lint).trim()).unwrap();
    let first = &report[0]["messages"][0];
    assert_eq!(first["where"], "q.text");
    assert_eq!(first["encoding"], "UCS-2");
    assert_eq!(first["ucs2_characters"][0]["char"], "Ê");
    let warnings = report[0]["warnings"].to_string();
    assert!(warnings.contains("no opt-out instruction"), "{warnings}");
}

#[test]
fn a_failing_transcript_fails_the_command_and_says_where() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        repository().join("flows/repair.yaml"),
        dir.path().join("repair.yaml"),
    )
    .unwrap();
    let transcript = r#"flow: repair
cases:
  - name: expects the wrong question
    lang: en
    variables: { first_name: Sam, store: Dupain }
    conversation:
      - send: "Hello Sam, your Dupain repair is complete. How easy was it? From 1 (very difficult) to 7 (very easy). Reply STOP to opt out"
      - reply: "7"
      - send: "Anything else?"
    answers: { effort: "7" }
"#;
    std::fs::write(dir.path().join("repair.test.yaml"), transcript).unwrap();
    let test = hearback(&["flows", "test", dir.path().to_str().unwrap()]);
    assert!(!test.status.success());
    let report = stdout(&test);
    assert!(
        report.contains("FAIL repair › expects the wrong question"),
        "{report}"
    );
    assert!(report.contains("line 3: expected hearback to send \"Anything else?\", it sent \"Is your problem solved? Reply YES or NO.\""), "{report}");
}

#[test]
fn understand_prints_the_contract_json_line() {
    let cases = [
        (
            vec!["--kind", "nps", "--lang", "fr", "neuf sur dix"],
            r#"{"kind":"nps","value":9}"#,
        ),
        (
            vec!["--kind", "csat", "--lang", "en", "⭐⭐⭐⭐"],
            r#"{"kind":"csat","value":4}"#,
        ),
        (
            vec!["--kind", "yesno", "--lang", "fr", "oui"],
            r#"{"kind":"yesno","value":"yes"}"#,
        ),
        (
            vec!["--kind", "keyword", "STOP"],
            r#"{"kind":"keyword","value":"opt_out"}"#,
        ),
    ];
    for (args, expected) in cases {
        let mut all = vec!["understand"];
        all.extend(args.iter());
        let output = hearback(&all);
        assert!(output.status.success(), "{args:?}");
        assert_eq!(stdout(&output).trim(), expected, "{args:?}");
    }
    let unclear = hearback(&["understand", "--kind", "nps", "--lang", "fr", "7 ou 8"]);
    let line: serde_json::Value = serde_json::from_str(stdout(&unclear).trim()).unwrap();
    assert_eq!(line["kind"], "nps");
    assert!(line["unclear"].is_string(), "{line}");
    assert!(line.get("value").is_none(), "{line}");
}

#[test]
fn segments_prints_the_contract_json_line() {
    let output = hearback(&["segments", "Vous êtes formidables"]);
    assert_eq!(
        stdout(&output).trim(),
        r#"{"encoding":"UCS-2","segments":1,"units":21}"#
    );
    let output = hearback(&["segments", "Merci pour votre réponse"]);
    assert_eq!(
        stdout(&output).trim(),
        r#"{"encoding":"GSM-7","segments":1,"units":24}"#
    );
}

#[test]
fn simulate_holds_the_conversation_on_standard_input() {
    let mut child = Command::new(BINARY)
        .args([
            "flows",
            "simulate",
            "repair",
            "--lang",
            "en",
            "--var",
            "first_name=Sam",
            "--var",
            "store=Dupain",
        ])
        .current_dir(repository())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"maybe\n5\nno, still broken\n/quit\n")
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let transcript = stdout(&output);
    assert!(output.status.success(), "{transcript}");
    assert!(
        transcript.contains("hearback> Hello Sam, your Dupain repair is complete."),
        "{transcript}"
    );
    assert!(
        transcript.contains(
            "hearback> Please reply with a number from 1 (very difficult) to 7 (very easy)."
        ),
        "{transcript}"
    );
    assert!(
        transcript.contains("hearback> Is your problem solved? Reply YES or NO."),
        "{transcript}"
    );
    assert!(
        transcript.contains("hearback> Thank you Sam, we will get back to you very soon."),
        "{transcript}"
    );
}
