//! GSM-7 suggestions for the characters that most often push a survey message into UCS-2.

/// A GSM-7 replacement to suggest for a character that forces UCS-2, or `None` when there is
/// no sensible one (emoji, other scripts) or the character is already GSM-7.
///
/// Letters lose their diacritic (`ê` → `e`, `Ô` → `O`, `œ` → `oe`); typographic punctuation
/// becomes its ASCII form (`’` → `'`, `«` → `"`, `—` → `-`, `…` → `...`); exotic spaces become a
/// space; invisible characters (zero-width space, byte-order mark, soft hyphen) are replaced by
/// the empty string, i.e. deleted.
///
/// `ç` becomes `c`, not `Ç`: GSM slot 0x09 is the capital, so `Ç` would keep the message in
/// GSM-7 but show "garÇon" on conforming handsets, while "garcon" reads as plain French SMS
/// spelling.
///
/// A suggestion is for the author of the text; hearback never rewrites a message by itself.
pub fn gsm7_replacement(c: char) -> Option<&'static str> {
    // Only characters outside GSM-7 appear here (a test checks it), which is why `à`, `é`, `è`,
    // `ù`, `É`, `Ç`, `ä`, `ö`, `ü`, `ñ`… are missing: they need no replacement.
    let replacement = match c {
        'á' | 'â' | 'ã' => "a",
        'À' | 'Á' | 'Â' | 'Ã' => "A",
        'ç' => "c",
        'ê' | 'ë' => "e",
        'È' | 'Ê' | 'Ë' => "E",
        'í' | 'î' | 'ï' => "i",
        'Ì' | 'Í' | 'Î' | 'Ï' => "I",
        'ó' | 'ô' | 'õ' => "o",
        'Ò' | 'Ó' | 'Ô' | 'Õ' => "O",
        'ú' | 'û' => "u",
        'Ù' | 'Ú' | 'Û' => "U",
        'ý' | 'ÿ' => "y",
        'Ý' | 'Ÿ' => "Y",
        'œ' => "oe",
        'Œ' => "OE",
        '‘' | '’' | '‚' | '‛' | '′' | '´' | '`' => "'",
        '“' | '”' | '„' | '‟' | '″' | '«' | '»' => "\"",
        '‐' | '‑' | '‒' | '–' | '—' | '―' | '−' | '•' => "-",
        '…' => "...",
        // No-break spaces come with French punctuation ("Merci !", « oui ») from word processors.
        '\t' | '\u{A0}' | '\u{2007}' | '\u{2008}' | '\u{2009}' | '\u{200A}' | '\u{202F}' => " ",
        '\u{AD}' | '\u{200B}' | '\u{FEFF}' => "",
        _ => return None,
    };
    Some(replacement)
}
