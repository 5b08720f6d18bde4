//! Reading and checking the rules file against the loaded flows. Every problem is reported with
//! its file, line and reason, and a file with any problem is refused whole: a half-applied set of
//! alert rules would silently miss the cases the missing rules were written for.

use super::words::{self, Phrase, Stemmers};
use super::{AlertRules, Comparison, Condition, Op, Priority, Rule, Selector, Value};
use crate::flow::{Flow, QuestionKind, line_of, yaml_error};
use crate::understand::Scale;
use marked_yaml::{LoaderOptions, Spanned};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

const DEFAULT_SLA: Duration = Duration::from_secs(24 * 3600);
/// A case nobody has to look at for more than a month is not an alert.
const MAX_SLA: Duration = Duration::from_secs(30 * 24 * 3600);

/// One problem in the rules file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError {
    pub file: PathBuf,
    /// `None` when the file could not be read at all.
    pub line: Option<usize>,
    pub reason: String,
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}: {}", self.file.display(), self.reason),
            None => write!(f, "{}: {}", self.file.display(), self.reason),
        }
    }
}

impl std::error::Error for RuleError {}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    #[serde(default)]
    rules: Vec<RuleFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    id: Spanned<String>,
    description: Option<String>,
    flows: Option<Spanned<Vec<Spanned<String>>>>,
    when: Spanned<Vec<Spanned<ConditionFile>>>,
    case: Option<CaseFile>,
    #[serde(default)]
    notify: Vec<Spanned<String>>,
}

/// Exactly one of the three.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConditionFile {
    answer: Option<Spanned<String>>,
    words: Option<Spanned<Vec<Spanned<String>>>>,
    opt_out_after: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseFile {
    priority: Option<Spanned<String>>,
    sla: Option<Spanned<String>>,
}

/// Reads and checks the rules file. Whether a missing file is an error is the caller's choice,
/// so it should check first; here an unreadable file is an error without a line.
pub fn load_rules(
    path: &Path,
    flows: &BTreeMap<String, Flow>,
) -> Result<AlertRules, Vec<RuleError>> {
    let source = std::fs::read_to_string(path).map_err(|e| {
        vec![RuleError {
            file: path.to_path_buf(),
            line: None,
            reason: e.to_string(),
        }]
    })?;
    parse_rules(path, &source, flows)
}

/// Parses and checks the rules against the flows they refer to; every problem found is returned.
pub fn parse_rules(
    file: &Path,
    source: &str,
    flows: &BTreeMap<String, Flow>,
) -> Result<AlertRules, Vec<RuleError>> {
    let options = LoaderOptions::default().error_on_duplicate_keys(true);
    let raw: RulesFile = marked_yaml::from_yaml_with_options(0, source, options).map_err(|e| {
        let (line, reason) = yaml_error(source, &e);
        vec![RuleError {
            file: file.to_path_buf(),
            line,
            reason,
        }]
    })?;
    let mut checker = Checker {
        file,
        flows,
        stemmers: Stemmers::new(),
        errors: Vec::new(),
    };
    let mut rules = Vec::new();
    for (i, rule) in raw.rules.iter().enumerate() {
        let id = rule.id.as_str();
        if raw.rules[..i].iter().any(|r| r.id.as_str() == id) {
            checker.error(line_of(&rule.id), format!("rule id '{id}' is used twice"));
        }
        if let Some(rule) = checker.rule(rule) {
            rules.push(rule);
        }
    }
    if checker.errors.is_empty() {
        Ok(AlertRules { rules })
    } else {
        let mut errors = checker.errors;
        errors.sort_by_key(|e| e.line);
        errors.dedup();
        Err(errors)
    }
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

struct Checker<'a> {
    file: &'a Path,
    flows: &'a BTreeMap<String, Flow>,
    stemmers: Stemmers,
    errors: Vec<RuleError>,
}

