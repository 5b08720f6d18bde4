//! `[dispatch]`: when surveys may be texted — the sending window in the recipient's local time,
//! public holidays per country, and the zone of numbers whose country tells none.

use crate::schedule::{SchedulingRules, SendingWindow};
use chrono::{NaiveDate, NaiveTime};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DispatchConfig {
    /// Days texts may go out on, `mon` … `sun`; flows can only narrow them.
    pub days: Vec<String>,
    /// Local time from which texts may go out (`HH:MM`).
    pub from: String,
    /// Local time before which they must have gone (`HH:MM`).
    pub to: String,
    /// The zone (an IANA name) of a number whose country is not known; a known country has its
    /// own zones (`schedule::zones_of_country`).
    pub default_time_zone: String,
    /// More public holidays, per country (ISO 3166 alpha-2): dates on which nothing is sent.
    /// France's (and its overseas departments') are built in.
    pub holidays: BTreeMap<String, Vec<NaiveDate>>,
    /// At most one survey per contact in this many days, across flows (a flow's own
    /// `frequency_cap_days` replaces it for that flow); 0: no cap.
    pub frequency_cap_days: u32,
    /// SMS-pumping guard: at most this many texts hearback starts (openings, reminders) to one
    /// number per day; more wait for the next day, their invitation `held`. 0: no cap.
    pub contact_daily_sms_cap: u32,
    /// SMS-pumping guard: at most this much spent per unit per day (in the currency of the
    /// channels' `cost_per_segment`); surveys beyond it wait for the next day, their invitation
    /// `held`. Unset: no cap.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unit_daily_spend_cap: Option<f64>,
    /// The country (ISO 3166 alpha-2) of numbers given without their country code (`06 12 34 56
    /// 78`); unset, numbers must be international (`+33…`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_region: Option<String>,
    /// Development and tests only: every survey goes out at once, whatever the flow's delay,
    /// the window and the holidays.
    pub immediate: bool,
}

impl Default for DispatchConfig {
    fn default() -> Self {
        DispatchConfig {
            days: ["mon", "tue", "wed", "thu", "fri", "sat"]
                .map(String::from)
                .to_vec(),
            from: "08:00".into(),
            to: "20:00".into(),
            default_time_zone: "Europe/Paris".into(),
            holidays: BTreeMap::new(),
            frequency_cap_days: 30,
            contact_daily_sms_cap: 10,
            unit_daily_spend_cap: None,
            default_region: None,
            immediate: false,
        }
    }
}

impl DispatchConfig {
    /// `unit_daily_spend_cap` in millionths; `Err((key, reason))` when it is not a positive
    /// amount.
    pub fn spend_cap_micros(&self) -> Result<Option<i64>, (&'static str, String)> {
        match self.unit_daily_spend_cap {
            None => Ok(None),
            Some(cap) if cap.is_finite() && cap > 0.0 && cap < 1e12 => {
                Ok(Some((cap * 1_000_000.0).round() as i64))
            }
            Some(cap) => Err((
                "unit_daily_spend_cap",
                format!("{cap} is not a positive amount"),
            )),
        }
    }

    /// `default_region` as the phone library knows it; `Err((key, reason))` when it is not a
    /// country code.
    pub fn region(&self) -> Result<Option<phonenumber::country::Id>, (&'static str, String)> {
        self.default_region
            .as_deref()
            .map(|code| {
                code.parse().map_err(|_| {
                    (
                        "default_region",
                        format!("'{code}' is not a country code such as FR"),
                    )
                })
            })
            .transpose()
    }

    /// The rules these settings describe; `Err((key, reason))` names the first bad key.
    pub fn rules(&self) -> Result<SchedulingRules, (&'static str, String)> {
        let mut days = Vec::with_capacity(self.days.len());
        for day in &self.days {
            days.push(crate::flow::weekday(day).ok_or_else(|| {
                (
                    "days",
                    format!("'{day}' is not a day; use mon, tue, wed, thu, fri, sat, sun"),
                )
            })?);
        }
        let time = |key: &'static str, raw: &str| {
            NaiveTime::parse_from_str(raw, "%H:%M")
                .map_err(|_| (key, format!("'{raw}' is not a time of day such as 08:00")))
        };
        let (from, to) = (time("from", &self.from)?, time("to", &self.to)?);
        let window = SendingWindow::new(&days, from, to).ok_or((
            "days",
            "the window allows nothing: list a day, and end after it starts".to_string(),
        ))?;
        let default_zone = self.default_time_zone.parse().map_err(|_| {
            (
                "default_time_zone",
                format!(
                    "'{}' is not an IANA time zone such as Europe/Paris",
                    self.default_time_zone
                ),
            )
        })?;
        let mut rules = SchedulingRules::new(window, default_zone);
        for (country, dates) in &self.holidays {
            if country.len() != 2 || !country.bytes().all(|b| b.is_ascii_uppercase()) {
                return Err((
                    "holidays",
                    format!("'{country}' is not a country code such as FR or BE"),
                ));
            }
            let calendar = rules
                .calendar(country)
                .clone()
                .with_dates(dates.iter().copied());
            rules.set_calendar(country, calendar);
        }
        Ok(rules)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::HolidayCalendar;

    #[test]
    fn the_defaults_are_monday_to_saturday_eight_to_eight_in_paris() {
        let rules = DispatchConfig::default().rules().unwrap();
        assert_eq!(rules.window(), &SendingWindow::default());
        assert_eq!(rules.default_zone(), chrono_tz::Europe::Paris);
        assert!(
            rules
                .calendar("FR")
                .is_holiday(NaiveDate::from_ymd_opt(2026, 7, 14).unwrap())
        );
        assert_eq!(rules.calendar("BE"), &HolidayCalendar::none());
    }

    #[test]
    fn each_bad_setting_names_its_key() {
        type Spoil = fn(&mut DispatchConfig);
        let cases: [(&str, Spoil); 6] = [
            ("days", |c| c.days = vec!["monday".into()]),
            ("days", |c| c.days = vec![]),
            ("from", |c| c.from = "8h".into()),
            ("to", |c| c.to = "25:00".into()),
            ("default_time_zone", |c| {
                c.default_time_zone = "Paris".into()
            }),
            ("holidays", |c| {
                c.holidays.insert("fr".into(), vec![]);
            }),
        ];
        for (key, spoil) in cases {
            let mut config = DispatchConfig::default();
            spoil(&mut config);
            assert_eq!(
                config.rules().err().map(|(k, _)| k),
                Some(key),
                "{config:?}"
            );
        }
    }

    #[test]
    fn extra_holidays_add_to_a_countrys_calendar() {
        let mut config = DispatchConfig::default();
        let national_day = NaiveDate::from_ymd_opt(2027, 7, 21).unwrap();
        let bridge = NaiveDate::from_ymd_opt(2027, 5, 7).unwrap();
        config.holidays.insert("BE".into(), vec![national_day]);
        config.holidays.insert("FR".into(), vec![bridge]);
        let rules = config.rules().unwrap();
        assert!(rules.calendar("BE").is_holiday(national_day));
        assert!(rules.calendar("FR").is_holiday(bridge));
        assert!(
            rules
                .calendar("FR")
                .is_holiday(NaiveDate::from_ymd_opt(2027, 5, 8).unwrap()),
            "France's own holidays stay"
        );
    }
}
