//! Reading and validating flow files. Every problem is reported with its file, line and reason;
//! an invalid file is refused whole and the other files still load.

use super::schema::{BranchFile, ConditionFile, DispatchFile, FlowFile, QuestionFile, Text};
use super::{
    Branch, ChoiceOption, Closing, Condition, Dispatch, Expected, Flow, GiveUp, Localized,
    Question, QuestionIndex, QuestionKind, Quota, QuotaPeriod, Reminder, Target, Template, Test,
    WindowNarrowing,
};
use crate::lang::Lang;
use crate::understand::{Scale, YesNo};
use chrono::{NaiveTime, Weekday};
use marked_yaml::{LoaderOptions, Spanned};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

const DEFAULT_RETRIES: u8 = 2;
const MAX_RETRIES: u8 = 5;
const DEFAULT_EXPIRY: Duration = Duration::from_secs(72 * 3600);
const TRANSCRIPT_SUFFIXES: [&str; 2] = [".test.yaml", ".test.yml"];

/// One problem in one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowError {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub reason: String,
}

impl fmt::Display for FlowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}: {}", self.file.display(), self.reason),
            None => write!(f, "{}: {}", self.file.display(), self.reason),
        }
    }
}

impl std::error::Error for FlowError {}

/// The flows that loaded, by id, and the problems of those that did not.
#[derive(Debug, Default)]
pub struct FlowSet {
    pub flows: BTreeMap<String, Flow>,
    pub files: BTreeMap<String, PathBuf>,
    pub errors: Vec<FlowError>,
}

/// Transcript tests live beside their flow as `<id>.test.yaml`; the loader skips them.
pub fn is_transcript(path: &Path) -> bool {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    TRANSCRIPT_SUFFIXES.iter().any(|s| name.ends_with(s))
}

fn is_flow_file(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml")
    ) && !is_transcript(path)
}

/// Loads flow files and folders of flow files (not recursive), in name order.
pub fn load_paths(paths: &[PathBuf]) -> FlowSet {
    let mut set = FlowSet::default();
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            match std::fs::read_dir(path) {
                Ok(entries) => {
                    let mut found: Vec<PathBuf> = entries
                        .filter_map(Result::ok)
                        .map(|e| e.path())
                        .filter(|p| is_flow_file(p))
                        .collect();
                    found.sort();
                    files.extend(found);
                }
                Err(e) => set.errors.push(FlowError {
                    file: path.clone(),
                    line: None,
                    reason: e.to_string(),
                }),
            }
        } else {
            files.push(path.clone());
        }
    }
    for file in files {
        let source = match std::fs::read_to_string(&file) {
            Ok(source) => source,
            Err(e) => {
                set.errors.push(FlowError {
                    file,
                    line: None,
                    reason: e.to_string(),
                });
                continue;
            }
        };
        match parse_flow(&file, &source) {
            Ok(flow) => {
                if let Some(first) = set.files.get(&flow.id) {
                    let reason = format!(
                        "flow id '{}' is already used by {}",
                        flow.id,
                        first.display()
                    );
                    set.errors.push(FlowError {
                        file,
                        line: Some(1),
                        reason,
                    });
                } else {
                    set.files.insert(flow.id.clone(), file);
                    set.flows.insert(flow.id.clone(), flow);
                }
            }
            Err(errors) => set.errors.extend(errors),
        }
    }
    set
}

/// Parses and validates one flow file; every problem found is returned.
pub fn parse_flow(file: &Path, source: &str) -> Result<Flow, Vec<FlowError>> {
    let options = LoaderOptions::default().error_on_duplicate_keys(true);
    let raw: FlowFile = marked_yaml::from_yaml_with_options(0, source, options).map_err(|e| {
        let (line, reason) = yaml_error(source, &e);
        vec![FlowError {
            file: file.to_path_buf(),
            line,
            reason,
        }]
    })?;
    let mut checker = Checker {
        file,
        errors: Vec::new(),
        languages: Vec::new(),
        variables: BTreeSet::new(),
    };
    let flow = checker.flow(raw);
    match flow {
        Some(flow) if checker.errors.is_empty() => Ok(flow),
        _ => {
            let mut errors = checker.errors;
            errors.sort_by_key(|e| e.line);
            errors.dedup();
            Err(errors)
        }
    }
}

