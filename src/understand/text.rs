//! Normalisation: a reply cut into tokens once, so that every rule reads the same words.
//!
//! Letters are folded to lowercase ASCII through a small table (faster than Unicode
//! normalisation, and enough for French and English); the original byte offsets stay on every
//! token so that comments are cut from the customer's own text, accents and case included.

/// What a token is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Tk {
    /// Letters, folded; an apostrophe between letters stays inside ("j'ai", "i'd").
    Word,
    /// ASCII digits or keycap emoji; `num` is the value (saturating), `digits` their count.
    Number,
    /// A run of star emoji (spaces allowed between them): `num` filled, `empty` hollow ones.
    Stars,
    /// A run of `*` (spaces allowed between them): `num` of them.
    Asterisks,
    /// 👍 ✅ ✔ 👌 (`true`) or 👎 ❌ ✖ (`false`).
    Sign(bool),
    /// Punctuation that ends a clause: `. , ; : ! ?`, brackets, quotes, dashes, line breaks.
    Sep(char),
    /// Other symbols: `/ - + % € $ # °`…
    Sym(char),
    /// Anything else, mostly emoji.
    Other,
}

/// What separates a token from the one before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Glue {
    /// Whitespace, or the start of the reply.
    Space,
    /// Nothing: "10h30", "9€", "7-8".
    Touch,
    /// A hyphen between two words: "peut-être", "non-stop", "dix-sept".
    Hyphen,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Token {
    pub kind: Tk,
    pub glue: Glue,
    /// Byte range in the original reply.
    pub start: usize,
    pub end: usize,
    pub num: u64,
    pub digits: u32,
    pub empty: u32,
    fold_start: usize,
    fold_end: usize,
}

pub(super) struct Tokens<'t> {
    pub text: &'t str,
    folded: String,
    toks: Vec<Token>,
}

impl<'t> Tokens<'t> {
    pub fn new(text: &'t str) -> Self {
        let mut tokens = Tokens {
            text,
            folded: String::with_capacity(text.len()),
            toks: Vec::with_capacity(text.len() / 3 + 2),
        };
        tokens.cut();
        tokens
    }

    pub fn len(&self) -> usize {
        self.toks.len()
    }

    pub fn tok(&self, i: usize) -> Option<&Token> {
        self.toks.get(i)
    }

    pub fn kind(&self, i: usize) -> Option<Tk> {
        self.toks.get(i).map(|t| t.kind)
    }

    /// The folded word at `i`, if that token is a word.
    pub fn word(&self, i: usize) -> Option<&str> {
        match self.toks.get(i) {
            Some(t) if t.kind == Tk::Word => Some(&self.folded[t.fold_start..t.fold_end]),
            _ => None,
        }
    }

    /// The token as the customer wrote it.
    pub fn original(&self, i: usize) -> &str {
        self.toks.get(i).map_or("", |t| &self.text[t.start..t.end])
    }

    /// Whether token `i` ends a clause: punctuation, a dash between spaces, or "mais"/"but".
    pub fn is_break(&self, i: usize) -> bool {
        let Some(tok) = self.toks.get(i) else {
            return false;
        };
        match tok.kind {
            Tk::Sep(_) => true,
            Tk::Sym('-') => {
                tok.glue == Glue::Space
                    && self.toks.get(i + 1).is_none_or(|n| n.glue == Glue::Space)
            }
            Tk::Word => matches!(self.word(i), Some("mais" | "but")),
            _ => false,
        }
    }

    /// Whether the reply holds anything but whitespace and punctuation.
    pub fn has_content(&self) -> bool {
        self.toks
            .iter()
            .any(|t| !matches!(t.kind, Tk::Sep(_) | Tk::Sym(_)))
    }

    fn push(&mut self, kind: Tk, glue: Glue, start: usize, end: usize) -> &mut Token {
        self.toks.push(Token {
            kind,
            glue,
            start,
            end,
            num: 0,
            digits: 0,
            empty: 0,
            fold_start: 0,
            fold_end: 0,
        });
        let last = self.toks.len() - 1;
        &mut self.toks[last]
    }

