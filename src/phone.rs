//! Customer phone numbers: always E.164, never printed whole.

use std::fmt;

/// A phone number in E.164 (`+33612345678`), parsed with the `phonenumber` crate's metadata.
/// `Debug` and `Display` mask all but the country code and the last two digits, so a number in
/// a log line or an error cannot identify anyone.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Phone(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidPhone {
    #[error("not a phone number")]
    Unreadable,
    #[error("not a valid number for its country")]
    Invalid,
    #[error("not a mobile number: it cannot receive text messages")]
    NotMobile,
}

/// A number a survey can be texted to: valid, and not known to be unable to receive SMS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    pub phone: Phone,
    /// The ISO 3166 code of its country, when its metadata names one.
    pub country: Option<String>,
}

impl Phone {
    /// Parses an international number (`+33 6 12 34 56 78`, `0033…`, or digits with their
    /// country code as providers send them), or a national one in `default_region`.
    pub fn parse(
        raw: &str,
        default_region: Option<phonenumber::country::Id>,
    ) -> Result<Phone, InvalidPhone> {
        Phone::parse_number(raw, default_region).map(|(phone, ..)| phone)
    }

    /// [`Phone::parse`], with the number's type and the ISO code of its region.
    fn parse_number(
        raw: &str,
        default_region: Option<phonenumber::country::Id>,
    ) -> Result<(Phone, phonenumber::Type, Option<String>), InvalidPhone> {
        let trimmed = raw.trim();
        // The default region only reads national numbers: given with an international one, the
        // crate strips that region's trunk prefix from the other country's digits (with FR,
        // `+39 06…` lost its 0 and became another number).
        let (text, read_in) = if let Some(rest) = trimmed.strip_prefix("00") {
            (format!("+{rest}"), None)
        } else if trimmed.starts_with('+') || default_region.is_none() {
            (format!("+{}", trimmed.trim_start_matches('+')), None)
        } else {
            (trimmed.to_string(), default_region)
        };
        let number = phonenumber::parse(read_in, &text).map_err(|_| InvalidPhone::Unreadable)?;
        // Valid means what `phonenumber::is_valid` means: a type its region's patterns know. It
        // is that same reading, done once for both (each runs the region's patterns).
        let (kind, region) = classify(&number);
        if kind == phonenumber::Type::Unknown {
            return Err(InvalidPhone::Invalid);
        }
        let phone = Phone(number.format().mode(phonenumber::Mode::E164).to_string());
        Ok((phone, kind, region))
    }

    /// Parses a number to text, like [`Phone::parse`], and refuses one its metadata says cannot
    /// receive texts: a fixed line, a toll-free, premium-rate, shared-cost or VoIP number, a
    /// short code. Where the metadata cannot tell (`FixedLineOrMobile`, as for North American
    /// numbers), the number is accepted and the provider's answer decides.
    pub fn parse_recipient(
        raw: &str,
        default_region: Option<phonenumber::country::Id>,
    ) -> Result<Recipient, InvalidPhone> {
        use phonenumber::Type;
        let (phone, kind, region) = Phone::parse_number(raw, default_region)?;
        match kind {
            Type::Mobile | Type::FixedLineOrMobile | Type::PersonalNumber | Type::Pager => {
                Ok(Recipient {
                    country: region,
                    phone,
                })
            }
            _ => Err(InvalidPhone::NotMobile),
        }
    }

    /// The ISO 3166 code of the number's country (`"FR"`), when its metadata names one.
    pub fn country(&self) -> Option<String> {
        country_of(&self.0)
    }

    /// The full number, for the database and the provider; never for logs.
    pub fn as_e164(&self) -> &str {
        &self.0
    }

    fn masked(&self) -> String {
        let digits: Vec<char> = self.0.chars().collect();
        let tail: String = digits[digits.len().saturating_sub(2)..].iter().collect();
        let head: String = digits.iter().take(3).collect();
        format!("{head}…{tail}")
    }
}

/// The ISO 3166 code of the country of an international number stored as [`Phone::as_e164`]
/// gave it, without checking it again as [`Phone::parse`] would.
pub fn country_of(e164: &str) -> Option<String> {
    let number = phonenumber::parse(None, e164).ok()?;
    classify(&number).1
}

