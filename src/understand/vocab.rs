//! The words replies are read with, French and English together, all folded (lowercase, no
//! accents). Single words are `match` arms, which the compiler turns into a few comparisons;
//! phrases are sorted once and found by their first word.

use super::text::{Tk, Tokens};

/// How far a number word may be trusted when nothing qualifies it ("sur dix", "out of ten").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Trust {
    /// "sept", "ten": always a number.
    Always,
    /// "neuf" is also "new" ("un produit neuf"): a number only when it opens its clause.
    OpeningClause,
    /// "un", "une", "one" are also articles: a number only when they are all the clause says.
    Alone,
}

/// A number written in words: its value, and how far it may be trusted.
pub(super) fn number_word(w: &str) -> Option<(i64, Trust)> {
    let value = match w {
        "zero" | "nought" => 0,
        "un" | "une" | "one" => return Some((1, Trust::Alone)),
        "neuf" => return Some((9, Trust::OpeningClause)),
        "deux" | "two" => 2,
        "trois" | "three" => 3,
        "quatre" | "four" => 4,
        "cinq" | "five" => 5,
        "six" => 6,
        "sept" | "seven" => 7,
        "huit" | "eight" => 8,
        "nine" => 9,
        "dix" | "ten" => 10,
        "onze" | "eleven" => 11,
        "douze" | "twelve" => 12,
        "treize" | "thirteen" => 13,
        "quatorze" | "fourteen" => 14,
        "quinze" | "fifteen" => 15,
        "seize" | "sixteen" => 16,
        "seventeen" => 17,
        "eighteen" => 18,
        "nineteen" => 19,
        "vingt" | "twenty" => 20,
        "trente" | "thirty" => 30,
        "cent" | "hundred" => 100,
        _ => return None,
    };
    Some((value, Trust::Always))
}

/// "premier", "2nd"… for choices: the 1-based rank.
pub(super) fn ordinal_word(w: &str) -> Option<i64> {
    Some(match w {
        "premier" | "premiere" | "first" | "1er" | "1ere" | "1st" => 1,
        "deuxieme" | "second" | "seconde" | "2e" | "2eme" | "2nd" => 2,
        "troisieme" | "third" | "3e" | "3eme" | "3rd" => 3,
        "quatrieme" | "fourth" | "4e" | "4eme" | "4th" => 4,
        "cinquieme" | "fifth" | "5e" | "5eme" | "5th" => 5,
        "sixieme" | "sixth" => 6,
        "septieme" | "seventh" => 7,
        "huitieme" | "eighth" => 8,
        "neuvieme" | "ninth" => 9,
        "dixieme" | "tenth" => 10,
        _ => return None,
    })
}

/// Letters glued after digits that make an ordinal: "1er", "2e", "3rd".
pub(super) fn is_ordinal_suffix(w: &str) -> bool {
    matches!(
        w,
        "er" | "ere" | "re" | "e" | "eme" | "em" | "st" | "nd" | "rd" | "th"
    )
}

/// Greetings, thanks and hesitations: they open a reply without saying anything.
pub(super) fn is_filler(w: &str) -> bool {
    matches!(
        w,
        "bonjour"
            | "bonsoir"
            | "salut"
            | "coucou"
            | "hello"
            | "hi"
            | "hey"
            | "alors"
            | "euh"
            | "heu"
            | "euuh"
            | "ben"
            | "bah"
            | "bon"
            | "eh"
            | "ah"
            | "oh"
            | "hmm"
            | "hum"
            | "well"
            | "so"
            | "merci"
            | "thanks"
            | "thank"
            | "thx"
            | "madame"
            | "monsieur"
    )
}

/// Words that say a score follows, wherever they stand in its clause: "super service, je lui
/// mets un bon 8".
pub(super) fn is_strong_lead_in(w: &str) -> bool {
    matches!(
        w,
        "note"
            | "noter"
            | "notation"
            | "mets"
            | "met"
            | "mettrai"
            | "mettrais"
            | "mettre"
            | "donne"
            | "donnerai"
            | "donnerais"
            | "donner"
            | "dirais"
            | "dirai"
            | "say"
            | "give"
            | "gives"
            | "giving"
            | "rate"
            | "rating"
            | "score"
            | "grade"
            | "evaluation"
            | "reponse"
            | "answer"
            | "vote"
            | "choisis"
            | "choose"
            | "pick"
            | "prends"
    )
}