    fn cut(&mut self) {
        let text = self.text;
        let mut i = 0;
        let mut glue = Glue::Space;
        while let Some(c) = char_at(text, i) {
            let start = i;
            i += c.len_utf8();
            if ignorable(c) {
                continue;
            }
            if c == '\n' || c == '\r' {
                self.push(Tk::Sep('\n'), glue, start, i);
                glue = Glue::Space;
                continue;
            }
            if c.is_whitespace() {
                glue = Glue::Space;
                continue;
            }
            let fold_start = self.folded.len();
            if push_folded(c, &mut self.folded) {
                i = self.rest_of_word(i);
                let fold_end = self.folded.len();
                let tok = self.push(Tk::Word, glue, start, i);
                tok.fold_start = fold_start;
                tok.fold_end = fold_end;
            } else if c.is_ascii_digit() || c == '🔟' {
                let (end, num, digits) = number(text, start);
                i = end;
                let tok = self.push(Tk::Number, glue, start, i);
                tok.num = num;
                tok.digits = digits;
            } else if let Some(filled) = star(c) {
                let mut full = u32::from(filled);
                let mut hollow = u32::from(!filled);
                i = skip_ignorable(text, i);
                let mut end = i;
                while let Some((next, after)) = next_in_run(text, end, |c| star(c).is_some()) {
                    if star(next) == Some(true) {
                        full = full.saturating_add(1);
                    } else {
                        hollow = hollow.saturating_add(1);
                    }
                    end = skip_ignorable(text, after);
                }
                i = end;
                let tok = self.push(Tk::Stars, glue, start, i);
                tok.num = full.into();
                tok.empty = hollow;
            } else if c == '*' {
                let mut count = 1u64;
                let mut end = i;
                while let Some((_, after)) = next_in_run(text, end, |c| c == '*') {
                    count = count.saturating_add(1);
                    end = after;
                }
                i = end;
                self.push(Tk::Asterisks, glue, start, i).num = count;
            } else if let Some(yes) = sign(c) {
                i = skip_ignorable(text, i);
                self.push(Tk::Sign(yes), glue, start, i);
            } else if is_hyphen(c)
                && self
                    .toks
                    .last()
                    .is_some_and(|t| t.kind == Tk::Word && t.end == start)
                && char_at(text, i).is_some_and(char::is_alphabetic)
            {
                glue = Glue::Hyphen;
                continue;
            } else if c == '<' && char_at(text, i) == Some('3') {
                // "<3" is a heart, not "less than three".
                i += 1;
                self.push(Tk::Other, glue, start, i);
            } else if is_separator(c) || is_apostrophe(c) {
                let c = if is_apostrophe(c) { '\'' } else { c };
                self.push(Tk::Sep(c), glue, start, i);
            } else if c.is_ascii() || matches!(c, '€' | '£' | '°' | '≈' | '−' | '‐' | '‑' | '×')
            {
                let c = if matches!(c, '−' | '‐' | '‑') {
                    '-'
                } else {
                    c
                };
                self.push(Tk::Sym(c), glue, start, i);
            } else {
                i = skip_ignorable(text, i);
                self.push(Tk::Other, glue, start, i);
            }
            glue = Glue::Touch;
        }
    }

    /// Reads the letters after a word's first one; returns where the word ends.
    fn rest_of_word(&mut self, mut i: usize) -> usize {
        let text = self.text;
        while let Some(c) = char_at(text, i) {
            if ignorable(c) || push_folded(c, &mut self.folded) {
                i += c.len_utf8();
            } else if is_apostrophe(c)
                && char_at(text, i + c.len_utf8()).is_some_and(char::is_alphabetic)
            {
                self.folded.push('\'');
                i += c.len_utf8();
            } else {
                break;
            }
        }
        i
    }
}

fn char_at(text: &str, i: usize) -> Option<char> {
    text.get(i..).and_then(|rest| rest.chars().next())
}

fn skip_ignorable(text: &str, mut i: usize) -> usize {
    while let Some(c) = char_at(text, i) {
        if !ignorable(c) {
            break;
        }
        i += c.len_utf8();
    }
    i
}

/// The next character of a run that may be spaced out ("⭐ ⭐ ⭐", "* * *"): the character and
/// where it ends, if the next non-blank character belongs to the run.
fn next_in_run(text: &str, i: usize, member: impl Fn(char) -> bool) -> Option<(char, usize)> {
    let mut j = i;
    while let Some(c) = char_at(text, j) {
        if member(c) {
            return Some((c, j + c.len_utf8()));
        }
        let blank = ignorable(c) || (c.is_whitespace() && c != '\n' && c != '\r');
        if !blank {
            return None;
        }
        j += c.len_utf8();
    }
    None
}

/// Digits and keycaps from `start`: (end, value, digit count). Adjacent keycaps make one
/// number ("1️⃣0️⃣" is 10), as adjacent digits do.
fn number(text: &str, start: usize) -> (usize, u64, u32) {
    if char_at(text, start) == Some('🔟') {
        return (skip_ignorable(text, start + '🔟'.len_utf8()), 10, 2);
    }
    let (mut i, mut num, mut digits) = (start, 0u64, 0u32);
    while let Some(c) = char_at(text, i) {
        let Some(d) = c.to_digit(10).filter(|_| c.is_ascii_digit()) else {
            break;
        };
        num = num.saturating_mul(10).saturating_add(u64::from(d));
        digits = digits.saturating_add(1);
        i += 1;
        // A keycap is the digit, an optional VS16, then U+20E3; both marks belong to it.
        let mut j = i;
        if char_at(text, j) == Some('\u{FE0F}') {
            j += '\u{FE0F}'.len_utf8();
        }
        if char_at(text, j) == Some('\u{20E3}') {
            i = j + '\u{20E3}'.len_utf8();
        }
    }
    (i, num, digits)
}

