//! Alert rules: which answers should open a case for a person to follow up, how urgently, and
//! who else to tell.
//!
//! The rules live in a YAML file (by default `alerts.yaml` beside the flows folder), read once at
//! start-up and checked against the loaded flows, so a rule can never test a question or an
//! answer that does not exist. Every problem is reported as `file:line: reason`. Evaluation is
//! pure: the caller describes one step of a conversation as an [`Observation`] and gets back the
//! rules that fire, as [`Triggered`] values.
//!
//! # File format
//!
//! ```yaml
//! rules:
//!   - id: detractor                 # unique, [a-z0-9_-]+
//!     description: Score de recommandation faible   # optional
//!     flows: [delivery, repair]     # optional; default: every flow
//!     when:                         # the rule fires when ANY of these holds
//!       - answer: nps <= 6          # <selector> <op> <value>
//!       - words: [complaint, legal, churn, refund]   # built-in vocabularies, or words/phrases
//!       - words: ["livreur impoli"]
//!       - opt_out_after: nps <= 6   # the customer opted out (STOP) after a matching answer
//!     case:                         # optional; defaults: priority normal, sla 24h
//!       priority: high              # low | normal | high | urgent
//!       sla: 4h                     # a duration, more than 0 and at most 30 days
//!     notify: [qualite@example.com] # optional extra e-mail addresses
//! ```
//!
//! - **Selector**: a question kind, `nps`, `csat` or `ces` (any question of that kind), or a
//!   question id. A kind name wins over a question of the same id. A question id must exist in
//!   every flow listed in `flows:`; without `flows:`, in at least one flow, and the condition
//!   then only concerns the flows that have it.
//! - **Operator**: `<=`, `<`, `>=`, `>`, `==`, `!=`; yes/no and choice questions take only `==`
//!   and `!=`.
//! - **Value**: a score within the scale (nps 0–10, csat 1–5, ces 1–7); `yes` or `no` (or `oui`,
//!   `non`) for a yes/no question; an option key for a choice question. Text questions are tested
//!   with `words:`.
//! - **Words**: an entry that is the name of a built-in vocabulary (`complaint`, `legal`,
//!   `churn`, `refund`, each in French and English) stands for its words; any other entry is a
//!   word or phrase to look for. Matching ignores accents and case and compares French and
//!   English stems, so "réclamations" finds "RÉCLAMATION"; a phrase matches consecutive words.
//!
//! `answer` and `words` look at the answers given in the step being evaluated only, so a rule
//! fires once for a given answer; `opt_out_after` looks at every answer of the conversation when
//! the customer opts out. Unknown keys are errors.

mod load;
mod words;

pub use load::{RuleError, load_rules, parse_rules};

use crate::understand::Scale;
use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;
use words::{Phrase, Stemmers, Stems};

/// The validated rules, in file order.
#[derive(Debug, Clone, Default)]
pub struct AlertRules {
    rules: Vec<Rule>,
}

#[derive(Debug, Clone)]
struct Rule {
    id: String,
    description: Option<String>,
    /// `None`: every flow.
    flows: Option<BTreeSet<String>>,
    when: Vec<Condition>,
    priority: Priority,
    sla: Duration,
    notify: Vec<String>,
}

#[derive(Debug, Clone)]
enum Condition {
    Answer(Comparison),
    Words(Vec<Phrase>),
    OptOutAfter(Comparison),
}

/// `<selector> <op> <value>`, typed at load time against the questions it can meet.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Comparison {
    selector: Selector,
    op: Op,
    value: Value,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Selector {
    Kind(Scale),
    Question(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    AtMost,
    Below,
    AtLeast,
    Above,
    Equal,
    NotEqual,
}

/// Yes/no answers are compared as the choice "yes" or "no", as [`ObservedAnswer`] reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Value {
    Score(i32),
    Choice(String),
}

/// How urgently a case opened by a rule must be handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Priority {
    Low,
    Normal,
    High,
    Urgent,
}

impl Priority {
    /// The name used in the rules file: `low`, `normal`, `high` or `urgent`.
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Low => "low",
            Priority::Normal => "normal",
            Priority::High => "high",
            Priority::Urgent => "urgent",
        }
    }

    fn parse(raw: &str) -> Option<Self> {
        [
            Priority::Low,
            Priority::Normal,
            Priority::High,
            Priority::Urgent,
        ]
        .into_iter()
        .find(|p| p.as_str() == raw)
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One step of a conversation, as the rules see it.
#[derive(Debug, Clone, Copy)]
pub struct Observation<'a> {
    pub flow_id: &'a str,
    /// Every answer of the conversation so far, the step's new ones included (flagged `new`).
    pub answers: &'a [ObservedAnswer<'a>],
    /// This step is the customer opting out (STOP).
    pub opted_out: bool,
}

/// One answer of the conversation.
#[derive(Debug, Clone, Copy)]
pub struct ObservedAnswer<'a> {
    pub question_id: &'a str,
    /// `nps`, `csat`, `ces`, `yesno`, `choice` or `text`.
    pub kind: &'a str,
    pub score: Option<i32>,
    /// `yes` / `no` for a yes/no question, the option key for a choice question.
    pub choice: Option<&'a str>,
    /// Free text, or the comment given with a score.
    pub text: Option<&'a str>,
    /// Given in the step being evaluated.
    pub new: bool,
}

