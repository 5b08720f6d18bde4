//! Understanding customer replies as people write them: scores, yes/no, choices and the
//! STOP/START/HELP keywords, in French and English. Pure functions: no I/O, no panics on any
//! input, no regex; one pass of tokenising per call.
//!
//! # Normalisation
//!
//! A reply is cut once into tokens (`text.rs`): words, numbers, star runs, yes/no emoji,
//! punctuation, symbols and other emoji. Letters are folded to lowercase ASCII through a small
//! table of Latin letters (`É`→`e`, `œ`→`oe`; a decomposed accent is dropped), so "TRÈS
//! SATISFAIT", "tres satisfait" and "Très satisfait" read alike. Apostrophes (`'`, `’`…) inside
//! a word stay in it ("j'ai", "i'd"); a hyphen between letters splits the word but is
//! remembered ("peut-être", "non-stop", "dix-sept"). Keycaps (`9️⃣`, `9⃣`, `🔟`) are digits;
//! variation selectors, joiners and skin tones are ignored. Every token keeps its byte range in
//! the original text, so comments are the customer's own words, unedited.
//!
//! Words of both languages are read whatever `lang` says: customers answer a French survey in
//! English and the reverse, and no word here means one thing in French and another in English
//! (the one clash, "à" folded to the English article "a", is told apart by its accent). `lang`
//! stays in the signatures so that a language whose words collide can be added without
//! changing callers.
//!
//! # Never guess
//!
//! A wrong score is worse than a second question, so every reader returns an [`Unclear`] with a
//! precise reason rather than pick among readings. In particular:
//!
//! - Every number in the reply is classified first (`numbers.rs`). A number is **not an answer**
//!   when a unit follows it ("3 jours", "2 heures", "9€", "90 %", "2 articles" — a plural noun
//!   after a number makes it a count), when an identifier or a preposition precedes it
//!   ("commande 12345", "#4", "à 10", "at 9"), when it is a time ("10h30", "10:30"), a date
//!   ("12/05", "05/10"), a phone number ("06 12 34 56 78", "+33…") or has four digits or more.
//!   Those numbers stay in the comment and never count.
//! - **Two candidate answers** that differ are unclear (`several_numbers`): "7 ou 8", "9 10",
//!   "7-8", "between 5 and 6", "8 ou 9 sur 10", "très satisfait, 3". The same value twice is
//!   fine ("10/10, 10 !").
//! - A **negation** before a candidate in its clause makes it unclear (`negated`): "pas 10",
//!   "not 10, more like 6", "je ne mettrais pas 10". We do not apply corrections ("more like
//!   6"): a reply that needs one is asked again. "pas mal, 8" is fine (the comma ends the
//!   clause); "pas mal 8" is not, deliberately.
//! - A **hedge** makes it unclear (`approximate`): "presque 10", "about 8", "8+", "9 max".
//! - A score given **on another scale** is not converted (`other_scale`): "4/5" or five stars
//!   for an NPS question, "8/10" for CSAT.
//! - **Out of range** (`out_of_range`): "11", "-1", "0" for CSAT, "100".
//! - A reply longer than [`MAX_REPLY_BYTES`] is `too_long` (keywords excepted).
//! - A number nothing places as an answer is unclear (`not_a_score`): it must be qualified
//!   ("9/10", "8 sur 10", "nine out of ten", stars), open its clause after lead-in words only
//!   ("7 mais…", "Très bien, 9", "je mets 8", "I'd give it a 9"), follow a word that announces
//!   a score anywhere in its clause ("super service, je lui mets un bon 8"), or end the reply
//!   ("Service impeccable 10") unless a verb of quantity precedes it ("j'ai attendu 2").
//!
//! # Scores
//!
//! Digits, keycaps, number words (`zéro`…`dix`, `zero`…`ten`; "un"/"une"/"one" only when they
//! stand alone or are qualified, since they are also articles), `x/10`, `x sur 10`,
//! `x out of 10`. Stars (`⭐⭐⭐⭐`, `★★★☆☆` = 3, `4 étoiles`, `5*`) rate out of five and so
//! count for CSAT only. A run of asterisks standing apart (`****`) also counts as stars: on
//! phones without emoji it is how people draw them; glued to a word it is emphasis and is
//! ignored. CSAT also reads the usual labels, matched on whole words, longest first (so
//! "insatisfait" is never "satisfait", "dissatisfied" never "satisfied", and "ni satisfait ni
//! insatisfait" is 3): très satisfait 5, (plutôt) satisfait 4, neutre / ni satisfait ni
//! insatisfait 3, insatisfait / pas satisfait 2, très insatisfait / pas du tout satisfait 1,
//! and the English very satisfied … very dissatisfied. CES has no labels: surveys disagree on
//! which end is "easy".
//!
//! # Comments
//!
//! What the reply says besides the answer is its comment: the text before and after the
//! answer, each trimmed of surrounding spaces and punctuation, joined by a space. Words are
//! kept as written, connectives included ("7 mais livreur en retard" → "mais livreur en
//! retard"): an agent reads the customer's words, not ours. Lead-in words that only introduced
//! the answer ("Bonjour, je mets 9") are not a comment. `None` when nothing is left.
//!
//! # Yes / no
//!
//! Words and phrases (oui, ouais, bien sûr, pas de souci, yes, yep, of course; non, non merci,
//! pas vraiment, nope, not at all…) and emoji (👍 ✅ ✔ 👌 / 👎 ❌ ✖). A word answer must open a
//! clause (greetings and thanks aside: "Bonjour, oui"); an emoji counts anywhere. Yes and no
//! anywhere in one reply is `both_yes_and_no` ("oui et non", "oui mais non", "Yes, but no
//! callback" too: we would rather ask again); phrases are matched longest first, so "no
//! problem" and "pas de souci" are yes and "bien sûr que non" is no. "peut-être", "je ne sais
//! pas", "maybe" are `undecided`. "si" is yes only on its own ("si le livreur…" is "if").
//!
//! # Choices
//!
//! An option is picked by its number ("2", "la 2", "option 2", "deuxième"), its letter standing
//! alone ("b", "B)", "(c)"), or one of its labels anywhere in the reply (case- and
//! accent-insensitive, whole words, a plural -s allowed). Two different options named is
//! `several_options`. A label that is all its clause says ("le prix", "Livraison, le colis
//! était abîmé") is cut out of the comment; a label inside a sentence ("le livreur était en
//! retard") leaves the whole reply as the comment, since cutting it would leave words the
//! customer never wrote.
//!
//! # Keywords and where "stop" stands
//!
//! [`keyword`] is called on every inbound message before anything else. Both mistakes cost: a
//! false opt-out silences a customer who only complained, a missed STOP is a legal breach. The
//! rule, in order (the first that matches wins; opt-out beats opt-in and help):
//!
//! 1. **Opt-out** when any clause of the reply is only an opt-out word (STOP, STOPALL, ARRET,
//!    ARRÊTE(Z), UNSUBSCRIBE, DÉSABONNER, DÉSINSCRIRE, CANCEL, END, QUIT, REVOKE…) with
//!    politeness and what to stop around it: "Stop!", "STOP SMS", "stop svp", "please stop",
//!    "Arrêt SVP.", "8. Stop", "Livraison ok, stop". "non stop" is an opt-out ("Non. STOP"); the
//!    hyphenated "non-stop" is the adverb and is not.
//! 2. **Opt-out** on a word that only ever means it, anywhere: unsubscribe, désabonner,
//!    désinscrire, stopall, opt out.
//! 3. **Opt-out** when STOP or ARRET opens or closes the reply as a keyword: in capitals
//!    ("Livreur en retard STOP", "STOP je n'ai rien commandé": capitals are how people write
//!    a keyword), closing it with no article or "non" before it ("livreur en retard stop", but
//!    not "le bus s'est arrêté au stop" nor "joignable non stop"), or opening it followed by
//!    politeness ("stop svp je n'ai rien commandé", but not "stop and go traffic"). A STOP
//!    held long ("stooop") is a STOP.
//! 4. **Opt-out** on an explicit request: "je ne veux plus recevoir de sms", "ne m'envoyez
//!    plus", "plus de messages", "don't text me", "remove me", "leave me alone".
//! 5. **Opt-out** when a stop verb governs the messages: "stop the calls please", "arrêtez de
//!    m'envoyer des messages", "stop à la pub", "quit sending me stuff". "arrêté" written
//!    with its accent is a participle, and a stop verb with no messaging word after it in its
//!    clause stops nothing we send: "le livreur ne s'est pas arrêté" (with or without the
//!    accent) is no opt-out.
//! 6. **Opt-in** when the whole reply is START, UNSTOP, SUBSCRIBE or RESUBSCRIBE with
//!    politeness. "YES" is not opt-in: it is an answer to the survey's questions, and reading
//!    it as a keyword in any state would swallow every "yes".
//! 7. **Help** when the whole reply is HELP, AIDE or INFO with politeness ("aide moi svp").
//!
//! Anything else is no keyword (`no_keyword` in [`describe`]); the engine then reads the
//! reply as an answer, and an agent sees it. "FIN" is not an opt-out word: French short codes
//! use STOP.

