//! Scores on the NPS (0–10), CSAT (1–5) and CES (1–7) scales.

use super::numbers::{self, Mention, What};
use super::text::{self, Tk, Tokens};
use super::vocab::{self, Phrases};
use super::{Reading, Scale, Unclear};
use crate::lang::Lang;
use std::sync::LazyLock;

/// The usual CSAT answer labels. Matched on whole words, longest first, so "insatisfait" is
/// never read as "satisfait" and "ni satisfait ni insatisfait" is one answer, not two.
static CSAT_LABELS: LazyLock<Phrases<i64>> = LazyLock::new(|| {
    Phrases::new(&[
        ("tres satisfait", 5),
        ("tout a fait satisfait", 5),
        ("entierement satisfait", 5),
        ("totalement satisfait", 5),
        ("pleinement satisfait", 5),
        ("super satisfait", 5),
        ("extremement satisfait", 5),
        ("very satisfied", 5),
        ("extremely satisfied", 5),
        ("completely satisfied", 5),
        ("totally satisfied", 5),
        ("fully satisfied", 5),
        ("satisfait", 4),
        ("plutot satisfait", 4),
        ("assez satisfait", 4),
        ("satisfied", 4),
        ("fairly satisfied", 4),
        ("somewhat satisfied", 4),
        ("rather satisfied", 4),
        ("quite satisfied", 4),
        ("neutre", 3),
        ("ni satisfait ni insatisfait", 3),
        ("moyennement satisfait", 3),
        ("neutral", 3),
        ("neither satisfied nor dissatisfied", 3),
        ("neither satisfied or dissatisfied", 3),
        ("insatisfait", 2),
        ("pas satisfait", 2),
        ("peu satisfait", 2),
        ("plutot insatisfait", 2),
        ("plutot pas satisfait", 2),
        ("dissatisfied", 2),
        ("unsatisfied", 2),
        ("not satisfied", 2),
        ("somewhat dissatisfied", 2),
        ("fairly dissatisfied", 2),
        ("rather dissatisfied", 2),
        ("tres insatisfait", 1),
        ("pas du tout satisfait", 1),
        ("pas satisfait du tout", 1),
        ("totalement insatisfait", 1),
        ("completement insatisfait", 1),
        ("very dissatisfied", 1),
        ("very unsatisfied", 1),
        ("extremely dissatisfied", 1),
        ("completely dissatisfied", 1),
        ("totally dissatisfied", 1),
        ("not at all satisfied", 1),
        ("not satisfied at all", 1),
    ])
});

/// Reads a score on `scale`. See the module documentation for the rules.
pub fn score(text: &str, scale: Scale, lang: Lang) -> Result<Reading<u8>, Unclear> {
    // Both languages' words are read whatever the survey's language (see the module doc).
    let _ = lang;
    if text.len() > super::MAX_REPLY_BYTES {
        return Err(Unclear::TooLong);
    }
    let t = Tokens::new(text);
    if !t.has_content() {
        return Err(Unclear::Empty);
    }
    let mut found = Vec::new();
    numbers::mentions(&t, false, &mut found);
    if scale == Scale::Csat {
        labels(&t, &mut found);
    }
    let (value, lead, last) = decide(&t, scale, &found)?;
    Ok(Reading {
        value,
        comment: text::comment(&t, lead, last, vocab::is_lead_in),
    })
}

/// Adds the CSAT labels of `t` that no number already covers, keeping `found` in order.
fn labels(t: &Tokens, found: &mut Vec<Mention>) {
    let numbers = found.len();
    let mut i = 0;
    while i < t.len() {
        let covered = found[..numbers]
            .iter()
            .any(|m| (m.first..=m.last).contains(&i));
        match CSAT_LABELS.longest_at(t, i).filter(|_| !covered) {
            Some((value, len)) => {
                found.push(Mention {
                    value,
                    first: i,
                    last: i + len - 1,
                    what: What::Label,
                });
                i += len;
            }
            None => i += 1,
        }
    }
    found.sort_by_key(|m| m.first);
}