/// Where a YAML file the reader refused is wrong, and why, worded for the file's author (flows
/// and alert rules alike).
pub(crate) fn yaml_error(
    source: &str,
    error: &marked_yaml::FromYamlError,
) -> (Option<usize>, String) {
    let (line, reason) = match error {
        marked_yaml::FromYamlError::ParseYaml(load) => (load_error_line(load), load.to_string()),
        marked_yaml::FromYamlError::FromNode(node) => {
            let line = node
                .start_mark()
                .map(|m| m.line())
                .or_else(|| match &**node {
                    marked_yaml::Error::UnknownFieldError(key, _, _) => line_of_key(source, key),
                    _ => None,
                });
            (line, node.to_string())
        }
    };
    (line, reason.replace("Unknown field", "unknown key"))
}

/// The YAML reader does not always know where an unknown key is; the first line that defines a
/// key of that name is where the author will look.
fn line_of_key(source: &str, key: &str) -> Option<usize> {
    source
        .lines()
        .position(|line| {
            let line = line.trim_start().trim_start_matches("- ").trim_start();
            line.strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with(':'))
        })
        .map(|index| index + 1)
}

fn load_error_line(error: &marked_yaml::LoadError) -> Option<usize> {
    use marked_yaml::LoadError::*;
    match error {
        TopLevelMustBeMapping(m)
        | TopLevelMustBeSequence(m)
        | UnexpectedAnchor(m)
        | MappingKeyMustBeScalar(m)
        | UnexpectedTag(m)
        | ScanError(m, _) => Some(m.line()),
        DuplicateKey(inner) => inner.key.span().start().map(|m| m.line()),
    }
}

pub(crate) fn line_of<T>(value: &Spanned<T>) -> Option<usize> {
    value.span().start().map(|m| m.line())
}

struct Checker<'a> {
    file: &'a Path,
    errors: Vec<FlowError>,
    languages: Vec<Lang>,
    variables: BTreeSet<String>,
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