/// The number's type and the ISO code of its region, read from its national number as it is
/// dialled, leading zeros included, the way `phonenumber::is_valid` reads it.
///
/// `PhoneNumber::number_type` and `PhoneNumber::country` read the national number without its
/// leading zeros (the crate keeps it as an integer): an Italian landline, `+39 06…`, matched no
/// pattern there, so it was taken for a number that can receive texts, of no known country.
fn classify(number: &phonenumber::PhoneNumber) -> (phonenumber::Type, Option<String>) {
    let national = number.national().to_string();
    let Some(metadata) = region_metadata(number.country().code(), &national) else {
        return (phonenumber::Type::Unknown, None);
    };
    let region = metadata
        .id()
        .parse::<phonenumber::country::Id>()
        .ok()
        .map(|id| id.as_ref().to_string());
    (number_type(metadata, &national), region)
}

/// The metadata of the region a national number belongs to, among those sharing its country
/// code (`+1`: the United States, Canada and others; `+39`: Italy and the Vatican).
fn region_metadata(code: u16, national: &str) -> Option<&'static phonenumber::Metadata> {
    let database: &'static phonenumber::metadata::Database = &phonenumber::metadata::DATABASE;
    let regions = database.region(&code)?;
    if let [only] = regions.as_slice() {
        // "001": the non-geographic codes (satellite, global services), found by code.
        return if *only == "001" {
            database.by_code(&code)?.into_iter().next()
        } else {
            database.by_id(*only)
        };
    }
    regions
        .into_iter()
        .filter_map(|region| database.by_id(region))
        .find(|metadata| match metadata.leading_digits() {
            Some(pattern) => pattern.find(national).is_some_and(|m| m.start() == 0),
            None => number_type(metadata, national) != phonenumber::Type::Unknown,
        })
}

/// The type a region's patterns give a national number, in libphonenumber's order: the special
/// rates and services first, then fixed line and mobile.
fn number_type(metadata: &phonenumber::Metadata, national: &str) -> phonenumber::Type {
    use phonenumber::Type;
    let descriptors = metadata.descriptors();
    let matches = |descriptor: Option<&phonenumber::metadata::Descriptor>| {
        descriptor.is_some_and(|d| d.is_match(national))
    };
    if !descriptors.general().is_match(national) {
        return Type::Unknown;
    }
    let special = [
        (descriptors.premium_rate(), Type::PremiumRate),
        (descriptors.toll_free(), Type::TollFree),
        (descriptors.shared_cost(), Type::SharedCost),
        (descriptors.voip(), Type::Voip),
        (descriptors.personal_number(), Type::PersonalNumber),
        (descriptors.pager(), Type::Pager),
        (descriptors.uan(), Type::Uan),
        (descriptors.voicemail(), Type::Voicemail),
    ];
    if let Some((_, kind)) = special.into_iter().find(|(d, _)| matches(*d)) {
        return kind;
    }
    let same_patterns = descriptors
        .fixed_line()
        .zip(descriptors.mobile())
        .is_some_and(|(fixed, mobile)| {
            fixed.national_number().as_str() == mobile.national_number().as_str()
        });
    match (
        matches(descriptors.fixed_line()),
        matches(descriptors.mobile()),
    ) {
        (true, true) => Type::FixedLineOrMobile,
        (true, false) if same_patterns => Type::FixedLineOrMobile,
        (true, false) => Type::FixedLine,
        (false, true) => Type::Mobile,
        (false, false) => Type::Unknown,
    }
}

impl fmt::Debug for Phone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Phone({})", self.masked())
    }
}