/// Characters that carry no meaning of their own: variation selectors, joiners, skin tones,
/// combining accents (a decomposed "é" is read as "e"), tags, soft hyphens.
fn ignorable(c: char) -> bool {
    matches!(c,
        '\u{0300}'..='\u{036F}'
        | '\u{00AD}'
        | '\u{200B}'..='\u{200D}'
        | '\u{2060}'
        | '\u{20E3}'
        | '\u{FE00}'..='\u{FE0F}'
        | '\u{FEFF}'
        | '\u{1F3FB}'..='\u{1F3FF}'
        | '\u{E0020}'..='\u{E007F}')
}

fn is_apostrophe(c: char) -> bool {
    matches!(c, '\'' | '’' | '‘' | '`' | '´' | 'ʼ' | '′')
}

fn is_hyphen(c: char) -> bool {
    matches!(c, '-' | '‐' | '‑')
}

fn is_separator(c: char) -> bool {
    matches!(
        c,
        '.' | ','
            | ';'
            | ':'
            | '!'
            | '?'
            | '…'
            | '('
            | ')'
            | '['
            | ']'
            | '{'
            | '}'
            | '"'
            | '«'
            | '»'
            | '“'
            | '”'
            | '„'
            | '¿'
            | '¡'
            | '–'
            | '—'
            | '•'
            | '|'
            | '·'
    )
}

/// `Some(true)` for a filled star, `Some(false)` for a hollow one.
fn star(c: char) -> Option<bool> {
    match c {
        '⭐' | '🌟' | '★' | '✭' | '✮' | '✯' | '✪' => Some(true),
        '☆' | '✩' | '✰' => Some(false),
        _ => None,
    }
}

fn sign(c: char) -> Option<bool> {
    match c {
        '👍' | '✅' | '✔' | '☑' | '👌' | '🆗' => Some(true),
        '👎' | '❌' | '✖' | '✗' | '✘' | '❎' => Some(false),
        _ => None,
    }
}

/// Pushes the folded form of `c` when it is a letter.
fn push_folded(c: char, out: &mut String) -> bool {
    if c.is_ascii() {
        if c.is_ascii_alphabetic() {
            out.push(c.to_ascii_lowercase());
            return true;
        }
        return false;
    }
    let folded = match c {
        'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' | 'ā' | 'ă' | 'ą' | 'À' | 'Á' | 'Â' | 'Ã' | 'Ä' | 'Å'
        | 'Ā' | 'Ă' | 'Ą' => "a",
        'ç' | 'ć' | 'č' | 'Ç' | 'Ć' | 'Č' => "c",
        'è' | 'é' | 'ê' | 'ë' | 'ē' | 'ė' | 'ę' | 'ě' | 'È' | 'É' | 'Ê' | 'Ë' | 'Ē' | 'Ė' | 'Ę'
        | 'Ě' => "e",
        'ì' | 'í' | 'î' | 'ï' | 'ī' | 'ı' | 'Ì' | 'Í' | 'Î' | 'Ï' | 'Ī' => "i",
        'ñ' | 'ń' | 'ň' | 'Ñ' | 'Ń' | 'Ň' => "n",
        'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'ø' | 'ō' | 'ő' | 'Ò' | 'Ó' | 'Ô' | 'Õ' | 'Ö' | 'Ø' | 'Ō'
        | 'Ő' => "o",
        'ù' | 'ú' | 'û' | 'ü' | 'ū' | 'ů' | 'ű' | 'Ù' | 'Ú' | 'Û' | 'Ü' | 'Ū' | 'Ů' | 'Ű' => {
            "u"
        }
        'ý' | 'ÿ' | 'Ý' | 'Ÿ' => "y",
        'œ' | 'Œ' => "oe",
        'æ' | 'Æ' => "ae",
        'ß' => "ss",
        'š' | 'ś' | 'Š' | 'Ś' => "s",
        'ž' | 'ź' | 'ż' | 'Ž' | 'Ź' | 'Ż' => "z",
        'ł' | 'Ł' => "l",
        _ if c.is_alphabetic() => {
            out.extend(c.to_lowercase());
            return true;
        }
        _ => return false,
    };
    out.push_str(folded);
    true
}