impl Checker<'_> {
    fn error(&mut self, line: Option<usize>, reason: impl Into<String>) {
        self.errors.push(FlowError {
            file: self.file.to_path_buf(),
            line,
            reason: reason.into(),
        });
    }

    fn flow(&mut self, raw: FlowFile) -> Option<Flow> {
        let id = raw.id.as_str().to_string();
        if !valid_id(&id) {
            self.error(
                line_of(&raw.id),
                format!("flow id '{id}' must be 1 to 64 of a-z, 0-9 and '_'"),
            );
        }
        let stem = self
            .file
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        if stem != id {
            self.error(
                line_of(&raw.id),
                format!("flow id '{id}' must match the file name ('{stem}.yaml')"),
            );
        }
        self.languages(&raw.languages);
        for variable in &raw.variables {
            if !valid_id(variable) {
                self.error(
                    line_of(variable),
                    format!(
                        "variable name '{}' must be a-z, 0-9 and '_'",
                        variable.as_str()
                    ),
                );
            } else if !self.variables.insert(variable.as_str().to_string()) {
                self.error(
                    line_of(variable),
                    format!("variable '{}' is declared twice", variable.as_str()),
                );
            }
        }

        let ids: Vec<String> = raw
            .questions
            .iter()
            .map(|q| q.id.as_str().to_string())
            .collect();
        if raw.questions.is_empty() {
            self.error(line_of(&raw.start), "a flow needs at least one question");
        }
        for (i, question) in raw.questions.iter().enumerate() {
            let qid = question.id.as_str();
            if !valid_id(qid) || qid == "end" {
                self.error(
                    line_of(&question.id),
                    format!("question id '{qid}' must be a-z, 0-9 and '_' (and not 'end')"),
                );
            }
            if ids[..i].iter().any(|other| other == qid) {
                self.error(
                    line_of(&question.id),
                    format!("question id '{qid}' is used twice"),
                );
            }
        }
        let start = self.resolve_question(&raw.start, &ids);
        let kinds: Vec<Option<QuestionKind>> = raw.questions.iter().map(|q| self.kind(q)).collect();
        let mut questions = Vec::new();
        for (question, kind) in raw.questions.iter().zip(&kinds) {
            if let Some(q) = self.question(question, kind.clone(), &ids, &kinds) {
                questions.push(q);
            }
        }
        let mut closing = Vec::new();
        for (i, entry) in raw.closing.iter().enumerate() {
            let when = entry
                .when
                .as_ref()
                .and_then(|c| self.condition(c, &ids, &kinds));
            if i + 1 == raw.closing.len() && entry.when.is_some() {
                self.error(
                    line_of(&entry.text),
                    "the last closing message must have no `when`, so every customer is thanked",
                );
            }
            if let Some(text) = self.text(&entry.text, "closing message") {
                closing.push(Closing { when, text });
            }
        }
        if raw.closing.is_empty() {
            self.error(
                line_of(&raw.start),
                "a flow needs at least one closing message",
            );
        }
        let dispatch = self.dispatch(&raw.dispatch);
        if !self.errors.is_empty() {
            return None;
        }
        let flow = Flow {
            id,
            name: raw.name,
            languages: self.languages.clone(),
            variables: self.variables.iter().cloned().collect(),
            dispatch: dispatch?,
            start: start?,
            questions,
            closing,
        };
        self.graph(&flow, &raw.questions);
        Some(flow)
    }

    fn languages(&mut self, raw: &Spanned<Vec<String>>) {
        for code in raw.iter() {
            match code.parse::<Lang>() {
                Ok(lang) if code == lang.code() && !self.languages.contains(&lang) => {
                    self.languages.push(lang)
                }
                Ok(_) => self.error(
                    line_of(raw),
                    format!("language '{code}' is listed twice or not as fr/en"),
                ),
                Err(e) => self.error(line_of(raw), e.to_string()),
            }
        }
        if self.languages.is_empty() {
            self.error(line_of(raw), "a flow needs at least one language (fr, en)");
        }
    }

    /// A text in every language of the flow, using declared variables only.
    fn text(&mut self, raw: &Spanned<Text>, what: &str) -> Option<Localized> {
        let mut texts = BTreeMap::new();
        for (code, value) in raw.iter() {
            let lang = match code.parse::<Lang>() {
                Ok(lang) if self.languages.contains(&lang) && code.as_str() == lang.code() => lang,
                _ => {
                    self.error(
                        line_of(code),
                        format!("'{}' is not one of this flow's languages", code.as_str()),
                    );
                    continue;
                }
            };
            if value.trim().is_empty() {
                self.error(line_of(value), format!("the '{lang}' {what} is empty"));
                continue;
            }
            match Template::parse(value) {
                Ok(template) => {
                    for variable in template.variables() {
                        if !self.variables.contains(variable) {
                            let reason = format!(
                                "{what} uses {{{{{variable}}}}}, which is not declared in `variables`"
                            );
                            self.error(line_of(value), reason);
                        }
                    }
                    texts.insert(lang, template);
                }
                Err(reason) => self.error(line_of(value), reason),
            }
        }
        for lang in self.languages.clone() {
            if !texts.contains_key(&lang) && !raw.keys().any(|k| k.as_str() == lang.code()) {
                self.error(
                    line_of(raw),
                    format!("the {what} has no '{lang}' translation"),
                );
            }
        }
        (texts.len() == self.languages.len()).then_some(Localized(texts))
    }

    fn resolve_question(&mut self, raw: &Spanned<String>, ids: &[String]) -> Option<QuestionIndex> {
        let found = ids.iter().position(|id| id == raw.as_str());
        if found.is_none() {
            self.error(
                line_of(raw),
                format!("there is no question '{}'", raw.as_str()),
            );
        }
        found
    }

    fn target(&mut self, raw: &Spanned<String>, ids: &[String]) -> Option<Target> {
        if raw.as_str() == "end" {
            return Some(Target::End);
        }
        self.resolve_question(raw, ids).map(Target::Question)
    }

    fn kind(&mut self, question: &QuestionFile) -> Option<QuestionKind> {
        let kind = match question.kind.as_str() {
            "nps" => QuestionKind::Score(Scale::Nps),
            "csat" => QuestionKind::Score(Scale::Csat),
            "ces" => QuestionKind::Score(Scale::Ces),
            "yesno" => QuestionKind::YesNo,
            "text" => QuestionKind::Text,
            "choice" => QuestionKind::Choice(Vec::new()),
            other => {
                let reason = format!(
                    "unknown question kind '{other}': expected nps, csat, ces, yesno, choice or text"
                );
                self.error(line_of(&question.kind), reason);
                return None;
            }
        };
        Some(kind)
    }

    fn question(
        &mut self,
        raw: &QuestionFile,
        kind: Option<QuestionKind>,
        ids: &[String],
        kinds: &[Option<QuestionKind>],
    ) -> Option<Question> {
        let what = format!("question '{}'", raw.id.as_str());
        let text = self.text(&raw.text, &format!("text of {what}"));
        let reprompt = match &raw.reprompt {
            Some(reprompt) => self
                .text(reprompt, &format!("reprompt of {what}"))
                .map(Some),
            None if !matches!(kind, Some(QuestionKind::Text)) => {
                self.error(
                    line_of(&raw.id),
                    format!("{what} needs a `reprompt` for replies that are not understood"),
                );
                None
            }
            None => Some(None),
        };
        let retries = raw.retries.unwrap_or(DEFAULT_RETRIES);
        if retries > MAX_RETRIES {
            self.error(
                line_of(&raw.id),
                format!("{what}: retries must be at most {MAX_RETRIES}"),
            );
        }
        let on_give_up = match &raw.on_give_up {
            None => Some(GiveUp::Next),
            Some(v) if v.as_str() == "next" => Some(GiveUp::Next),
            Some(v) if v.as_str() == "end" => Some(GiveUp::End),
            Some(v) => self.resolve_question(v, ids).map(GiveUp::Goto),
        };
        let kind = match kind? {
            QuestionKind::Choice(_) => QuestionKind::Choice(self.options(raw, &what)?),
            other => {
                if !raw.options.is_empty() {
                    self.error(
                        line_of(&raw.kind),
                        format!("{what}: only choice questions have `options`"),
                    );
                }
                other
            }
        };
        let next = self.branches(&raw.next, ids, kinds);
        Some(Question {
            id: raw.id.as_str().to_string(),
            kind,
            text: text?,
            reprompt: reprompt?,
            retries,
            on_give_up: on_give_up?,
            next: next?,
        })
    }

    fn options(&mut self, raw: &QuestionFile, what: &str) -> Option<Vec<ChoiceOption>> {
        if raw.options.len() < 2 {
            self.error(
                line_of(&raw.kind),
                format!("{what}: a choice question needs at least two `options`"),
            );
        }
        let mut options = Vec::new();
        for (i, option) in raw.options.iter().enumerate() {
            if !valid_id(&option.key) {
                self.error(
                    line_of(&option.key),
                    format!(
                        "option key '{}' must be a-z, 0-9 and '_'",
                        option.key.as_str()
                    ),
                );
            }
            if raw.options[..i]
                .iter()
                .any(|o| o.key.as_str() == option.key.as_str())
            {
                self.error(
                    line_of(&option.key),
                    format!("option key '{}' is used twice", option.key.as_str()),
                );
            }
            if let Some(label) = self.text(
                &option.label,
                &format!("label of option '{}'", option.key.as_str()),
            ) {
                options.push(ChoiceOption {
                    key: option.key.as_str().to_string(),
                    label,
                });
            }
        }
        (options.len() == raw.options.len()).then_some(options)
    }

    fn branches(
        &mut self,
        raw: &[BranchFile],
        ids: &[String],
        kinds: &[Option<QuestionKind>],
    ) -> Option<Vec<Branch>> {
        let mut branches = Vec::new();
        let mut complete = true;
        for branch in raw {
            let when = match &branch.when {
                Some(c) => self.condition(c, ids, kinds).map(Some),
                None => Some(None),
            };
            match (when, self.target(&branch.goto, ids)) {
                (Some(when), Some(goto)) => branches.push(Branch { when, goto }),
                _ => complete = false,
            }
        }
        complete.then_some(branches)
    }

    fn condition(
        &mut self,
        raw: &ConditionFile,
        ids: &[String],
        kinds: &[Option<QuestionKind>],
    ) -> Option<Condition> {
        let question = self.resolve_question(&raw.question, ids)?;
        let kind = kinds[question].as_ref()?;
        let line = line_of(&raw.question);
        let tests = [
            raw.at_most.is_some(),
            raw.at_least.is_some(),
            raw.equals.is_some(),
            raw.one_of.is_some(),
            raw.answered.is_some(),
        ];
        if tests.iter().filter(|t| **t).count() != 1 {
            self.error(
                line,
                "a condition needs exactly one of at_most, at_least, equals, one_of, answered",
            );
            return None;
        }
        let qid = raw.question.as_str();
        if let Some(answered) = &raw.answered {
            return Some(Condition {
                question,
                test: Test::Answered(**answered),
            });
        }
        let bound = |checker: &mut Self, value: &Spanned<i64>| -> Option<u8> {
            match kind {
                QuestionKind::Score(scale) => match u8::try_from(**value)
                    .ok()
                    .filter(|v| scale.range().contains(v))
                {
                    Some(v) => Some(v),
                    None => {
                        let range = scale.range();
                        let reason = format!(
                            "{} is outside the {} scale of '{qid}' ({}–{})",
                            **value,
                            scale.name(),
                            range.start(),
                            range.end()
                        );
                        checker.error(line_of(value), reason);
                        None
                    }
                },
                _ => {
                    checker.error(
                        line_of(value),
                        format!(
                            "at_most / at_least apply to scores; '{qid}' is a {} question",
                            kind.name()
                        ),
                    );
                    None
                }
            }
        };
        let test = if let Some(v) = &raw.at_most {
            Test::AtMost(bound(self, v)?)
        } else if let Some(v) = &raw.at_least {
            Test::AtLeast(bound(self, v)?)
        } else if let Some(v) = &raw.equals {
            Test::Equals(self.expected(v, line_of(v), kind, qid)?)
        } else {
            let values = raw.one_of.as_ref()?;
            let mut all = Vec::new();
            for v in values.iter() {
                all.push(self.expected(v, line_of(values), kind, qid)?);
            }
            Test::OneOf(all)
        };
        Some(Condition { question, test })
    }

    fn expected(
        &mut self,
        raw: &str,
        line: Option<usize>,
        kind: &QuestionKind,
        qid: &str,
    ) -> Option<Expected> {
        let expected = match kind {
            QuestionKind::Score(scale) => raw
                .parse::<u8>()
                .ok()
                .filter(|v| scale.range().contains(v))
                .map(Expected::Score),
            QuestionKind::YesNo => match raw {
                "yes" => Some(Expected::YesNo(YesNo::Yes)),
                "no" => Some(Expected::YesNo(YesNo::No)),
                _ => None,
            },
            QuestionKind::Choice(_) => Some(Expected::Choice(raw.to_string())),
            QuestionKind::Text => None,
        };
        if expected.is_none() {
            self.error(
                line,
                format!(
                    "'{raw}' cannot be an answer to '{qid}' ({} question)",
                    kind.name()
                ),
            );
        }
        expected
    }

    fn duration(&mut self, raw: &Spanned<String>, key: &str) -> Option<Duration> {
        match humantime::parse_duration(raw) {
            Ok(d) => Some(d),
            Err(e) => {
                self.error(
                    line_of(raw),
                    format!(
                        "{key}: '{}' is not a duration like 2h, 30m or 3days ({e})",
                        raw.as_str()
                    ),
                );
                None
            }
        }
    }

    fn dispatch(&mut self, raw: &DispatchFile) -> Option<Dispatch> {
        let delay = raw
            .delay
            .as_ref()
            .map_or(Some(Duration::ZERO), |d| self.duration(d, "dispatch.delay"));
        let expire_after = raw.expire_after.as_ref().map_or(Some(DEFAULT_EXPIRY), |d| {
            self.duration(d, "dispatch.expire_after")
        });
        let window = match &raw.window {
            None => Some(None),
            Some(w) => {
                let days = match &w.days {
                    None => Some(None),
                    Some(days) => {
                        let parsed: Vec<Option<Weekday>> =
                            days.iter().map(|d| weekday(d)).collect();
                        if parsed.iter().any(Option::is_none) || parsed.is_empty() {
                            self.error(
                                line_of(days),
                                "dispatch.window.days: use mon, tue, wed, thu, fri, sat, sun",
                            );
                            None
                        } else {
                            Some(Some(parsed.into_iter().flatten().collect()))
                        }
                    }
                };
                let time = |checker: &mut Self, raw: &Option<Spanned<String>>, key: &str| match raw
                {
                    None => Some(None),
                    Some(t) => match NaiveTime::parse_from_str(t, "%H:%M") {
                        Ok(t) => Some(Some(t)),
                        Err(_) => {
                            checker.error(
                                line_of(t),
                                format!("{key}: '{}' is not a time like 09:00", t.as_str()),
                            );
                            None
                        }
                    },
                };
                let from = time(self, &w.from, "dispatch.window.from");
                let to = time(self, &w.to, "dispatch.window.to");
                if let (Some(Some(from)), Some(Some(to))) = (from, to) {
                    if from >= to {
                        self.error(
                            w.from.as_ref().and_then(line_of),
                            "dispatch.window: `from` must be before `to`",
                        );
                    }
                }
                Some(Some(WindowNarrowing {
                    days: days?,
                    from: from?,
                    to: to?,
                }))
            }
        };
        let quota = match &raw.quota {
            None => Some(None),
            Some(q) => {
                let per = match q.per.as_str() {
                    "day" => Some(QuotaPeriod::Day),
                    "week" => Some(QuotaPeriod::Week),
                    "month" => Some(QuotaPeriod::Month),
                    other => {
                        self.error(
                            line_of(&q.per),
                            format!("dispatch.quota.per: '{other}' is not day, week or month"),
                        );
                        None
                    }
                };
                per.map(|per| {
                    Some(Quota {
                        responses: q.responses,
                        per,
                    })
                })
            }
        };
        let reminder = match &raw.reminder {
            None => Some(None),
            Some(r) => {
                let after = self.duration(&r.after, "dispatch.reminder.after");
                let text = self.text(&r.text, "reminder");
                match (after, text) {
                    (Some(after), Some(text)) => Some(Some(Reminder { after, text })),
                    _ => None,
                }
            }
        };
        if let (Some(Some(reminder)), Some(expire_after)) = (&reminder, expire_after) {
            if reminder.after >= expire_after {
                self.error(
                    raw.reminder.as_ref().and_then(|r| line_of(&r.after)),
                    "the reminder must come before the expiry",
                );
            }
        }
        if raw.frequency_cap_days == Some(0) {
            self.error(
                None,
                "dispatch.frequency_cap_days must be at least 1 (leave it out for the default)",
            );
        }
        Some(Dispatch {
            delay: delay?,
            window: window?,
            frequency_cap_days: raw.frequency_cap_days,
            quota: quota?,
            reminder: reminder?,
            expire_after: expire_after?,
        })
    }

    /// Every question reachable from the start, no cycle, conditions only on questions that can
    /// come before.
    fn graph(&mut self, flow: &Flow, raw: &[QuestionFile]) {
        let successors = |q: &Question| -> Vec<QuestionIndex> {
            let mut next: Vec<QuestionIndex> = q
                .next
                .iter()
                .filter_map(|b| match b.goto {
                    Target::Question(i) => Some(i),
                    Target::End => None,
                })
                .collect();
            if let GiveUp::Goto(i) = q.on_give_up {
                next.push(i);
            }
            next
        };
        let graph: Vec<Vec<QuestionIndex>> = flow.questions.iter().map(successors).collect();
        let reachable_from = |start: QuestionIndex| -> Vec<bool> {
            let mut seen = vec![false; graph.len()];
            let mut stack = vec![start];
            while let Some(i) = stack.pop() {
                if !std::mem::replace(&mut seen[i], true) {
                    stack.extend(&graph[i]);
                }
            }
            seen
        };
        let from_start = reachable_from(flow.start);
        for (i, reached) in from_start.iter().enumerate() {
            if !reached {
                self.error(
                    line_of(&raw[i].id),
                    format!(
                        "question '{}' can never be reached from the start",
                        flow.questions[i].id
                    ),
                );
            }
        }
        if let Some(cycle) = find_cycle(&graph) {
            let names: Vec<&str> = cycle
                .iter()
                .map(|&i| flow.questions[i].id.as_str())
                .collect();
            let reason = format!(
                "questions {} form a loop; a flow must always move forward to its end",
                names.join(" → ")
            );
            self.error(line_of(&raw[cycle[0]].id), reason);
            return;
        }
        for (i, question) in flow.questions.iter().enumerate() {
            for (b, branch) in question.next.iter().enumerate() {
                if let Some(condition) = &branch.when {
                    let tested = condition.question;
                    if tested != i && !reachable_from(tested)[i] {
                        let line = raw[i].next[b]
                            .when
                            .as_ref()
                            .and_then(|c| line_of(&c.question));
                        let reason = format!(
                            "the branch of '{}' tests '{}', which is never asked before it",
                            question.id, flow.questions[tested].id
                        );
                        self.error(line, reason);
                    }
                }
            }
        }
    }
}