impl Checker<'_> {
    fn error(&mut self, line: Option<usize>, reason: impl Into<String>) {
        self.errors.push(RuleError {
            file: self.file.to_path_buf(),
            line,
            reason: reason.into(),
        });
    }

    fn rule(&mut self, raw: &RuleFile) -> Option<Rule> {
        let id = raw.id.as_str();
        if !valid_id(id) {
            self.error(
                line_of(&raw.id),
                format!("rule id '{id}' must be made of a-z, 0-9, '_' and '-'"),
            );
        }
        let flows = self.flows_of(raw);
        if raw.when.is_empty() {
            self.error(
                line_of(&raw.when),
                format!("rule '{id}': `when` needs at least one condition"),
            );
        }
        let listed = raw.flows.is_some();
        let mut when = Vec::new();
        for condition in raw.when.iter() {
            if let Some(condition) = self.condition(condition, flows.as_ref(), listed) {
                when.push(condition);
            }
        }
        let (priority, sla) = self.case(raw);
        for address in &raw.notify {
            if address.parse::<lettre::Address>().is_err() {
                self.error(
                    line_of(address),
                    format!(
                        "notify: '{}' is not an e-mail address (one @, no spaces)",
                        address.as_str()
                    ),
                );
            }
        }
        let flows = flows?;
        let complete = when.len() == raw.when.len() && !when.is_empty();
        complete.then(|| Rule {
            id: id.to_string(),
            description: raw.description.clone(),
            flows: raw.flows.is_some().then_some(flows),
            when,
            priority: priority.unwrap_or(Priority::Normal),
            sla: sla.unwrap_or(DEFAULT_SLA),
            notify: raw.notify.iter().map(|a| a.as_str().to_string()).collect(),
        })
    }

    /// The ids of the flows the rule applies to (all of them without `flows:`), or `None` when
    /// one is unknown.
    fn flows_of(&mut self, raw: &RuleFile) -> Option<BTreeSet<String>> {
        let Some(listed) = &raw.flows else {
            return Some(self.flows.keys().cloned().collect());
        };
        if listed.is_empty() {
            self.error(
                line_of(listed),
                "flows: list at least one flow, or leave it out for every flow",
            );
            return None;
        }
        let mut known = true;
        for flow in listed.iter() {
            if !self.flows.contains_key(flow.as_str()) {
                let all: Vec<&str> = self.flows.keys().map(String::as_str).collect();
                self.error(
                    line_of(flow),
                    format!(
                        "unknown flow '{}' (known flows: {})",
                        flow.as_str(),
                        all.join(", ")
                    ),
                );
                known = false;
            }
        }
        known.then(|| listed.iter().map(|f| f.as_str().to_string()).collect())
    }

    fn condition(
        &mut self,
        raw: &Spanned<ConditionFile>,
        flows: Option<&BTreeSet<String>>,
        listed: bool,
    ) -> Option<Condition> {
        match (&raw.answer, &raw.words, &raw.opt_out_after) {
            (Some(answer), None, None) => self
                .comparison(answer, "answer", flows?, listed)
                .map(Condition::Answer),
            (None, Some(words), None) => self.words(words).map(Condition::Words),
            (None, None, Some(after)) => self
                .comparison(after, "opt_out_after", flows?, listed)
                .map(Condition::OptOutAfter),
            _ => {
                self.error(
                    line_of(raw),
                    "a condition is exactly one of answer, words or opt_out_after",
                );
                None
            }
        }
    }

    fn words(&mut self, raw: &Spanned<Vec<Spanned<String>>>) -> Option<Vec<Phrase>> {
        if raw.is_empty() {
            self.error(
                line_of(raw),
                "words: list at least one vocabulary, word or phrase",
            );
            return None;
        }
        let mut phrases = Vec::new();
        let mut complete = true;
        for entry in raw.iter() {
            let entry_str = entry.as_str();
            let found: Vec<Option<Phrase>> = match words::vocabulary(entry_str) {
                Some((name, vocabulary)) => vocabulary
                    .iter()
                    .map(|word| Phrase::new(&self.stemmers, word, Some(name)))
                    .collect(),
                None => vec![Phrase::new(&self.stemmers, entry_str, None)],
            };
            for phrase in found {
                match phrase {
                    Some(phrase) => phrases.push(phrase),
                    None => {
                        complete = false;
                        self.error(
                            line_of(entry),
                            format!("words: '{entry_str}' has no letter or digit to look for"),
                        );
                    }
                }
            }
        }
        complete.then_some(phrases)
    }

    /// `<selector> <op> <value>`, checked against every flow the selector can meet. A question
    /// id must be in every flow the rule lists, or in at least one when it lists none.
    fn comparison(
        &mut self,
        raw: &Spanned<String>,
        key: &str,
        flows: &BTreeSet<String>,
        listed: bool,
    ) -> Option<Comparison> {
        let line = line_of(raw);
        let text = raw.as_str().trim();
        let Some((selector, op, value)) = split_comparison(text) else {
            self.error(
                line,
                format!("{key}: '{text}' is not `<selector> <op> <value>`, like `nps <= 6`"),
            );
            return None;
        };
        let Some(op) = Op::parse(op) else {
            self.error(
                line,
                format!("{key}: unknown operator '{op}' in '{text}'; use <=, <, >=, >, == or !="),
            );
            return None;
        };
        let scale = match selector {
            "nps" => Some(Scale::Nps),
            "csat" => Some(Scale::Csat),
            "ces" => Some(Scale::Ces),
            _ => None,
        };
        if let Some(scale) = scale {
            let asked = flows.iter().any(|id| {
                self.flows[id]
                    .questions
                    .iter()
                    .any(|q| q.kind == QuestionKind::Score(scale))
            });
            if !asked {
                self.error(
                    line,
                    format!("{key}: no flow of this rule asks a {selector} question"),
                );
                return None;
            }
            let value = self.score(value, scale, line, key, "")?;
            return Some(Comparison {
                selector: Selector::Kind(scale),
                op,
                value,
            });
        }
        let with_question: Vec<&Flow> = flows
            .iter()
            .map(|id| &self.flows[id])
            .filter(|flow| flow.question_index(selector).is_some())
            .collect();
        if with_question.is_empty() {
            self.error(
                line,
                format!(
                    "{key}: '{selector}' is neither nps, csat, ces nor a question of {}",
                    flow_list(flows)
                ),
            );
            return None;
        }
        if listed && with_question.len() < flows.len() {
            for id in flows {
                if self.flows[id].question_index(selector).is_none() {
                    self.error(
                        line,
                        format!("{key}: flow '{id}' has no question '{selector}'"),
                    );
                }
            }
            return None;
        }
        let mut values = Vec::new();
        for flow in with_question {
            let question = flow.question(flow.question_index(selector)?);
            let of = format!(" of '{selector}' in flow '{}'", flow.id);
            let value = match &question.kind {
                QuestionKind::Score(scale) => self.score(value, *scale, line, key, &of),
                QuestionKind::YesNo => {
                    self.only_equality(op, line, key, selector, "yesno")?;
                    match value {
                        "yes" | "oui" => Some(Value::Choice("yes".to_string())),
                        "no" | "non" => Some(Value::Choice("no".to_string())),
                        _ => {
                            self.error(
                                line,
                                format!("{key}: '{selector}' is a yes/no question; compare it with yes or no, not '{value}'"),
                            );
                            None
                        }
                    }
                }
                QuestionKind::Choice(options) => {
                    self.only_equality(op, line, key, selector, "choice")?;
                    if options.iter().any(|o| o.key == value) {
                        Some(Value::Choice(value.to_string()))
                    } else {
                        let keys: Vec<&str> = options.iter().map(|o| o.key.as_str()).collect();
                        self.error(
                            line,
                            format!(
                                "{key}: '{value}' is not an option{of} (options: {})",
                                keys.join(", ")
                            ),
                        );
                        None
                    }
                }
                QuestionKind::Text => {
                    self.error(
                        line,
                        format!(
                            "{key}: '{selector}' is a text question; look for words in it with `words:`"
                        ),
                    );
                    None
                }
            };
            values.push(value?);
        }
        values.dedup();
        match values.as_slice() {
            [value] => Some(Comparison {
                selector: Selector::Question(selector.to_string()),
                op,
                value: value.clone(),
            }),
            _ => {
                self.error(
                    line,
                    format!("{key}: '{selector}' is a different kind of question in different flows; list the flows of this rule"),
                );
                None
            }
        }
    }

    fn only_equality(
        &mut self,
        op: Op,
        line: Option<usize>,
        key: &str,
        selector: &str,
        kind: &str,
    ) -> Option<()> {
        if matches!(op, Op::Equal | Op::NotEqual) {
            Some(())
        } else {
            self.error(
                line,
                format!(
                    "{key}: '{selector}' is a {kind} question; compare it with == or !=, not {}",
                    op.as_str()
                ),
            );
            None
        }
    }

    fn score(
        &mut self,
        raw: &str,
        scale: Scale,
        line: Option<usize>,
        key: &str,
        of: &str,
    ) -> Option<Value> {
        let range = scale.range();
        match raw.parse::<u8>() {
            Ok(score) if range.contains(&score) => Some(Value::Score(i32::from(score))),
            _ => {
                self.error(
                    line,
                    format!(
                        "{key}: '{raw}' is not a score of the {} scale{of} ({}–{})",
                        scale.name(),
                        range.start(),
                        range.end()
                    ),
                );
                None
            }
        }
    }

    fn case(&mut self, raw: &RuleFile) -> (Option<Priority>, Option<Duration>) {
        let Some(case) = &raw.case else {
            return (None, None);
        };
        let priority = case.priority.as_ref().and_then(|p| {
            let parsed = Priority::parse(p);
            if parsed.is_none() {
                self.error(
                    line_of(p),
                    format!(
                        "case.priority: '{}' is not low, normal, high or urgent",
                        p.as_str()
                    ),
                );
            }
            parsed
        });
        let sla = case
            .sla
            .as_ref()
            .and_then(|s| match humantime::parse_duration(s) {
                Ok(d) if d > Duration::ZERO && d <= MAX_SLA => Some(d),
                Ok(_) => {
                    self.error(
                        line_of(s),
                        format!(
                            "case.sla: '{}' must be more than 0 and at most 30 days",
                            s.as_str()
                        ),
                    );
                    None
                }
                Err(e) => {
                    self.error(
                        line_of(s),
                        format!(
                            "case.sla: '{}' is not a duration like 4h, 30m or 2days ({e})",
                            s.as_str()
                        ),
                    );
                    None
                }
            });
        (priority, sla)
    }
}

fn flow_list(flows: &BTreeSet<String>) -> String {
    let names: Vec<String> = flows.iter().map(|f| format!("'{f}'")).collect();
    match names.len() {
        0 => "any flow".to_string(),
        1 => format!("flow {}", names[0]),
        _ => format!("flows {}", names.join(", ")),
    }
}

/// Splits `nps <= 6` (spaces optional) into its selector, operator and value.
fn split_comparison(text: &str) -> Option<(&str, &str, &str)> {
    let is_op = |c: char| matches!(c, '<' | '>' | '=' | '!');
    let op_start = text.find(is_op)?;
    let (selector, rest) = text.split_at(op_start);
    let op_end = rest.find(|c: char| !is_op(c)).unwrap_or(rest.len());
    let (op, value) = rest.split_at(op_end);
    let (selector, value) = (selector.trim(), value.trim());
    let single_word = |s: &str| !s.is_empty() && !s.contains(char::is_whitespace);
    (single_word(selector) && single_word(value)).then_some((selector, op, value))
}