mod choice;
mod keyword;
mod numbers;
mod score;
mod text;
mod vocab;
mod yes_no;

#[cfg(test)]
mod tests;

pub use choice::choice;
pub use keyword::keyword;
pub use score::score;
pub use yes_no::yes_no;

use crate::lang::Lang;
use serde_json::{Map, Value};
use std::fmt;
use std::str::FromStr;

/// Replies longer than this (about 25 SMS segments) are not read as answers (`too_long`): no
/// survey answer is that long, and it bounds the work one message can cost. [`keyword`] reads
/// replies of any length, since a STOP must never be missed.
pub const MAX_REPLY_BYTES: usize = 4096;

/// A rating scale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scale {
    /// Net Promoter Score, 0 to 10.
    Nps,
    /// Customer satisfaction, 1 to 5.
    Csat,
    /// Customer effort, 1 to 7.
    Ces,
}

impl Scale {
    pub fn range(self) -> std::ops::RangeInclusive<u8> {
        match self {
            Scale::Nps => 0..=10,
            Scale::Csat => 1..=5,
            Scale::Ces => 1..=7,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Scale::Nps => "nps",
            Scale::Csat => "csat",
            Scale::Ces => "ces",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum YesNo {
    Yes,
    No,
}

impl YesNo {
    pub fn as_str(self) -> &'static str {
        match self {
            YesNo::Yes => "yes",
            YesNo::No => "no",
        }
    }
}

/// A keyword that works in any state of a conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Keyword {
    OptOut,
    OptIn,
    Help,
}

impl Keyword {
    pub fn as_str(self) -> &'static str {
        match self {
            Keyword::OptOut => "opt_out",
            Keyword::OptIn => "opt_in",
            Keyword::Help => "help",
        }
    }
}

