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
        Phone::parse_number(raw, default_region).map(|(phone, _)| phone)
    }

    /// [`Phone::parse`], with the parsed number for what else its metadata tells.
    fn parse_number(
        raw: &str,
        default_region: Option<phonenumber::country::Id>,
    ) -> Result<(Phone, phonenumber::PhoneNumber), InvalidPhone> {
        let trimmed = raw.trim();
        let international = if let Some(rest) = trimmed.strip_prefix("00") {
            format!("+{rest}")
        } else if default_region.is_none() && !trimmed.starts_with('+') {
            format!("+{trimmed}")
        } else {
            trimmed.to_string()
        };
        let number = phonenumber::parse(default_region, &international)
            .map_err(|_| InvalidPhone::Unreadable)?;
        if !phonenumber::is_valid(&number) {
            return Err(InvalidPhone::Invalid);
        }
        let phone = Phone(number.format().mode(phonenumber::Mode::E164).to_string());
        Ok((phone, number))
    }

    /// Parses a number to text, like [`Phone::parse`], and refuses one its metadata says cannot
    /// receive texts: a fixed line, a toll-free, premium-rate, shared-cost or VoIP number, a
    /// short code. Where the metadata cannot tell (`FixedLineOrMobile`, as for North American
    /// numbers, or unknown), the number is accepted and the provider's answer decides.
    pub fn parse_recipient(
        raw: &str,
        default_region: Option<phonenumber::country::Id>,
    ) -> Result<Recipient, InvalidPhone> {
        use phonenumber::Type;
        let (phone, number) = Phone::parse_number(raw, default_region)?;
        match number.number_type(&phonenumber::metadata::DATABASE) {
            Type::Mobile
            | Type::FixedLineOrMobile
            | Type::PersonalNumber
            | Type::Pager
            | Type::Unknown => Ok(Recipient {
                country: number.country().id().map(|id| id.as_ref().to_string()),
                phone,
            }),
            _ => Err(InvalidPhone::NotMobile),
        }
    }

    /// The ISO 3166 code of the number's country (`"FR"`), when its metadata names one.
    pub fn country(&self) -> Option<String> {
        let number = phonenumber::parse(None, &self.0).ok()?;
        number.country().id().map(|id| id.as_ref().to_string())
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

    #[test]
    fn a_number_knows_its_country() {
        let french = Phone::parse("+33 6 12 34 56 78", None).unwrap();
        assert_eq!(french.country().as_deref(), Some("FR"));
        let british = Phone::parse("+44 7400 123456", None).unwrap();
        assert_eq!(british.country().as_deref(), Some("GB"));
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