/// The score, and the tokens its answer spans (lead-in included), or why there is none.
fn decide(t: &Tokens, scale: Scale, found: &[Mention]) -> Result<(u8, usize, usize), Unclear> {
    let candidates = || found.iter().filter(|m| m.what != What::NotAnswer);
    let Some(first) = candidates().next() else {
        return Err(if found.is_empty() {
            Unclear::NoAnswer
        } else {
            Unclear::NotAScore
        });
    };
    if candidates().any(|m| negated(t, m.first)) {
        return Err(Unclear::Negated);
    }
    if let Some(other) = candidates().find(|m| m.value != first.value) {
        return Err(Unclear::SeveralNumbers {
            first: first.value,
            second: other.value,
        });
    }
    if candidates().any(|m| hedged(t, m)) {
        return Err(Unclear::Approximate);
    }
    if candidates().any(|m| m.what == What::NotWhole) {
        return Err(Unclear::NotWhole);
    }
    let max = i64::from(*scale.range().end());
    for m in candidates() {
        match m.what {
            What::OutOf(out_of) if out_of != max => return Err(Unclear::OtherScale { out_of }),
            What::Stars if scale != Scale::Csat => return Err(Unclear::OtherScale { out_of: 5 }),
            _ => {}
        }
    }
    let Some((chosen, lead)) = candidates().find_map(|m| placed(t, m).map(|lead| (m, lead))) else {
        return Err(Unclear::NotAScore);
    };
    let min = i64::from(*scale.range().start());
    let value = u8::try_from(chosen.value)
        .ok()
        .filter(|v| scale.range().contains(v))
        .ok_or(Unclear::OutOfRange {
            value: chosen.value,
            min,
            max,
        })?;
    Ok((value, lead, chosen.last))
}

/// The tokens of the clause before token `first`, nearest first.
pub(super) fn clause_before(t: &Tokens, first: usize) -> impl Iterator<Item = usize> {
    (0..first).rev().take_while(move |&k| !t.is_break(k))
}

/// Whether a negation stands before token `first` in its clause.
pub(super) fn negated(t: &Tokens, first: usize) -> bool {
    clause_before(t, first).any(|k| t.word(k).is_some_and(vocab::is_negation))
}

fn hedged(t: &Tokens, m: &Mention) -> bool {
    let before = clause_before(t, m.first).any(|k| {
        t.word(k).is_some_and(vocab::is_hedge)
            || matches!(t.kind(k), Some(Tk::Sym('~' | '≈' | '<' | '>')))
    });
    let plus = t.kind(m.last + 1) == Some(Tk::Sym('+'));
    let after = t.word(m.last + 1).is_some_and(vocab::is_trailing_hedge)
        || (matches!(t.word(m.last + 1), Some("ou" | "or"))
            && matches!(
                t.word(m.last + 2),
                Some("plus" | "more" | "moins" | "less" | "so")
            ));
    // "satisfait à 100%" says more than "satisfait" and less than a number.
    let intensified = m.what == What::Label
        && (t.kind(m.last + 1) == Some(Tk::Number)
            || (t.word(m.last + 1) == Some("a") && t.kind(m.last + 2) == Some(Tk::Number)));
    before || plus || after || intensified
}

/// Where the answer starts (its lead-in words included) when the mention reads as an answer:
/// it is qualified ("9/10", stars), opens its clause after lead-in words only ("7 mais…",
/// "je mets 8"), follows a word that announces a score in its clause ("super service, je lui
/// mets un bon 8"), or ends the reply ("Très bien 9") other than after a verb of quantity or a
/// symbol ("j'ai attendu 2", "100% satisfait").
pub(super) fn placed(t: &Tokens, m: &Mention) -> Option<usize> {
    let (mut run, mut run_announces, mut opens_clause) = (m.first, false, true);
    for k in clause_before(t, m.first) {
        match t.word(k) {
            Some(w) if vocab::is_lead_in(w) => {
                run = k;
                run_announces |= vocab::is_strong_lead_in(w);
            }
            // "#2", "n°2": choices accept the sign (scores never get here with one).
            None if matches!(t.kind(k), Some(Tk::Sym('#' | '°'))) => run = k,
            _ => {
                opens_clause = false;
                break;
            }
        }
    }
    // Lead-in words belong to the answer when they introduce it ("je mets 8", "super service
    // je mets 8"); otherwise they are the customer's comment ("tout est ok 10").
    let lead = if opens_clause || run_announces {
        run
    } else {
        m.first
    };
    let qualified = matches!(m.what, What::OutOf(_) | What::Stars);
    let announced =
        clause_before(t, m.first).any(|k| t.word(k).is_some_and(vocab::is_strong_lead_in));
    let ends_reply = (m.last + 1..t.len())
        .all(|k| matches!(t.kind(k), Some(Tk::Sep(_) | Tk::Sign(_) | Tk::Other)));
    // "j'ai attendu 2", "100% satisfait": what comes before says it is no answer.
    let after_quantity = m.first > 0
        && (t.word(m.first - 1).is_some_and(vocab::is_quantity_verb)
            || matches!(t.kind(m.first - 1), Some(Tk::Sym(c)) if c != '#' && c != '°')
            || t.kind(m.first - 1) == Some(Tk::Number));
    (qualified || opens_clause || announced || (ends_reply && !after_quantity)).then_some(lead)
}
