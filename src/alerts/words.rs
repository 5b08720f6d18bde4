//! Finding words and phrases in customers' texts, whatever their accents, case or inflection.
//!
//! Customers write "RÉCLAMATION", "reclamations" or "réclamé" for the same complaint, so both
//! sides are folded the same way (accents dropped, lower case) and compared by stem. A token
//! matches when its French stems or its English stems are equal: the surveys are in both
//! languages and a customer may mix them.

use rust_stemmers::{Algorithm, Stemmer};
use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

/// The built-in vocabularies a `words:` entry may name.
const VOCABULARIES: [(&str, &[&str]); 4] = [
    (
        "complaint",
        &[
            "réclamation",
            "plainte",
            "inadmissible",
            "scandaleux",
            "scandale",
            "honteux",
            "honte",
            "arnaque",
            "inacceptable",
            "lamentable",
            "déplorable",
            "complaint",
            "complain",
            "unacceptable",
            "disgraceful",
            "disgrace",
            "scam",
            "outrageous",
            "appalling",
            "rip off",
            "shameful",
        ],
    ),
    (
        "legal",
        &[
            "avocat",
            "tribunal",
            "procès",
            "justice",
            "mise en demeure",
            "porter plainte",
            "association de consommateurs",
            "huissier",
            "poursuites",
            "lawyer",
            "attorney",
            "lawsuit",
            "legal action",
            "sue you",
            "take you to court",
            "see you in court",
            "small claims",
        ],
    ),
    (
        "churn",
        &[
            "résilier",
            "résiliation",
            "changer de fournisseur",
            "changer d'opérateur",
            "aller voir ailleurs",
            "concurrent",
            "concurrence",
            "plus jamais",
            "fermer mon compte",
            "cancel my contract",
            "cancel",
            "switch provider",
            "switch to another",
            "never again",
            "close my account",
            "competitor",
        ],
    ),
    (
        "refund",
        &[
            "remboursement",
            "rembourser",
            "geste commercial",
            "dédommagement",
            "dédommager",
            "indemnisation",
            "indemniser",
            "refund",
            "reimburse",
            "reimbursement",
            "money back",
            "compensation",
            "compensate",
        ],
    ),
];

/// The built-in vocabulary called `name`, if there is one: its name and its words.
pub(super) fn vocabulary(name: &str) -> Option<(&'static str, &'static [&'static str])> {
    VOCABULARIES
        .iter()
        .find(|(known, _)| *known == name)
        .copied()
}

/// Lower-case words with their accents, split on anything that is not a letter or a digit:
/// elided forms such as "l'avocat" become two words, so the noun is still found. Decomposing
/// first keeps a combining accent inside its word rather than splitting there.
fn words(text: &str) -> Vec<String> {
    let decomposed: String = text.nfd().collect();
    decomposed
        .split(|c: char| !c.is_alphanumeric() && !is_combining_mark(c))
        .map(|word| word.nfc().flat_map(char::to_lowercase).collect::<String>())
        .filter(|word| word.chars().any(char::is_alphanumeric))
        .collect()
}

fn fold(word: &str) -> String {
    word.nfd().filter(|c| !is_combining_mark(*c)).collect()
}

/// One token's stems. The French stemmer expects accents ("remboursée" → "rembours") but
/// customers often leave them out ("remboursee" → "rembourse"), so a token has two French stems:
/// the stem of the accented word, folded, and the stem of the folded word without a final "e".
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Stems {
    french: [String; 2],
    english: String,
}

impl Stems {
    fn matches(&self, other: &Stems) -> bool {
        self.french.iter().any(|stem| other.french.contains(stem)) || self.english == other.english
    }
}

/// The two Snowball stemmers; creating them costs nothing, they hold a function pointer each.
pub(super) struct Stemmers {
    french: Stemmer,
    english: Stemmer,
}

impl Stemmers {
    pub(super) fn new() -> Self {
        Stemmers {
            french: Stemmer::create(Algorithm::French),
            english: Stemmer::create(Algorithm::English),
        }
    }

    /// Every token of the text, stemmed.
    pub(super) fn text(&self, text: &str) -> Vec<Stems> {
        words(text)
            .iter()
            .map(|word| {
                let folded = fold(word);
                let french = self.french.stem(&folded);
                Stems {
                    french: [
                        fold(&self.french.stem(word)),
                        french.strip_suffix('e').unwrap_or(&french).to_string(),
                    ],
                    english: self.english.stem(&folded).into_owned(),
                }
            })
            .collect()
    }
}

/// A word or phrase to look for, stemmed once when the rules are loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Phrase {
    /// As written in the rules file or the vocabulary, for the reasons shown to people.
    label: String,
    /// The built-in vocabulary it comes from, if any.
    vocabulary: Option<&'static str>,
    stems: Vec<Stems>,
}

impl Phrase {
    /// `None` when the phrase has no letter or digit, so could never match.
    pub(super) fn new(
        stemmers: &Stemmers,
        label: &str,
        vocabulary: Option<&'static str>,
    ) -> Option<Self> {
        let stems = stemmers.text(label);
        (!stems.is_empty()).then(|| Phrase {
            label: label.to_string(),
            vocabulary,
            stems,
        })
    }

    /// Where the phrase starts in the stemmed text, each place it occurs as consecutive tokens.
    pub(super) fn found_at<'a>(&'a self, text: &'a [Stems]) -> impl Iterator<Item = usize> + 'a {
        text.windows(self.stems.len())
            .enumerate()
            .filter(|(_, window)| {
                window
                    .iter()
                    .zip(&self.stems)
                    .all(|(token, word)| token.matches(word))
            })
            .map(|(start, _)| start)
    }

    /// Why the rule fired, for people: "words: avocat (legal)" or "words: livreur impoli".
    pub(super) fn reason(&self) -> String {
        match self.vocabulary {
            Some(name) => format!("words: {} ({name})", self.label),
            None => format!("words: {}", self.label),
        }
    }
}