/// Words that may stand between the start of a clause and its answer: "je mets 8", "I'd give it
/// a 9", "ma note est de 8", "je suis très satisfait", "option b".
pub(super) fn is_lead_in(w: &str) -> bool {
    is_filler(w)
        || is_strong_lead_in(w)
        || matches!(
            w,
            "je" | "j'"
                | "j"
                | "ne"
                | "ma"
                | "mon"
                | "votre"
                | "vous"
                | "lui"
                | "te"
                | "leur"
                | "est"
                | "c'est"
                | "cest"
                | "ce"
                | "ca"
                | "cela"
                | "sera"
                | "serait"
                | "de"
                | "d"
                | "un"
                | "une"
                | "a"
                | "an"
                | "the"
                | "le"
                | "la"
                | "i"
                | "i'd"
                | "id"
                | "i'll"
                | "it"
                | "it's"
                | "its"
                | "is"
                | "would"
                | "will"
                | "you"
                | "your"
                | "my"
                | "on"
                | "nous"
                | "we"
                | "am"
                | "i'm"
                | "im"
                | "suis"
                | "j'suis"
                | "chuis"
                | "sommes"
                | "are"
                | "was"
                | "be"
                | "globalement"
                | "overall"
                | "moi"
                | "me"
                | "pour"
                | "for"
                | "that"
                | "this"
                | "ok"
                | "okay"
                | "honnetement"
                | "honestly"
                | "franchement"
                | "perso"
                | "personnellement"
                | "personally"
                | "option"
                | "choix"
                | "numero"
                | "number"
                | "n"
                | "num"
                | "lettre"
                | "letter"
        )
}

/// Negations: a number after one of them in its clause is not the customer's answer ("pas 10",
/// "not 10, more like 6"). "ne" is left out: French never negates with it alone, and "je ne
/// suis pas satisfait" must still read "pas satisfait".
pub(super) fn is_negation(w: &str) -> bool {
    matches!(
        w,
        "pas" | "not" | "non" | "no" | "jamais" | "never" | "aucun" | "nope"
    ) || (w.len() > 3 && w.ends_with("n't"))
}

/// Hedges: "presque 10", "about 8", "au moins 7" are not a score one can record.
pub(super) fn is_hedge(w: &str) -> bool {
    matches!(
        w,
        "presque"
            | "quasi"
            | "quasiment"
            | "environ"
            | "approximativement"
            | "probablement"
            | "peut"
            | "genre"
            | "plus"
            | "moins"
            | "almost"
            | "nearly"
            | "about"
            | "around"
            | "approximately"
            | "roughly"
            | "approx"
            | "maybe"
            | "perhaps"
            | "probably"
            | "more"
            | "less"
            | "like"
            | "least"
            | "over"
            | "under"
            | "above"
            | "below"
            | "dessus"
            | "dessous"
    )
}

/// Words right after a number that make it a hedge: "8 environ", "9 max".
pub(super) fn is_trailing_hedge(w: &str) -> bool {
    matches!(
        w,
        "environ" | "max" | "maximum" | "minimum" | "approx" | "ish" | "about" | "presque"
    )
}

/// Units that make a number a quantity, a duration, a price or a date: "3 jours", "2 heures",
/// "10 h", "12 mai".
pub(super) fn is_unit(w: &str) -> bool {
    matches!(
        w,
        "jour"
            | "jours"
            | "j"
            | "heure"
            | "heures"
            | "h"
            | "hr"
            | "hrs"
            | "hour"
            | "hours"
            | "min"
            | "mins"
            | "mn"
            | "minute"
            | "minutes"
            | "sec"
            | "seconde"
            | "secondes"
            | "second"
            | "seconds"
            | "semaine"
            | "semaines"
            | "sem"
            | "week"
            | "weeks"
            | "mois"
            | "month"
            | "months"
            | "an"
            | "ans"
            | "annee"
            | "annees"
            | "year"
            | "years"
            | "day"
            | "days"
            | "fois"
            | "time"
            | "times"
            | "euro"
            | "euros"
            | "eur"
            | "balles"
            | "dollar"
            | "dollars"
            | "usd"
            | "cent"
            | "cents"
            | "centime"
            | "centimes"
            | "km"
            | "m"
            | "kg"
            | "g"
            | "article"
            | "produit"
            | "item"
            | "colis"
            | "paquet"
            | "package"
            | "parcel"
            | "commande"
            | "order"
            | "piece"
            | "personne"
            | "person"
            | "people"
            | "appel"
            | "call"
            | "sms"
            | "message"
            | "am"
            | "pm"
            | "janvier"
            | "fevrier"
            | "mars"
            | "avril"
            | "mai"
            | "juin"
            | "juillet"
            | "aout"
            | "septembre"
            | "octobre"
            | "novembre"
            | "decembre"
            | "january"
            | "february"
            | "march"
            | "april"
            | "may"
            | "june"
            | "july"
            | "august"
            | "september"
            | "october"
            | "november"
            | "december"
            | "jan"
            | "feb"
            | "fev"
            | "mar"
            | "apr"
            | "avr"
            | "jun"
            | "jul"
            | "juil"
            | "aug"
            | "sep"
            | "sept"
            | "oct"
            | "nov"
            | "dec"
    )
}