/// The comment left around an answer that spans tokens `first..=last`: the customer's own words
/// before and after it, trimmed of surrounding spaces and punctuation. Words before it that only
/// introduced the answer ("Bonjour, je mets 9") are not a comment.
pub(super) fn comment(
    t: &Tokens,
    first: usize,
    last: usize,
    introduces: impl Fn(&str) -> bool,
) -> Option<String> {
    let (Some(a), Some(b)) = (t.tok(first), t.tok(last)) else {
        return None;
    };
    let only_intro = (0..first).all(|k| match t.kind(k) {
        Some(Tk::Word) => t.word(k).is_some_and(&introduces),
        Some(Tk::Sep(_) | Tk::Sym(_)) => true,
        _ => false,
    });
    let before = if only_intro {
        ""
    } else {
        t.text[..a.start].trim_start_matches(is_trim)
    };
    let after = t.text[b.end..].trim_matches(is_trim);
    match (
        before.trim_end_matches(is_trim).is_empty(),
        after.is_empty(),
    ) {
        (true, true) => None,
        (true, false) => Some(after.to_string()),
        (false, true) => Some(before.trim_end_matches(is_trim).to_string()),
        // Keep the punctuation that ended the first part: "Super service, merci".
        (false, false) => Some(format!("{} {after}", before.trim_end())),
    }
}

fn is_trim(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '.' | ','
                | ';'
                | ':'
                | '!'
                | '?'
                | '…'
                | '-'
                | '–'
                | '—'
                | '/'
                | '|'
                | '•'
                | '·'
                | '('
                | ')'
                | '['
                | ']'
                | '"'
                | '«'
                | '»'
                | '“'
                | '”'
                | '\''
                | '’'
                | '‘'
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str) -> Vec<(Tk, String)> {
        let t = Tokens::new(text);
        (0..t.len())
            .map(|i| {
                let shown = t.word(i).map_or_else(
                    || t.original(i).to_string(),
                    std::string::ToString::to_string,
                );
                (t.kind(i).unwrap(), shown)
            })
            .collect()
    }

    #[test]
    fn words_are_folded_to_lowercase_without_accents() {
        let t = Tokens::new("TRÈS Satisfait, Œuvre j’ai peut-être");
        let words: Vec<_> = (0..t.len()).filter_map(|i| t.word(i)).collect();
        assert_eq!(
            words,
            ["tres", "satisfait", "oeuvre", "j'ai", "peut", "etre"]
        );
        assert_eq!(t.tok(6).unwrap().glue, Glue::Hyphen);
    }

    #[test]
    fn a_decomposed_accent_folds_like_a_composed_one() {
        let t = Tokens::new("tre\u{300}s");
        assert_eq!(t.word(0), Some("tres"));
    }

    #[test]
    fn keycaps_read_as_digits_with_or_without_the_selector() {
        for (text, value) in [("9\u{FE0F}\u{20E3}", 9), ("9\u{20E3}", 9), ("🔟", 10)] {
            let t = Tokens::new(text);
            assert_eq!(t.len(), 1, "{text}");
            assert_eq!(
                (t.kind(0), t.tok(0).unwrap().num),
                (Some(Tk::Number), value)
            );
        }
        let t = Tokens::new("1\u{FE0F}\u{20E3}0\u{FE0F}\u{20E3}");
        assert_eq!(t.tok(0).unwrap().num, 10);
    }

    #[test]
    fn stars_are_counted_even_spaced_out() {
        let t = Tokens::new("⭐️⭐️ ⭐️ ☆");
        assert_eq!(t.len(), 1);
        assert_eq!((t.tok(0).unwrap().num, t.tok(0).unwrap().empty), (3, 1));
    }

    #[test]
    fn times_and_prices_keep_their_parts_touching() {
        assert_eq!(
            kinds("10h30 9€"),
            [
                (Tk::Number, "10".into()),
                (Tk::Word, "h".into()),
                (Tk::Number, "30".into()),
                (Tk::Number, "9".into()),
                (Tk::Sym('€'), "€".into()),
            ]
        );
        let t = Tokens::new("10h30 9€");
        assert_eq!(t.tok(1).unwrap().glue, Glue::Touch);
        assert_eq!(t.tok(3).unwrap().glue, Glue::Space);
    }

    #[test]
    fn comments_are_cut_from_the_original_text() {
        let t = Tokens::new("Super service, note 9, merci !");
        let nine = (0..t.len()).find(|&i| t.original(i) == "9").unwrap();
        let got = comment(&t, nine - 1, nine, |w| w == "note");
        assert_eq!(got.as_deref(), Some("Super service, merci"));
    }
}
