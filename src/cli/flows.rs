//! `hearback flows lint | simulate | test`: the flow author's tools.

use crate::engine::transcript;
use crate::engine::{Event, Input, State, Status, step};
use crate::flow::{Flow, FlowSet, is_transcript, load_paths};
use crate::lang::Lang;
use crate::sms;
use crate::time::Timestamp;
use crate::understand::{self, Keyword};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

/// What `flows lint` found; `errors > 0` fails the command.
pub struct LintOutcome {
    pub errors: usize,
    pub report: String,
}

/// Validates flows and reports, for every message in every language, its encoding, segments and
/// estimated cost, the characters that force UCS-2 with a GSM-7 replacement to consider, and
/// whether the first message tells how to opt out.
pub fn lint(paths: &[PathBuf], json_output: bool, cost_per_segment: f64) -> LintOutcome {
    let set = load_paths(paths);
    let mut errors = set.errors.len();
    let mut reports: Vec<Value> = set
        .errors
        .iter()
        .map(|e| json!({ "file": e.file, "line": e.line, "error": e.reason }))
        .collect();
    for (id, flow) in &set.flows {
        let mut messages = Vec::new();
        let mut warnings = Vec::new();
        for (place, lang, template) in flow.texts() {
            let text = template.source();
            let segments = sms::segments(&text);
            let forcing: Vec<Value> = sms::ucs2_characters(&text)
                .into_iter()
                .map(|c| json!({ "char": c.to_string(), "suggestion": sms::gsm7_replacement(c) }))
                .collect();
            if !forcing.is_empty() {
                let listed: Vec<String> = forcing
                    .iter()
                    .map(|f| match f["suggestion"].as_str() {
                        Some(s) => {
                            format!("'{}' (try '{s}')", f["char"].as_str().unwrap_or_default())
                        }
                        None => format!("'{}'", f["char"].as_str().unwrap_or_default()),
                    })
                    .collect();
                warnings.push(format!(
                    "{place} [{lang}]: UCS-2 because of {}",
                    listed.join(", ")
                ));
            }
            messages.push(json!({
                "where": place,
                "lang": lang,
                "encoding": segments.encoding.as_str(),
                "segments": segments.segments,
                "units": segments.units,
                "estimated_cost": f64::from(segments.segments) * cost_per_segment,
                "ucs2_characters": forcing,
            }));
        }
        for lang in &flow.languages {
            let first = flow.question(flow.start).text.get(*lang).source();
            if !first.to_lowercase().contains("stop") {
                warnings.push(format!(
                    "the first message [{lang}] gives no opt-out instruction such as \"STOP au 36180\""
                ));
            }
        }
        reports.push(json!({ "flow": id, "file": set.files[id], "messages": messages, "warnings": warnings }));
    }
    if paths.iter().all(|p| p.is_dir()) && set.flows.is_empty() && set.errors.is_empty() {
        errors += 1;
        reports.push(json!({ "error": "no flow file found" }));
    }
    let report = if json_output {
        Value::Array(reports).to_string()
    } else {
        human_lint(&reports)
    };
    LintOutcome { errors, report }
}

fn human_lint(reports: &[Value]) -> String {
    let mut out = String::new();
    for report in reports {
        if let Some(error) = report["error"].as_str() {
            match (report["file"].as_str(), report["line"].as_u64()) {
                (Some(file), Some(line)) => {
                    out.push_str(&format!("error: {file}:{line}: {error}\n"))
                }
                (Some(file), None) => out.push_str(&format!("error: {file}: {error}\n")),
                _ => out.push_str(&format!("error: {error}\n")),
            }
            continue;
        }
        out.push_str(&format!(
            "{} ({}): ok\n",
            report["flow"].as_str().unwrap_or_default(),
            report["file"].as_str().unwrap_or_default()
        ));
        for message in report["messages"].as_array().into_iter().flatten() {
            out.push_str(&format!(
                "  {:<24} {}  {:<5}  {} segment(s)  {:>3} units  cost ~{:.3}\n",
                message["where"].as_str().unwrap_or_default(),
                message["lang"].as_str().unwrap_or_default(),
                message["encoding"].as_str().unwrap_or_default(),
                message["segments"],
                message["units"],
                message["estimated_cost"].as_f64().unwrap_or_default(),
            ));
        }
        for warning in report["warnings"].as_array().into_iter().flatten() {
            out.push_str(&format!(
                "  warning: {}\n",
                warning.as_str().unwrap_or_default()
            ));
        }
    }
    out
}

/// What `flows test` found.
pub struct TestOutcome {
    pub passed: usize,
    pub failed: usize,
    pub report: String,
}

