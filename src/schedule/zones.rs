//! The time zones of a country, for a number whose contact has no known zone: a table of the
//! countries hearback's users text most, each with its main zones, mainland first; for every
//! other country, the zones the tz database gives it (`zone1970.tab`, tzdata 2025b, public
//! domain). A country in neither has no zone here: the caller falls back to its configured
//! default.

use chrono_tz::Tz;
use std::collections::HashMap;
use std::sync::LazyLock;

/// The tz database's zones of each country, from `zone1970.tab`: one zone per area whose
/// clocks have agreed since 1970 (a zone shared by several countries is listed for each).
static ZONE_TABLE: LazyLock<HashMap<&'static str, Vec<Tz>>> =
    LazyLock::new(|| zone_table(include_str!("zone1970.tab")));

/// Parses `zone1970.tab`: `codes<TAB>coordinates<TAB>zone[<TAB>comments]`, `#` comments.
/// A zone this build of chrono-tz does not know is left out.
fn zone_table(tab: &'static str) -> HashMap<&'static str, Vec<Tz>> {
    let mut table: HashMap<&'static str, Vec<Tz>> = HashMap::new();
    for line in tab.lines().filter(|line| !line.starts_with('#')) {
        let mut columns = line.split('\t');
        let (Some(codes), Some(_), Some(zone)) = (columns.next(), columns.next(), columns.next())
        else {
            continue;
        };
        let Ok(zone) = zone.parse::<Tz>() else {
            continue;
        };
        for code in codes.split(',') {
            table.entry(code).or_default().push(zone);
        }
    }
    table
}

/// The zones where numbers of `country` (ISO 3166 alpha-2, as [`crate::phone::Phone::country`]
/// gives it) may be, mainland first. French overseas departments have their own country codes
/// in the numbering plan, and so their own zones.
pub fn zones_of_country(country: &str) -> &'static [Tz] {
    match main_zones(country) {
        [] => ZONE_TABLE.get(country).map_or(&[], Vec::as_slice),
        zones => zones,
    }
}

/// The countries hearback's users text most, with their main zones (fewer than the tz database
/// lists: the United States have seven here, against its twenty-nine, with the same windows).
fn main_zones(country: &str) -> &'static [Tz] {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_zone_of_the_tz_database_table_is_known() {
        let tab = include_str!("zone1970.tab");
        let rows = tab
            .lines()
            .filter(|line| !line.starts_with('#') && !line.is_empty())
            .count();
        let listed: usize = zone_table(tab).values().map(Vec::len).sum();
        // Each row gives one zone to each of its countries: none was dropped.
        let expected: usize = tab
            .lines()
            .filter(|line| !line.starts_with('#') && !line.is_empty())
            .map(|line| line.split('\t').next().unwrap().split(',').count())
            .sum();
        assert!(rows > 300, "{rows} rows");
        assert_eq!(listed, expected);
    }
}