/// A rule that fired, with what the case it opens needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Triggered {
    pub rule_id: String,
    pub priority: Priority,
    pub sla: Duration,
    pub notify: Vec<String>,
    /// Why, for people: e.g. "nps <= 6 (answered 3)", "words: avocat (legal)",
    /// "opted out after nps <= 6".
    pub reasons: Vec<String>,
}

impl AlertRules {
    /// No rules: nothing ever fires (the rules file is optional).
    pub fn empty() -> Self {
        AlertRules::default()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// The rule's `description`, to title the case it opens.
    pub fn description(&self, rule_id: &str) -> Option<&str> {
        self.rules
            .iter()
            .find(|r| r.id == rule_id)
            .and_then(|r| r.description.as_deref())
    }

    /// Rules that fire on one step of a conversation, in file order, each at most once.
    pub fn evaluate(&self, step: &Observation<'_>) -> Vec<Triggered> {
        let stemmers = Stemmers::new();
        // Stemming is the costly part, so texts are stemmed once, and only if a rule asks.
        let mut texts: Option<Vec<Vec<Stems>>> = None;
        let new_answers = || step.answers.iter().filter(|a| a.new);
        let mut fired = Vec::new();
        for rule in &self.rules {
            if rule
                .flows
                .as_ref()
                .is_some_and(|flows| !flows.contains(step.flow_id))
            {
                continue;
            }
            let mut reasons = Vec::new();
            for condition in &rule.when {
                match condition {
                    Condition::Answer(comparison) => {
                        for answered in new_answers().filter_map(|a| comparison.holds(a)) {
                            reasons.push(format!("{comparison} (answered {answered})"));
                        }
                    }
                    Condition::Words(phrases) => {
                        let texts = texts.get_or_insert_with(|| {
                            new_answers()
                                .filter_map(|a| a.text)
                                .map(|t| stemmers.text(t))
                                .collect()
                        });
                        // Words of a vocabulary overlap ("scandale", "scandaleux"): a place in
                        // a text is reported for the first word found there only.
                        let mut seen = BTreeSet::new();
                        for phrase in phrases {
                            let mut new_place = false;
                            for (i, text) in texts.iter().enumerate() {
                                for start in phrase.found_at(text) {
                                    new_place |= seen.insert((i, start));
                                }
                            }
                            if new_place {
                                reasons.push(phrase.reason());
                            }
                        }
                    }
                    Condition::OptOutAfter(comparison) => {
                        if step.opted_out
                            && step.answers.iter().any(|a| comparison.holds(a).is_some())
                        {
                            reasons.push(format!("opted out after {comparison}"));
                        }
                    }
                }
            }
            let mut distinct: Vec<String> = Vec::new();
            for reason in reasons {
                if !distinct.contains(&reason) {
                    distinct.push(reason);
                }
            }
            if !distinct.is_empty() {
                fired.push(Triggered {
                    rule_id: rule.id.clone(),
                    priority: rule.priority,
                    sla: rule.sla,
                    notify: rule.notify.clone(),
                    reasons: distinct,
                });
            }
        }
        fired
    }
}

impl Comparison {
    /// The answer as given, when it satisfies the comparison.
    fn holds(&self, answer: &ObservedAnswer<'_>) -> Option<String> {
        let selected = match &self.selector {
            Selector::Kind(scale) => answer.kind == scale.name(),
            Selector::Question(id) => answer.question_id == id,
        };
        if !selected {
            return None;
        }
        match &self.value {
            Value::Score(expected) => {
                let score = answer.score?;
                self.op.compare(score, *expected).then(|| score.to_string())
            }
            Value::Choice(expected) => {
                let choice = answer.choice?;
                let equal = choice == expected;
                let holds = match self.op {
                    Op::Equal => equal,
                    Op::NotEqual => !equal,
                    // Refused at load time: only `==` and `!=` compare choices.
                    _ => false,
                };
                holds.then(|| choice.to_string())
            }
        }
    }
}

impl Op {
    const ALL: [Op; 6] = [
        Op::AtMost,
        Op::Below,
        Op::AtLeast,
        Op::Above,
        Op::Equal,
        Op::NotEqual,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Op::AtMost => "<=",
            Op::Below => "<",
            Op::AtLeast => ">=",
            Op::Above => ">",
            Op::Equal => "==",
            Op::NotEqual => "!=",
        }
    }

    fn parse(raw: &str) -> Option<Self> {
        Op::ALL.into_iter().find(|op| op.as_str() == raw)
    }

    fn compare(self, left: i32, right: i32) -> bool {
        match self {
            Op::AtMost => left <= right,
            Op::Below => left < right,
            Op::AtLeast => left >= right,
            Op::Above => left > right,
            Op::Equal => left == right,
            Op::NotEqual => left != right,
        }
    }
}

impl fmt::Display for Comparison {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let selector = match &self.selector {
            Selector::Kind(scale) => scale.name(),
            Selector::Question(id) => id,
        };
        let value = match &self.value {
            Value::Score(score) => score.to_string(),
            Value::Choice(choice) => choice.clone(),
        };
        write!(f, "{selector} {} {value}", self.op.as_str())
    }
}

#[cfg(test)]
mod tests;
