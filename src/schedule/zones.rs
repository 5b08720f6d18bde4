//! The time zones of a country, for a number whose contact has no known zone. Countries not
//! listed have no zone here: the caller falls back to its configured default.

use chrono_tz::Tz;

/// The zones where numbers of `country` (ISO 3166 alpha-2, as [`crate::phone::Phone::country`]
/// gives it) may be, mainland first. French overseas departments have their own country codes
/// in the numbering plan, and so their own zones.
pub fn zones_of_country(country: &str) -> &'static [Tz] {
    use chrono_tz::{America, Atlantic, Australia, Europe, Indian, Pacific};
    match country {
        "FR" => &[Europe::Paris],
        "MC" => &[Europe::Monaco],
        "BE" => &[Europe::Brussels],
        "LU" => &[Europe::Luxembourg],
        "CH" => &[Europe::Zurich],
        "DE" => &[Europe::Berlin],
        "IT" => &[Europe::Rome],
        "NL" => &[Europe::Amsterdam],
        "AT" => &[Europe::Vienna],
        "GB" => &[Europe::London],
        "IE" => &[Europe::Dublin],
        "ES" => &[Europe::Madrid, Atlantic::Canary],
        "PT" => &[Europe::Lisbon, Atlantic::Azores],
        "RE" => &[Indian::Reunion],
        "BL" => &[America::St_Barthelemy],
        "MF" => &[America::Marigot],
        "YT" => &[Indian::Mayotte],
        "GP" => &[America::Guadeloupe],
        "MQ" => &[America::Martinique],
        "GF" => &[America::Cayenne],
        "PM" => &[America::Miquelon],
        "NC" => &[Pacific::Noumea],
        "PF" => &[Pacific::Tahiti, Pacific::Marquesas, Pacific::Gambier],
        "US" => &[
            America::New_York,
            America::Chicago,
            America::Denver,
            America::Phoenix,
            America::Los_Angeles,
            America::Anchorage,
            Pacific::Honolulu,
        ],
        "CA" => &[
            America::St_Johns,
            America::Halifax,
            America::Toronto,
            America::Winnipeg,
            America::Edmonton,
            America::Vancouver,
        ],
        "AU" => &[
            Australia::Sydney,
            Australia::Brisbane,
            Australia::Adelaide,
            Australia::Darwin,
            Australia::Perth,
        ],
        _ => &[],
    }
}