/// Replays every transcript (`*.test.yaml`) found in `paths` against its flow.
pub fn test(paths: &[PathBuf]) -> TestOutcome {
    let mut outcome = TestOutcome {
        passed: 0,
        failed: 0,
        report: String::new(),
    };
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(path)
                .map(|entries| {
                    entries
                        .filter_map(Result::ok)
                        .map(|e| e.path())
                        .filter(|p| is_transcript(p))
                        .collect()
                })
                .unwrap_or_default();
            found.sort();
            files.extend(found);
        } else {
            files.push(path.clone());
        }
    }
    if files.is_empty() {
        outcome.failed += 1;
        outcome
            .report
            .push_str("FAIL no transcript (*.test.yaml) found\n");
    }
    let now = Timestamp::now();
    for file in files {
        let fail = |outcome: &mut TestOutcome, message: String| {
            outcome.failed += 1;
            outcome
                .report
                .push_str(&format!("FAIL {}: {message}\n", file.display()));
        };
        let source = match std::fs::read_to_string(&file) {
            Ok(source) => source,
            Err(e) => {
                fail(&mut outcome, e.to_string());
                continue;
            }
        };
        let transcript = match transcript::parse(&source) {
            Ok(t) => t,
            Err(e) => {
                fail(&mut outcome, e);
                continue;
            }
        };
        let folder = file.parent().map(Path::to_path_buf).unwrap_or_default();
        let flow_file = folder.join(format!("{}.yaml", transcript.flow));
        let set = load_paths(std::slice::from_ref(&flow_file));
        let Some(flow) = set.flows.get(&transcript.flow) else {
            let reasons: Vec<String> = set.errors.iter().map(ToString::to_string).collect();
            fail(
                &mut outcome,
                format!(
                    "flow '{}' does not load: {}",
                    transcript.flow,
                    reasons.join("; ")
                ),
            );
            continue;
        };
        for case in &transcript.cases {
            let failures = transcript::run_case(flow, case, now);
            if failures.is_empty() {
                outcome.passed += 1;
                outcome
                    .report
                    .push_str(&format!("ok   {} › {}\n", transcript.flow, case.name));
            } else {
                outcome.failed += 1;
                outcome
                    .report
                    .push_str(&format!("FAIL {} › {}\n", transcript.flow, case.name));
                for failure in failures {
                    outcome.report.push_str(&format!("       {failure}\n"));
                }
            }
        }
    }
    outcome.report.push_str(&format!(
        "{} passed, {} failed\n",
        outcome.passed, outcome.failed
    ));
    outcome
}

/// Finds a flow by id in `dir`, or loads it from a file path.
pub fn find_flow(name: &str, dir: &Path) -> Result<Flow, String> {
    let path = Path::new(name);
    let set: FlowSet = if path.extension().is_some() {
        load_paths(&[path.to_path_buf()])
    } else {
        load_paths(&[dir.to_path_buf()])
    };
    let id = path.file_stem().and_then(|s| s.to_str()).unwrap_or(name);
    if let Some(flow) = set.flows.get(id) {
        return Ok(flow.clone());
    }
    let reasons: Vec<String> = set
        .errors
        .iter()
        .filter(|e| e.file.file_stem().and_then(|s| s.to_str()) == Some(id))
        .map(ToString::to_string)
        .collect();
    if reasons.is_empty() {
        Err(format!("no flow '{id}' in {}", dir.display()))
    } else {
        Err(reasons.join("; "))
    }
}

/// Holds a conversation in the terminal: hearback's messages are printed, the customer's replies
/// are read line by line. `/reminder` and `/expiry` trigger those events, `/quit` stops.
pub fn simulate(
    flow: &Flow,
    lang: Lang,
    variables: BTreeMap<String, String>,
    input: &mut impl BufRead,
    output: &mut impl Write,
) -> std::io::Result<()> {
    for missing in flow
        .variables
        .iter()
        .filter(|v| !variables.contains_key(*v))
    {
        writeln!(
            output,
            "(no value for {{{{{missing}}}}}; pass --var {missing}=…)"
        )?;
    }
    let now = Timestamp::now();
    let mut current = step(flow, &State::new(lang, variables), Input::Start, now);
    loop {
        for message in &current.messages {
            let segments = sms::segments(message);
            writeln!(
                output,
                "hearback> {message}   [{}, {} segment(s)]",
                segments.encoding.as_str(),
                segments.segments
            )?;
        }
        for event in &current.events {
            match event {
                Event::AnswerRecorded {
                    question,
                    value,
                    comment,
                } => {
                    let comment = comment
                        .as_ref()
                        .map(|c| format!(", note {c:?}"))
                        .unwrap_or_default();
                    writeln!(
                        output,
                        "   (answer to {question}: {}{comment})",
                        serde_json::to_string(value).unwrap_or_default()
                    )?;
                }
                Event::NotUnderstood {
                    reason, attempt, ..
                } => writeln!(output, "   (not understood: {reason}, attempt {attempt})")?,
                Event::GaveUp { question } => writeln!(output, "   (gave up on {question})")?,
                Event::Completed { answered } => {
                    writeln!(output, "   (completed with {answered} answer(s))")?
                }
                Event::Expired { answered } => {
                    writeln!(output, "   (expired with {answered} answer(s))")?
                }
                Event::LateReply { .. } => {
                    writeln!(output, "   (late reply: kept, the survey does not restart)")?
                }
                Event::Started { .. } | Event::ReminderSent { .. } => {}
            }
        }
        write!(output, "you> ")?;
        output.flush()?;
        let mut line = String::new();
        if input.read_line(&mut line)? == 0 {
            writeln!(output)?;
            return Ok(());
        }
        let line = line.trim_end_matches(['\r', '\n']);
        let next = match line {
            "/quit" => return Ok(()),
            "/reminder" => Input::ReminderDue,
            "/expiry" => Input::ExpiryDue,
            text => match understand::keyword(text) {
                Some(Keyword::OptOut) => {
                    writeln!(
                        output,
                        "   (opt-out: one confirmation is sent and this number is never texted again)"
                    )?;
                    return Ok(());
                }
                Some(keyword) => {
                    writeln!(
                        output,
                        "   (keyword {}: answered outside the survey)",
                        keyword.as_str()
                    )?;
                    current.messages.clear();
                    current.events.clear();
                    continue;
                }
                None => Input::Reply(text),
            },
        };
        current = step(flow, &current.state, next, now);
        if current.state.status != Status::Open
            && current.messages.is_empty()
            && current.events.is_empty()
        {
            writeln!(output, "   (the conversation is over)")?;
        }
    }
}
