use super::gsm7::{BASIC, EXTENSION, Septet, septet};
use super::*;
use proptest::prelude::*;
use serde::Deserialize;
use serde_json::json;
use std::collections::HashMap;
use std::sync::LazyLock;

const TABLES: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/fixtures/gsm7/gsm7_tables.json"
));
const MEMBERSHIP: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/fixtures/gsm7/char_membership.json"
));
const CASES: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/fixtures/gsm7/segment_cases.json"
));

#[derive(Deserialize)]
struct Tables {
    basic: Vec<BasicEntry>,
    extension: Vec<ExtensionEntry>,
}

#[derive(Deserialize)]
struct BasicEntry {
    septet: u8,
    hex: String,
    char: Option<String>,
    codepoint: Option<String>,
}

#[derive(Deserialize)]
struct ExtensionEntry {
    escape_seq: String,
    char: String,
    codepoint: String,
}

#[derive(Deserialize)]
struct Cases {
    rules: Rules,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Rules {
    gsm7: Limits,
    ucs2: Limits,
}

#[derive(Deserialize)]
struct Limits {
    single: usize,
    per_part_concatenated: usize,
}

#[derive(Deserialize)]
struct Case {
    text: String,
    encoding: String,
    segments: u32,
    units: Option<u32>,
}

fn tables() -> Tables {
    serde_json::from_str(TABLES).unwrap()
}

/// The one character of a fixture `char` field, checked against its `codepoint` field so a
/// mistyped fixture cannot pass silently.
fn fixture_char(text: &str, codepoint: &str) -> char {
    let mut chars = text.chars();
    let c = chars.next().expect("a fixture character");
    assert_eq!(chars.next(), None, "{text:?} is one character");
    let hex = codepoint.strip_prefix("U+").expect("U+XXXX");
    assert_eq!(
        u32::from(c),
        u32::from_str_radix(hex, 16).unwrap(),
        "{codepoint}"
    );
    c
}

fn hex_byte(text: &str) -> u8 {
    u8::from_str_radix(text.strip_prefix("0x").expect("0xNN"), 16).unwrap()
}

/// Every character of the fixture tables with its place, read independently of the Rust tables.
fn fixture_septets() -> HashMap<char, Septet> {
    let tables = tables();
    let mut septets = HashMap::new();
    for entry in &tables.basic {
        if let (Some(text), Some(codepoint)) = (&entry.char, &entry.codepoint) {
            let previous =
                septets.insert(fixture_char(text, codepoint), Septet::Basic(entry.septet));
            assert_eq!(previous, None, "{text:?} appears once");
        }
    }
    for entry in &tables.extension {
        let (escape, code) = entry.escape_seq.split_once(' ').unwrap();
        assert_eq!(hex_byte(escape), 0x1B, "{}", entry.escape_seq);
        let previous = septets.insert(
            fixture_char(&entry.char, &entry.codepoint),
            Septet::Extension(hex_byte(code)),
        );
        assert_eq!(previous, None, "{:?} appears once", entry.char);
    }
    septets
}

fn every_char() -> impl Iterator<Item = char> {
    (0..=u32::from(char::MAX)).filter_map(char::from_u32)
}

fn encoding_named(name: &str) -> Encoding {
    match name {
        "GSM-7" => Encoding::Gsm7,
        "UCS-2" => Encoding::Ucs2,
        other => panic!("unknown encoding {other}"),
    }
}

#[test]
fn the_basic_table_equals_the_fixture_basic_table() {
    let fixture: Vec<(u8, Option<char>)> = tables()
        .basic
        .iter()
        .map(|entry| {
            assert_eq!(hex_byte(&entry.hex), entry.septet);
            let c = match (&entry.char, &entry.codepoint) {
                (Some(text), Some(codepoint)) => Some(fixture_char(text, codepoint)),
                (None, None) => None,
                _ => panic!("septet {} has half an entry", entry.hex),
            };
            (entry.septet, c)
        })
        .collect();
    let ours: Vec<(u8, Option<char>)> = (0..).zip(BASIC).collect();
    assert_eq!(ours, fixture);
}

#[test]
fn the_extension_table_equals_the_fixture_extension_table() {
    let fixture: Vec<(u8, char)> = tables()
        .extension
        .iter()
        .map(|entry| {
            let (_, code) = entry.escape_seq.split_once(' ').unwrap();
            (hex_byte(code), fixture_char(&entry.char, &entry.codepoint))
        })
        .collect();
    assert_eq!(EXTENSION.to_vec(), fixture);
}

#[test]
fn every_code_point_is_looked_up_as_the_fixture_tables_say() {
    // Both directions at once: a character of the fixture maps to its place, and any other
    // character, down to the last code point, forces UCS-2.
    let fixture = fixture_septets();
    assert_eq!(fixture.len(), 127 + 10);
    for c in every_char() {
        assert_eq!(
            septet(c),
            fixture.get(&c).copied(),
            "{c:?} U+{:04X}",
            u32::from(c)
        );
    }
}

#[test]
fn every_membership_fact_of_the_fixture_holds() {
    let facts: HashMap<String, String> = serde_json::from_str(MEMBERSHIP).unwrap();
    assert!(facts.len() >= 50, "{} facts", facts.len());
    for (text, fact) in &facts {
        let c = text.chars().next().unwrap();
        let expected = match fact.split(' ').collect::<Vec<_>>()[..] {
            ["basic", code] => Some(Septet::Basic(hex_byte(code))),
            ["ext", "0x1B", code] => Some(Septet::Extension(hex_byte(code))),
            ["NOT", "in", "GSM-7"] => None,
            _ => panic!("unreadable fact {fact:?} for {text:?}"),
        };
        assert_eq!(septet(c), expected, "{text:?}: {fact}");
        let alone = segments(text);
        match expected {
            Some(place) => {
                assert_eq!(alone.encoding, Encoding::Gsm7, "{text:?}");
                assert_eq!(alone.units, place.cost(), "{text:?}");
                assert!(ucs2_characters(text).is_empty(), "{text:?}");
            }
            None => {
                assert_eq!(alone.encoding, Encoding::Ucs2, "{text:?}");
                assert_eq!(ucs2_characters(text), vec![c], "{text:?}");
            }
        }
    }
}

#[test]
fn every_published_segment_case_is_counted_as_published() {
    let cases: Cases = serde_json::from_str(CASES).unwrap();
    assert_eq!(cases.cases.len(), 26);
    for case in &cases.cases {
        let counted = segments(&case.text);
        assert_eq!(
            counted.encoding,
            encoding_named(&case.encoding),
            "{:?}",
            case.text
        );
        assert_eq!(counted.segments, case.segments, "{:?}", case.text);
        if let Some(units) = case.units {
            assert_eq!(counted.units, units, "{:?}", case.text);
        }
    }
}

#[test]
fn the_limits_are_the_published_rules() {
    let rules = serde_json::from_str::<Cases>(CASES).unwrap().rules;
    assert_eq!(Encoding::Gsm7.single(), rules.gsm7.single);
    assert_eq!(Encoding::Gsm7.per_part(), rules.gsm7.per_part_concatenated);
    assert_eq!(Encoding::Ucs2.single(), rules.ucs2.single);
    assert_eq!(Encoding::Ucs2.per_part(), rules.ucs2.per_part_concatenated);
}

#[test]
fn texts_at_the_part_boundaries_take_the_expected_parts() {
    let a = |n: usize| "a".repeat(n);
    // `ê` forces UCS-2 and is one unit; `😀` is a surrogate pair, two units.
    let e = |n: usize| "ê".repeat(n);
    let gsm7 = |segments, units| Segments {
        encoding: Encoding::Gsm7,
        segments,
        units,
    };
    let ucs2 = |segments, units| Segments {
        encoding: Encoding::Ucs2,
        segments,
        units,
    };
    let cases = [
        ("empty", String::new(), gsm7(0, 0)),
        ("one septet", a(1), gsm7(1, 1)),
        ("a full single message", a(160), gsm7(1, 160)),
        ("one septet too many", a(161), gsm7(2, 161)),
        ("two full parts", a(153 * 2), gsm7(2, 306)),
        ("one septet into a third part", a(153 * 2 + 1), gsm7(3, 307)),
        ("160 with extensions", a(150) + &"€".repeat(5), gsm7(1, 160)),
        ("an extension past 160", a(159) + "€", gsm7(2, 161)),
        (
            "an extension ending at 153",
            a(151) + "€" + &a(153),
            gsm7(2, 306),
        ),
        (
            "an extension at septet 153 moves",
            a(152) + "€" + &a(152),
            gsm7(3, 306),
        ),
        ("and at septet 306", a(305) + "€" + &a(152), gsm7(4, 459)),
        ("a full single UCS-2 message", e(70), ucs2(1, 70)),
        ("one unit too many", e(71), ucs2(2, 71)),
        ("two full UCS-2 parts", e(67 * 2), ucs2(2, 134)),
        ("one unit into a third part", e(67 * 2 + 1), ucs2(3, 135)),
        (
            "an emoji ending a single message",
            e(68) + "😀",
            ucs2(1, 70),
        ),
        ("an emoji ending at 67", e(65) + "😀" + &e(67), ucs2(2, 134)),
        (
            "an emoji at unit 67 moves",
            e(66) + "😀" + &e(66),
            ucs2(3, 134),
        ),
        ("GSM-7 letters in UCS-2", a(70) + "ê", ucs2(2, 71)),
        (
            "an extension is one UCS-2 unit",
            "€".repeat(69) + "ê",
            ucs2(1, 70),
        ),
    ];
    for (name, text, expected) in cases {
        assert_eq!(segments(&text), expected, "{name}");
    }
}

#[test]
fn french_accents_in_the_basic_table_keep_gsm7_and_the_others_force_ucs2() {
    for c in [
        'é', 'è', 'à', 'ù', 'É', 'Ç', 'ì', 'ò', 'ü', 'Ü', 'ä', 'ö', 'ñ',
    ] {
        let text = format!("Merci {c}");
        assert_eq!(segments(&text).encoding, Encoding::Gsm7, "{c}");
        assert_eq!(segments(&text).units, 7, "{c}");
    }
    for c in [
        'ê', 'â', 'î', 'ô', 'û', 'ë', 'ï', 'ç', 'œ', 'È', 'À', 'Ù', 'Ê', 'Œ', 'ÿ',
    ] {
        let text = format!("Merci {c}");
        assert_eq!(segments(&text).encoding, Encoding::Ucs2, "{c}");
        assert_eq!(ucs2_characters(&text), vec![c]);
    }
}

#[test]
fn describe_reports_a_french_sentence_with_a_circumflex_as_one_ucs2_segment() {
    let described = describe("Vous êtes formidables");
    assert_eq!(
        described,
        json!({"encoding": "UCS-2", "segments": 1, "units": 21})
    );
    assert_eq!(
        described.to_string(),
        r#"{"encoding":"UCS-2","segments":1,"units":21}"#
    );
    assert_eq!(
        describe("Vous etes formidables").to_string(),
        r#"{"encoding":"GSM-7","segments":1,"units":21}"#
    );
}

#[test]
fn encodings_are_named_the_same_in_code_and_in_json() {
    for encoding in [Encoding::Gsm7, Encoding::Ucs2] {
        assert_eq!(
            serde_json::to_value(encoding).unwrap(),
            json!(encoding.as_str())
        );
    }
    assert_eq!(Encoding::Gsm7.as_str(), "GSM-7");
    assert_eq!(Encoding::Ucs2.as_str(), "UCS-2");
}

#[test]
fn ucs2_characters_are_listed_once_in_order_of_first_appearance() {
    let cases: [(&str, &[char]); 5] = [
        ("", &[]),
        ("Merci, à bientôt € [x]", &['ô']),
        ("À bientôt, ça va ? À+ ô", &['À', 'ô', 'ç']),
        ("“Top” 😀 😀", &['“', '”', '😀']),
        ("C’est noté’", &['’']),
    ];
    for (text, expected) in cases {
        assert_eq!(ucs2_characters(text), expected, "{text:?}");
    }
}

#[test]
fn replacements_are_suggested_for_common_typography_and_accents() {
    let cases = [
        ('ê', Some("e")),
        ('Ê', Some("E")),
        ('â', Some("a")),
        ('î', Some("i")),
        ('ô', Some("o")),
        ('û', Some("u")),
        ('ë', Some("e")),
        ('ï', Some("i")),
        ('ç', Some("c")),
        ('œ', Some("oe")),
        ('Œ', Some("OE")),
        ('’', Some("'")),
        ('‘', Some("'")),
        ('“', Some("\"")),
        ('”', Some("\"")),
        ('«', Some("\"")),
        ('»', Some("\"")),
        ('–', Some("-")),
        ('—', Some("-")),
        ('…', Some("...")),
        ('\u{A0}', Some(" ")),
        ('\u{202F}', Some(" ")),
        ('\u{200B}', Some("")),
        ('😀', None),
        ('你', None),
        ('é', None),
        ('Ç', None),
        ('€', None),
        ('a', None),
    ];
    for (c, expected) in cases {
        assert_eq!(gsm7_replacement(c), expected, "{c:?}");
    }
}

/// Every character that has a suggestion, found by asking about every code point.
static REPLACEABLE: LazyLock<Vec<char>> = LazyLock::new(|| {
    every_char()
        .filter(|&c| gsm7_replacement(c).is_some())
        .collect()
});

#[test]
fn every_replacement_replaces_a_ucs2_character_by_gsm7_basic_characters() {
    assert!(REPLACEABLE.len() > 50, "{} replaceable", REPLACEABLE.len());
    for &c in REPLACEABLE.iter() {
        assert_eq!(septet(c), None, "{c:?} needs no replacement");
        let replacement = gsm7_replacement(c).unwrap();
        // Basic characters only, so a suggestion never costs more septets than its length.
        assert!(
            replacement
                .chars()
                .all(|r| matches!(septet(r), Some(Septet::Basic(_)))),
            "{c:?} -> {replacement:?}"
        );
    }
}

/// Every GSM-7 character, to make generated texts that stay GSM-7.
fn gsm7_chars() -> Vec<char> {
    BASIC
        .iter()
        .flatten()
        .copied()
        .chain(EXTENSION.iter().map(|&(_, c)| c))
        .collect()
}

/// Texts of any characters, of GSM-7 characters only, or of GSM-7 characters with a few that
/// force UCS-2, long enough to cross several part boundaries.
fn texts() -> impl Strategy<Value = String> {
    let gsm7 = proptest::sample::select(gsm7_chars());
    let mixed = prop_oneof![
        8 => proptest::sample::select(gsm7_chars()),
        1 => proptest::sample::select(vec!['ê', 'ç', '’', '😀', '🇫', '\u{10FFFF}']),
        1 => any::<char>(),
    ];
    prop_oneof![
        any::<String>(),
        proptest::collection::vec(gsm7, 0..500).prop_map(String::from_iter),
        proptest::collection::vec(mixed, 0..300).prop_map(String::from_iter),
    ]
}

proptest! {
    #[test]
    fn units_are_septets_for_gsm7_and_utf16_code_units_for_ucs2(text in texts()) {
        let counted = segments(&text);
        match counted.encoding {
            Encoding::Gsm7 => {
                let extensions = text
                    .chars()
                    .filter(|&c| matches!(septet(c), Some(Septet::Extension(_))))
                    .count();
                prop_assert!(ucs2_characters(&text).is_empty());
                prop_assert_eq!(counted.units as usize, text.chars().count() + extensions);
            }
            Encoding::Ucs2 => {
                prop_assert!(!ucs2_characters(&text).is_empty());
                prop_assert_eq!(counted.units as usize, text.encode_utf16().count());
            }
        }
    }

    #[test]
    fn parts_are_as_few_as_the_limits_allow(text in texts()) {
        let counted = segments(&text);
        let units = counted.units as usize;
        let parts = counted.segments as usize;
        let (single, per_part) = (counted.encoding.single(), counted.encoding.per_part());
        if units == 0 {
            prop_assert_eq!(parts, 0);
        } else if units <= single {
            prop_assert_eq!(parts, 1);
        } else {
            prop_assert!(parts >= units.div_ceil(per_part));
            // A part loses at most one unit to a character that moves whole to the next part.
            prop_assert!(parts <= units.div_ceil(per_part - 1));
        }
        let described = describe(&text);
        prop_assert_eq!(described["encoding"].as_str(), Some(counted.encoding.as_str()));
        prop_assert_eq!(described["segments"].as_u64(), Some(u64::from(counted.segments)));
        prop_assert_eq!(described["units"].as_u64(), Some(u64::from(counted.units)));
    }

    #[test]
    fn applying_every_suggestion_yields_a_gsm7_text(
        chars in proptest::collection::vec(
            prop_oneof![
                3 => proptest::sample::select(REPLACEABLE.clone()),
                1 => proptest::sample::select(gsm7_chars()),
            ],
            0..200,
        )
    ) {
        let replaced: String = chars
            .iter()
            .map(|&c| gsm7_replacement(c).map_or_else(|| c.to_string(), str::to_string))
            .collect();
        prop_assert_eq!(segments(&replaced).encoding, Encoding::Gsm7);
        prop_assert!(ucs2_characters(&replaced).is_empty());
    }
}
