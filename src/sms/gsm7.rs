//! The GSM 7-bit default alphabet and its extension table (3GPP TS 23.038 §6.2.1 and
//! §6.2.1.1), as Rust data, and the character → septet lookup built from them at compile time.
//!
//! The two tables below are the single source of truth: the lookup index is derived from them
//! by `const fn`, and the tests prove both tables equal `fixtures/gsm7/gsm7_tables.json`.

/// Where a character sits in the GSM 7-bit default alphabet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Septet {
    /// One septet of the basic table.
    Basic(u8),
    /// The escape septet 0x1B followed by this code of the extension table.
    Extension(u8),
}

impl Septet {
    /// What the character costs in a message, in septets.
    pub(super) fn cost(self) -> u32 {
        match self {
            Septet::Basic(_) => 1,
            Septet::Extension(_) => 2,
        }
    }
}

/// The basic table, indexed by septet. Slot 0x09 is `Ç` (capital) as in 3GPP TS 23.038, AOSP
/// and Twilio; the Unicode consortium's GSM0338.TXT says `ç` instead, which we do not follow.
#[rustfmt::skip]
pub(super) const BASIC: [Option<char>; 128] = [
    Some('@'), Some('£'), Some('$'), Some('¥'), Some('è'), Some('é'), Some('ù'), Some('ì'),  // 0x00
    Some('ò'), Some('Ç'), Some('\n'), Some('Ø'), Some('ø'), Some('\r'), Some('Å'), Some('å'), // 0x08
    Some('Δ'), Some('_'), Some('Φ'), Some('Γ'), Some('Λ'), Some('Ω'), Some('Π'), Some('Ψ'),  // 0x10
    Some('Σ'), Some('Θ'), Some('Ξ'), None,      Some('Æ'), Some('æ'), Some('ß'), Some('É'),  // 0x18
    Some(' '), Some('!'), Some('"'), Some('#'), Some('¤'), Some('%'), Some('&'), Some('\''), // 0x20
    Some('('), Some(')'), Some('*'), Some('+'), Some(','), Some('-'), Some('.'), Some('/'),  // 0x28
    Some('0'), Some('1'), Some('2'), Some('3'), Some('4'), Some('5'), Some('6'), Some('7'),  // 0x30
    Some('8'), Some('9'), Some(':'), Some(';'), Some('<'), Some('='), Some('>'), Some('?'),  // 0x38
    Some('¡'), Some('A'), Some('B'), Some('C'), Some('D'), Some('E'), Some('F'), Some('G'),  // 0x40
    Some('H'), Some('I'), Some('J'), Some('K'), Some('L'), Some('M'), Some('N'), Some('O'),  // 0x48
    Some('P'), Some('Q'), Some('R'), Some('S'), Some('T'), Some('U'), Some('V'), Some('W'),  // 0x50
    Some('X'), Some('Y'), Some('Z'), Some('Ä'), Some('Ö'), Some('Ñ'), Some('Ü'), Some('§'),  // 0x58
    Some('¿'), Some('a'), Some('b'), Some('c'), Some('d'), Some('e'), Some('f'), Some('g'),  // 0x60
    Some('h'), Some('i'), Some('j'), Some('k'), Some('l'), Some('m'), Some('n'), Some('o'),  // 0x68
    Some('p'), Some('q'), Some('r'), Some('s'), Some('t'), Some('u'), Some('v'), Some('w'),  // 0x70
    Some('x'), Some('y'), Some('z'), Some('ä'), Some('ö'), Some('ñ'), Some('ü'), Some('à'),  // 0x78
];

/// The extension table: the code that follows the escape septet, and its character. Codes not
/// listed (including 0x0D "CR2" and 0x1B "SS2", reserved) carry no character.
pub(super) const EXTENSION: [(u8, char); 10] = [
    (0x0A, '\u{0C}'), // form feed, a page break
    (0x14, '^'),
    (0x28, '{'),
    (0x29, '}'),
    (0x2F, '\\'),
    (0x3C, '['),
    (0x3D, '~'),
    (0x3E, ']'),
    (0x40, '|'),
    (0x65, '€'),
];

/// The character's place in the GSM 7-bit alphabet, or `None` when it forces UCS-2.
pub(super) fn septet(c: char) -> Option<Septet> {
    // Every table character but `€` is below U+0400, so one indexed load answers nearly every
    // call on the hot path; the few beyond are found in a list of (today) one entry.
    match DENSE.get(c as usize) {
        Some(&packed) => unpack(packed),
        None => SPARSE
            .iter()
            .find(|&&(sparse, _)| sparse == c)
            .and_then(|&(_, packed)| unpack(packed)),
    }
}

/// Code points below this are looked up by index.
const DENSE_LIMIT: usize = 0x400;
/// A table entry packed in one byte: the septet (basic) or code (extension) in the low seven
/// bits, `EXTENDED` set for the extension table; `ABSENT` for characters outside both tables.
const ABSENT: u8 = 0xFF;
const EXTENDED: u8 = 0x80;

static DENSE: [u8; DENSE_LIMIT] = dense_index();
static SPARSE: [(char, u8); sparse_count()] = sparse_index();

fn unpack(packed: u8) -> Option<Septet> {
    match packed {
        ABSENT => None,
        p if p & EXTENDED != 0 => Some(Septet::Extension(p & !EXTENDED)),
        p => Some(Septet::Basic(p)),
    }
}

/// Both tables seen as one sequence of (character, packed entry), walked by index because
/// iterators and closures are not available in `const fn`.
const ENTRIES: usize = BASIC.len() + EXTENSION.len();

const fn entry(i: usize) -> Option<(char, u8)> {
    if i < BASIC.len() {
        match BASIC[i] {
            Some(c) => Some((c, i as u8)),
            None => None,
        }
    } else {
        let (code, c) = EXTENSION[i - BASIC.len()];
        Some((c, code | EXTENDED))
    }
}

const fn dense_index() -> [u8; DENSE_LIMIT] {
    let mut index = [ABSENT; DENSE_LIMIT];
    let mut i = 0;
    while i < ENTRIES {
        if let Some((c, packed)) = entry(i)
            && (c as usize) < DENSE_LIMIT
        {
            index[c as usize] = packed;
        }
        i += 1;
    }
    index
}

const fn sparse_count() -> usize {
    let mut count = 0;
    let mut i = 0;
    while i < ENTRIES {
        if let Some((c, _)) = entry(i)
            && (c as usize) >= DENSE_LIMIT
        {
            count += 1;
        }
        i += 1;
    }
    count
}

const fn sparse_index() -> [(char, u8); sparse_count()] {
    let mut index = [('\0', ABSENT); sparse_count()];
    let mut next = 0;
    let mut i = 0;
    while i < ENTRIES {
        if let Some((c, packed)) = entry(i)
            && (c as usize) >= DENSE_LIMIT
        {
            index[next] = (c, packed);
            next += 1;
        }
        i += 1;
    }
    index
}
