//! One option of a multiple-choice question, by number, letter or label.

use super::numbers::{self, What};
use super::score::{negated, placed};
use super::text::{self, Tk, Tokens};
use super::vocab;
use super::{Reading, Unclear};
use crate::lang::Lang;

/// One way the reply names an option.
struct Hit {
    /// The 1-based number, letter rank or label's option + 1 the customer gave.
    rank: i64,
    first: usize,
    last: usize,
    /// Where the answer starts, lead-in words included; `None` for a label inside a sentence.
    lead: Option<usize>,
}

/// Reads which of `options` the reply picks. See the module documentation for the rules.
pub fn choice(text: &str, options: &[Vec<String>], lang: Lang) -> Result<Reading<usize>, Unclear> {
    // Labels come in the survey's language already; numbers and letters have none.
    let _ = lang;
    if text.len() > super::MAX_REPLY_BYTES {
        return Err(Unclear::TooLong);
    }
    let t = Tokens::new(text);
    if !t.has_content() {
        return Err(Unclear::Empty);
    }
    let count = i64::try_from(options.len()).unwrap_or(i64::MAX);
    let mut hits = label_hits(&t, options);
    // A number nothing places as an answer ("j'ai pris 2 articles") only counts to refuse a
    // reply that names two options.
    let mut stray = None;
    let mut found = Vec::new();
    numbers::mentions(&t, true, &mut found);
    for m in found {
        let inside_label = hits.iter().any(|h| h.first <= m.last && m.first <= h.last);
        if inside_label || !matches!(m.what, What::Bare | What::Ordinal) {
            continue;
        }
        match placed(&t, &m) {
            Some(lead) => hits.push(Hit {
                rank: m.value,
                first: m.first,
                last: m.last,
                lead: Some(lead),
            }),
            None => stray = stray.or(Some(m.value)),
        }
    }
    hits.extend(letter_hits(&t));
    hits.sort_by_key(|h| h.first);

    let Some(first) = hits.first() else {
        return Err(Unclear::NoAnswer);
    };
    if hits.iter().any(|h| negated(&t, h.first)) {
        return Err(Unclear::Negated);
    }
    let other = hits.iter().map(|h| h.rank).chain(stray);
    if other.into_iter().any(|rank| rank != first.rank) {
        return Err(Unclear::SeveralOptions);
    }
    let index = usize::try_from(first.rank - 1)
        .ok()
        .filter(|&i| i < options.len())
        .ok_or(Unclear::OutOfRange {
            value: first.rank,
            min: 1,
            max: count,
        })?;
    let comment = match first.lead {
        Some(lead) => text::comment(&t, lead, first.last, vocab::is_lead_in),
        // "Le livreur était en retard" answers "livraison" with its whole sentence: cutting the
        // label out would leave words the customer never wrote.
        None => Some(text.trim_matches(|c: char| c.is_whitespace()).to_string()),
    };
    Ok(Reading {
        value: index,
        comment,
    })
}

/// Options named by one of their labels, anywhere in the reply.
fn label_hits(t: &Tokens, options: &[Vec<String>]) -> Vec<Hit> {
    let labels: Vec<(usize, Tokens)> = options
        .iter()
        .enumerate()
        .flat_map(|(o, labels)| labels.iter().map(move |l| (o, Tokens::new(l))))
        .collect();
    let mut hits = Vec::new();
    let mut i = 0;
    while i < t.len() {
        let best = labels
            .iter()
            .filter_map(|(o, label)| label_len(t, i, label).map(|len| (*o, len)))
            .max_by_key(|&(_, len)| len);
        let Some((option, len)) = best else {
            i += 1;
            continue;
        };
        let last = i + len - 1;
        // The label is the answer when it is all its clause says ("le prix", "Livraison, le
        // colis…"); otherwise it is a word of the customer's sentence.
        let alone = (0..i)
            .rev()
            .take_while(|&k| !t.is_break(k))
            .all(|k| t.word(k).is_some_and(vocab::is_lead_in))
            && (last + 1 >= t.len() || t.is_break(last + 1));
        hits.push(Hit {
            rank: i64::try_from(option).unwrap_or(i64::MAX - 1) + 1,
            first: i,
            last,
            lead: alone.then(|| first_lead(t, i)),
        });
        i += len;
    }
    hits
}

fn first_lead(t: &Tokens, i: usize) -> usize {
    (0..i)
        .rev()
        .take_while(|&k| !t.is_break(k))
        .last()
        .unwrap_or(i)
}

/// How many reply tokens from `i` spell `label` (its words and numbers; a trailing -s or -x
/// on a reply word is allowed: "livraisons").
fn label_len(t: &Tokens, i: usize, label: &Tokens) -> Option<usize> {
    let mut k = i;
    for j in 0..label.len() {
        let same = match (label.kind(j), t.kind(k)) {
            (Some(Tk::Word), Some(Tk::Word)) => {
                let (lw, rw) = (label.word(j)?, t.word(k)?);
                rw == lw
                    || (rw.len() == lw.len() + 1
                        && rw.starts_with(lw)
                        && (rw.ends_with('s') || rw.ends_with('x')))
            }
            (Some(Tk::Number), Some(Tk::Number)) => label.tok(j)?.num == t.tok(k)?.num,
            (Some(Tk::Word | Tk::Number), _) => false,
            _ => continue,
        };
        if !same {
            return None;
        }
        k += 1;
    }
    (k > i).then_some(k - i)
}

/// A letter standing on its own at the start of a clause: "b", "B)", "(c)", "option d".
fn letter_hits(t: &Tokens) -> impl Iterator<Item = Hit> {
    (0..t.len()).filter_map(move |k| {
        let original = t.original(k);
        let letter = original.len() == 1 && original.as_bytes()[0].is_ascii_alphabetic();
        let ends = t.tok(k + 1).is_none()
            || t.is_break(k + 1)
            || matches!(t.kind(k + 1), Some(Tk::Sym('-' | '/' | '=')));
        let lead = placed_letter(t, k);
        (letter && ends).then_some(lead).flatten().map(|lead| Hit {
            rank: i64::from(original.as_bytes()[0].to_ascii_lowercase() - b'a') + 1,
            first: k,
            last: k,
            lead: Some(lead),
        })
    })
}

fn placed_letter(t: &Tokens, k: usize) -> Option<usize> {
    let mut lead = k;
    for j in (0..k).rev().take_while(|&j| !t.is_break(j)) {
        if !t.word(j).is_some_and(vocab::is_lead_in) {
            return None;
        }
        lead = j;
    }
    Some(lead)
}
