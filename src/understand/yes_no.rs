//! Yes or no, in words or emoji.

use super::text::{self, Tk, Tokens};
use super::vocab::{self, Phrases};
use super::{Reading, Unclear, YesNo};
use crate::lang::Lang;
use std::sync::LazyLock;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Said {
    Yes,
    No,
    /// "peut-être", "je ne sais pas": an answer that is neither.
    Unsure,
    /// "si" is yes only on its own: "si le livreur…" is "if".
    YesAlone,
}

static ANSWERS: LazyLock<Phrases<Said>> = LazyLock::new(|| {
    use Said::{No, Unsure, Yes, YesAlone};
    Phrases::new(&[
        ("oui", Yes),
        ("ouais", Yes),
        ("ouai", Yes),
        ("ouaip", Yes),
        ("ouep", Yes),
        ("wi", Yes),
        ("ui", Yes),
        ("ok", Yes),
        ("okay", Yes),
        ("oki", Yes),
        ("okey", Yes),
        ("d'accord", Yes),
        ("daccord", Yes),
        ("dac", Yes),
        ("d'acc", Yes),
        ("bien sur", Yes),
        ("biensur", Yes),
        ("bien entendu", Yes),
        ("evidemment", Yes),
        ("absolument", Yes),
        ("tout a fait", Yes),
        ("certainement", Yes),
        ("carrement", Yes),
        ("volontiers", Yes),
        ("exactement", Yes),
        ("exact", Yes),
        ("avec plaisir", Yes),
        ("pourquoi pas", Yes),
        ("je pense que oui", Yes),
        ("je crois que oui", Yes),
        ("pas de probleme", Yes),
        ("pas de souci", Yes),
        ("pas de soucis", Yes),
        ("sans probleme", Yes),
        ("si", YesAlone),
        ("yes", Yes),
        ("yes please", Yes),
        ("yep", Yes),
        ("yeah", Yes),
        ("yea", Yes),
        ("yup", Yes),
        ("yess", Yes),
        ("sure", Yes),
        ("of course", Yes),
        ("ofc", Yes),
        ("absolutely", Yes),
        ("definitely", Yes),
        ("certainly", Yes),
        ("indeed", Yes),
        ("correct", Yes),
        ("affirmative", Yes),
        ("i think so", Yes),
        ("i guess so", Yes),
        ("why not", Yes),
        ("please do", Yes),
        ("go ahead", Yes),
        ("with pleasure", Yes),
        ("no problem", Yes),
        ("no worries", Yes),
        ("non", No),
        ("nan", No),
        ("nn", No),
        ("no", No),
        ("nope", No),
        ("nop", No),
        ("nah", No),
        ("pas vraiment", No),
        ("pas du tout", No),
        ("pas trop", No),
        ("pas tellement", No),
        ("pas specialement", No),
        ("pas particulierement", No),
        ("absolument pas", No),
        ("surtout pas", No),
        ("certainement pas", No),
        ("evidemment pas", No),
        ("bien sur que non", No),
        ("jamais", No),
        ("pas question", No),
        ("hors de question", No),
        ("je pense que non", No),
        ("je crois que non", No),
        ("je crois pas", No),
        ("je pense pas", No),
        ("je ne pense pas", No),
        ("je ne crois pas", No),
        ("not really", No),
        ("not at all", No),
        ("absolutely not", No),
        ("certainly not", No),
        ("definitely not", No),
        ("of course not", No),
        ("no way", No),
        ("never", No),
        ("no thanks", No),
        ("no thank you", No),
        ("i don't think so", No),
        ("i dont think so", No),
        ("not particularly", No),
        ("negative", No),
        ("peut etre", Unsure),
        ("peutetre", Unsure),
        ("ptet", Unsure),
        ("ptetre", Unsure),
        ("je sais pas", Unsure),
        ("je ne sais pas", Unsure),
        ("sais pas", Unsure),
        ("chais pas", Unsure),
        ("jsp", Unsure),
        ("aucune idee", Unsure),
        ("pas sur", Unsure),
        ("pas sure", Unsure),
        ("bof", Unsure),
        ("maybe", Unsure),
        ("perhaps", Unsure),
        ("i don't know", Unsure),
        ("i dont know", Unsure),
        ("idk", Unsure),
        ("dunno", Unsure),
        ("not sure", Unsure),
        ("no idea", Unsure),
    ])
});

/// One answer found in the reply: what it says and the tokens it spans.
#[derive(Clone, Copy)]
struct Found {
    said: YesNo,
    first: usize,
    last: usize,
}

/// Reads a yes or a no. See the module documentation for the rules.
pub fn yes_no(text: &str, lang: Lang) -> Result<Reading<YesNo>, Unclear> {
    // Both languages' words are read whatever the survey's language (see the module doc).
    let _ = lang;
    if text.len() > super::MAX_REPLY_BYTES {
        return Err(Unclear::TooLong);
    }
    let t = Tokens::new(text);
    if !t.has_content() {
        return Err(Unclear::Empty);
    }
    let (mut yes, mut no, mut unsure) = (false, false, false);
    let mut answer: Option<Found> = None;
    let mut i = 0;
    while i < t.len() {
        let Some((said, len)) = said_at(&t, i) else {
            i += 1;
            continue;
        };
        let said = match said {
            Said::Yes => YesNo::Yes,
            Said::No => YesNo::No,
            Said::Unsure | Said::YesAlone => {
                unsure |= said == Said::Unsure;
                i += len;
                continue;
            }
        };
        yes |= said == YesNo::Yes;
        no |= said == YesNo::No;
        // Emoji answer wherever they stand ("Super livraison 👍"); words open a clause.
        let emoji = matches!(t.kind(i), Some(Tk::Sign(_)));
        if answer.is_none() && (emoji || opens_clause(&t, i)) {
            answer = Some(Found {
                said,
                first: i,
                last: i + len - 1,
            });
        }
        i += len;
    }
    if yes && no {
        return Err(Unclear::BothYesAndNo);
    }
    if unsure {
        return Err(Unclear::Undecided);
    }
    let Some(mut found) = answer else {
        return Err(Unclear::NoAnswer);
    };
    // "oui oui", "👍👍", "non, non": the repeat is part of the answer, not a comment.
    loop {
        let mut next = found.last + 1;
        while t.kind(next).is_some_and(|k| matches!(k, Tk::Sep(_))) {
            next += 1;
        }
        match said_at(&t, next) {
            Some((Said::Yes | Said::No, len)) => found.last = next + len - 1,
            _ => break,
        }
    }
    Ok(Reading {
        value: found.said,
        comment: text::comment(&t, found.first, found.last, vocab::is_filler),
    })
}

fn said_at(t: &Tokens, i: usize) -> Option<(Said, usize)> {
    match t.kind(i)? {
        Tk::Sign(true) => Some((Said::Yes, 1)),
        Tk::Sign(false) => Some((Said::No, 1)),
        Tk::Word => {
            let (said, len) = ANSWERS.longest_at(t, i)?;
            let alone = t.tok(i + len).is_none() || t.is_break(i + len);
            match said {
                Said::YesAlone if alone && opens_clause(t, i) => Some((Said::Yes, len)),
                Said::YesAlone => None,
                _ => Some((said, len)),
            }
        }
        _ => None,
    }
}

/// Whether only greetings, thanks or hesitations stand between the clause start and token `i`.
fn opens_clause(t: &Tokens, i: usize) -> bool {
    (0..i)
        .rev()
        .take_while(|&k| !t.is_break(k))
        .all(|k| t.word(k).is_some_and(vocab::is_filler))
}