impl fmt::Display for Phone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use phonenumber::country::Id;

    #[test]
    fn numbers_are_normalised_to_e164() {
        for (raw, region, e164) in [
            ("+33 6 12 34 56 78", None, "+33612345678"),
            ("33612345678", None, "+33612345678"),
            ("0033612345678", None, "+33612345678"),
            ("06 12 34 56 78", Some(Id::FR), "+33612345678"),
            ("+1 415 555 2671", None, "+14155552671"),
            ("+447911123456", None, "+447911123456"),
        ] {
            assert_eq!(
                Phone::parse(raw, region).map(|p| p.as_e164().to_string()),
                Ok(e164.to_string()),
                "{raw}"
            );
        }
    }

    #[test]
    fn a_default_region_reads_national_numbers_only() {
        for (raw, e164, outcome) in [
            ("06 12 34 56 78", "+33612345678", Ok(Some("FR"))),
            ("+33 6 12 34 56 78", "+33612345678", Ok(Some("FR"))),
            ("0033 6 12 34 56 78", "+33612345678", Ok(Some("FR"))),
            // Another country's leading zero is kept, not taken for France's trunk prefix.
            (
                "+39 06 6982 0000",
                "+390669820000",
                Err(InvalidPhone::NotMobile),
            ),
            ("+39 312 345 6789", "+393123456789", Ok(Some("IT"))),
            ("+225 07 01 23 45 67", "+2250701234567", Ok(Some("CI"))),
        ] {
            assert_eq!(
                Phone::parse(raw, Some(Id::FR)).map(|p| p.as_e164().to_string()),
                Ok(e164.to_string()),
                "{raw}"
            );
            assert_eq!(
                Phone::parse_recipient(raw, Some(Id::FR)).map(|r| r.country),
                outcome.map(|c| c.map(str::to_string)),
                "{raw}"
            );
        }
    }

    #[test]
    fn what_is_not_a_valid_number_is_refused() {
        for raw in ["", "hello", "+33 1", "+999 123456", "DUPAIN", "36180"] {
            assert!(Phone::parse(raw, None).is_err(), "{raw}");
        }
    }

    #[test]
    fn a_recipient_is_a_number_that_can_receive_texts() {
        for (raw, outcome) in [
            ("+33612345678", Ok(Some("FR"))),
            ("+33757000001", Ok(Some("FR"))),
            ("+447400123456", Ok(Some("GB"))),
            // North American numbers do not tell mobile from fixed: the provider decides.
            ("+14155552671", Ok(Some("US"))),
            ("+33142685300", Err(InvalidPhone::NotMobile)),
            ("+33800123456", Err(InvalidPhone::NotMobile)),
            ("+33975123456", Err(InvalidPhone::NotMobile)),
            ("+442079460000", Err(InvalidPhone::NotMobile)),
            // Italian landlines keep their leading zero after +39; mobiles have none.
            ("+39 02 1234 5678", Err(InvalidPhone::NotMobile)),
            ("+39 06 6982 0000", Err(InvalidPhone::NotMobile)),
            ("+39 312 345 6789", Ok(Some("IT"))),
            ("+33 1", Err(InvalidPhone::Unreadable)),
        ] {
            let parsed = Phone::parse_recipient(raw, None);
            assert_eq!(
                parsed.as_ref().map(|r| r.country.as_deref()),
                outcome.as_ref().map(|c| *c),
                "{raw}"
            );
            if let Ok(recipient) = parsed {
                assert_eq!(recipient.country, recipient.phone.country(), "{raw}");
            }
        }
    }

    proptest::proptest! {
        /// The type and the region read with the leading zeros are the crate's own wherever the
        /// crate reads the number whole (no leading zero), and a number has a type exactly when
        /// the crate's validity check, which reads the zeros, accepts it.
        #[test]
        fn the_type_is_the_crates_where_no_leading_zero_is_lost(
            code in proptest::sample::select(vec!["33", "1", "39", "44", "49", "225", "262", "7"]),
            // Any digits, mostly invalid; and national lengths, mostly valid.
            digits in proptest::prop_oneof!["[0-9]{4,12}", "[1-9][0-9]{8,9}", "0[1-9][0-9]{7,9}"],
        ) {
            let Ok(number) = phonenumber::parse(None, format!("+{code}{digits}")) else {
                return Ok(());
            };
            let (kind, region) = classify(&number);
            proptest::prop_assert_eq!(
                kind != phonenumber::Type::Unknown,
                phonenumber::is_valid(&number)
            );
            if number.national().zeros() == 0 {
                let database = &phonenumber::metadata::DATABASE;
                proptest::prop_assert_eq!(kind, number.number_type(database));
                proptest::prop_assert_eq!(
                    region,
                    number.country().id().map(|id| id.as_ref().to_string())
                );
            }
        }
    }

    #[test]
    fn a_number_knows_its_country() {
        let french = Phone::parse("+33 6 12 34 56 78", None).unwrap();
        assert_eq!(french.country().as_deref(), Some("FR"));
        let british = Phone::parse("+44 7400 123456", None).unwrap();
        assert_eq!(british.country().as_deref(), Some("GB"));
        // A leading zero is part of the number: Milan, then the Vatican's range inside Rome's.
        let roman = Phone::parse("+39 02 1234 5678", None).unwrap();
        assert_eq!(roman.country().as_deref(), Some("IT"));
        let vatican = Phone::parse("+39 06 6982 0000", None).unwrap();
        assert_eq!(vatican.country().as_deref(), Some("VA"));
    }

    #[test]
    fn a_number_is_never_printed_whole() {
        let phone = Phone::parse("+33612345678", None).unwrap();
        for shown in [format!("{phone}"), format!("{phone:?}")] {
            assert!(!shown.contains("612345678"), "{shown}");
            assert!(
                shown.contains("+33") && shown.ends_with("78") || shown.ends_with("78)"),
                "{shown}"
            );
        }
    }
}
