//! Every number a reply mentions, each classified by what surrounds it: a bare number that may
//! be the answer, a score out of a denominator, stars, or a number that is no answer at all (a
//! quantity, a price, a time, a date, a phone or order number).

use super::text::{Glue, Tk, Tokens};
use super::vocab::{self, Trust};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum What {
    /// A number with nothing around it that says what it counts: "9", "neuf", "7 mais…".
    Bare,
    /// "9/10", "8 sur 10", "nine out of ten": the denominator.
    OutOf(i64),
    /// "⭐⭐⭐⭐", "****", "4 étoiles", "5*": a rating out of five.
    Stars,
    /// "7,5", "8.5".
    NotWhole,
    /// "1er", "2nd", "troisième": a rank, which only choices read.
    Ordinal,
    /// A quantity, price, time, date, phone or order number.
    NotAnswer,
    /// A CSAT label ("très satisfait"), added by the score reader.
    Label,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Mention {
    pub value: i64,
    /// First and last token of the mention, denominator or unit included.
    pub first: usize,
    pub last: usize,
    pub what: What,
}

/// The mentions of `t`, in order. `for_choice` reads "numéro 2", "#2" and "2e" as answers.
pub(super) fn mentions(t: &Tokens, for_choice: bool, out: &mut Vec<Mention>) {
    let mut i = 0;
    while i < t.len() {
        match mention_at(t, i, for_choice) {
            Some(m) => {
                i = m.last + 1;
                out.push(m);
            }
            None => i += 1,
        }
    }
}

fn mention_at(t: &Tokens, i: usize, for_choice: bool) -> Option<Mention> {
    let tok = *t.tok(i)?;
    match tok.kind {
        Tk::Stars => {
            return Some(Mention {
                value: clamp(tok.num),
                first: i,
                last: i,
                what: What::Stars,
            });
        }
        // "****" reads as four stars only when it stands apart: "super****" or "**" around a
        // word are emphasis.
        Tk::Asterisks if tok.num <= 10 && stands_apart(t, i) => {
            return Some(Mention {
                value: clamp(tok.num),
                first: i,
                last: i,
                what: What::Stars,
            });
        }
        _ => {}
    }
    if for_choice {
        if let Some(rank) = t.word(i).and_then(vocab::ordinal_word) {
            // "the second one", "la deuxième option": the noun belongs to the answer.
            let noun = matches!(
                t.word(i + 1),
                Some("one" | "option" | "choice" | "choix" | "proposition" | "reponse" | "answer")
            );
            return Some(Mention {
                value: rank,
                first: i,
                last: i + usize::from(noun),
                what: What::Ordinal,
            });
        }
    }
    let (mut value, mut last, trust) = number_at(t, i)?;
    let mut first = i;
    let mut what = What::Bare;
    if tok.kind == Tk::Number {
        if let Some((phone_first, phone_last)) = phone_at(t, i) {
            return Some(Mention {
                value,
                first: phone_first,
                last: phone_last,
                what: What::NotAnswer,
            });
        }
        if tok.digits >= 4 {
            what = What::NotAnswer;
        }
        // Letters glued to digits: "10h30", "2e", "9am", "A4".
        if touching(t, last + 1, |k| k == Tk::Word) {
            let ordinal = t.word(last + 1).is_some_and(vocab::is_ordinal_suffix);
            what = if ordinal && for_choice {
                What::Ordinal
            } else {
                What::NotAnswer
            };
            last += 1;
            while touching(t, last + 1, |k| matches!(k, Tk::Word | Tk::Number)) {
                last += 1;
            }
        }
        if tok.glue == Glue::Touch && i > 0 && t.kind(i - 1) == Some(Tk::Word) {
            what = What::NotAnswer;
        }
        // "7,5" or "8.5"; "10:30".
        if touching(t, last + 1, |k| matches!(k, Tk::Sep('.' | ',')))
            && touching_number(t, last + 2)
        {
            what = What::NotWhole;
            last += 2;
        } else if touching(t, last + 1, |k| k == Tk::Sep(':')) && touching_number(t, last + 2) {
            what = What::NotAnswer;
            last += 2;
        }
        // A minus sign that touches the number but not what comes before it: "-1", not "7-8".
        if tok.glue == Glue::Touch
            && i > 0
            && t.kind(i - 1) == Some(Tk::Sym('-'))
            && (i == 1 || t.tok(i - 1).is_some_and(|m| m.glue == Glue::Space))
        {
            value = -value;
            first = i - 1;
        }
    }
    if what == What::NotWhole {
        // "4,5/5" is one half-point score, not 4,5 and 5.
        if let Some((_, denominator_last, _)) = denominator(t, first, last) {
            last = denominator_last;
        }
    }
    if what == What::Bare {
        if let Some((denominator, denominator_last, date_like)) = denominator(t, first, last) {
            let scale = matches!(denominator, 5 | 7 | 10 | 20 | 100);
            what = if !date_like && scale && (0..=denominator).contains(&value) {
                What::OutOf(denominator)
            } else {
                What::NotAnswer
            };
            last = denominator_last;
        }
    }
    if matches!(what, What::Bare | What::OutOf(5)) && is_stars_unit(t, last + 1) {
        what = What::Stars;
        last += 1;
        // "4 étoiles sur 5".
        if let Some((5, denominator_last, false)) = denominator(t, first, last) {
            last = denominator_last;
        }
    } else if matches!(what, What::OutOf(_))
        && t.tok(last + 1)
            .is_some_and(|s| s.kind == Tk::Stars && s.num == 1 && s.empty == 0)
    {
        // "8/10 ⭐": one star after a score out of ten decorates it.
        last += 1;
    }
    // "9 points", "8 pts": the unit of the score itself.
    if matches!(what, What::Bare | What::OutOf(_))
        && matches!(t.word(last + 1), Some("point" | "points" | "pt" | "pts"))
    {
        last += 1;
    }
    // "un peu long", "one of the best", "un produit neuf": everyday words, no answer.
    let trusted = match trust {
        Trust::Always => true,
        Trust::OpeningClause => opens_clause(t, first),
        Trust::Alone => {
            opens_clause(t, first) && (t.tok(last + 1).is_none() || t.is_break(last + 1))
        }
    };
    if what == What::Bare && !trusted {
        return None;
    }
    if what != What::NotAnswer && (unit_after(t, last + 1) || context_before(t, first, for_choice))
    {
        what = What::NotAnswer;
    }
    Some(Mention {
        value,
        first,
        last,
        what,
    })
}

fn clamp(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A number at token `i`, in digits or words: (value, last token, how far it may be trusted).
pub(super) fn number_at(t: &Tokens, i: usize) -> Option<(i64, usize, Trust)> {
    let tok = t.tok(i)?;
    match tok.kind {
        Tk::Number => Some((clamp(tok.num), i, Trust::Always)),
        Tk::Word => {
            let (mut value, trust) = vocab::number_word(t.word(i)?)?;
            let mut last = i;
            // "dix-sept", "twenty-one": hyphenated number words add up.
            while let Some((next, _)) = t
                .tok(last + 1)
                .filter(|n| n.glue == Glue::Hyphen)
                .and_then(|_| t.word(last + 1))
                .and_then(vocab::number_word)
            {
                value = value.saturating_add(next);
                last += 1;
            }
            Some((value, last, if last == i { trust } else { Trust::Always }))
        }
        _ => None,
    }
}

fn touching(t: &Tokens, i: usize, kind: impl Fn(Tk) -> bool) -> bool {
    t.tok(i)
        .is_some_and(|tok| tok.glue == Glue::Touch && kind(tok.kind))
}

fn touching_number(t: &Tokens, i: usize) -> bool {
    touching(t, i, |k| k == Tk::Number)
}

fn stands_apart(t: &Tokens, i: usize) -> bool {
    let Some(tok) = t.tok(i) else {
        return false;
    };
    let before_apart = tok.glue == Glue::Space || i == 0 || t.is_break(i - 1);
    let after_apart = t
        .tok(i + 1)
        .is_none_or(|n| n.glue == Glue::Space || t.is_break(i + 1));
    before_apart && after_apart
}

/// A phone number from token `i`: groups of digits separated by spaces, dots or hyphens
/// ("06 12 34 56 78", "+33 6 12 34 56 78", "555-123-4567"). Returns its first and last token.
fn phone_at(t: &Tokens, i: usize) -> Option<(usize, usize)> {
    let first = *t.tok(i)?;
    let plus = first.glue == Glue::Touch && i > 0 && t.kind(i - 1) == Some(Tk::Sym('+'));
    let leading_zero = t.original(i).starts_with('0');
    // Groups are short: a long run of digits is a number of its own, not part of a phone.
    let group = |k: usize| t.tok(k).filter(|n| n.kind == Tk::Number && n.digits <= 4);
    group(i)?;
    let (mut total, mut groups, mut last) = (first.digits, 1, i);
    loop {
        let next = last + 1;
        let step = match t.tok(next) {
            Some(n) if n.glue == Glue::Space && group(next).is_some() => 1,
            Some(n)
                if matches!(n.kind, Tk::Sep('.') | Tk::Sym('-'))
                    && n.glue == Glue::Touch
                    && touching_number(t, next + 1)
                    && group(next + 1).is_some() =>
            {
                2
            }
            _ => break,
        };
        last += step;
        total += t.tok(last).map_or(0, |n| n.digits);
        groups += 1;
    }
    let long_enough = total >= 9 || (total >= 8 && (plus || leading_zero));
    (groups >= 2 && long_enough).then_some((if plus { i - 1 } else { i }, last))
}

/// "/10", "sur 10", "out of ten" after the number ending at `last`: (denominator, its last
/// token, whether it looks like a date such as "12/05/2024").
fn denominator(t: &Tokens, first: usize, last: usize) -> Option<(i64, usize, bool)> {
    let mut k = last + 1;
    let slash = t.kind(k) == Some(Tk::Sym('/'));
    match t.word(k) {
        _ if slash => k += 1,
        Some("sur") => k += 1,
        Some("out") if t.word(k + 1) == Some("of") => k += 2,
        _ => return None,
    }
    let (value, value_last, _) = number_at(t, k)?;
    let slash_before = first > 0
        && t.kind(first - 1) == Some(Tk::Sym('/'))
        && t.tok(first).is_some_and(|f| f.glue == Glue::Touch);
    let slash_after = touching(t, value_last + 1, |k| k == Tk::Sym('/'));
    // "05/10" is the fifth of October: nobody writes a score with a leading zero.
    let padded = |i: usize| t.original(i).len() >= 2 && t.original(i).starts_with('0');
    let date_like = slash && (slash_before || slash_after || padded(last) || padded(k));
    Some((value, value_last, date_like))
}

fn is_stars_unit(t: &Tokens, i: usize) -> bool {
    match t.kind(i) {
        Some(Tk::Stars) => true,
        Some(Tk::Asterisks) => touching(t, i, |_| true),
        Some(Tk::Word) => matches!(t.word(i), Some("etoile" | "etoiles" | "star" | "stars")),
        _ => false,
    }
}

/// A unit after the number: "€", "%", "jours", "2 articles".
fn unit_after(t: &Tokens, i: usize) -> bool {
    match t.kind(i) {
        Some(Tk::Sym('€' | '$' | '£' | '%' | '°')) => true,
        Some(Tk::Word) => t
            .word(i)
            .is_some_and(|w| vocab::is_unit(w) || vocab::looks_like_count(w)),
        _ => false,
    }
}

/// What stands before the number: "commande 12345", "#4", "€9", "à 10".
fn context_before(t: &Tokens, first: usize, for_choice: bool) -> bool {
    let Some(before) = first.checked_sub(1) else {
        return false;
    };
    match t.kind(before) {
        Some(Tk::Sym('#' | '°')) => !for_choice,
        Some(Tk::Sym('€' | '$' | '£')) => true,
        // "à" folds to "a", the English article of "give it a 10": the accent tells them apart.
        Some(Tk::Word) => {
            matches!(t.original(before), "à" | "À")
                || t.word(before)
                    .is_some_and(|w| vocab::is_context_before(w, for_choice))
        }
        _ => false,
    }
}

/// Whether only lead-in words stand between the clause start and token `first`.
fn opens_clause(t: &Tokens, first: usize) -> bool {
    (0..first)
        .rev()
        .take_while(|&k| !t.is_break(k))
        .all(|k| t.word(k).is_some_and(vocab::is_lead_in))
}