pub(crate) fn weekday(raw: &str) -> Option<Weekday> {
    Some(match raw {
        "mon" => Weekday::Mon,
        "tue" => Weekday::Tue,
        "wed" => Weekday::Wed,
        "thu" => Weekday::Thu,
        "fri" => Weekday::Fri,
        "sat" => Weekday::Sat,
        "sun" => Weekday::Sun,
        _ => return None,
    })
}

/// A cycle of the graph as a path that returns to its first node, if there is one.
fn find_cycle(graph: &[Vec<QuestionIndex>]) -> Option<Vec<QuestionIndex>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    fn visit(
        node: usize,
        graph: &[Vec<usize>],
        marks: &mut [Mark],
        path: &mut Vec<usize>,
    ) -> Option<Vec<usize>> {
        marks[node] = Mark::Open;
        path.push(node);
        for &next in &graph[node] {
            match marks[next] {
                Mark::Open => {
                    let start = path
                        .iter()
                        .position(|&n| n == next)
                        .expect("an open node is on the path");
                    let mut cycle = path[start..].to_vec();
                    cycle.push(next);
                    return Some(cycle);
                }
                Mark::New => {
                    if let Some(cycle) = visit(next, graph, marks, path) {
                        return Some(cycle);
                    }
                }
                Mark::Done => {}
            }
        }
        path.pop();
        marks[node] = Mark::Done;
        None
    }
    let mut marks = vec![Mark::New; graph.len()];
    (0..graph.len()).find_map(|n| {
        if marks[n] == Mark::New {
            visit(n, graph, &mut marks, &mut Vec::new())
        } else {
            None
        }
    })
}