/// A plural noun after a number makes it a count ("2 articles manquants", "3 retards"); these
/// common words ending in -s/-x start a comment instead ("8 mais", "9 très bien", "10 thanks").
pub(super) fn looks_like_count(w: &str) -> bool {
    w.len() >= 3
        && (w.ends_with('s') || w.ends_with('x'))
        && !matches!(
            w,
            "mais"
                | "tres"
                | "plus"
                | "pas"
                | "sans"
                | "dans"
                | "chez"
                | "vous"
                | "nous"
                | "tous"
                | "toujours"
                | "apres"
                | "alors"
                | "parfois"
                | "depuis"
                | "puis"
                | "sous"
                | "jamais"
                | "moins"
                | "mieux"
                | "ras"
                | "les"
                | "des"
                | "ces"
                | "mes"
                | "tes"
                | "ses"
                | "vos"
                | "nos"
                | "leurs"
                | "ils"
                | "elles"
                | "thanks"
                | "thx"
                | "yes"
                | "this"
                | "its"
                | "was"
                | "always"
                | "perhaps"
                | "cheers"
                | "pls"
                | "bravo"
                | "voila"
                | "heureux"
                | "heureuse"
                | "merveilleux"
                | "deux"
                | "trois"
                | "six"
                | "dix"
        )
}

/// Words before a number that make it an identifier, a time or a place ("commande 12345",
/// "à 10", "at 9"). Choices accept "numéro 2", so they pass `for_choice`.
pub(super) fn is_context_before(w: &str, for_choice: bool) -> bool {
    let identifier = matches!(
        w,
        "numero"
            | "number"
            | "n"
            | "no"
            | "num"
            | "nr"
            | "nro"
            | "ref"
            | "reference"
            | "le"
            | "du"
            | "au"
            | "the"
    );
    (identifier && !for_choice)
        || matches!(
            w,
            "commande"
                | "order"
                | "ticket"
                | "facture"
                | "invoice"
                | "client"
                | "customer"
                | "tel"
                | "telephone"
                | "phone"
                | "colis"
                | "dossier"
                | "code"
                | "vol"
                | "flight"
                | "page"
                | "chambre"
                | "room"
                | "table"
                | "caisse"
                | "porte"
                | "bus"
                | "ligne"
                | "line"
                | "rue"
                | "street"
                | "avenue"
                | "version"
                | "at"
                | "vers"
                | "avant"
                | "apres"
                | "before"
                | "after"
                | "depuis"
                | "since"
                | "until"
                | "till"
                | "jusqu'a"
                | "dans"
                | "in"
                | "pendant"
                | "during"
                | "within"
                | "x"
        )
}

/// Verbs after which a number that ends the reply is a quantity, not a score ("j'ai attendu 2").
pub(super) fn is_quantity_verb(w: &str) -> bool {
    matches!(
        w,
        "attendu"
            | "attendre"
            | "attends"
            | "patiente"
            | "waited"
            | "wait"
            | "waiting"
            | "paye"
            | "payer"
            | "paid"
            | "pay"
            | "recu"
            | "received"
            | "achete"
            | "bought"
            | "commande"
            | "ordered"
            | "rappele"
            | "appele"
            | "called"
            | "sonne"
            | "rang"
            | "manque"
            | "manquait"
            | "missing"
            | "coute"
            | "cost"
            | "costs"
    )
}

/// Feminine and plural forms read as the form the phrase tables list.
fn canonical(w: &str) -> &str {
    match w {
        "satisfaite" | "satisfaits" | "satisfaites" => "satisfait",
        "insatisfaite" | "insatisfaits" | "insatisfaites" => "insatisfait",
        _ => w,
    }
}

/// A table of phrases (folded words separated by one space) and what each means.
pub(super) struct Phrases<T: 'static> {
    sorted: Vec<(&'static str, T)>,
}

fn first_word(phrase: &str) -> &str {
    phrase.split(' ').next().unwrap_or(phrase)
}

impl<T: Copy> Phrases<T> {
    pub fn new(list: &[(&'static str, T)]) -> Self {
        let mut sorted = list.to_vec();
        sorted.sort_by(|a, b| first_word(a.0).cmp(first_word(b.0)));
        Phrases { sorted }
    }

    /// The longest phrase whose words are the words from token `i` on: its meaning and how many
    /// tokens it covers.
    pub fn longest_at(&self, t: &Tokens, i: usize) -> Option<(T, usize)> {
        let w = canonical(t.word(i)?);
        let from = self.sorted.partition_point(|p| first_word(p.0) < w);
        let mut best: Option<(T, usize)> = None;
        for (phrase, value) in &self.sorted[from..] {
            if first_word(phrase) != w {
                break;
            }
            let mut len = 0;
            let matched = phrase.split(' ').all(|pw| {
                let ok =
                    t.kind(i + len) == Some(Tk::Word) && t.word(i + len).map(canonical) == Some(pw);
                len += 1;
                ok
            });
            if matched && best.is_none_or(|(_, l)| len > l) {
                best = Some((*value, len));
            }
        }
        best
    }
}