/// Why a reply was not understood. `code()` is a stable snake_case reason used in JSON output;
/// Display is a short English sentence.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unclear {
    #[error("the reply is empty")]
    Empty,
    #[error("the reply is longer than {MAX_REPLY_BYTES} bytes, too long to be an answer")]
    TooLong,
    #[error("the reply does not answer the question")]
    NoAnswer,
    #[error("{value} is outside the scale ({min} to {max})")]
    OutOfRange { value: i64, min: i64, max: i64 },
    #[error("the reply gives several scores ({first} and {second})")]
    SeveralNumbers { first: i64, second: i64 },
    #[error(
        "the numbers in the reply are not scores (a quantity, price, time, date or identifier)"
    )]
    NotAScore,
    #[error("the score is not a whole number")]
    NotWhole,
    #[error("the score is given out of {out_of}, not on the question's scale")]
    OtherScale { out_of: i64 },
    #[error("the reply negates the answer it gives")]
    Negated,
    #[error("the reply gives an approximate score")]
    Approximate,
    #[error("the reply says both yes and no")]
    BothYesAndNo,
    #[error("the reply says the customer does not know")]
    Undecided,
    #[error("the reply names several options")]
    SeveralOptions,
    #[error("the reply is no keyword")]
    NoKeyword,
}

impl Unclear {
    pub fn code(&self) -> &'static str {
        match self {
            Unclear::Empty => "empty",
            Unclear::TooLong => "too_long",
            Unclear::NoAnswer => "no_answer",
            Unclear::OutOfRange { .. } => "out_of_range",
            Unclear::SeveralNumbers { .. } => "several_numbers",
            Unclear::NotAScore => "not_a_score",
            Unclear::NotWhole => "not_a_whole_number",
            Unclear::OtherScale { .. } => "other_scale",
            Unclear::Negated => "negated",
            Unclear::Approximate => "approximate",
            Unclear::BothYesAndNo => "both_yes_and_no",
            Unclear::Undecided => "undecided",
            Unclear::SeveralOptions => "several_options",
            Unclear::NoKeyword => "no_keyword",
        }
    }
}

/// The understood answer and whatever else the reply said (`None` when nothing is left).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reading<T> {
    pub value: T,
    pub comment: Option<String>,
}

/// What `hearback understand --kind` reads a reply as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Nps,
    Csat,
    Ces,
    YesNo,
    Keyword,
}

impl Kind {
    pub const ALL: [Kind; 5] = [Kind::Nps, Kind::Csat, Kind::Ces, Kind::YesNo, Kind::Keyword];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Nps => "nps",
            Kind::Csat => "csat",
            Kind::Ces => "ces",
            Kind::YesNo => "yesno",
            Kind::Keyword => "keyword",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown kind '{0}': expected nps, csat, ces, yesno or keyword")]
pub struct UnknownKind(pub String);

impl FromStr for Kind {
    type Err = UnknownKind;
    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        Kind::ALL
            .into_iter()
            .find(|k| k.name().eq_ignore_ascii_case(raw))
            .ok_or_else(|| UnknownKind(raw.to_string()))
    }
}

/// The JSON line `hearback understand` prints: `{"kind":"nps","value":9}`,
/// `{"kind":"nps","unclear":"<code>"}`, plus `"comment"` when one was read.
pub fn describe(kind: Kind, lang: Lang, text: &str) -> Value {
    let scored = |scale| score(text, scale, lang).map(|r| (Value::from(r.value), r.comment));
    let outcome = match kind {
        Kind::Nps => scored(Scale::Nps),
        Kind::Csat => scored(Scale::Csat),
        Kind::Ces => scored(Scale::Ces),
        Kind::YesNo => yes_no(text, lang).map(|r| (Value::from(r.value.as_str()), r.comment)),
        Kind::Keyword => keyword(text)
            .map(|k| (Value::from(k.as_str()), None))
            .ok_or(Unclear::NoKeyword),
    };
    let mut object = Map::new();
    object.insert("kind".into(), kind.name().into());
    match outcome {
        Ok((value, comment)) => {
            object.insert("value".into(), value);
            if let Some(comment) = comment {
                object.insert("comment".into(), comment.into());
            }
        }
        Err(unclear) => {
            object.insert("unclear".into(), unclear.code().into());
        }
    }
    Value::Object(object)
}
