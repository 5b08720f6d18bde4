//! How a text travels by SMS: its encoding (GSM-7 or UCS-2), how many parts it is sent in, and
//! how many units it counts. Pure code, no I/O; this is the reference for every message hearback
//! lints, prices or sends.
//!
//! # Encoding
//!
//! A text is **GSM-7** when every one of its characters is in the GSM 7-bit default alphabet of
//! 3GPP TS 23.038 §6.2.1 (the *basic table*, one septet each) or in its extension table (§6.2.1.1:
//! `^ { } \ [ ~ ] | €` and form feed, sent as the escape septet 0x1B followed by a code, so
//! **two** septets each). One character outside both tables makes the whole message **UCS-2**,
//! because a message has a single data coding scheme. The national language shift tables of
//! §6.2.1.2 are not used: French has none, and carriers honour them unevenly.
//!
//! Traps for French text, all checked against the tables:
//! - in GSM-7: `é è à ù É Ç ì ò ä ö ü Ä Ö Ü ñ Ñ`, `€` (extension, two septets);
//! - **not** in GSM-7: `ê â î ô û ë ï`, `È À Ù`, `œ`, curly quotes `’ ‘ “ ”`, `« »`, `– —`, `…`,
//!   no-break spaces, and lowercase `ç`: slot 0x09 is the capital `Ç` in 3GPP TS 23.038, AOSP and
//!   Twilio (the Unicode consortium's GSM0338.TXT says `ç`; we follow 3GPP, which can only make us
//!   over-count, never under-count, what a message costs).
//!
//! [`ucs2_characters`] names the characters that force UCS-2 and [`gsm7_replacement`] suggests
//! GSM-7 substitutes for the common ones.
//!
//! # Units and parts
//!
//! The user data of one SMS is 140 octets: **160** septets or **70** UCS-2 units. A longer text is
//! concatenated: each part carries a 6-octet user data header (IEI 0x00, 8-bit reference), which
//! leaves **153** septets or **67** units per part. (The 16-bit reference header, IEI 0x08, would
//! leave 152/66; providers use the 8-bit one, and so do the published cases.)
//!
//! Units are septets for GSM-7 (extension characters count 2) and UTF-16 code units for UCS-2:
//! strict UCS-2 cannot carry characters outside the Basic Multilingual Plane, but handsets and
//! providers send UTF-16, so an emoji is a surrogate pair and counts 2.
//!
//! A character is never cut between two parts, because each part is decoded on its own: an
//! extension character whose escape septet would be the last septet of a part moves whole to the
//! next part (which then ends one septet early, at 152), and a surrogate pair that would straddle
//! two UCS-2 parts likewise moves whole (the part keeps 66 units). This is what AOSP
//! (`GsmAlphabet`) and Twilio's message-segment-calculator do. Parts are therefore filled
//! greedily, and a text may need one part more than `ceil(units / 153)` (or `/ 67`): 152
//! `a`, `€`, 152 `a` is 306 septets but three parts. The published cases in
//! `fixtures/gsm7/segment_cases.json` never reach that edge; the boundary tests do.
//!
//! The empty text is GSM-7, 0 units, **0 segments**: there is nothing to send, and providers
//! refuse an empty body (Twilio answers error 21602) rather than bill for it. (Twilio's
//! calculator shows 1 for it, an artefact of starting from one empty part.)
//!
//! Known difference: a grapheme cluster of several characters (👍🏽, 🇫🇷, a letter followed by a
//! combining accent) is split between parts like any characters. Twilio's calculator and Android
//! keep a whole cluster in one part, so when such a cluster straddles a part boundary they count
//! one part more. Matching them needs Unicode segmentation data (`unicode-segmentation`), which
//! is not a dependency yet.
//!
//! # Sources
//!
//! `fixtures/gsm7/` holds the published vectors these rules are tested against, each with its
//! `_source` / `source`: the tables from 3GPP TS 23.038 (as in AOSP `GsmAlphabet.java`,
//! cross-checked with Twilio's `UnicodeToGSM.ts`), the character membership facts, and segment
//! cases from Twilio's message-segment-calculator.

mod gsm7;
mod replacement;
#[cfg(test)]
mod tests;

pub use replacement::gsm7_replacement;

/// The data coding scheme a message is sent with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Encoding {
    #[serde(rename = "GSM-7")]
    Gsm7,
    #[serde(rename = "UCS-2")]
    Ucs2,
}

impl Encoding {
    /// The name used in the CLI, the API and lint reports: `"GSM-7"` or `"UCS-2"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::Gsm7 => "GSM-7",
            Encoding::Ucs2 => "UCS-2",
        }
    }

    /// Units that fit in one unconcatenated message.
    fn single(self) -> usize {
        match self {
            Encoding::Gsm7 => 160,
            Encoding::Ucs2 => 70,
        }
    }

    /// Units per part of a concatenated message.
    fn per_part(self) -> usize {
        match self {
            Encoding::Gsm7 => 153,
            Encoding::Ucs2 => 67,
        }
    }
}

/// How a text travels: its encoding, how many SMS parts it takes, and how many units it counts
/// (septets for GSM-7 — extension characters count 2; UTF-16 code units for UCS-2 — characters
/// outside the BMP count 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segments {
    pub encoding: Encoding,
    pub segments: u32,
    pub units: u32,
}

/// How `text` travels by SMS. See the module documentation for the rules.
pub fn segments(text: &str) -> Segments {
    // One pass answers the common case (GSM-7, a single part); it stops at the first character
    // that forces UCS-2.
    let septets = text
        .chars()
        .map(|c| gsm7::septet(c).map(|s| s.cost() as usize))
        .sum::<Option<usize>>();
    match septets {
        Some(units) => count(
            Encoding::Gsm7,
            units,
            text.chars()
                .filter_map(|c| gsm7::septet(c).map(|s| s.cost() as usize)),
        ),
        None => count(
            Encoding::Ucs2,
            text.encode_utf16().count(),
            text.chars().map(char::len_utf16),
        ),
    }
}

/// Parts needed for `units` spread over characters of the given `costs`: none for nothing, one
/// when it fits a single message, else parts filled greedily without cutting a character.
fn count(encoding: Encoding, units: usize, costs: impl Iterator<Item = usize>) -> Segments {
    let segments = if units == 0 {
        0
    } else if units <= encoding.single() {
        1
    } else {
        let per_part = encoding.per_part();
        let (parts, _) = costs.fold((1, 0), |(parts, filled), cost| {
            if filled + cost > per_part {
                (parts + 1, cost)
            } else {
                (parts, filled + cost)
            }
        });
        parts
    };
    // Texts beyond four billion units are no SMS; saturating keeps the type honest about them.
    let saturate = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    Segments {
        encoding,
        segments: saturate(segments),
        units: saturate(units),
    }
}

/// The distinct characters that force UCS-2, in order of first appearance.
pub fn ucs2_characters(text: &str) -> Vec<char> {
    let mut found = Vec::new();
    for c in text.chars() {
        if gsm7::septet(c).is_none() && !found.contains(&c) {
            found.push(c);
        }
    }
    found
}

/// The JSON line printed by `hearback segments TEXT`:
/// `{"encoding":"GSM-7"|"UCS-2","segments":N,"units":N}`.
pub fn describe(text: &str) -> serde_json::Value {
    let s = segments(text);
    serde_json::json!({
        "encoding": s.encoding,
        "segments": s.segments,
        "units": s.units,
    })
}
